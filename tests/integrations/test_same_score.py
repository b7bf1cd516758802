"""A response gets the same score whichever framework asks: TRL, verl (both forms), OpenRLHF (file and HTTP) and a
`rewardkit serve` URL all score through rewardkit's one path, for a reward model and for a spec."""

from __future__ import annotations

import pytest

from rewardkit.integrations.openrlhf import make_reward_func
from rewardkit.integrations.trl import reward_func
from rewardkit.integrations.verl import make_compute_score, make_compute_score_batch
from rewardkit.rewards.spec import load_reward

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


def test_a_model_and_its_server_score_the_same_in_every_framework(varied_bert_dir, server):
    import httpx

    expected = load_reward(str(varied_bert_dir))(PROMPTS, RESPONSES).tolist()
    assert len(set(expected)) == 3  # the scores differ, so a mix-up would show
    for source in (str(varied_bert_dir), server.url):
        for framework, scores in every_framework(source).items():
            assert scores == pytest.approx(expected, abs=1e-5), (source, framework)
    http = httpx.post(server.url + "/get_reward", json={"query": [p + r for p, r in zip(PROMPTS, RESPONSES)],
                                                        "prompts": PROMPTS, "labels": REFERENCES}).json()
    assert http["rewards"] == pytest.approx(expected, abs=1e-5)
