"""`math`: 1 when the response's final answer equals the record's reference answer (math-verify), else 0.

The extraction and comparison rules are in `rewardkit.rewards.answers`. After each call `last_reasons[j]` says why
response j scored 0 (no answer found, several different boxed answers, an answer that differs or cannot be read) and
`last_answers[j]` what was read as its answer. In dense mode the reward sits on the response's last token (a prefix
has no final answer yet).
"""

from __future__ import annotations

import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.answers import EXTRACTORS, MULTIPLE, Verifier, extract_answer
from rewardkit.rewards.base import ResponseError, RewardFunction, finite_float, reference_lists


class MathAnswer(RewardFunction):
    """Symbolic answer check against the reference (one text, or several accepted answers).

    `extract`: the extractors to try, in order (boxed, answer_is, hashes, last_number; default boxed, answer_is,
    last_number). `multiple`: reject (default: several different boxed answers score 0) or last. `format_bonus`:
    added to the score (right or wrong) when the answer was found by the first extractor listed, e.g. in a \\boxed{}:
    a correct boxed answer scores 1 + bonus, a correct one found otherwise 1, several different boxed answers 0.
    `timeout`: seconds for each parse and
    comparison (math-verify's; a comparison that runs over scores 0, with the reason)."""

    name = "math"
    needs_reference = True

    def __init__(self, extract: list[str] | None = None, multiple: str = "reject", format_bonus: float = 0.0,
                 timeout: int = 5):
        try:
            import math_verify  # noqa: F401
        except ImportError:
            raise RewardkitError("the math component needs math-verify: pip install math-verify")
        extract = list(extract) if extract is not None else ["boxed", "answer_is", "last_number"]
        unknown = [e for e in extract if e not in EXTRACTORS]
        if not extract or unknown:
            raise RewardkitError(f"extract must list some of {', '.join(EXTRACTORS)}, got {extract!r}")
        if multiple not in MULTIPLE:
            raise RewardkitError(f"multiple must be one of {', '.join(MULTIPLE)}, got {multiple!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise RewardkitError(f"timeout must be a whole number of seconds, at least 1, got {timeout!r}")
        self.extract, self.multiple = tuple(extract), multiple
        self.format_bonus = finite_float(format_bonus, "format_bonus")
        self.verifier = Verifier(timeout)
        self.last_reasons: list[str | None] = []
        self.last_answers: list[str | None] = []

    def _score(self, prompts, responses, references, finished):
        refs = reference_lists(references, len(responses), repr(self.name))
        scores, reasons, answers = [], [], []
        for j, (response, accepted) in enumerate(zip(responses, refs)):
            found = extract_answer(response, self.extract, self.multiple)
            answers.append(found.answer)
            if found.answer is None:
                scores.append(0.0)
                reasons.append(found.problem)
                continue
            try:
                correct, why = self.verifier(found.answer, accepted, found.candidates)
            except ValueError as exc:
                raise ResponseError(f"{self.name}: response {j}: {exc}", j) from None
            hedged = bool(found.candidates) and not correct  # several different boxed answers: no format bonus
            bonus = self.format_bonus if found.extractor == self.extract[0] and not hedged else 0.0
            scores.append(float(correct) + bonus)
            reasons.append(why)
        self.last_reasons, self.last_answers = reasons, answers
        return torch.tensor(scores, dtype=torch.float32)

    def _potentials(self, prompts, texts, references, finished, complete):
        """A prefix has no final answer yet: its potential is 0, so the reward sits on the response's last token."""
        whole = complete.nonzero().reshape(-1).tolist()
        potentials = torch.zeros(len(texts))
        if whole:
            try:
                potentials[whole] = self([prompts[k] for k in whole], [texts[k] for k in whole],
                                         None if references is None else [references[k] for k in whole])
            except ResponseError as exc:
                raise ResponseError(str(exc), whole[exc.index]) from None
        return potentials
