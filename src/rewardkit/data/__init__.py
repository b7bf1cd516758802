"""Feedback data: typed records with their source locations, loaders for the formats people collect, and splits."""

from rewardkit.data.convert import rankings_to_pairs, ratings_to_pairs
from rewardkit.data.loaders import load_binary, load_pairs, load_rankings, load_ratings, load_records, read_rows
from rewardkit.data.report import LoadedRecords, LoadReport, Problem
from rewardkit.data.split import train_val_split
from rewardkit.data.types import (
    BinaryFeedback,
    FeedbackRecord,
    Location,
    Message,
    PreferencePair,
    Prompt,
    RankedGroup,
    RatedResponse,
    conversation_from_text,
    prompt_as_text,
)

__all__ = [
    "BinaryFeedback", "FeedbackRecord", "Location", "Message", "PreferencePair", "Prompt", "RankedGroup",
    "RatedResponse", "conversation_from_text", "prompt_as_text",
    "load_pairs", "load_rankings", "load_ratings", "load_binary", "load_records", "read_rows",
    "rankings_to_pairs", "ratings_to_pairs", "train_val_split", "LoadReport", "LoadedRecords", "Problem",
]
