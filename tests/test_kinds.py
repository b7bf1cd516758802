"""The registry of feedback kinds: names, spellings, record types and texts in loss order."""

import pytest

from rewardkit.data.types import BinaryFeedback, PreferencePair, RankedGroup, RatedResponse
from rewardkit.errors import RewardkitError
from rewardkit.kinds import KIND_SPELLINGS, KINDS, kind_named, kind_of
from rewardkit.models.config import TrainRMConfig

PAIR = PreferencePair("p", "good", "bad", margin=2.0)
GROUPS = [RankedGroup("q", ["best", "mid", "worst"]), RankedGroup("r", ["first", "second"])]
RATINGS = [RatedResponse("p", f"answer {i}", score) for i, score in enumerate([1.0, 2.0, 3.0, 4.0])]
THUMBS = [BinaryFeedback("p", "yes", 1), BinaryFeedback("p", "no", 0)]


def test_one_name_per_kind_and_the_old_spelling_still_accepted():
    assert list(KINDS) == ["pairs", "rankings", "ratings", "binary"]
    assert kind_named("pairwise") is kind_named("pairs") is KINDS["pairs"]
    assert "pairwise" in KIND_SPELLINGS
    with pytest.raises(RewardkitError, match="unknown kind of feedback 'likert'; expected one of pairs, rankings"):
        kind_named("likert")


def test_each_record_type_belongs_to_one_kind():
    assert [kind_of(r).name for r in (PAIR, GROUPS[0], RATINGS[0], THUMBS[0])] == ["pairs", "rankings", "ratings",
                                                                                   "binary"]


def test_texts_come_in_the_order_each_loss_expects_with_their_targets():
    assert KINDS["pairs"].texts(PAIR) == (["good", "bad"], 2.0)  # chosen first, margin as target
    assert KINDS["rankings"].texts(GROUPS[0]) == (["best", "mid", "worst"], None)  # best first
    assert KINDS["ratings"].texts(RATINGS[2]) == (["answer 2"], 3.0)
    assert KINDS["binary"].texts(THUMBS[1]) == (["no"], 0.0)


def test_train_rm_config_takes_every_spelling_and_names_the_kind_once():
    from rewardkit.config import config_from_mapping, parse_config

    cfg = parse_config(TrainRMConfig, ["--feedback", "pairwise"])
    assert kind_named(cfg.feedback).name == "pairs"
    with pytest.raises(RewardkitError, match="--feedback must be one of pairs, rankings, ratings, binary, pairwise"):
        config_from_mapping(TrainRMConfig, {"feedback": "likert"}, "train.yaml")
