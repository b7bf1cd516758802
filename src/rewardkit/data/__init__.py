"""Feedback data: typed records with their source locations, loaders for the formats people collect, and splits."""

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
]
