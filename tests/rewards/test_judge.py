"""`judge`: an LLM's rubric grade through an OpenAI-compatible chat-completions server (a fake one on loopback that
answers as scripted)."""

import http.server
import json
import threading

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError
from rewardkit.rewards.judge import LLMJudge, read_score
from rewardkit.rewards.spec import build_reward


class FakeJudge(http.server.BaseHTTPRequestHandler):
    """Replies with `replies[response]` (the response is the text after "[Response]\\n" in the rubric); records the
    request bodies."""

    replies: dict = {}
    bodies: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((self.path, body))
        user = body["messages"][-1]["content"]
        response = user.split("[Response]\n", 1)[1].split("\n\n", 1)[0]
        reply = self.replies[response]
        if isinstance(reply, list):  # a sequence of replies: one per call
            reply = reply.pop(0)
        if isinstance(reply, int):
            payload, status = b"overloaded", reply
        else:
            message = {"role": "assistant", "content": reply}
            payload, status = json.dumps({"choices": [{"message": message}]}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def judge_url():
    FakeJudge.bodies = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_read_score():
    assert read_score("Good answer.\nScore: 7", 1, 10) == 7.0
    assert read_score("Score: 3 at first... on reflection, Score: **8**", 1, 10) == 8.0
    assert read_score("I would give it 9.", 1, 10) == 9.0
    assert read_score("Score: 11", 1, 10) is None
    assert read_score("no verdict", 1, 10) is None


def test_scores_scale_to_0_1_and_the_rubric_is_filled(judge_url):
    FakeJudge.replies = {"Paris.": "Correct and concise.\nScore: 10", "Lyon.": "Wrong city.\nScore: 1",
                         "It is Paris, I think.": "Right but hedged. Score: 7"}
    judge = LLMJudge(judge_url, model="judge-7b", system="You are a strict grader.")
    chat = [{"role": "user", "content": "Capital of France?"}]
    scores = judge([chat, "Capital of France?", "Capital of France?"], ["Paris.", "Lyon.", "It is Paris, I think."],
                   ["Paris", "Paris", "Paris"])
    assert scores.tolist() == pytest.approx([1.0, 0.0, 6 / 9])  # (N − 1) / 9
    assert judge.last_reasons == [None, "judge score 1 of 10", "judge score 7 of 10"]
    path, body = next((p, b) for p, b in FakeJudge.bodies if "Paris.\n" in b["messages"][-1]["content"])
    assert path == "/v1/chat/completions" and body["model"] == "judge-7b" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "You are a strict grader."}
    assert "[Request]\nuser: Capital of France?\n" in body["messages"][1]["content"]
    assert "[Reference answer, if any]\nParis\n" in body["messages"][1]["content"]


def test_a_reply_without_a_score_is_retried_then_fails_clearly(judge_url):
    FakeJudge.replies = {"a": ["I cannot decide.", "Score: 5"], "b": ["hmm"] * 3, "c": [503, "Score: 4"]}
    judge = LLMJudge(judge_url, model="m", retries=1, backoff=0.0)
    assert judge([""], ["a"]).tolist() == pytest.approx([4 / 9])
    assert judge([""], ["c"]).tolist() == pytest.approx([3 / 9]) and judge.last_stats.retries == 1
    with pytest.raises(ResponseError, match=r"response 0: failed after 2 attempts: the judge gave no score in "
                                            r"\[1, 10\] \(it said: 'hmm'\)"):
        judge([""], ["b"])
    neutral = LLMJudge(judge_url, model="m", retries=0, on_failure="neutral", neutral=0.5)
    FakeJudge.replies["b"] = ["hmm"]
    assert neutral([""], ["b"]).tolist() == [0.5] and neutral.last_stats.failed == 1


def test_bad_settings_are_one_line_errors():
    for kwargs, message in [({"url": "ftp://x"}, "url"), ({"rubric": "no placeholder"}, r"\{response\}"),
                            ({"rubric": "{response} {answer}"}, "placeholder other than"),
                            ({"scale": [5, 1]}, "lo < hi"), ({"scale": [1]}, r"scale must be \[lo, hi\]"),
                            ({"token_env": "REWARDKIT_NO_SUCH_VARIABLE"}, "not set")]:
        with pytest.raises(RewardkitError, match=message):
            LLMJudge(**{"url": "http://127.0.0.1:1/v1", "model": "m", **kwargs})
    with pytest.raises(RewardkitError, match=r"component 1 \(judge\): missing field 'model'"):
        build_reward({"components": [{"type": "judge", "url": "http://127.0.0.1:1/v1"}]})
