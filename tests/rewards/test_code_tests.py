"""`code_tests`: code extraction, the tests field, and the sandbox against hostile code (each attack is stopped or
refused, the host is unaffected, the score is 0 with a reason).

The sandbox tests need Linux namespaces (`unshare --net --pid --mount`, e.g. as root); where they cannot be made
they are skipped, and the refusal is tested instead.
"""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.rewards import sandbox as sandbox_module
from rewardkit.rewards.base import ResponseError
from rewardkit.rewards.code import CodeTests, extract_code, parse_tests
from rewardkit.rewards.spec import build_reward

NAMESPACES, WHY_NOT = sandbox_module.namespace_prefix()
needs_sandbox = pytest.mark.skipif(NAMESPACES is None, reason=f"no Linux namespaces here: {WHY_NOT}")
# isolation: none as root runs the code as a fresh uid, which must be able to read the Python installation
CLOSED = sandbox_module._closed_to_others(os.path.dirname(os.__file__)) if os.geteuid() == 0 else None
ISOLATION = "namespaces" if NAMESPACES is not None else "none"

ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 5\n"


def sandbox_uids() -> list[int]:
    """Processes still running as a sandbox's uid (2,000,000 and up): there must be none after a run."""
    uids = [int(fields["Uid"].split()[0]) for fields in sandbox_module.process_statuses() if "Uid" in fields]
    return [uid for uid in uids if uid >= 2_000_000]


def our_cgroups() -> list[str]:
    root = Path("/sys/fs/cgroup")
    return [p.name for sub in ("pids", "memory", ".") if (root / sub).is_dir()
            for p in (root / sub).glob(f"rewardkit-sandbox-{os.getpid()}-*")]


# ------------------------------------------------------------------------------------------------ without a sandbox
def test_the_code_is_the_last_python_block_else_the_whole_response():
    assert extract_code("Here:\n```python\nx = 1\n```\nand\n```py\nx = 2\n```\n") == ("x = 2\n", None)
    assert extract_code("```python\nx = 1\n```\n```\nx = 3\n```", block="first") == ("x = 1\n", None)
    assert extract_code("```python\nx = 1\n```\n```\nx = 3\n```", block="all") == ("x = 1\n\n\nx = 3\n", None)
    assert extract_code("def f():\n    return 1\n") == ("def f():\n    return 1\n", None)
    assert extract_code("```python\ndef f():\n    return 1") == ("def f():\n    return 1", None)  # cut off
    assert extract_code("```cpp\nint main() {}\n```") == (None, "no Python code block (the response's blocks are cpp)")
    assert extract_code("  \n") == (None, "the response is empty")
    assert extract_code("```python\n\n```") == (None, "the code block is empty")


def test_tests_are_asserts_and_test_functions_with_setup_in_order():
    steps = parse_tests("import math\nx = add(2, 2); assert x == 4\n\ndef test_one():\n    assert add(0, 0) == 0\n"
                        "@staticmethod\ndef helper():\n    pass\nassert add(1, 1) == 2\n", "tests")
    assert steps == [{"kind": "setup", "source": "import math"}, {"kind": "setup", "source": "x = add(2, 2)"},
                     {"kind": "test", "source": "assert x == 4"},
                     {"kind": "setup", "source": "def test_one():\n    assert add(0, 0) == 0"},
                     {"kind": "setup", "source": "@staticmethod\ndef helper():\n    pass\n"},
                     {"kind": "test", "source": "assert add(1, 1) == 2"},
                     {"kind": "test", "source": "test_one()"}]
    assert parse_tests(["assert f(1) == 2", "assert f(2) == 3"], "tests") == [
        {"kind": "test", "source": "assert f(1) == 2"}, {"kind": "test", "source": "assert f(2) == 3"}]


@pytest.mark.parametrize("tests, message", [
    ("assert f(1) ==", "tests: line 1: SyntaxError"),
    ("x = 1\n", "no test in them"),
    (["assert f(1) == 1", "assert ("], r"tests \(item 2\): line 1: SyntaxError"),
    (3, "tests must be Python text"),
    ([], "tests must be Python text"),
    ("def test_x(tmp_path):\n    pass\n", "takes arguments"),
])
def test_bad_tests_are_one_line_errors(tests, message):
    with pytest.raises(RewardkitError, match=message):
        parse_tests(tests, "tests")


def test_without_namespaces_it_refuses_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox_module, "namespace_prefix", lambda: (None, "unshare --net ... failed here "
                                                                            "(unshare: unshare failed: Operation not "
                                                                            "permitted)"))
    with pytest.raises(RewardkitError) as info:
        build_reward({"components": [{"type": "code_tests"}]})
    message = str(info.value)
    assert message.startswith("reward spec: component 1 (code_tests): cannot isolate the code it runs: unshare")
    assert "Operation not permitted" in message and "isolation: none" in message and "\n" not in message


def test_isolation_none_is_explicit_and_runs_with_rlimits_only():
    if CLOSED is not None:  # e.g. root with Python under /root: refused, saying why
        with pytest.raises(RewardkitError, match=f"isolation: none cannot run here: .*cannot read this Python "
                                                 f"installation \\({CLOSED} is closed to other users\\)"):
            CodeTests(isolation="none")
        return
    reward = CodeTests(isolation="none", time_limit=5)
    scores = reward(["", ""], ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return 3\n"],
                    fields=[{"tests": ADD_TESTS}] * 2)
    assert scores.tolist() == pytest.approx([2 / 3, 1 / 3])  # 1+2, -1+1 right; and only add(1, 2) == 3


def test_missing_tests_name_the_response():
    if ISOLATION == "none" and CLOSED is not None:
        pytest.skip(f"neither namespaces ({WHY_NOT}) nor isolation: none ({CLOSED} is closed) work here")
    reward = CodeTests(isolation=ISOLATION)
    with pytest.raises(ResponseError, match="needs the record's 'tests' field; response 1 has none"):
        reward(["", ""], ["x = 1", "x = 2"], fields=[{"tests": "assert x == 1"}, {}])
    with pytest.raises(ResponseError, match="none were given"):
        reward([""], ["x = 1"])
    with pytest.raises(ResponseError, match="response 0: tests: line 1: SyntaxError"):
        reward([""], ["x = 1"], fields=[{"tests": "assert ("}])


def test_bad_settings_are_one_line_errors():
    for kwargs, message in [({"language": "rust"}, "language"), ({"time_limit": 0}, "time_limit"),
                            ({"memory_mb": 16}, "memory_mb"), ({"processes": 1}, "processes"),
                            ({"block": "middle"}, "block"), ({"isolation": "docker"}, "isolation"),
                            ({"hide": ["relative/dir"]}, "hide")]:
        with pytest.raises(RewardkitError, match=message):
            CodeTests(**kwargs)


# ------------------------------------------------------------------------------------------------ in the sandbox
@pytest.fixture(scope="module")
def reward():
    if NAMESPACES is None:
        pytest.skip(f"no Linux namespaces here: {WHY_NOT}")
    return CodeTests(time_limit=2, memory_mb=512, processes=16, cache=False)


def score_one(reward, code, tests=ADD_TESTS):
    start = time.perf_counter()
    value = reward([""], [code], fields=[{"tests": tests}]).tolist()[0]
    return pytest.approx(value, abs=1e-6), reward.last_reasons[0], time.perf_counter() - start


@needs_sandbox
def test_scores_the_fraction_of_tests_passed(reward):
    good = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert score_one(reward, good)[:2] == (2 / 3, "2 of 3 tests passed; test 3 of 3 failed: AssertionError (line 1 "
                                                  "of the test)")
    assert score_one(reward, good, "assert add(1, 2) == 3\n")[:2] == (1.0, None)
    functions = "def test_small():\n    assert add(1, 1) == 2\n\ndef test_big():\n    assert add(10, 5) == 16\n"
    assert score_one(reward, good, functions)[:2] == (0.5, "1 of 2 tests passed; test 2 of 2 failed: "
                                                           "AssertionError (line 2 of the test)")
    assert score_one(reward, good, ["assert add(1, 2) == 3", "assert add(1, 2) == 4"])[0] == 0.5
    assert score_one(reward, "def add(a, b):\n    return a +\n")[:2] == (
        0.0, "0 of 3 tests passed; the code raised SyntaxError: invalid syntax (solution.py, line 2)")
    assert score_one(reward, good, "import nosuchmodule\nassert add(1, 2) == 3\n")[:2] == (
        0.0, "0 of 1 tests passed; a test setup statement raised ModuleNotFoundError: No module named 'nosuchmodule' "
             "(line 1 of the test)")
    assert score_one(reward, "```cpp\nint add(int a, int b);\n```")[:2] == (
        0.0, "0 of 3 tests passed; no Python code block (the response's blocks are cpp)")


@needs_sandbox
def test_printed_fake_results_and_early_exits_count_for_nothing(reward):
    fake = "import sys\nfor i in range(3):\n    print('pass', i)\nsys.stdout.flush()\nimport os\nos._exit(0)\n"
    value, why, _ = score_one(reward, fake)
    assert value == 0.0 and why == "0 of 3 tests passed; the process exited (status 0) in test 1 of 3 before its " \
                                   "tests finished"
    value, why, _ = score_one(reward, "def add(a, b):\n    raise SystemExit(0)\n")
    assert value == 0.0 and why.startswith("0 of 3 tests passed; test 1 of 3 failed: SystemExit: 0")


@needs_sandbox
def test_an_infinite_loop_is_stopped_at_the_time_limit(reward):
    value, why, seconds = score_one(reward, "def add(a, b):\n    while True:\n        pass\n")
    assert value == 0.0 and why == "0 of 3 tests passed; time limit of 2 s exceeded in test 1 of 3"
    assert 2.0 <= seconds < 2.0 + 5  # the limit, plus the interpreter's start
    assert sandbox_uids() == [] and our_cgroups() == []


@needs_sandbox
def test_a_fork_bomb_is_contained(reward):
    bomb = "import os\nwhile True:\n    os.fork()\n"
    value, why, seconds = score_one(reward, bomb)
    assert value == 0.0 and why.startswith("0 of 3 tests passed; ")
    assert seconds < 2.0 + 5
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes
    assert sandbox_uids() == [] and our_cgroups() == []
    sleepers = ("import os, time\nn = 0\nwhile True:\n    try:\n        if os.fork() == 0:\n"
                "            time.sleep(60)\n        n += 1\n    except OSError:\n        break\n"
                "def add(a, b):\n    return n\n")
    value, why, _ = score_one(reward, sleepers, "assert add(0, 0) >= 16\n")
    assert value == 0.0 and why.startswith("0 of 1 tests passed; test 1 of 1 failed: AssertionError")
    assert sandbox_uids() == []  # the 60 s sleepers died with the run


@needs_sandbox
def test_a_10_gb_allocation_is_refused(reward):
    value, why, _ = score_one(reward, "x = bytearray(10 * 1024 ** 3)\n")
    assert value == 0.0 and why == "0 of 3 tests passed; the code raised MemoryError (line 1 of the code)"
    value, why, _ = score_one(reward, "def add(a, b):\n    return len(bytearray(10 * 1024 ** 3))\n")
    assert value == 0.0 and why.startswith("0 of 3 tests passed; test 1 of 3 failed: MemoryError")


@needs_sandbox
def test_keys_temporary_files_and_the_environment_are_out_of_reach(reward, tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDKIT_TEST_SECRET", "s3cr3t-value")
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY s3cr3t-value")
    steal = f"""
import glob, os
def loot():
    found = dict(os.environ)
    for path in glob.glob('/proc/*/environ'):
        try:
            found[path] = open(path, 'rb').read().decode('latin-1')
        except OSError:
            pass
    for path in [os.path.expanduser('~/.ssh/id_rsa'), '/root/.ssh/id_rsa', '/root/.ssh/authorized_keys',
                 {str(secret)!r}]:
        try:
            found[path] = open(path).read()
        except OSError:
            pass
    return found
"""
    tests = "assert 's3cr3t-value' in str(loot())\nassert os.listdir('/root') not in ([], ['.pyenv'])\n" \
            "assert os.path.expanduser('~') != '/tmp/work'\n"
    value, why, _ = score_one(reward, steal, tests)
    assert value == 0.0 and why.startswith("0 of 3 tests passed; test 1 of 3 failed: AssertionError")
    assert "s3cr3t" not in why


@needs_sandbox
def test_writes_outside_its_directory_never_reach_the_host(reward, tmp_path):
    outside = [tmp_path / "escaped.txt", Path(__file__).parent / "escaped.txt", Path("/etc/rewardkit-escaped")]
    code = f"""
import os
def write_everywhere():
    written = []
    for path in {[str(p) for p in outside]!r}:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                handle.write('x')
            written.append(path)
        except OSError:
            pass
    open('inside.txt', 'w').write('fine')  # its own directory is writable
    return written
"""
    tests = f"assert write_everywhere() == {[str(p) for p in outside]!r}\nassert open('inside.txt').read() == 'fine'\n"
    value, why, _ = score_one(reward, code, tests)
    assert value == 0.5 and why.startswith("1 of 2 tests passed; test 1 of 2 failed: AssertionError")
    assert not any(p.exists() for p in outside)


@needs_sandbox
def test_sockets_reach_nothing(reward):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        deadline = time.time() + 4
        while time.time() < deadline:
            try:
                accepted.append(server.accept())
            except (socket.timeout, OSError):
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = f"""
import socket
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return 'connected'
    except OSError as exc:
        return type(exc).__name__ + ': ' + str(exc)
"""
    tests = f"assert connect('127.0.0.1', {port}) == 'connected', connect('127.0.0.1', {port})\n" \
            "assert connect('8.8.8.8', 53) == 'connected', connect('8.8.8.8', 53)\n"
    value, why, _ = score_one(reward, code, tests)
    thread.join()
    server.close()
    assert value == 0.0 and "Network is unreachable" in why
    assert accepted == []


@needs_sandbox
def test_many_run_in_parallel_in_input_order():
    reward = CodeTests(time_limit=1.5, concurrency=4, cache=False)
    # all different: the runner calls a repeated response once
    codes = [f"def add(a, b):\n    return a + b  # {k}\n" if k % 2 == 0 else
             f"def add(a, b):\n    while True: pass  # {k}\n" for k in range(8)]
    start = time.perf_counter()
    scores = reward([""] * 8, codes, fields=[{"tests": ADD_TESTS}] * 8)
    seconds = time.perf_counter() - start
    assert scores.tolist() == pytest.approx([2 / 3, 0.0] * 4)
    assert seconds < 4 * 1.5  # the four loops ran at once, not one after another
    assert reward.last_stats.calls == 8
    assert sandbox_uids() == []


@needs_sandbox
def test_in_a_spec_the_tests_come_from_the_fields_and_results_are_cached():
    reward = build_reward({"components": [{"type": "code_tests", "time_limit": 2}, {"type": "length", "target": 0,
                                                                                    "weight": 0.0}]})
    fields = [{"tests": ADD_TESTS, "other": 1}]
    assert reward([""], ["def add(a, b):\n    return a + b\n"], fields=fields).tolist() == pytest.approx([2 / 3])
    component = reward.components[0].reward
    assert reward([""], ["def add(a, b):\n    return a + b\n"], fields=fields).tolist() == pytest.approx([2 / 3])
    assert component.stats.calls == 1 and component.stats.cached == 1


# ------------------------------------------------------------------------------------------------ rewardkit score
def run_score_command(tmp_path, spec_text, records, extra=()):
    import json

    from rewardkit.config import parse_config
    from rewardkit.rewards.command import ScoreConfig, run_score

    spec = tmp_path / "reward.yaml"
    spec.write_text(spec_text)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    assert run_score(parse_config(ScoreConfig, ["--reward", str(spec), "--input", str(data), "--output", str(out),
                                                "--no-progress", *extra])) == 0
    return [json.loads(line) for line in out.read_text().splitlines()], data


def test_score_reads_tests_from_records_and_writes_reasons(tmp_path, capsys):
    records = [{"prompt": "Write add.", "response": "```python\ndef add(a, b):\n    return a + b\n```",
                "tests": ADD_TESTS},
               {"prompt": "Write add.", "response": "def add(a, b):\n    return 3\n",
                "tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]}]
    isolation = "" if NAMESPACES is not None else ", isolation: none"
    lines, data = run_score_command(tmp_path, f"components:\n  - {{type: code_tests, time_limit: 5{isolation}}}\n",
                                    records)
    assert [line["total"] for line in lines] == pytest.approx([2 / 3, 1 / 2])
    assert lines[0]["reasons"] == {"code_tests": "2 of 3 tests passed; test 3 of 3 failed: AssertionError (line 1 "
                                                 "of the test)"}
    assert lines[1]["reasons"]["code_tests"].startswith("1 of 2 tests passed; test 2 of 2 failed: AssertionError")
    err = capsys.readouterr().err
    assert "code_tests: 2 responses, 2 calls (0 cached, 0 repeated in a batch), 0 retries, 0 failed; latency p50" \
        in err


@pytest.mark.parametrize("record, message", [
    ({"prompt": "p", "response": "x = 1"}, "in.jsonl:2: code_tests needs the record's 'tests' field, and this record "
                                           "has none"),
    ({"prompt": "p", "response": "x = 1", "tests": "assert ("},
     "in.jsonl:2: reward component 1 (code_tests): tests: line 1: SyntaxError"),
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, "which pairwise records do not carry"),
])
def test_score_names_the_record_with_bad_or_missing_tests(tmp_path, record, message):
    first = {"prompt": "p", "response": "x = 1", "tests": "assert x == 1"}
    records = [first, record] if "response" in record else [record]
    with pytest.raises(RewardkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_score_command(tmp_path, f"components:\n  - {{type: code_tests, isolation: {ISOLATION}}}\n", records)


def test_score_dense_passes_the_tests_to_the_whole_responses_only(tmp_path):
    """--dense: the fields reach code_tests through per_token; it runs each whole response once (no prefix runs) and
    its reward sits on the last token."""
    records = [{"prompt": "p", "response": "x = 1\ny = 2\n", "tests": "assert x == 1\nassert y == 3\n"}]
    isolation = "" if NAMESPACES is not None else ", isolation: none"
    lines, _ = run_score_command(tmp_path, f"mode: dense\ncomponents:\n  - {{type: code_tests{isolation}}}\n",
                                 records, ["--tokenizer", "smollm2-135m"])
    (line,) = lines
    assert line["total"] == pytest.approx(0.5)
    assert line["token_rewards"][:-1] == [0.0] * (len(line["token_rewards"]) - 1)
    assert line["token_rewards"][-1] == pytest.approx(0.5)
    assert line["reasons"]["code_tests"].startswith("1 of 2 tests passed")


def test_tests_are_parsed_safely_from_many_threads_at_once():
    # code_tests parses a batch's tests on its worker threads; CPython 3.11's parser raised SystemError when two
    # threads parsed at once, so parsing is serialized: 16 threads x 40 parses of a nested test, all equal
    from concurrent.futures import ThreadPoolExecutor

    from rewardkit.rewards.code import parse_tests

    tests = "def test_nested():\n    assert [[[(i, j) for j in range(2)] for i in range(2)]]\nassert add(1, 2) == 3\n"
    with ThreadPoolExecutor(16) as pool:
        parsed = list(pool.map(lambda _: parse_tests(tests, "code_tests"), range(640)))
    assert all(p == parsed[0] for p in parsed)
