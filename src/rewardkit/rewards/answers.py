"""Final answers of math responses: finding them in the text, and comparing them with a reference by math-verify.

Pure functions, no torch (a worker process imports this module alone). Extractors, tried in the order a `math`
component lists them until one finds an answer:
- `boxed`: the content of `\\boxed{...}` / `\\fbox{...}` (nested braces kept whole). When a response boxes several
  different answers (hedging: "\\boxed{3} or \\boxed{4}"), there is no single final answer: `multiple: reject`
  (default) scores it 0; `multiple: last` takes the last one. Repeats of one answer (or equal ones: 0.5 and
  \\frac{1}{2}) count as one.
- `answer_is`: the text after the last "answer is", "answer:" or "answer =" (case-insensitive; "The final answer is
  $\\frac{1}{2}$." gives \\frac{1}{2}), to the end of its line, without a trailing full stop, markdown bold or $...$.
- `hashes`: the text after the last `####` (GSM8K's answer line).
- `last_number`: the last number in the text: integers, decimals, thousands written with commas (1,000,000), a/b
  fractions and numeric \\frac{a}{b}. "12,34" is two numbers (a comma takes exactly three digits after it).
Comparison: `math_verify.parse` reads both sides as LaTeX (wrapped in $...$) or plain expressions, then
`math_verify.verify(reference, answer)` decides symbolic equality (1/2 = 0.5 = \\frac{1}{2}; 2\\sqrt{2} = \\sqrt{8};
units such as "5 cm" or "\\text{ cm}" and a thousands comma are dropped; x = 3 matches 3; sets and intervals
compare as such). A reference may be several texts (any of them counts) and may end in a GSM8K `#### answer` line.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

EXTRACTORS = ("boxed", "answer_is", "hashes", "last_number")
MULTIPLE = ("reject", "last")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"answer\s*(?:is\b|:|=)[ \t]*:?", re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*")
_DOLLAR = re.compile(r"(?<!\\)\$")
_NUMBER = re.compile(r"\\d?frac\{\s*-?\d+\s*\}\{\s*-?\d+\s*\}"            # \frac{3}{4}, \dfrac{3}{4}
                     r"|(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]*\d)"  # 1,000 and 1,000,000.5
                     r"|(?<![\w.])-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"  # 12, -3.5, 3/4
                     r"|(?<![\w.])-?\.\d+")                                 # .5


@dataclass
class Extracted:
    """What a response answered: the answer text (None: none found), the extractor that found it, and why there is
    none (or None)."""

    answer: str | None
    extractor: str | None = None
    problem: str | None = None
    candidates: tuple[str, ...] = ()  # several different boxed answers, for `multiple: reject` to compare


def boxed_contents(text: str) -> list[str]:
    """The contents of every \\boxed{...} / \\fbox{...} in `text`, in order (an unclosed one is left out)."""
    found = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for k in range(start, len(text)):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:k].strip())
                    break
    return found


def _trim(answer: str) -> str:
    """An answer line without markdown bold, surrounding $...$ / \\( \\) and a trailing full stop or comma."""
    answer = answer.strip()
    for _ in range(3):
        answer = answer.strip().strip("*").strip()
        answer = re.sub(r"[.,;:!]+$", "", answer).strip()
        if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
            answer = answer.strip("$").strip()
        if answer.startswith("\\(") and answer.endswith("\\)"):
            answer = answer[2:-2].strip()
        if answer.startswith("\\[") and answer.endswith("\\]"):
            answer = answer[2:-2].strip()
    return answer


def _after_last(pattern: re.Pattern, text: str) -> str | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    line = text[matches[-1].end():].split("\n", 1)[0]
    boxed = boxed_contents(line)
    answer = boxed[-1] if boxed else _trim(line)
    return answer or None


def last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    number = matches[-1]
    return number.replace(",", "") if not number.startswith("\\") else number


def extract_answer(text: str, extractors: tuple[str, ...] = ("boxed", "answer_is", "last_number"),
                   multiple: str = "reject") -> Extracted:
    """The response's final answer by the first extractor (in order) that finds one."""
    for name in extractors:
        if name == "boxed":
            boxed = [b for b in boxed_contents(text) if b]
            if not boxed:
                continue
            distinct = tuple(dict.fromkeys(re.sub(r"\s+", "", b) for b in boxed))
            if len(distinct) > 1 and multiple == "reject":
                return Extracted(boxed[-1], name, candidates=tuple(dict.fromkeys(boxed)))
            return Extracted(boxed[-1], name)
        if name == "answer_is":
            answer = _after_last(_ANSWER_IS, text)
        elif name == "hashes":
            answer = _after_last(_HASHES, text)
        elif name == "last_number":
            answer = last_number(text)
        else:
            raise ValueError(f"unknown extractor {name!r}")
        if answer:
            return Extracted(answer, name)
    return Extracted(None, problem=f"no answer found (looked for: {', '.join(extractors)})")


def reference_answer(reference: str) -> str:
    """A reference's answer: the text after a GSM8K `####` when it has one, else the whole reference."""
    after = _after_last(_HASHES, reference)
    return after if after is not None else reference.strip()


def _parse(text: str, timeout: int | None):
    from math_verify import parse

    kwargs = {"parsing_timeout": timeout}
    dollars = len(_DOLLAR.findall(text))
    if dollars % 2:  # a lone $ is a currency sign, not a math delimiter
        text, dollars = _DOLLAR.sub("", text), 0
    wrapped = text if dollars or "\\(" in text or "\\[" in text else f"${text}$"
    for candidate in (wrapped, text):
        parsed = parse(candidate, **kwargs)
        if any(not isinstance(p, str) for p in parsed):  # only text: math-verify's fallback for what it cannot read
            return parsed
    return []


def verify_answer(answer: str, references: list[str], timeout: int | None = 5,
                  candidates: tuple[str, ...] = ()) -> tuple[bool, str | None]:
    """(correct, why not): whether `answer` equals one of `references` symbolically. `candidates`: several boxed
    answers; unless all of them are equal to each other, the response hedged and is not correct. `timeout`: seconds
    for each parse and comparison (math-verify's signal alarm: the main thread only; None for none)."""
    from math_verify import verify

    golds = []
    for reference in references:
        parsed = _parse(reference_answer(reference), timeout)
        if not parsed:
            raise ValueError(f"the reference {reference[:80]!r} cannot be read as a math answer")
        golds.append(parsed)
    if candidates:
        first = _parse(candidates[0], timeout)
        for other in candidates[1:]:
            if not (first and verify(first, _parse(other, timeout), timeout_seconds=timeout)):
                shown = ", ".join(c[:30] for c in candidates[:4])
                return False, f"{len(candidates)} different boxed answers ({shown}): no single final answer"
    parsed = _parse(answer, timeout)
    if not parsed:
        return False, f"answer {answer[:60]!r} could not be read as math"
    for gold in golds:
        if verify(gold, parsed, timeout_seconds=timeout):
            return True, None
    return False, f"answer {answer[:60]!r} differs from the reference"


def serve_worker() -> None:  # pragma: no cover - runs in the worker process
    """The worker's loop: one JSON job a line on stdin ([answer, references, timeout, candidates]), one JSON answer a
    line on stdout (["ok", [correct, why]] or ["error", message])."""
    import json
    import logging
    import sys

    logging.disable(logging.CRITICAL)  # math-verify logs each timeout
    for line in sys.stdin:
        answer, references, timeout, candidates = json.loads(line)
        try:
            result = ["ok", list(verify_answer(answer, references, timeout, tuple(candidates)))]
        except ValueError as exc:
            result = ["error", str(exc)]
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


class Verifier:
    """`verify_answer`, bounded in time everywhere: in the main thread through math-verify's own alarms, elsewhere
    (a server's or an RL framework's worker threads, where signals cannot be used) in one worker process that is
    killed and restarted when a comparison runs over its time (sympy can hang on an answer such as 10^{10^{10}})."""

    def __init__(self, timeout: int):
        self.timeout = timeout
        self._lock = threading.Lock()
        self._process = None

    def __call__(self, answer: str, references: list[str], candidates: tuple[str, ...] = ()) -> tuple[bool, str | None]:
        if threading.current_thread() is threading.main_thread():
            import logging

            logger = logging.getLogger("math_verify")
            level, logger.level = logger.level, logging.CRITICAL  # one "Timeout during comparison" line per timeout
            try:
                return verify_answer(answer, references, self.timeout, candidates)
            finally:
                logger.level = level
        with self._lock:
            return self._in_worker(answer, references, candidates)

    def _start(self) -> None:
        import subprocess
        import sys

        self._process = subprocess.Popen(
            [sys.executable, "-c", "from rewardkit.rewards.answers import serve_worker; serve_worker()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def _in_worker(self, answer, references, candidates):
        import json
        import select

        if self._process is None or self._process.poll() is not None:
            self._start()
        try:
            self._process.stdin.write(json.dumps([answer, list(references), self.timeout, list(candidates)]) + "\n")
            self._process.stdin.flush()
        except OSError:
            self.close()
            raise RuntimeError("the math-verify worker process stopped")
        # parses and comparisons each have `timeout`; allow for several, and for the worker's start (its imports)
        budget = self.timeout * (2 + len(references) + len(candidates)) + 30
        ready, _, _ = select.select([self._process.stdout], [], [], budget)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            self.close()
            return False, f"answer {answer[:60]!r}: the comparison ran over {budget} s and was stopped"
        status, value = json.loads(line)
        if status == "error":
            raise ValueError(value)
        return bool(value[0]), value[1]

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            for stream in (self._process.stdin, self._process.stdout):
                stream.close()
            self._process = None

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
