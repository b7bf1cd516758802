"""The registry of feedback kinds: names, texts in loss order, score layouts, targets and training tasks."""

import math

import numpy as np
import pytest
import torch

from rewardkit.data.types import BinaryFeedback, PreferencePair, RankedGroup, RatedResponse
from rewardkit.errors import RewardkitError
from rewardkit.kinds import KIND_SPELLINGS, KINDS, kind_named, kind_of
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.tasks import Example

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


def test_flat_scores_are_laid_out_per_kind():
    # pairs are scored as [chosen 1, rejected 1, chosen 2, rejected 2]
    chosen, rejected = KINDS["pairs"].arrange(np.array([1.0, 2.0, 3.0, 4.0]), [PAIR, PAIR])
    assert chosen.tolist() == [1.0, 3.0] and rejected.tolist() == [2.0, 4.0]
    groups = KINDS["rankings"].arrange(np.arange(5.0), GROUPS)
    assert [g.tolist() for g in groups] == [[0.0, 1.0, 2.0], [3.0, 4.0]]
    assert KINDS["ratings"].arrange(np.arange(4.0), RATINGS).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert sorted(KINDS["pairs"].flat((chosen, rejected)).tolist()) == [1.0, 2.0, 3.0, 4.0]
    assert KINDS["rankings"].flat(groups).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert KINDS["ratings"].targets(RATINGS).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert KINDS["binary"].targets(THUMBS).tolist() == [1.0, 0.0]
    assert KINDS["pairs"].targets([PAIR]) is None
    assert KINDS["pairs"].calibration_scores((1, 2)) == (1, 2) and KINDS["ratings"].calibration_scores(3) is None


def test_ratings_train_on_ratings_z_scored_with_the_training_statistics():
    task = KINDS["ratings"].task(TrainRMConfig(feedback="ratings"), RATINGS)
    # ratings 1..4: mean 2.5, population std sqrt(1.25); a score of 0 for the rating 4 misses its z-score
    # (4 - 2.5) / sqrt(1.25) = 1.3416, so the squared error is 1.8
    loss = task.loss(torch.tensor([0.0]), [Example([], 4.0)])
    assert loss.item() == pytest.approx(((4 - 2.5) / math.sqrt(1.25)) ** 2, rel=1e-6)
    raw = KINDS["ratings"].task(TrainRMConfig(feedback="ratings", normalize_ratings=False), RATINGS)
    assert raw.loss(torch.tensor([0.0]), [Example([], 4.0)]).item() == pytest.approx(16.0)


def test_pairs_train_with_the_margin_only_when_asked():
    examples = [Example([], 2.0)]
    scores = torch.tensor([1.0, 0.0])  # chosen 1, rejected 0
    with_margin = KINDS["pairs"].task(TrainRMConfig(), [PAIR]).loss(scores, examples)
    without = KINDS["pairs"].task(TrainRMConfig(use_margin=False), [PAIR]).loss(scores, examples)
    assert with_margin.item() == pytest.approx(-math.log(1 / (1 + math.exp(-(1 - 2)))), rel=1e-6)  # -log σ(1 - 2)
    assert without.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))), rel=1e-6)  # -log σ(1)


def test_train_rm_config_takes_every_spelling_and_names_the_kind_once():
    from rewardkit.config import config_from_mapping, parse_config

    cfg = parse_config(TrainRMConfig, ["--feedback", "pairwise"])
    assert kind_named(cfg.feedback).name == "pairs"
    with pytest.raises(RewardkitError, match="--feedback must be one of pairs, rankings, ratings, binary, pairwise"):
        config_from_mapping(TrainRMConfig, {"feedback": "likert"}, "train.yaml")
