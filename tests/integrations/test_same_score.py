"""A response gets the same score whichever framework asks: TRL, verl (both forms), OpenRLHF (file and HTTP) and a
`rewardkit serve` URL all score through rewardkit's one path, for a reward model and for a spec."""

from __future__ import annotations

import pytest

from rewardkit.integrations.openrlhf import make_reward_func
from rewardkit.integrations.trl import reward_func
from rewardkit.integrations.verl import make_compute_score, make_compute_score_batch
from rewardkit.rewards.spec import load_reward
from tests.conftest import min_gap, reward_tolerance
from tests.integrations.conftest import InProcessServer

PROMPTS = ["How do I bake bread?", "Name a colour.", "What is 6 x 7?"]
RESPONSES = ["Mix flour, water and yeast, then bake it.", "Blue.", "The answer is 42"]
REFERENCES = ["Mix flour and water, bake.", "Red.", "42"]


def every_framework(source) -> dict[str, list[float]]:
    trl = reward_func(source)(prompts=PROMPTS, completions=RESPONSES, completion_ids=None, solution=REFERENCES,
                              trainer_state=None)
    one = make_compute_score(source)
    verl = [one("hh", r, g, {"prompt": p})["score"] for p, r, g in zip(PROMPTS, RESPONSES, REFERENCES)]
    verl_batch = [row["score"] for row in make_compute_score_batch(source)(
        ["hh"] * 3, RESPONSES, REFERENCES, [{"prompt": p} for p in PROMPTS])]
    # OpenRLHF's query is prompt + response (plain prompts here, no chat template)
    answer = make_reward_func(source)([p + r for p, r in zip(PROMPTS, RESPONSES)], PROMPTS, REFERENCES)
    return {"trl": trl, "verl": verl, "verl_batch": verl_batch, "openrlhf": answer["rewards"].tolist()}


def test_a_spec_scores_the_same_in_every_framework(spec_path):
    expected = load_reward(str(spec_path))(PROMPTS, RESPONSES, REFERENCES).tolist()
    for framework, scores in every_framework(str(spec_path)).items():
        assert scores == pytest.approx(expected, abs=1e-6), framework


@pytest.fixture(scope="module")
def distinct_server(distinct_bert_dir):
    """`rewardkit serve` of the distinct model (its texts score apart by more than bf16's tolerance) on loopback."""
    running = InProcessServer(distinct_bert_dir)
    yield running
    running.stop()


def test_a_model_and_its_server_score_the_same_in_every_framework(distinct_bert_dir, distinct_server):
    import httpx

    expected = load_reward(str(distinct_bert_dir))(PROMPTS, RESPONSES).tolist()
    # every framework loads the model at --precision auto, batching it its own way (verl's one at a time): compared at
    # the reward tolerance of that precision, which the three scores are further apart than, so a mix-up would show
    tol = reward_tolerance(expected)
    assert min_gap(expected) > 2 * tol
    for source in (str(distinct_bert_dir), distinct_server.url):
        for framework, scores in every_framework(source).items():
            assert scores == pytest.approx(expected, abs=tol), (source, framework)
    http = httpx.post(distinct_server.url + "/get_reward", json={
        "query": [p + r for p, r in zip(PROMPTS, RESPONSES)], "prompts": PROMPTS, "labels": REFERENCES}).json()
    assert http["rewards"] == pytest.approx(expected, abs=tol)  # at auto's reward tolerance
