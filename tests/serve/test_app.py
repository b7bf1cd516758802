"""The app and batcher in-process with fake scorers: batch splitting, token budget, timeout, overload, failures,
draining, OpenRLHF query splitting and the config."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx
import pytest

from rewardkit.config import parse_config
from rewardkit.errors import RewardkitError
from rewardkit.serve.app import create_app, split_query
from rewardkit.serve.batcher import MicroBatcher
from rewardkit.serve.config import ServeConfig, check_limits


class FakeScorer:
    """Scores a response by its length; one token per word; records each batch; optionally slow or failing."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.batches: list[list[str]] = []

    def encode(self, prompt, response):
        if response == "unencodable":
            raise ValueError("no template for this")
        return SimpleNamespace(input_ids=response.split())

    def score(self, prompts, responses):
        self.batches.append(list(responses))
        time.sleep(self.delay)
        if "boom" in responses:
            raise RuntimeError("model exploded")
        return [float(len(r)) for r in responses]


@asynccontextmanager
async def serving(scorer, **settings):
    app = create_app(scorer, ServeConfig(model="fake", **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def items(*responses: str) -> dict:
    return {"items": [{"prompt": "p", "response": r} for r in responses]}


def test_a_large_request_is_split_into_batches_in_order():
    scorer = FakeScorer()

    async def run():
        async with serving(scorer, max_batch_size=4) as client:
            return await client.post("/score", json=items(*("x" * n for n in range(1, 11))))

    answer = asyncio.run(run())
    assert answer.json()["scores"] == [float(n) for n in range(1, 11)]
    assert [len(b) for b in scorer.batches] == [4, 4, 2]


def test_token_budget_bounds_the_padded_batch():
    scorer = FakeScorer()
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    responses = [words(2), words(2), words(2), words(5), words(5), words(20)]

    async def run():
        async with serving(scorer, max_batch_tokens=12) as client:
            return await client.post("/score", json=items(*responses))

    assert asyncio.run(run()).status_code == 200
    # 3 x 2 = 6 fits, 4 x 5 = 20 does not; 2 x 5 = 10 fits, 3 x 20 does not; 20 alone is over budget but scored.
    assert [len(b) for b in scorer.batches] == [3, 2, 1]


def test_timeout_is_504_and_the_unscored_items_are_dropped():
    scorer = FakeScorer(delay=0.3)

    async def run():
        async with serving(scorer, max_batch_size=1, request_timeout_s=0.1) as client:
            answer = await client.post("/score", json=items("a", "b", "c"))
            await asyncio.sleep(0.5)  # the first batch finishes; the other two items must not be scored
            return answer

    answer = asyncio.run(run())
    assert answer.status_code == 504 and "--request-timeout-s" in answer.json()["detail"]
    assert scorer.batches == [["a"]]


def test_full_queue_is_503():
    async def run():
        async with serving(FakeScorer(), max_queued_items=2) as client:
            return await client.post("/score", json=items("a", "b", "c"))

    answer = asyncio.run(run())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"


def test_concurrent_requests_cannot_overfill_the_queue_while_they_are_encoded():
    class SlowEncoding(FakeScorer):
        def encode(self, prompt, response):
            time.sleep(0.01)  # every request is still being encoded when the others arrive
            return super().encode(prompt, response)

    async def run():
        async with serving(SlowEncoding(delay=0.05), max_queued_items=10) as client:
            return await asyncio.gather(*(client.post("/score", json=items(*"abcde")) for _ in range(10)))

    answers = asyncio.run(run())
    accepted = [a for a in answers if a.status_code == 200]
    assert 1 <= len(accepted) <= 2 and all(a.status_code in (200, 503) for a in answers)  # 10 items: 2 requests


def test_a_non_ascii_token_is_refused_at_start():
    with pytest.raises(RewardkitError, match="API token must be ASCII"):
        create_app(FakeScorer(), ServeConfig(model="fake", api_token="pässwörd"))


def test_scorer_failure_is_500_and_the_server_keeps_serving():
    async def run():
        async with serving(FakeScorer()) as client:
            return await client.post("/score", json=items("boom")), await client.post("/score", json=items("ok"))

    failed, ok = asyncio.run(run())
    assert failed.status_code == 500 and "model exploded" in failed.json()["detail"]
    assert ok.status_code == 200 and ok.json()["scores"] == [2.0]


def test_item_the_scorer_cannot_encode_is_422_naming_it():
    async def run():
        async with serving(FakeScorer()) as client:
            return await client.post("/score", json=items("fine", "unencodable"))

    answer = asyncio.run(run())
    assert answer.status_code == 422
    assert answer.json()["field"] == "items[1]" and "no template for this" in answer.json()["detail"]


def test_close_scores_everything_still_queued():
    scorer = FakeScorer(delay=0.05)

    async def run():
        batcher = MicroBatcher(scorer, max_batch_size=100, max_batch_tokens=1000, max_wait_s=10.0,
                               max_queued_items=100)
        batcher.start()
        requests = [asyncio.create_task(batcher.score(["p"] * 3, ["a", "bb", "ccc"])) for _ in range(3)]
        await asyncio.sleep(0.05)  # queued; the 10 s wait would hold them, closing must not
        started = time.monotonic()
        await batcher.close()
        return [r.result() for r in requests], time.monotonic() - started

    results, took = asyncio.run(run())
    assert results == [([1.0, 2.0, 3.0], None)] * 3  # a single model: scores, no spreads
    assert took < 5.0
    assert [len(b) for b in scorer.batches] == [9]


@pytest.mark.parametrize("query, prompt, expected", [
    ("[CLS] Say hi.[SEP] Hello![SEP][PAD]", "Say hi.", ("Say hi.", " Hello!", True)),  # BOS before, pair separator
    ("Say hi. Hello! [SEP] again", "Say hi.", ("Say hi.", " Hello! [SEP] again", True)),  # only the ends are cut
    ("Intro. Say hi. Hello!", "Say hi.", ("", "Intro. Say hi. Hello!", False)),  # text before the prompt: no split
    ("[CLS]Whole text[SEP]", None, ("", "Whole text", False)),
    ("[CLS]Whole text[SEP]", "", ("", "Whole text", False)),
    ("Say hi.[SEP]", "Say hi.", ("Say hi.", "", True)),  # the policy answered nothing
])
def test_split_query(query, prompt, expected):
    assert split_query(query, prompt, ("[CLS]", "[SEP]", "[PAD]")) == expected


def test_config_defaults_bind_loopback_and_reject_impossible_limits():
    cfg = parse_config(ServeConfig, ["some-model"])
    assert (cfg.model, cfg.host, cfg.port) == ("some-model", "127.0.0.1", 8000)
    assert 1024 * 1024 <= cfg.max_body_bytes <= 16 * 1024 * 1024
    cfg = parse_config(ServeConfig, ["m", "--max-batch-size", "0"])
    with pytest.raises(RewardkitError, match="--max-batch-size must be positive"):
        check_limits(cfg)


def test_chat_template_model_in_process_matches_offline_and_scores_rendered_prompts_once():
    from tests.conftest import build_tiny_reward_model

    rm = build_tiny_reward_model("llama")
    prompts = [[{"role": "user", "content": "Hi"}], "\n\nHuman: Count to three.\n\nAssistant:"]
    responses = ["Hello!", " One, two, three."]
    rendered = rm.tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True, tokenize=False)

    async def run():
        async with serving(rm) as client:
            scored = await client.post("/score", json={"items": [{"prompt": p, "response": r}
                                                                 for p, r in zip(prompts, responses)]})
            rewarded = await client.post("/get_reward", json={"query": [rendered + "Hello!<|im_end|>"],
                                                              "prompts": [rendered]})
            return scored, rewarded

    scored, rewarded = asyncio.run(run())
    assert scored.json()["scores"] == pytest.approx(rm.score(prompts, responses).tolist(), abs=1e-5)
    assert rewarded.status_code == 200 and rewarded.json()["extra_logs"]["rm_prompt_split"] == [1.0]
    # OpenRLHF's rendered prompt scores as the conversation it came from, not a twice-rendered text
    assert rewarded.json()["rewards"] == pytest.approx(scored.json()["scores"][:1], abs=1e-5)
