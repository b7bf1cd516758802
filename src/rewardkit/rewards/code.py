"""`code_tests`: the fraction of the record's tests that the response's code passes, run in a sandbox.

The code is the response's last fenced Python block (```python, ```py or an unlabelled ```; `block: first` or `all`
to take the first or all of them joined), else the whole response when it has no fence. A fence left open at the end
(a response cut off at the token limit) counts to the end of the text.

The record's `tests` field holds Python: a text whose top-level `assert` statements and `test_*` functions are the
tests (other top-level statements, such as imports and helpers, are set-up, run in order; test functions run after
the text, in order), or a list of texts, each one test (it passes when it runs without an exception). Everything runs
in one namespace, code first, in one sandboxed process per response (`rewardkit.rewards.sandbox`: no network, a PID
namespace, hidden home and temporary directories, a fresh uid, rlimits and a cgroup, a wall-clock limit). Responses
are run `concurrency` at a time through `rewardkit.rewards.calls` (the cache, retries of a sandbox that failed to
start, and `on_failure` as for every calling component). After each batch `last_reasons[j]` says why response j
lost points ("1 of 3 tests passed; test 2 of 3 failed: AssertionError (line 1 of the test)", "time limit of 5 s
exceeded in test 1 of 3", "the code raised MemoryError", ...). In dense mode the reward sits on the last token.
"""

from __future__ import annotations

import ast
import re
import threading
from typing import Any

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError, at_least_one, finite_float
from rewardkit.rewards.calls import CallingReward, CallItem, Outcome, TransientError, policy_kwargs

LANGUAGES = ("python",)
BLOCKS = ("last", "first", "all")
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "py", "python3", "")


def extract_code(response: str, block: str = "last") -> tuple[str | None, str | None]:
    """(code, why none): the fenced Python block(s) of `response`, or the whole response when it has no fence."""
    fences = _FENCE.findall(response)
    if not fences:
        return (response, None) if response.strip() else (None, "the response is empty")
    python = [body for tag, body in fences if tag.lower() in _PYTHON_TAGS]
    if not python:
        tags = ", ".join(sorted({tag for tag, _ in fences}))
        return None, f"no Python code block (the response's blocks are {tags})"
    code = python[-1] if block == "last" else python[0] if block == "first" else "\n\n".join(python)
    return (code, None) if code.strip() else (None, "the code block is empty")


def parse_tests(tests: Any, where: str) -> list[dict]:
    """The record's tests as sandbox steps ({"kind": "setup" | "test", "source"}); a RewardkitError naming `where`
    when they are not Python, or hold no test."""
    steps: list[dict] = []
    if isinstance(tests, list) and tests and all(isinstance(t, str) and t.strip() for t in tests):
        for k, source in enumerate(tests, start=1):
            _parse(source, f"{where} (item {k})")
            steps.append({"kind": "test", "source": source})
        return steps
    if not isinstance(tests, str) or not tests.strip():
        raise RewardkitError(f"{where} must be Python text (assert statements or test_ functions) or a "
                             f"non-empty list of texts, got {str(tests)[:60]!r}")
    tree = _parse(tests, where)
    lines = tests.splitlines(keepends=True)
    calls = []
    for node in tree.body:
        decorators = getattr(node, "decorator_list", [])
        if decorators:  # a decorated definition takes whole lines, from its first decorator's
            source = "".join(lines[min(d.lineno for d in decorators) - 1:node.end_lineno])
        else:  # exactly the statement (two statements may share a line: `x = f(2); assert x == 4`)
            source = ast.get_source_segment(tests, node)
        if isinstance(node, ast.Assert):
            steps.append({"kind": "test", "source": source})
        else:
            steps.append({"kind": "setup", "source": source})
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                if node.args.args or node.args.posonlyargs or node.args.kwonlyargs:
                    raise RewardkitError(f"{where}: test function {node.name} takes arguments (fixtures are "
                                         "not supported)")
                call = f"{node.name}()" if isinstance(node, ast.FunctionDef) else \
                    f"import asyncio\nasyncio.run({node.name}())"
                calls.append({"kind": "test", "source": call})
    steps += calls
    if not any(step["kind"] == "test" for step in steps):
        raise RewardkitError(f"{where}: no test in them (no top-level assert statement or test_ function)")
    return steps


# CPython 3.11's parser is not safe to call from several threads at once (it raised "SystemError: AST constructor
# recursion depth mismatch" when code_tests parsed a batch's tests on its worker threads): one parse at a time.
_PARSE_LOCK = threading.Lock()


def _parse(source: str, where: str) -> ast.Module:
    try:
        with _PARSE_LOCK:
            return ast.parse(source)
    except SyntaxError as exc:
        raise RewardkitError(f"{where}: line {exc.lineno}: SyntaxError: {exc.msg}")


class CodeTests(CallingReward):
    """Fraction of the record's `tests` passed by the response's code, run in a sandbox (see the module docstring).

    `time_limit` (seconds for the code and all its tests), `memory_mb` (per process, and for the whole run where
    cgroups can be used), `processes` (at once, threads included), `file_mb` (largest file written), `tmp_mb` (its
    /tmp). `hide`: more directories to cover with an empty tmpfs (e.g. the data set with the reference solutions).
    `isolation: namespaces` (default) refuses to build where Linux namespaces cannot be made; `isolation: none` runs
    the code with rlimits only, network and files within its reach. `block`: last (default), first or all fenced
    Python blocks. `concurrency` (default 4 sandboxes at once), `retries`, `backoff`, `cache`, `on_failure`, `neutral`:
    as for every calling component (a retry happens only when the sandbox itself failed to start)."""

    name = "code_tests"
    needs_fields = ("tests",)

    def __init__(self, language: str = "python", time_limit: float = 5.0, memory_mb: int = 1024, processes: int = 16,
                 file_mb: int = 16, tmp_mb: int = 64, hide: list[str] | None = None, isolation: str = "namespaces",
                 block: str = "last", concurrency: int = 4, retries: int = 1, backoff: float = 0.5,
                 cache: bool | str = True, on_failure: str = "error", neutral: float = 0.0):
        from rewardkit.rewards.sandbox import ISOLATIONS, Limits, Sandbox, SandboxUnavailable

        if language not in LANGUAGES:
            raise RewardkitError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        if block not in BLOCKS:
            raise RewardkitError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")
        if isolation not in ISOLATIONS:
            raise RewardkitError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
        if finite_float(time_limit, "time_limit") <= 0:
            raise RewardkitError(f"time_limit must be above 0 seconds, got {time_limit!r}")
        for value, label in ((memory_mb, "memory_mb"), (processes, "processes"), (file_mb, "file_mb"),
                             (tmp_mb, "tmp_mb")):
            at_least_one(value, label)
        if memory_mb < 64:
            raise RewardkitError(f"memory_mb must be at least 64 (the Python interpreter alone needs ~30), got "
                                 f"{memory_mb}")
        if processes < 2:
            raise RewardkitError(f"processes must be at least 2 (the harness and the code), got {processes}")
        hide = list(hide or [])
        if not all(isinstance(h, str) and h.startswith("/") for h in hide):
            raise RewardkitError(f"hide must list absolute directory paths, got {hide!r}")
        self.language, self.block, self.isolation = language, block, isolation
        self.limits = Limits(time_s=float(time_limit), memory_mb=memory_mb, processes=processes, file_mb=file_mb,
                             tmp_mb=tmp_mb)
        try:
            self.sandbox = Sandbox(self.limits, isolation, tuple(hide))
        except SandboxUnavailable as exc:
            if isolation == "none":
                raise RewardkitError(f"isolation: none cannot run here: {exc}")
            raise RewardkitError(f"cannot isolate the code it runs: {exc}. It runs untrusted code, so it refuses to "
                                 "run it without a network and PID namespace; `isolation: none` runs it anyway, with "
                                 "rlimits only (the network and your files within its reach)")
        super().__init__(policy_kwargs(concurrency, max(60.0, 4 * float(time_limit)), retries, backoff, cache,
                                       on_failure, neutral))

    def identity(self) -> Any:
        limits = self.limits
        return ["code_tests", self.language, self.block, self.isolation, limits.time_s, limits.memory_mb,
                limits.processes, limits.file_mb, limits.tmp_mb, list(self.sandbox.hide)]

    def check_fields(self, fields) -> None:
        tests = fields.get("tests")
        if tests is None:
            raise RewardkitError("code_tests needs the record's 'tests' field, and this record has none")
        parse_tests(tests, "tests")

    def items(self, prompts, responses, references, fields) -> list[CallItem]:
        if fields is None:
            raise ResponseError("code_tests needs each record's 'tests' field (Python asserts or test functions); "
                                "none were given", 0)
        items = super().items(prompts, responses, references, fields)
        for j, item in enumerate(items):
            if item.fields.get("tests") is None:
                raise ResponseError(f"code_tests needs the record's 'tests' field; response {j} has none", j)
            try:
                parse_tests(item.fields["tests"], f"response {j}: tests")
            except RewardkitError as exc:
                raise ResponseError(str(exc), j) from None
        return items

    def call(self, item: CallItem, timeout: float) -> Outcome:
        from rewardkit.rewards.sandbox import SandboxError

        code, why = extract_code(item.response, self.block)
        steps = parse_tests(item.fields["tests"], "code_tests")
        if code is None:
            total = sum(step["kind"] == "test" for step in steps)
            return Outcome(0.0, f"0 of {total} tests passed; {why}")
        try:
            result = self.sandbox.run(code, steps)
        except SandboxError as exc:
            raise TransientError(f"sandbox: {exc}")
        return Outcome(result.fraction, result.reason)
