"""The scripted annotator (examples/scripted_annotator.py) that runs a labelling round unattended: the value it gives
each task, by the lexicon and by a reward model."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO_ROOT, reward_tolerance

sys.path.insert(0, str(REPO_ROOT / "examples"))
from scripted_annotator import judge, lexicon_score, reward_model_score, sentiment  # noqa: E402

GOOD, BAD, PLAIN = "A great, fun film: I loved it", "Boring and awful, a waste", "It is a film"


def item(task: str, *responses: str, **extra) -> dict:
    return {"id": 1, "task": task, "prompt": "Write a short movie review.", "responses": list(responses), **extra}


def test_sentiment_counts_positive_minus_negative_words():
    assert (sentiment(GOOD), sentiment(BAD), sentiment(PLAIN)) == (3, -3, 0)


def test_judge_by_the_lexicon():
    assert judge(item("pairs", BAD, GOOD)) == "B"
    assert judge(item("pairs", GOOD, PLAIN)) == "A"
    assert judge(item("pairs", PLAIN, "A film")) == "tie"
    assert judge(item("rankings", PLAIN, GOOD, BAD)) == [1, 0, 2]
    assert judge(item("ratings", GOOD, scale=5)) == 5  # middle 3 + 3, capped at the scale
    assert judge(item("ratings", "A good film, but boring", scale=5)) == 3  # +1 - 1
    assert judge(item("ratings", BAD, scale=7)) == 1  # middle 4 - 3
    assert judge(item("thumbs", GOOD)) == 1 and judge(item("thumbs", PLAIN)) == 0


def test_lexicon_score_reads_every_response():
    assert lexicon_score("any prompt", [GOOD, BAD, PLAIN]) == [3, -3, 0]


def test_reward_model_scores_an_items_responses_as_the_model_does(varied_bert_dir):
    from rewardkit.models.ensemble import load_reward_model

    prompt, responses = "Write a short movie review.", [GOOD, BAD, PLAIN]
    model = load_reward_model(str(varied_bert_dir))
    alone = [float(model.score([prompt], [r])[0]) for r in responses]
    score = reward_model_score(str(varied_bert_dir))
    # padding in the batch changes no score beyond the precision's rounding (exact up to summation order in fp32)
    assert score(prompt, responses) == pytest.approx(alone, abs=reward_tolerance(alone))
    assert judge(item("rankings", *responses), score) == sorted(range(3), key=lambda i: -alone[i])
