"""Rule-based rewards: target length, regex/format match, n-gram repetition, keywords, no-EOS and overlong penalties.

Penalty-shaped rules (length, repetition, keywords, no_eos, overlong) are 0 when the rule is satisfied and negative
otherwise, so adding them to a composite never rewards a response for merely existing; `regex` is 1 on a match and
0 otherwise. Give a negative weight to turn a match into a penalty.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Any

import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction

UNITS = ("chars", "words", "tokens")
_WORD = re.compile(r"\S+")


@lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> Any:
    """A tokenizer from a preset, folder or hub id (offline presets resolve through rewardkit.models.presets)."""
    from transformers import AutoTokenizer

    from rewardkit.models.presets import resolve_tokenizer_path

    try:
        return AutoTokenizer.from_pretrained(resolve_tokenizer_path(name_or_path))
    except OSError as exc:
        raise RewardkitError(f"cannot load tokenizer {name_or_path!r}: {str(exc).splitlines()[0]}")


def text_lengths(texts: list[str], unit: str, tokenizer: Any = None) -> torch.Tensor:
    """Length of each text in characters, whitespace-separated words, or tokens of `tokenizer` (no special tokens)."""
    if unit == "chars":
        return torch.tensor([len(t) for t in texts], dtype=torch.float32)
    if unit == "words":
        return torch.tensor([len(t.split()) for t in texts], dtype=torch.float32)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor([len(i) for i in ids], dtype=torch.float32)


class _LengthRule(RewardFunction):
    def __init__(self, unit: str, tokenizer: str | None):
        if unit not in UNITS:
            raise RewardkitError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if unit == "tokens" and not tokenizer:
            raise RewardkitError("unit 'tokens' needs a tokenizer (a preset such as smollm2-135m, or a folder)")
        self.unit = unit
        self.tokenizer = load_tokenizer(tokenizer) if unit == "tokens" else None

    def lengths(self, texts: list[str]) -> torch.Tensor:
        return text_lengths(texts, self.unit, self.tokenizer)


class TargetLength(_LengthRule):
    """0 while |length − target| ≤ tolerance; outside, with d the distance beyond the tolerance:
    `falloff: linear` → −d/scale (unbounded below; clip it in the composite if needed),
    `falloff: gaussian` → exp(−d²/(2·scale²)) − 1 (in (−1, 0]). `scale` defaults to max(target, 1)."""

    name = "length"

    def __init__(self, target: float, tolerance: float = 0.0, unit: str = "chars", falloff: str = "linear",
                 scale: float | None = None, tokenizer: str | None = None):
        super().__init__(unit, tokenizer)
        if falloff not in ("linear", "gaussian"):
            raise RewardkitError(f"falloff must be linear or gaussian, got {falloff!r}")
        if target < 0 or tolerance < 0 or (scale is not None and scale <= 0):
            raise RewardkitError("target and tolerance must be >= 0 and scale > 0")
        self.target, self.tolerance, self.falloff = float(target), float(tolerance), falloff
        self.scale = float(scale) if scale is not None else max(self.target, 1.0)

    def _score(self, prompts, responses, references, finished):
        excess = ((self.lengths(responses) - self.target).abs() - self.tolerance).clamp(min=0) / self.scale
        if self.falloff == "linear":
            return 0.0 - excess  # not -excess: no "-0.0" inside the tolerance
        return torch.exp(-0.5 * excess ** 2) - 1.0


class RegexMatch(RewardFunction):
    """1.0 when the response matches `pattern` (`match: search` anywhere, `fullmatch` the whole stripped response,
    `start` at its beginning), else 0.0."""

    name = "regex"

    def __init__(self, pattern: str, match: str = "search", ignore_case: bool = False, multiline: bool = False,
                 dotall: bool = False):
        if match not in ("search", "fullmatch", "start"):
            raise RewardkitError(f"match must be search, fullmatch or start, got {match!r}")
        flags = (re.IGNORECASE if ignore_case else 0) | (re.MULTILINE if multiline else 0) | (re.DOTALL if dotall else 0)
        try:
            compiled = re.compile(pattern, flags)
        except re.error as exc:
            raise RewardkitError(f"invalid pattern {pattern!r}: {exc}")
        self.match = match
        self._test = {"search": compiled.search, "fullmatch": compiled.fullmatch, "start": compiled.match}[match]

    def _score(self, prompts, responses, references, finished):
        if self.match == "fullmatch":
            responses = [r.strip() for r in responses]
        return torch.tensor([1.0 if self._test(r) else 0.0 for r in responses])


def repeated_ngram_fraction(words: list[str], n: int) -> float:
    """Share of the text's n-grams that repeat an earlier one: 1 − distinct/total (0 when shorter than n words)."""
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    distinct = len(Counter(tuple(words[i:i + n]) for i in range(total)))
    return 1.0 - distinct / total


class RepetitionPenalty(RewardFunction):
    """−(share of repeated word n-grams): 0 for no repetition, close to −1 for a response looping on one phrase.
    Words are whitespace-separated, lowercased unless `ignore_case: false`."""

    name = "repetition"

    def __init__(self, n: int = 3, ignore_case: bool = True):
        if n < 1:
            raise RewardkitError(f"n must be >= 1, got {n}")
        self.n, self.ignore_case = int(n), ignore_case

    def _score(self, prompts, responses, references, finished):
        texts = [r.lower() for r in responses] if self.ignore_case else responses
        return torch.tensor([0.0 - repeated_ngram_fraction(t.split(), self.n) for t in texts])


class Keywords(RewardFunction):
    """−(share of `required` keywords missing) − (share of `forbidden` keywords present): 0 when all required ones
    appear and no forbidden one does, −2 at worst. Whole-word matches unless `whole_word: false`."""

    name = "keywords"

    def __init__(self, required: list[str] | None = None, forbidden: list[str] | None = None,
                 ignore_case: bool = True, whole_word: bool = True):
        required, forbidden = list(required or []), list(forbidden or [])
        if not required and not forbidden:
            raise RewardkitError("keywords needs at least one of 'required' or 'forbidden'")
        flags = re.IGNORECASE if ignore_case else 0

        def compile_all(words):
            return [re.compile(rf"(?<!\w){re.escape(w)}(?!\w)" if whole_word else re.escape(w), flags) for w in words]

        self.required, self.forbidden = compile_all(required), compile_all(forbidden)

    def _score(self, prompts, responses, references, finished):
        def share(patterns, text):
            return sum(1 for p in patterns if p.search(text)) / len(patterns) if patterns else 0.0

        missing = [1.0 - share(self.required, r) if self.required else 0.0 for r in responses]
        return torch.tensor([0.0 - m - share(self.forbidden, r) for m, r in zip(missing, responses)])


class NoEOSPenalty(RewardFunction):
    """`penalty` (default −1) for a response cut off without EOS, else 0.

    Cut off is read from the caller's `finished` flags when given (the RL loop knows which rollouts hit the token
    limit); otherwise from the text: the response does not end with `eos_text` (e.g. "<|im_end|>" when special tokens
    are kept in the decoded text). In dense mode the penalty sits on the last token only.
    """

    name = "no_eos"

    def __init__(self, penalty: float = -1.0, eos_text: str | None = None):
        self.penalty, self.eos_text = float(penalty), eos_text

    def _score(self, prompts, responses, references, finished):
        if finished is None:
            if not self.eos_text:
                raise RewardkitError("no_eos needs the `finished` flags from the caller (an input field "
                                     "'finished') or an `eos_text` to look for")
            finished = [r.rstrip().endswith(self.eos_text) for r in responses]
        return torch.tensor([0.0 if f else self.penalty for f in finished])

    def _potentials(self, prompts, texts, references, finished, complete):
        return torch.where(complete, self(prompts, texts, references, finished=finished), 0.0)


class OverlongPenalty(_LengthRule):
    """Soft overlong punishment (as in DAPO): 0 up to `max_length − buffer`, then falling linearly to `penalty` at
    `max_length` (and staying there beyond), so the policy learns to finish before the generation limit."""

    name = "overlong"

    def __init__(self, max_length: float, buffer: float, penalty: float = -1.0, unit: str = "tokens",
                 tokenizer: str | None = None):
        super().__init__(unit, tokenizer)
        if not 0 < buffer <= max_length:
            raise RewardkitError(f"buffer must be in (0, max_length], got {buffer}")
        self.max_length, self.buffer, self.penalty = float(max_length), float(buffer), float(penalty)

    def _score(self, prompts, responses, references, finished):
        over = (self.lengths(responses) - (self.max_length - self.buffer)).clamp(min=0) / self.buffer
        return self.penalty * over.clamp(max=1.0) + 0.0  # + 0.0 turns -0.0 into 0.0

