"""Serving an ensemble: /score and /get_reward report each item's disagreement (the std over the members), computed
from one forward pass per member and batch; a single model answers as before; the client and /health expose it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch

from rewardkit.models.ensemble import RewardEnsemble
from rewardkit.serve import RewardClient
from tests.conftest import build_distinct_reward_model, reward_tolerance, save_varied_ensemble
from tests.integrations.test_openrlhf import experience_info
from tests.serve.conftest import ServerProcess
from tests.serve.test_app import serving

PROMPTS = ["Say hi.", "Name a colour.", "", "Count to three.", "What is the capital of France?"]
RESPONSES = ["Hi there, nice to meet you!", " Blue, like the sky.", "A response without a prompt.", " One, two, three.",
             " Paris."]


@pytest.fixture(scope="module")
def members():
    """Three distinct models: they disagree on each item, by amounts that differ from item to item by more than
    bf16's reward tolerance (the varied models' CLS rewards differ by an offset, the same on every item)."""
    return [build_distinct_reward_model(seed) for seed in (1, 2, 3)]


def members_mean_and_std(members, prompts, responses) -> tuple[list[float], list[float]]:
    """Each item's mean and population std over the members' own scores, computed here from the definition."""
    scores = torch.stack([m.score(prompts, responses) for m in members]).double()
    mean = scores.mean(0)
    return mean.tolist(), ((scores - mean) ** 2).mean(0).sqrt().tolist()


@pytest.fixture(scope="module")
def expected(members):
    mean, std = members_mean_and_std(members, PROMPTS, RESPONSES)
    assert min(std) > 1e-2 and max(std) - min(std) > 1e-2  # the members really disagree, and by item
    return mean, std


def count_member_passes(monkeypatch, ensemble: RewardEnsemble) -> list[tuple[int, int]]:
    """(member, texts) of every call of a member's `score_encoded` from now on."""
    calls = []
    for k, member in enumerate(ensemble.members):
        def spy(encoded, batch_size=32, progress=False, with_length=False, k=k, original=member.score_encoded):
            calls.append((k, len(encoded)))
            return original(encoded, batch_size=batch_size, progress=progress, with_length=with_length)
        monkeypatch.setattr(member, "score_encoded", spy)
    return calls


def test_score_and_get_reward_give_the_members_mean_and_std_from_one_pass_per_member_and_batch(
        members, expected, monkeypatch):
    ensemble = RewardEnsemble(members)
    calls = count_member_passes(monkeypatch, ensemble)
    queries = [f"[CLS] {p}{r}[SEP][PAD]" for p, r in zip(PROMPTS, RESPONSES)]

    async def run():
        async with serving(ensemble, max_batch_size=2) as client:
            scored = await client.post("/score", json={"items": [{"prompt": p, "response": r}
                                                                 for p, r in zip(PROMPTS, RESPONSES)]})
            passes = sorted(calls)
            rewarded = await client.post("/get_reward", json={"query": queries, "prompts": PROMPTS})
            # OpenRLHF sends one query per request
            single = await client.post("/get_reward", json={"query": queries[:1], "prompts": PROMPTS[:1]})
            health = await client.get("/health")
            return scored.json(), passes, rewarded.json(), single.json(), health.json()

    scored, passes, rewarded, single, health = asyncio.run(run())
    mean, std = expected
    assert set(scored) == {"scores", "disagreement"}
    assert scored["scores"] == pytest.approx(mean, abs=1e-4)
    assert scored["disagreement"] == pytest.approx(std, abs=1e-4)
    # 5 items in batches of 2: each member scores each batch once, and nothing scores a second time
    assert passes == [(k, n) for k in range(3) for n in (1, 2, 2)]
    assert rewarded["rewards"] == pytest.approx(mean, abs=1e-4)
    assert rewarded["extra_logs"]["reward_disagreement"] == pytest.approx(std, abs=1e-4)
    assert rewarded["extra_logs"]["rm_prompt_split"] == [1.0, 1.0, 0.0, 1.0, 1.0]  # "" is no prompt to find
    assert "raw_reward" not in rewarded["extra_logs"]
    # as OpenRLHF turns the answer into the sample's logged metrics
    assert experience_info(single)["reward_disagreement"].item() == pytest.approx(std[0], abs=1e-4)
    assert health["ensemble"] == 3


def test_normalized_disagreement_is_divided_by_the_std_the_scores_are_divided_by(members, expected):
    async def run():
        async with serving(RewardEnsemble(members), normalize="fixed", normalize_mean=1.0,
                           normalize_std=4.0) as client:
            scored = await client.post("/score", json={"items": [{"prompt": p, "response": r}
                                                                 for p, r in zip(PROMPTS, RESPONSES)]})
            rewarded = await client.post("/get_reward", json={"query": RESPONSES[:1]})
            return scored.json(), rewarded.json()

    scored, rewarded = asyncio.run(run())
    mean, std = expected
    assert scored["scores"] == pytest.approx([(m - 1.0) / 4.0 for m in mean], abs=1e-4)
    assert scored["disagreement"] == pytest.approx([s / 4.0 for s in std], abs=1e-4)
    raw_mean, raw_std = members_mean_and_std(members, [""], RESPONSES[:1])
    assert rewarded["extra_logs"]["raw_reward"] == pytest.approx(raw_mean, abs=1e-4)
    assert rewarded["extra_logs"]["reward_disagreement"] == pytest.approx([raw_std[0] / 4.0], abs=1e-4)


def test_a_single_model_answers_without_disagreement(members):
    async def run():
        async with serving(members[0]) as client:
            scored = await client.post("/score", json={"items": [{"prompt": "p", "response": "r"}]})
            rewarded = await client.post("/get_reward", json={"query": ["r"]})
            health = await client.get("/health")
            return scored.json(), rewarded.json(), health.json()

    scored, rewarded, health = asyncio.run(run())
    assert set(scored) == {"scores"}
    assert set(rewarded["extra_logs"]) == {"rm_prompt_split"}
    assert health["ensemble"] is None


@pytest.fixture(scope="module")
def ensemble_dir(members, tmp_path_factory):
    """`members` saved as a train-rm --ensemble folder."""
    return save_varied_ensemble(tmp_path_factory.mktemp("ensemble-rm"), members)


def test_rewardkit_serve_loads_an_ensemble_folder_and_the_client_reports_its_disagreement(ensemble_dir, tmp_path):
    from rewardkit.models import RewardModel
    from rewardkit.models.ensemble import member_dir

    # the members as the Python API loads them, in the precision the server loads them in (auto)
    loaded = [RewardModel.from_pretrained(str(member_dir(ensemble_dir, k))) for k in range(3)]
    mean, std = members_mean_and_std(loaded, PROMPTS, RESPONSES)
    # each member's reward moves by at most tol between the server's batches and these, so a mean or a population
    # std over members moves by at most tol too; the members disagree, by item, by more than that
    tol = reward_tolerance(torch.stack([m.score(PROMPTS, RESPONSES) for m in loaded]))
    assert min(std) > 2 * tol and max(std) - min(std) > 2 * tol
    server = ServerProcess("rewardkit.cli", ["serve", str(ensemble_dir), "--max-items-per-request", "2"],
                           log_dir=tmp_path).wait_ready()
    try:
        with RewardClient(server.url) as client:
            assert httpx.get(server.url + "/health").json()["placement"]["precision"] == loaded[0].placement.precision
            scores, spreads = client.score_with_spread(PROMPTS, RESPONSES)  # 5 items, 2 per request: 3 requests
            assert client.score(PROMPTS, RESPONSES) == scores  # the same server, the same batches: exact
    finally:
        server.stop()
    assert scores == pytest.approx(mean, abs=tol)  # at auto's reward tolerance
    assert spreads == pytest.approx(std, abs=tol)
