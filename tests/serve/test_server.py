"""A real `rewardkit serve` process (started through the CLI) on loopback with a tiny reward model: scores, batching, limits, auth, client."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request

import httpx
import pytest

from rewardkit.errors import RewardkitError
from rewardkit.serve import RewardClient
from tests.conftest import inference_precision, min_gap, reward_tolerance
from tests.serve.conftest import ServerProcess

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_ITEMS = 8
MAX_BODY = 8192

PROMPTS = ["\n\nHuman: What is the capital of France?\n\nAssistant:", "Say hi.",
           [{"role": "user", "content": "Count to three."}], "", "Name a colour."]
RESPONSES = [" Paris.", "Hi there, nice to meet you!", " One, two, three.", "A response without a prompt.",
             " Blue, like the sky on a clear summer day."]


# The distinct model: its rewards differ from text to text by more than bf16's tolerance, so that a mix-up of items
# shows in bf16 too (the varied model's differ by ~1%).
@pytest.fixture(scope="module")
def server(distinct_bert_dir, tmp_path_factory):
    proc = ServerProcess("rewardkit.cli", [
        "serve", str(distinct_bert_dir), "--max-items-per-request", str(MAX_ITEMS), "--max-body-bytes", str(MAX_BODY),
        "--max-wait-ms", "100", "--max-batch-size", "32",
    ], env={"REWARDKIT_API_TOKEN": TOKEN}, log_dir=tmp_path_factory.mktemp("logs"))
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def offline(distinct_bert_dir):
    """The served model as the Python API loads it: at --precision auto, as the server does."""
    from rewardkit.models import RewardModel

    return RewardModel.from_pretrained(str(distinct_bert_dir))


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30.0) as client:
        yield client


def _post_items(http, prompts, responses):
    return http.post("/score", json={"items": [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]})


def test_score_equals_offline_scoring(http, offline):
    assert http.get("/health").json()["placement"]["precision"] == offline.placement.precision == inference_precision()
    expected = offline.score(PROMPTS, RESPONSES).tolist()
    tol = reward_tolerance(expected)  # both in the precision auto gives, batched differently
    assert min_gap(expected) > 2 * tol  # the texts really score differently, so a mix-up of items would show
    response = _post_items(http, PROMPTS, RESPONSES)
    assert response.status_code == 200, response.text
    assert response.json()["scores"] == pytest.approx(expected, abs=tol)  # at the reward tolerance of that precision


def test_get_reward_openrlhf_protocol_splits_prompt_and_response(http, offline):
    prompts = ["Say hi.", "Name a colour."]
    responses = ["Hi there, nice to meet you!", " Blue, like the sky."]
    # As OpenRLHF sends them: decoded sequences with special tokens, the prompts, labels we ignore.
    queries = [f"[CLS] {p}{r}[SEP][PAD][PAD]" for p, r in zip(prompts, responses)]
    queries.append("A query without its prompt")
    body = {"query": queries, "prompts": prompts + ["something else"], "labels": [None, None, None]}
    answer = http.post("/get_reward", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    expected = offline.score(prompts + [""], responses + ["A query without its prompt"]).tolist()
    tol = reward_tolerance(expected)
    assert min_gap(expected) > 2 * tol  # the three score differently, so a mix-up of items would show
    assert result["rewards"] == pytest.approx(expected, abs=tol)  # at the reward tolerance of auto's precision
    assert result["scores"] == result["rewards"]
    assert result["extra_logs"] == {"rm_prompt_split": [1.0, 1.0, 0.0]}


def test_concurrent_requests_are_merged_into_batches(server):
    def batch_stats(text: str) -> tuple[float, float]:
        count = float(re.search(r"^rewardkit_batch_size_count (\S+)$", text, re.M).group(1))
        total = float(re.search(r"^rewardkit_batch_size_sum (\S+)$", text, re.M).group(1))
        return count, total

    async def run() -> tuple[list[int], tuple[float, float], tuple[float, float]]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30.0) as client:
            before = batch_stats((await client.get("/metrics")).text)
            answers = await asyncio.gather(*[
                client.post("/score", json={"items": [{"prompt": "p", "response": f"answer number {i}"}]})
                for i in range(16)])
            after = batch_stats((await client.get("/metrics")).text)
        return [a.status_code for a in answers], before, after

    statuses, before, after = asyncio.run(run())
    assert statuses == [200] * 16
    assert after[1] - before[1] == 16  # every item scored once
    assert after[0] - before[0] <= 4  # in far fewer forward passes than requests


def test_metrics_exposes_requests_latency_batches_and_errors(http):
    http.post("/score", json={"items": []})  # one 422 to count
    text = http.get("/metrics").text
    assert re.search(r'^rewardkit_requests_total\{endpoint="/score",status="200"\} [1-9]', text, re.M)
    assert re.search(r'^rewardkit_requests_total\{endpoint="/score",status="422"\} [1-9]', text, re.M)
    assert re.search(r'^rewardkit_errors_total\{endpoint="/score",reason="invalid"\} [1-9]', text, re.M)
    assert re.search(r'^rewardkit_request_duration_seconds_bucket\{endpoint="/score",le="\+Inf"\} [1-9]', text, re.M)
    assert "# TYPE rewardkit_batch_size histogram" in text


def test_missing_or_wrong_token_is_401(server):
    body = {"items": [{"prompt": "", "response": "x"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.post(server.url + "/score", json=body, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert httpx.post(server.url + "/get_reward", json={"query": ["x"]}).status_code == 401
    assert httpx.get(server.url + "/metrics").status_code == 401
    health = httpx.get(server.url + "/health")  # open, for load balancers
    assert health.status_code == 200 and health.json()["limits"]["max_items_per_request"] == MAX_ITEMS


def test_body_over_limit_is_413_by_header_and_by_bytes_read(http, server):
    big = {"items": [{"prompt": "", "response": "x" * (MAX_BODY + 10)}]}
    answer = http.post("/score", json=big)
    assert answer.status_code == 413 and "--max-body-bytes" in answer.json()["detail"]

    def chunks():  # no Content-Length: the server must count the bytes it reads
        yield b'{"items": [{"prompt": "", "response": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    answer = http.post("/score", content=chunks())
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("megabytes", [16, 64])
def test_a_client_that_sends_its_whole_body_before_reading_hears_413_not_a_reset(server, megabytes, chunked):
    """urllib writes the whole body before it reads the answer: the server must read past the body before closing."""
    body = b'{"items": [{"prompt": "", "response": "' + b"x" * (megabytes << 20) + b'"}]}'
    # a generator has no length: urllib sends it chunked, and the server finds out by counting what it reads
    data = (body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20)) if chunked else body
    request = urllib.request.Request(server.url + "/score", data=data,
                                     headers={**AUTH, "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert answer.value.code == 413
    assert "--max-body-bytes" in json.loads(answer.value.read())["detail"]


def test_too_many_items_is_413(http):
    answer = _post_items(http, ["p"] * (MAX_ITEMS + 1), ["r"] * (MAX_ITEMS + 1))
    assert answer.status_code == 413
    assert answer.json()["field"] == "items"
    answer = http.post("/get_reward", json={"query": ["q"] * (MAX_ITEMS + 1)})
    assert answer.status_code == 413 and answer.json()["field"] == "query"


@pytest.mark.parametrize("body, field", [
    ({"items": [{"prompt": "p", "response": "ok"}] * 3 + [{"prompt": "p", "response": ""}]}, "items[3].response"),
    ({"items": [{"prompt": "p", "response": "   "}]}, "items[0].response"),
    ({"items": [{"prompt": "p"}]}, "items[0].response"),
    ({"items": [{"response": "r"}]}, "items[0].prompt"),
    ({"items": [{"prompt": 3, "response": "r"}]}, "items[0].prompt"),
    ({"items": [{"prompt": [{"role": "user"}], "response": "r"}]}, "items[0].prompt[0].content"),
    ({"items": [{"prompt": "p", "response": "r", "reference": "x"}]}, "items[0]"),
    ({"items": []}, "items"),
    ({"items": "p"}, "items"),
    ([1, 2], "body"),
])
def test_invalid_score_request_is_422_naming_the_field(http, body, field):
    answer = http.post("/score", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert field in answer.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"query": ["ok", ""]}, "query[1]"),
    ({"query": "text"}, "query"),
    ({"query": ["a", "b"], "prompts": ["a"]}, "prompts"),
    ({"query": ["a"], "prompts": [7]}, "prompts[0]"),
])
def test_invalid_get_reward_request_is_422_naming_the_field(http, body, field):
    answer = http.post("/get_reward", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_body_that_is_not_json_is_400(http):
    answer = http.post("/score", content=b'{"items": [', headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "JSON" in answer.json()["detail"]


def test_client_chunks_under_the_server_limits_and_matches_offline(server, offline):
    prompts = [f"Question {i}?" for i in range(30)] + [[{"role": "user", "content": "Hello"}]]
    responses = [f"Answer {i} " + "word " * (i % 7) for i in range(30)] + ["Hi!"]
    with RewardClient(server.url, api_token=TOKEN) as client:
        scores = client.score(prompts, responses)  # 31 items > 8 per request: at least 4 requests
        expected = offline.score(prompts, responses).tolist()  # in one batch: compared at auto's reward tolerance
        assert scores == pytest.approx(expected, abs=reward_tolerance(expected))
        with pytest.raises(RewardkitError, match="over the server's body limit"):
            client.score(["p"], ["z" * MAX_BODY])
        with pytest.raises(RewardkitError, match=r"items\[0\]\.response"):
            client.score(["p"], [""])
    with RewardClient(server.url, api_token="wrong") as client, pytest.raises(RewardkitError, match="401"):
        client.score(["p"], ["r"])
