"""The README's sections on the math, code_tests, likelihood and calling components: their examples run as written."""

import doctest
import json
import re
from pathlib import Path

import pytest
import yaml

from rewardkit.rewards import sandbox
from rewardkit.rewards.spec import build_reward

REPO = Path(__file__).resolve().parents[2]


def readme_section(heading: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    following = re.search(r"\n#{2,3} ", text[start + len(heading):])
    return text[start:start + len(heading) + following.start()] if following else text[start:]


def test_math_section_runs_as_written():
    section = readme_section("### Verifiable math answers: `math`")
    (session,) = re.findall(r"```pycon\n(.*?)```", section, re.S)
    examples = doctest.DocTestParser().get_doctest(session, {}, "README: math", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(examples)
    assert runner.summarize(verbose=False) == (0, 4)  # (failed, attempted)
    assert "examples/reward_math.yaml --input examples/math_responses.jsonl" in section
    reward = build_reward(str(REPO / "examples" / "reward_math.yaml"))
    rows = [json.loads(line) for line in (REPO / "examples" / "math_responses.jsonl").read_text().splitlines()]
    scores = reward([r["prompt"] for r in rows], [r["response"] for r in rows], [r["reference"] for r in rows])
    assert scores.tolist() == pytest.approx([1.1, 1.0, 0.0, 1.0, 0.0])


def test_code_tests_section_record_and_example_files():
    section = readme_section("### Code against tests: `code_tests`")
    (record,) = re.findall(r"````json\n(.*?)````", section, re.S)
    record = json.loads(record)
    assert set(record) == {"prompt", "response", "tests"}
    if sandbox.namespace_prefix()[0] is None:
        pytest.skip(f"no Linux namespaces here: {sandbox.namespace_prefix()[1]}")
    reward = build_reward(str(REPO / "examples" / "reward_code.yaml"))
    assert reward([record["prompt"]], [record["response"]], fields=[record]).tolist() == pytest.approx([1.0])
    rows = [json.loads(line) for line in (REPO / "examples" / "code_responses.jsonl").read_text().splitlines()]
    scores = reward([r["prompt"] for r in rows], [r["response"] for r in rows], fields=rows)
    assert reward.last_components["code_tests"].tolist() == pytest.approx([1.0, 2 / 3, 0.0, 0.0])
    assert scores.tolist() == pytest.approx([1.0, 2 / 3, 0.0, 0.0])  # the length term is 0 inside its tolerance


def test_slow_components_section_specs_build(monkeypatch):
    section = readme_section("### Slow components: concurrency, timeouts, retries, cache")
    (spec,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    monkeypatch.setenv("JUDGE_API_KEY", "test-key")
    (judges,) = re.findall(r"```yaml\n(.*?)```", readme_section("### LLM judges: `judge`"), re.S)
    local, pairwise, entry = yaml.safe_load(judges)["components"]
    assert local == {"type": "judge", "model": "smollm2-135m"} and pairwise["mode"] == "pairwise"
    entry["cache"] = True
    judged = build_reward({"components": [entry]}).components[0]
    assert (judged.weight, judged.reward.model, judged.reward.policy.concurrency) == (0.5, "Qwen2.5-7B-Instruct", 16)
    spec = yaml.safe_load(spec)
    spec["components"][0]["cache"] = True  # (the README's SQLite file would be created under runs/)
    if sandbox.namespace_prefix()[0] is None:
        spec["components"][1]["isolation"] = "none"
    reward = build_reward(spec)
    http = reward.components[0].reward
    assert (http.policy.concurrency, http.policy.timeout, http.policy.retries, http.policy.on_failure) == (
        16, 10.0, 2, "neutral")
    assert reward.needs_fields == ("tests",) and reward.calls_out


@pytest.mark.slow
def test_likelihood_section_example_spec_scores_as_stated():
    section = readme_section("### Likelihood under a language model: `likelihood`")
    (spec,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    texts = ["Paris is the capital of France.", "capital France the Paris of is."]
    for precision, stated in (("fp32", [-2.19, -8.09]), ("bf16", [-2.18, -8.08])):
        entry = {**yaml.safe_load(spec)["components"][0], "precision": precision}
        reward = build_reward({"components": [entry]})
        reward(["Tell me about Paris."] * 2, texts)
        assert reward.last_components["likelihood"].tolist() == pytest.approx(stated, abs=0.006)
    as_written = build_reward(yaml.safe_load(spec))  # auto: whichever of the two this machine picks
    as_written(["Tell me about Paris."] * 2, texts)
    assert as_written.last_components["likelihood"].tolist() == pytest.approx([-2.19, -8.09], abs=0.02)
