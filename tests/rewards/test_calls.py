"""Calling components: bounded concurrency, retries with backoff, the result cache, failures counted or raised, and
the `http` component against a real server on loopback."""

import http.server
import json
import threading
import time

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError
from rewardkit.rewards.calls import CallingReward, CallPolicy, Outcome, TransientError
from rewardkit.rewards.http import HttpReward
from rewardkit.rewards.spec import build_reward


class Recorder(CallingReward):
    """Scores len(response); fails transiently for responses in `flaky` (as many times as their count says)."""

    name = "recorder"

    def __init__(self, delay=0.0, flaky=None, broken=(), **policy):
        self.delay, self.flaky, self.broken = delay, dict(flaky or {}), set(broken)
        self.calls, self.active, self.peak = [], 0, 0
        self.lock = threading.Lock()
        super().__init__(CallPolicy(**policy))

    def identity(self):
        return ["recorder"]

    def call(self, item, timeout):
        with self.lock:
            self.calls.append(item.response)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            if item.response in self.broken:
                raise RewardkitError("this response is malformed")
            if self.flaky.get(item.response, 0) > 0:
                self.flaky[item.response] -= 1
                raise TransientError("server busy")
            return Outcome(float(len(item.response)), None if len(item.response) > 2 else "short")
        finally:
            with self.lock:
                self.active -= 1


def recorder(**kwargs):
    reward = Recorder(**kwargs)
    reward.sleeps = []
    reward.runner._sleep = reward.sleeps.append  # record the backoff instead of waiting
    return reward


def test_calls_run_concurrently_up_to_the_limit_in_input_order():
    reward = recorder(delay=0.05, concurrency=4)
    texts = [f"r{'x' * k}" for k in range(12)]
    start = time.perf_counter()
    scores = reward([""] * 12, texts)
    elapsed = time.perf_counter() - start
    assert scores.tolist() == [float(len(t)) for t in texts]
    assert reward.peak == 4  # never more than the limit at once
    assert elapsed < 12 * 0.05 * 0.6  # 3 waves of 4, not 12 calls one after another
    assert reward.last_stats.calls == 12 and len(reward.last_stats.latencies) == 12


def test_retries_back_off_doubling_then_succeed():
    reward = recorder(flaky={"abc": 2}, retries=2, backoff=0.5)
    assert reward([""], ["abc"]).tolist() == [3.0]
    assert reward.calls == ["abc"] * 3
    assert len(reward.sleeps) == 2
    assert 0.5 <= reward.sleeps[0] <= 0.55 and 1.0 <= reward.sleeps[1] <= 1.1  # 0.5 s, then 1 s (+ up to 10% jitter)
    assert reward.last_stats.retries == 2 and reward.last_stats.failed == 0


def test_failure_after_retries_is_an_error_naming_the_response():
    reward = recorder(flaky={"abc": 5}, retries=1)
    with pytest.raises(ResponseError, match=r"response 1: failed after 2 attempts: server busy") as info:
        reward(["", ""], ["fine", "abc"])
    assert info.value.index == 1


def test_failure_after_retries_can_score_neutral_counted_and_reported():
    reward = recorder(flaky={"abc": 5}, retries=1, on_failure="neutral", neutral=-1.0)
    scores = reward(["", "", ""], ["fine", "abc", "ok!"])
    assert scores.tolist() == [4.0, -1.0, 3.0]
    assert reward.last_reasons == [None, "failed after 2 attempts: server busy; scored neutral -1", None]
    assert reward.last_stats.failed == 1
    assert "1 failed (scored neutral -1)" in reward.describe_stats()
    # a failure is not cached: the next batch calls again, and the server answers this time
    reward.flaky["abc"] = 0
    assert reward([""], ["abc"]).tolist() == [3.0]


def test_bad_input_is_not_retried_and_never_neutral():
    reward = recorder(broken={"bad"}, retries=3, on_failure="neutral")
    with pytest.raises(ResponseError, match="response 0: this response is malformed"):
        reward([""], ["bad"])
    assert reward.calls == ["bad"]


def test_the_cache_answers_repeated_inputs_and_duplicates_are_called_once():
    reward = recorder(concurrency=2)
    assert reward(["p", "p", "p"], ["aaa", "bbbb", "aaa"]).tolist() == [3.0, 4.0, 3.0]
    assert sorted(reward.calls) == ["aaa", "bbbb"] and reward.last_stats.duplicates == 1
    assert reward(["p", "q"], ["aaa", "aaa"]).tolist() == [3.0, 3.0]  # another prompt is another input
    assert sorted(reward.calls) == ["aaa", "aaa", "bbbb"] and reward.last_stats.cached == 1
    assert reward.last_reasons == [None, None]


def test_the_cache_keys_every_input_and_can_be_off():
    reward = recorder(cache=False)
    reward([""], ["aaa"])
    reward([""], ["aaa"])
    assert reward.calls == ["aaa", "aaa"]
    keyed = recorder()
    keyed(["p"], ["aaa"], ["ref 1"])
    keyed(["p"], ["aaa"], ["ref 2"])
    assert keyed.calls == ["aaa", "aaa"]


def test_a_sqlite_cache_outlives_the_component(tmp_path):
    path = str(tmp_path / "cache.sqlite")
    first = recorder(cache=path)
    first([""], ["abcd"])
    second = recorder(cache=path)
    assert second([""], ["abcd"]).tolist() == [4.0] and second.calls == []


def test_bad_policies_are_one_line_errors():
    for kwargs, message in [({"concurrency": 0}, "concurrency"), ({"timeout": 0}, "timeout"),
                            ({"retries": -1}, "retries"), ({"on_failure": "skip"}, "on_failure"),
                            ({"cache": ""}, "cache"), ({"backoff": float("nan")}, "backoff")]:
        with pytest.raises(RewardkitError, match=message):
            CallPolicy(**kwargs)


# ------------------------------------------------------------------------------------------------ http on loopback
class ScoreHandler(http.server.BaseHTTPRequestHandler):
    """Answers {"score": len(response) + (1 if a reference)} after `delay` s; 'flaky' fails with 503 the first time,
    'teapot' always 418, 'garbage' answers text."""

    delay = 0.0
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        time.sleep(self.delay)
        response = body["response"]
        if response == "flaky" and sum(b["response"] == "flaky" for b in self.seen) == 1:
            return self._send(503, b"busy")
        if response == "teapot":
            return self._send(418, b"I'm a teapot")
        if response == "garbage":
            return self._send(200, b"not json")
        return self._send(200, json.dumps({"score": len(response) + ("reference" in body)}).encode())

    def _send(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    ScoreHandler.seen = []
    ScoreHandler.delay = 0.0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScoreHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/score"
    httpd.shutdown()
    httpd.server_close()


def test_http_scores_each_response_and_sends_the_reference(server):
    reward = HttpReward(server, backoff=0.01)
    assert reward(["p", "p"], ["abc", "flaky"], ["r", "r"]).tolist() == [4.0, 6.0]
    assert {"prompt": "p", "response": "abc", "reference": "r"} in ScoreHandler.seen  # (the two run concurrently)
    assert reward.last_stats.retries == 1  # the 503 was retried
    assert HttpReward(server)(["p"], ["abc"]).tolist() == [3.0]  # no reference, none sent


def test_http_errors_are_one_line_errors_naming_the_response(server):
    reward = HttpReward(server, retries=0)
    with pytest.raises(ResponseError, match=r"response 1: .*HTTP 418: I'm a teapot"):
        reward(["", ""], ["ok", "teapot"])
    with pytest.raises(ResponseError, match=r"response 0: .*answered 'not json', not a JSON object"):
        reward([""], ["garbage"])


def test_http_timeouts_are_retried_then_fail(server):
    ScoreHandler.delay = 0.5
    reward = HttpReward(server, timeout=0.1, retries=1, backoff=0.0, on_failure="neutral", neutral=0.0)
    assert reward([""], ["abc"]).tolist() == [0.0]
    assert reward.last_reasons[0].startswith("failed after 2 attempts: ") and "within 0.1 s" in reward.last_reasons[0]


def test_http_unreachable_server_is_a_clear_error():
    reward = HttpReward("http://127.0.0.1:9/score", retries=1, backoff=0.0)
    with pytest.raises(ResponseError, match=r"failed after 2 attempts: http://127.0.0.1:9/score: ConnectError"):
        reward([""], ["abc"])


def test_a_composite_runs_calling_components_alongside_each_other(server):
    ScoreHandler.delay = 0.3
    reward = build_reward({"components": [{"type": "http", "url": server, "name": "a"},
                                          {"type": "http", "url": server, "name": "b", "weight": 2.0},
                                          {"type": "length", "target": 3}]})
    start = time.perf_counter()
    total = reward(["", ""], ["abc", "abcd"])
    elapsed = time.perf_counter() - start
    assert total.tolist() == pytest.approx([9.0, 12.0 - 1 / 3])  # 3 + 2·3 + 0 and 4 + 2·4 − 1/3
    assert elapsed < 0.9  # the four calls at once: ~0.3 s, where one after another takes 1.2 s
    assert reward.last_components["a"].tolist() == [3.0, 4.0]
