"""Server-side normalization: the normalizer against hand-computed values, its options, and /score, /get_reward and
/health of an app normalizing with it."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.serve.config import ServeConfig, check_limits
from rewardkit.serve.normalize import ScoreNormalizer, normalizer_for
from tests.serve.test_app import FakeScorer, serving


def test_fixed_subtracts_the_mean_and_divides_by_the_std():
    assert ScoreNormalizer("fixed", mean=1.0, std=2.0)([3.0, -1.0, 1.0, 2.0]) == ([1.0, -1.0, 0.0, 0.5], None)
    # an ensemble's spreads are divided by the same std, not shifted
    assert ScoreNormalizer("fixed", mean=1.0, std=2.0)([3.0, -1.0], [0.5, 3.0]) == ([1.0, -1.0], [0.25, 1.5])


def test_running_centers_during_warmup_then_standardizes_over_everything_served():
    normalize = ScoreNormalizer("running", warmup=3)
    # 2 scores seen (< 3): mean 2, only centered
    assert normalize([1.0, 3.0], [0.5, 2.0]) == ([-1.0, 1.0], [0.5, 2.0])  # centered only: spreads kept
    # 1, 3, 5: mean 3, population variance (4 + 0 + 4) / 3
    assert normalize([5.0])[0] == pytest.approx([2.0 / math.sqrt(8 / 3)])
    # 1, 3, 5, 7: mean 4, variance (9 + 1 + 1 + 9) / 4 = 5; the spread is divided by the same std
    scores, spreads = normalize([7.0], [1.0])
    assert scores == pytest.approx([3.0 / math.sqrt(5)]) and spreads == pytest.approx([1.0 / math.sqrt(5)])
    assert normalize.describe() == pytest.approx({"method": "running", "warmup": 3, "count": 4, "mean": 4.0,
                                                  "std": math.sqrt(5), "warmed_up": True})


def test_running_only_centers_constant_scores():
    normalize = ScoreNormalizer("running", warmup=0)
    assert normalize([2.0, 2.0]) == ([0.0, 0.0], None)
    assert normalize([2.0]) == ([0.0], None)


def test_none_passes_scores_through():
    assert ScoreNormalizer()([1.5, -2.0], [0.25, 0.0]) == ([1.5, -2.0], [0.25, 0.0])


def test_running_statistics_are_exact_under_concurrent_callers():
    normalize = ScoreNormalizer("running", warmup=0)
    values = [float(v) for v in range(400)]

    def worker(chunk):
        for v in chunk:
            normalize([v])

    threads = [threading.Thread(target=worker, args=(values[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    described = normalize.describe()
    assert described["count"] == 400
    assert described["mean"] == pytest.approx(199.5)
    assert described["std"] == pytest.approx(math.sqrt((400 ** 2 - 1) / 12))  # population std of 0..n-1


def test_fixed_takes_the_models_saved_statistics_or_says_how_to_save_them():
    saved = {"mean": 0.5, "std": 0.25, "count": 932, "data": "hh-rlhf@validation"}
    normalize = normalizer_for("fixed", None, None, 0, saved, "runs/hh-rm")
    assert normalize([1.0]) == ([2.0], None)
    assert normalize.describe() == {"method": "fixed", "mean": 0.5, "std": 0.25,
                                     "source": "runs/hh-rm rewardkit.json (932 scores of hh-rlhf@validation)"}
    assert normalizer_for("fixed", 1.0, 4.0, 0, saved, "m")([5.0]) == ([1.0], None)  # flags win over the saved ones
    with pytest.raises(RewardkitError, match="model runs/x has no saved reward statistics .* --save-reward-stats"):
        normalizer_for("fixed", None, None, 0, None, "runs/x")


@pytest.mark.parametrize("settings, message", [
    ({"normalize": "running", "normalize_mean": 1.0, "normalize_std": 1.0}, "are for --normalize fixed"),
    ({"normalize": "fixed", "normalize_mean": 1.0}, "go together"),
    ({"normalize": "fixed", "normalize_mean": 1.0, "normalize_std": 0.0}, "--normalize-std must be positive"),
    ({"normalize": "running", "normalize_warmup": -1}, "--normalize-warmup must not be negative"),
])
def test_impossible_normalization_options_are_rejected(settings, message):
    with pytest.raises(RewardkitError, match=message):
        check_limits(ServeConfig(model="m", **settings))


class SavedStatsScorer(FakeScorer):
    reward_stats = {"mean": 2.0, "std": 4.0, "count": 10, "data": "val"}


def test_fixed_normalization_from_the_model_on_score_get_reward_and_health():
    async def run():
        async with serving(SavedStatsScorer(), normalize="fixed") as client:
            score = await client.post("/score", json={"items": [{"prompt": "p", "response": "abcdef"}]})
            reward = await client.post("/get_reward", json={"query": ["p: ab"], "prompts": ["p: "]})
            health = await client.get("/health")
            return score.json(), reward.json(), health.json()

    score, reward, health = asyncio.run(run())
    assert score == {"scores": [1.0]}  # (6 - 2) / 4
    assert reward == {"rewards": [0.0], "scores": [0.0], "extra_logs": {"rm_prompt_split": [1.0], "raw_reward": [2.0]}}
    assert health["normalization"] == {"method": "fixed", "mean": 2.0, "std": 4.0,
                                       "source": "fake rewardkit.json (10 scores of val)"}


def test_running_normalization_spans_both_endpoints():
    async def run():
        async with serving(FakeScorer(), normalize="running", normalize_warmup=2) as client:
            first = await client.post("/get_reward", json={"query": ["a", "abc"]})
            second = await client.post("/score", json={"items": [{"prompt": "", "response": "abcdef"}]})
            health = await client.get("/health")
            return first.json(), second.json(), health.json()

    first, second, health = asyncio.run(run())
    # lengths 1, 3: mean 2, std 1 (two served, warm-up done); then 6 joins: mean 10/3, std sqrt(38/9)
    assert first["rewards"] == [-1.0, 1.0] and first["extra_logs"]["raw_reward"] == [1.0, 3.0]
    assert second["scores"] == pytest.approx([(6 - 10 / 3) / math.sqrt(38 / 9)])
    assert health["normalization"]["count"] == 3


def test_no_normalization_keeps_the_reply_as_it_was():
    async def run():
        async with serving(FakeScorer()) as client:
            return (await client.post("/get_reward", json={"query": ["abc"]})).json(), \
                (await client.get("/health")).json()["normalization"]

    reward, described = asyncio.run(run())
    assert reward == {"rewards": [3.0], "scores": [3.0], "extra_logs": {"rm_prompt_split": [0.0]}}
    assert described == {"method": "none"}


def test_fixed_normalization_of_a_model_without_saved_statistics_stops_the_server_before_it_starts(tiny_bert_dir):
    from rewardkit.config import parse_config
    from rewardkit.serve.command import run_serve

    with pytest.raises(RewardkitError, match="has no saved reward statistics"):
        run_serve(parse_config(ServeConfig, [str(tiny_bert_dir), "--normalize", "fixed", "--port", "0"]))


def test_policy_tokenizer_special_tokens_are_stripped_from_get_reward_queries():
    async def run():
        async with serving(FakeScorer(), policy_tokenizer="smollm2-135m") as client:
            return (await client.post("/get_reward", json={"query": ["<|im_start|>user\nhi<|im_end|>\n"
                                                                     "<|im_start|>assistant\nabc<|im_end|>"],
                                                           "prompts": ["<|im_start|>user\nhi<|im_end|>\n"
                                                                       "<|im_start|>assistant\n"]})).json()

    assert asyncio.run(run())["rewards"] == [3.0]  # "abc", without the policy's <|im_end|>
