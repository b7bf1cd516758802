"""Dense rewards as pure functions: aligning the policy's response tokens to characters, the prefixes to score,
potential-based shaping, step (process) rewards and the sparse-on-last-token layout. (The per-token KL to a reference
model is the RL loop's business: `rewardkit.rl.kl`.)

Potential-based shaping (Ng et al. 1999) with potential Φ(x, y≤t) = R(x, y≤t) gives r_t = Φ(x, y≤t) − Φ(x, y<t). We
define the potential of the empty prefix as 0, so token 1 carries R(x, y≤1) and Σ_t r_t = R(x, y) exactly: the dense
rewards sum to the sparse reward. A prefix is the response text up to the end of token t (`token_ends`); tokens that
add no text (special tokens such as EOS, or the first half of a multi-byte character) get 0.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch


def token_ends_from_ids(response: str, ids: Sequence[int], tokenizer: Any) -> list[int]:
    """Character offset in `response` where each of the policy's tokens `ids` ends.

    Fast path: when the response re-tokenizes to the same ids (special tokens aside), the tokenizer's offset mapping
    gives the ends directly. Otherwise each prefix of the ids is decoded and its length taken (O(T²) decoding; a
    trailing U+FFFD from a split multi-byte character does not count). `response` should be the policy tokenizer's
    decoding of `ids` (skip_special_tokens=True), as RL rollouts produce it.
    """
    ids = [int(i) for i in ids]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    core = [t for t, i in enumerate(ids) if i not in special]
    offsets = offset_token_ends(response, tokenizer)
    if offsets is not None and [ids[t] for t in core] == offsets[0]:
        ends, last, it = [], 0, iter(offsets[1])
        for i in ids:
            if i not in special:
                last = max(last, next(it))
            ends.append(last)
        return ends
    prefixes = tokenizer.batch_decode([ids[:t + 1] for t in range(len(ids))], skip_special_tokens=True)
    return [len(p.rstrip("\ufffd")) for p in prefixes]


def offset_token_ends(text: str, tokenizer: Any) -> tuple[list[int], list[int]] | None:
    """(ids, end offsets) of `text` tokenized without special tokens, or None for tokenizers without offset mappings.

    The byte pieces of one character split across tokens (byte-level BPE) all carry that character's span; all but
    the last end where it starts, so the character counts once its last piece is there, as decoding prefixes gives
    (`token_ends_from_ids`' other path).
    """
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    spans = [tuple(span) for span in enc["offset_mapping"]]
    ends = [start if t + 1 < len(spans) and spans[t + 1] == (start, end) and end > start else end
            for t, (start, end) in enumerate(spans)]
    return list(enc["input_ids"]), ends


def resolve_token_ends(responses: Sequence[str], *, response_token_ids: Sequence[Sequence[int]] | None = None,
                       tokenizer: Any = None, token_ends: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Per response, the character offset where each token ends: non-decreasing, within the text, and the last token
    closes the text (so the last prefix is the whole response and the shaped rewards sum to its sparse reward)."""
    if token_ends is None:
        if response_token_ids is not None:
            if tokenizer is None:
                raise ValueError("response_token_ids need the policy tokenizer to align tokens with text")
            if len(response_token_ids) != len(responses):
                raise ValueError(f"{len(response_token_ids)} token id lists for {len(responses)} responses")
            token_ends = [token_ends_from_ids(r, ids, tokenizer) for r, ids in zip(responses, response_token_ids)]
        elif tokenizer is not None:
            token_ends = []
            for r in responses:
                offsets = offset_token_ends(r, tokenizer)
                if offsets is None:
                    raise ValueError("this tokenizer has no offset mapping; pass response_token_ids or token_ends")
                token_ends.append(offsets[1])
        else:
            raise ValueError("per-token rewards need response_token_ids + tokenizer, token_ends, or a tokenizer")
    if len(token_ends) != len(responses):
        raise ValueError(f"{len(token_ends)} token end lists for {len(responses)} responses")
    out = []
    for response, ends in zip(responses, token_ends):
        clean, high = [], 0
        for e in ends:
            high = max(high, min(int(e), len(response)))
            clean.append(high)
        if clean:
            clean[-1] = len(response)
        out.append(clean)
    return out


def step_boundaries(text: str, separator: str) -> list[int]:
    """Character offsets right after each occurrence of `separator` (the ends of the steps before the last one)."""
    if not separator:
        raise ValueError("step separator must not be empty")
    bounds, start = [], 0
    while (found := text.find(separator, start)) != -1:
        start = found + len(separator)
        bounds.append(start)
    return bounds


@dataclass
class PrefixPlan:
    """The prefixes to score for a batch (flat, all responses together, so one batched call scores them) and the
    token each prefix's increment goes to."""

    lengths: list[int]                                  # tokens per response
    texts: list[str] = field(default_factory=list)      # prefix texts, response by response, shortest first
    owner: list[int] = field(default_factory=list)      # the response each prefix belongs to
    token: list[int] = field(default_factory=list)      # the token that receives the prefix's increment
    complete: list[bool] = field(default_factory=list)  # the prefix is the whole response

    def shape(self, potentials: torch.Tensor) -> list[torch.Tensor]:
        """Per-token rewards from the prefixes' potentials: increments Φ_k − Φ_{k−1} (Φ of the empty prefix = 0)."""
        potentials = potentials.float().reshape(-1)
        out, k = [], 0
        for i, n in enumerate(self.lengths):
            start = k
            while k < len(self.owner) and self.owner[k] == i:
                k += 1
            phi = potentials[start:k]
            rewards = torch.zeros(n, dtype=torch.float32)
            if n:
                increments = phi - torch.cat([phi.new_zeros(1), phi[:-1]])
                rewards.index_add_(0, torch.tensor(self.token[start:k], dtype=torch.long), increments)
            out.append(rewards)
        return out


def plan_prefixes(responses: Sequence[str], token_ends: Sequence[Sequence[int]],
                  step_separator: str | None = None) -> PrefixPlan:
    """Which prefixes to score: every distinct token end (`step_separator=None`), or each step end.

    Token-level: the prefix ending at token t's end goes on the first token reaching that end. Step-level: the prefix
    ending right after each separator goes on the token that completes the separator. The whole response is always
    a prefix (even when empty) and goes on the first token that reaches the end of the text.
    """
    plan = PrefixPlan(lengths=[len(e) for e in token_ends])
    for i, (response, ends) in enumerate(zip(responses, token_ends)):
        if not ends:
            raise ValueError(f"response {i} has no tokens to carry its reward")
        if step_separator is None:
            cuts = sorted({e for e in ends if 0 < e < len(response)})
        else:
            cuts = [b for b in step_boundaries(response, step_separator) if b < len(response)]
        for cut in cuts + [len(response)]:
            plan.texts.append(response[:cut])
            plan.owner.append(i)
            plan.token.append(min(bisect_left(ends, cut), len(ends) - 1))
            plan.complete.append(cut == len(response))
    return plan


def sparse_on_last_token(totals: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """The sparse layout: each response's reward on its last token, zeros elsewhere."""
    out = []
    for total, n in zip(totals.tolist(), lengths):
        if n < 1:
            raise ValueError("a response with no tokens cannot carry a reward")
        rewards = torch.zeros(n, dtype=torch.float32)
        rewards[-1] = total
        out.append(rewards)
    return out
