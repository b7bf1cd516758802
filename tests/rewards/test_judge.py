"""`judge`: a generative model's grade, pointwise or pairwise, through an OpenAI-compatible chat-completions server (a
fake one on loopback that answers as scripted, and a real process running a real model) and in-process (scripted
stand-in models whose next-token probabilities are hand-set, and a real tiny transformers model)."""

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
    with pytest.raises(RewardkitError, match=r"component 1 \(judge\): model must name the judge"):
        build_reward({"components": [{"type": "judge", "url": "http://127.0.0.1:1/v1"}]})


# ------------------------------------------------------------------------------------------------ local judges
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from rewardkit.rewards.judge import default_template, read_choice, read_template  # noqa: E402
from tests.rewards.helpers import ScriptedLM, shown_as_a  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from rewardkit.models.presets import resolve_tokenizer_path

    return AutoTokenizer.from_pretrained(resolve_tokenizer_path("smollm2-135m"))


def test_a_judge_that_always_says_a_averages_to_exactly_one_half(tokenizer):
    always_a = ScriptedLM(tokenizer, lambda text: {"A": 0.9, "B": 0.1})
    judge = LLMJudge.from_model(always_a, tokenizer, mode="pairwise")
    prompts, first, second = ["Capital of France?", "2+2?"], ["Paris.", "4"], ["Lyon.", "5"]
    values, forward, backward = judge.preferences(prompts, first, second)
    assert values == [0.5, 0.5]  # exactly: P_A(x, y) = P_A(y, x) = 0.9
    assert [o.score for o in forward + backward] == pytest.approx([0.9] * 4, abs=1e-6)
    assert judge(prompts, first, second).tolist() == [0.5, 0.5]  # as a reward: each response against its reference
    assert judge.needs_reference


def test_pairwise_preference_is_the_mean_of_both_orders(tokenizer):
    # a judge that likes "Paris" but leans towards A: P_A = 0.9 when Paris is A, 0.6 when it is B
    biased = ScriptedLM(tokenizer, lambda text: ({"A": 0.9, "B": 0.1} if "Paris" in shown_as_a(text)
                                                  else {"A": 0.6, "B": 0.4}))
    judge = LLMJudge.from_model(biased, tokenizer, mode="pairwise", batch_size=3)
    values, forward, backward = judge.preferences(["Capital of France?"] * 2, ["Paris.", "Lyon."], ["Lyon.", "Paris."])
    assert values == pytest.approx([0.65, 0.35], abs=1e-6)  # 0.5 + (0.9 − 0.6) / 2 and 0.5 + (0.6 − 0.9) / 2
    assert [o.score for o in forward] == pytest.approx([0.9, 0.6], abs=1e-6)
    prompt = biased.texts[0]
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert "[Request]\nCapital of France?\n\n[Response A]\n" in prompt
    scores = judge(["Capital of France?"], ["Paris."], ["Lyon."])
    assert scores.tolist() == pytest.approx([0.65], abs=1e-6) and judge.last_reasons == [None]
    judge(["Capital of France?"], ["Lyon."], [["Paris.", "unused second reference"]])
    assert judge.last_reasons == ["the judge prefers the reference (P = 0.350; as A 0.600, as B 0.100)"]


def test_pointwise_probabilities_give_the_expected_score(tokenizer):
    # G-Eval's rule: E = Σ k·p(k) = 0.1·1 + 0.2·2 + 0.3·3 + 0.2·4 + 0.2·5 = 3.2, scaled (3.2 − 1) / 4 = 0.55
    lm = ScriptedLM(tokenizer, lambda text: ({"1": 1.0} if "Lyon" in text
                                             else {"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.2, "5": 0.2}))
    judge = LLMJudge.from_model(lm, tokenizer)
    assert judge.method == "probabilities" and (judge.lo, judge.hi) == (1, 5)
    assert judge(["Capital?", "Capital?"], ["Paris.", "Lyon."]).tolist() == pytest.approx([0.55, 0.0], abs=1e-6)
    assert "one whole number from 1 (useless) to 5 (excellent)" in lm.texts[0]
    assert (judge.last_stats.responses, judge.last_stats.calls, judge.last_stats.failed) == (2, 2, 0)
    with pytest.raises(RewardkitError, match="no single token for '10'"):
        LLMJudge.from_model(lm, tokenizer, scale=[1, 10])


def test_local_generated_verdicts_and_an_unparsable_one(tokenizer):
    replies = {"Paris.": "Right.\nScore: 8", "Lyon.": "I refuse to grade this."}
    lm = ScriptedLM(tokenizer, reply=lambda text: replies[text.split("[Response]\n", 1)[1].split("\n\n", 1)[0]])
    judge = LLMJudge.from_model(lm, tokenizer, method="generate", retries=1, backoff=0.0, on_failure="neutral",
                                neutral=0.25)
    assert judge(["Capital?", "Capital?"], ["Paris.", "Lyon."]).tolist() == pytest.approx([7 / 9, 0.25])
    assert judge.last_reasons[0] == "judge score 8 of 10"
    assert judge.last_reasons[1] == ("failed after 2 attempts: the judge gave no score in [1, 10] (it said: 'I refuse "
                                     "to grade this.'); scored neutral 0.25")
    assert judge.last_stats.failed == 1 and judge.last_stats.retries == 1
    always_b = ScriptedLM(tokenizer, reply=lambda text: "[[B]]")
    pairwise = LLMJudge.from_model(always_b, tokenizer, mode="pairwise", method="generate")
    values, forward, backward = pairwise.preferences(["Q"], ["x"], ["y"])
    assert values == [0.5] and forward[0].score == backward[0].score == 0.0


def test_read_choice():
    assert [read_choice(t) for t in ["A", "B.", " (A) is better", "Response B", "Output (a)",
                                     "Comparing both... [[B]]", "Response A is better than B.",
                                     "Both are fine", "A or B", "Assistant"]] == [
        "A", "B", "A", "B", "A", "B", "A", None, "A", None]


def test_templates_are_files_with_comments(tmp_path, tokenizer):
    for mode, method in [("pointwise", "generate"), ("pointwise", "probabilities"), ("pairwise", "probabilities")]:
        text = default_template(mode, method).read_text()
        assert text.startswith("#") and "arXiv:" in text  # cited in its comment
        assert not read_template(default_template(mode, method)).startswith("#")
    custom = tmp_path / "mine.txt"
    custom.write_text("# my own\nQ: {prompt}\n1: {response_a}\n2: {response_b}\nA or B?")
    lm = ScriptedLM(tokenizer, lambda text: {"A": 0.5, "B": 0.5})
    LLMJudge.from_model(lm, tokenizer, mode="pairwise", template=str(custom)).preferences(["q"], ["x"], ["y"])
    assert "Q: q\n1: x\n2: y\nA or B?" in lm.texts[0] and "my own" not in lm.texts[0]
    custom.write_text("{response}")
    with pytest.raises(RewardkitError, match=r"template '.*mine.txt' must contain \{response_a\} and \{response_b\}"):
        LLMJudge.from_model(lm, tokenizer, mode="pairwise", template=str(custom))
    with pytest.raises(RewardkitError, match="cannot be read"):
        LLMJudge.from_model(lm, tokenizer, template=str(tmp_path / "none.txt"))


# ------------------------------------------------------------------------------------------------ pairwise over HTTP
class PairJudge(http.server.BaseHTTPRequestHandler):
    """Answers pairwise questions: `p_a(text shown as A)` is P(A), sent as logprobs when `logprobs` is set (and asked
    for), else the answer "A" when P(A) >= 0.5, "B" otherwise."""

    p_a = staticmethod(lambda a: 1.0)
    logprobs = True

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        p = type(self).p_a(shown_as_a(body["messages"][-1]["content"]))
        choice = {"message": {"role": "assistant", "content": "A" if p >= 0.5 else "B"}}
        if type(self).logprobs and body.get("logprobs"):
            top = [{"token": "A", "logprob": math.log(p * 0.8)}, {"token": "B", "logprob": math.log((1 - p) * 0.8)},
                   {"token": " A", "logprob": math.log(p * 0.2)}, {"token": "Sure", "logprob": math.log(0.001)}]
            choice["logprobs"] = {"content": [{"token": "A", "logprob": top[0]["logprob"], "top_logprobs": top}]}
        payload = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def pair_url():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PairJudge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_http_pairwise_reads_logprobs_else_the_answer(pair_url):
    PairJudge.p_a, PairJudge.logprobs = staticmethod(lambda a: 0.9 if "Paris" in a else 0.6), True
    judge = LLMJudge(pair_url, model="m", mode="pairwise", method="probabilities")
    values, forward, backward = judge.preferences(["Capital?"], ["Paris."], ["Lyon."])
    # P_A = (0.72 + 0.18) / (0.72 + 0.18 + 0.08): " A" counts for A; "Sure" for neither
    assert forward[0].score == pytest.approx(0.9 / (0.9 + 0.08), abs=1e-9)
    assert backward[0].score == pytest.approx(0.6 / (0.6 + 0.32), abs=1e-9)
    assert values[0] == pytest.approx(0.5 + (0.9 / 0.98 - 0.6 / 0.92) / 2, abs=1e-9)
    assert judge.last_stats.calls == 2
    PairJudge.logprobs = False  # no logprobs: the parsed answer, 1 for A and 0 for B
    judge = LLMJudge(pair_url, model="m", mode="pairwise", method="probabilities")
    assert judge.preferences(["Capital?"], ["Paris."], ["Lyon."])[0] == [0.5]  # A both times: the order decides
    PairJudge.p_a = staticmethod(lambda a: 0.9 if "Paris" in a else 0.1)
    judge = LLMJudge(pair_url, model="m", mode="pairwise", method="probabilities")  # a fresh cache
    assert judge(["Capital?", "Capital?"], ["Paris.", "Lyon."], ["Lyon.", "Paris."]).tolist() == [1.0, 0.0]


# ------------------------------------------------------------------------------------------------ a real model, served
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(7)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    folder = tmp_path_factory.mktemp("tiny-judge")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def serve(model_dir, *extra):
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.rewards.chat_server", str(model_dir), *extra],
                               cwd=root, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("PORT "), line
    return process, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def test_a_real_model_served_on_loopback_judges_as_it_does_in_process(tiny_model_dir, tokenizer):
    process, url = serve(tiny_model_dir)
    try:
        prompts, first, second = ["Capital of France?", "2+2?"], ["Paris.", "4"], ["Lyon, I think.", "5"]
        local = LLMJudge(model=str(tiny_model_dir), mode="pairwise", device="cpu", precision="fp32")
        remote = LLMJudge(url, model="tiny", mode="pairwise", method="probabilities", max_tokens=1,
                          top_logprobs=len(tokenizer), cache=False)
        here, _, _ = local.preferences(prompts, first, second)
        there, forward, _ = remote.preferences(prompts, first, second)
        assert remote.last_stats.calls == 4 and remote.last_stats.failed == 0
        # every token's probability comes back, so the two agree to fp32 rounding (random weights: near 0.5 but not it)
        assert there == pytest.approx(here, abs=1e-5)
        assert all(abs(p.score - 0.5) > 1e-4 for p in forward)
        pointwise_local = LLMJudge(model=str(tiny_model_dir), device="cpu", precision="fp32")
        pointwise_remote = LLMJudge(url, model="tiny", method="probabilities", max_tokens=1,
                                    top_logprobs=len(tokenizer))
        assert pointwise_remote(prompts, first).tolist() == pytest.approx(pointwise_local(prompts, first).tolist(),
                                                                          abs=1e-5)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_served_judge_that_always_answers_a_cancels_to_one_half(tiny_model_dir):
    process, url = serve(tiny_model_dir, "--always", "A")
    try:
        judge = LLMJudge(url, model="tiny", mode="pairwise", method="probabilities")
        values, forward, backward = judge.preferences(["Q1", "Q2", "Q3"], ["a", "b", "c"], ["x", "y", "z"])
        assert values == [0.5, 0.5, 0.5]
        assert [o.score for o in forward + backward] == [1.0] * 6  # parsed: it returns no logprobs
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_malformed_pairwise_answer_names_the_pair_and_the_order(pair_url):
    judge = LLMJudge(pair_url, model="m", mode="pairwise", method="generate", retries=0)
    original = PairJudge.do_POST

    # the server answers a chat completion, except when "bad" is shown as A: then text that is not JSON. Pair 1's
    # first order shows "ok" as A; its second, "bad": the error names pair 1 and the order.

    def broken(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        payload = b"not json" if "bad" in shown_as_a(body["messages"][-1]["content"]) else json.dumps(
            {"choices": [{"message": {"content": "A"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    PairJudge.do_POST = broken
    try:
        with pytest.raises(ResponseError, match=r"^response 1 \(shown as B\): .*answered 'not json', not a chat "
                                                r"completion") as caught:
            judge([""] * 2, ["fine", "ok"], ["ok too", "bad"])
        assert caught.value.index == 1
    finally:
        PairJudge.do_POST = original


@pytest.mark.slow
def test_smollm2_served_on_loopback_judges_as_it_does_in_process():
    """The same, with a real pretrained model (SmolLM2-135M-Instruct) behind the endpoint."""
    from transformers import AutoTokenizer

    from rewardkit.models.presets import resolve_model_path

    folder = resolve_model_path("smollm2-135m")
    process, url = serve(folder)
    try:
        prompts, first, second = ["Capital of France?"], ["Paris."], ["Lyon, I think."]
        local = LLMJudge(model=folder, mode="pairwise", device="cpu", precision="fp32")
        remote = LLMJudge(url, model="smollm2", mode="pairwise", method="probabilities", max_tokens=1,
                          top_logprobs=len(AutoTokenizer.from_pretrained(folder)), cache=False)
        here, _, _ = local.preferences(prompts, first, second)
        there, _, _ = remote.preferences(prompts, first, second)
        assert remote.last_stats.calls == 2 and remote.last_stats.failed == 0
        assert there == pytest.approx(here, abs=1e-4)  # fp32 on both sides; other batch shapes: 1e-4
    finally:
        process.terminate()
        process.wait(timeout=30)
