"""`likelihood`: how likely a causal language model finds the response: its mean log-probability per token (default),
the sum, or minus the perplexity, optionally given the prompt.

The response is tokenized on its own (no special tokens) and appended to a context: the prompt (`condition: true`,
the default) as the policy sees it (a conversation through the model's chat template with the assistant's turn
open; a text as it is, or as one user message with `chat_template: true`), else just the model's BOS token (EOS when
it has no BOS). With `condition: false`, or an empty prompt, the response is scored as a text of its own. When the
context and response exceed `max_length` tokens (default: the model's maximum positions), the context loses its
opening; a response longer than that alone is a one-line error naming it. An empty response (no tokens) is an error
too, unless `empty` gives its score. One forward pass gives each response token's log-probability log p(y_t | x,
y<t), computed in fp32 whatever the weights' precision; the model runs where `device` and `precision` say
(rewardkit.device's rule; left at auto in a spec, they follow the command's).

Dense: each of the LM's tokens adds its log-probability to the potential of every response prefix that contains the
token's last character (`rewardkit.rewards.dense`'s rule for a character split across tokens), so the policy token
that completes an LM token carries that token's log-probability (divided by the response's token count for `mean`):
the per-token rewards are the LM's per-token log-probabilities laid on the policy's tokens, and they sum to the
sparse reward. (For `neg_perplexity`, Φ(prefix) = −exp(−S/N) with S the log-probabilities so far; the sum is still
the sparse reward.)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError, RewardFunction, at_least_one

REDUCTIONS = ("mean", "sum", "neg_perplexity")


class Likelihood(RewardFunction):
    """Log-probability of the response under a causal LM (see the module docstring).

    `model`: a preset (smollm2-135m), folder or hub id of a causal LM. `reduce`: mean (default), sum or
    neg_perplexity. `condition`: score given the prompt (default) or alone. `chat_template`: put a text prompt in a
    user message. `max_length`, `batch_size`, `device`, `precision`, `empty` (the score of an empty response; default:
    an error)."""

    name = "likelihood"

    def __init__(self, model: str = "smollm2-135m", reduce: str = "mean", condition: bool = True,
                 chat_template: bool = False, max_length: int | None = None, batch_size: int = 8,
                 device: str = "auto", precision: str = "auto", empty: float | None = None, *,
                 placement: Any = None):
        from rewardkit.device import component_placement
        from rewardkit.models.causal_lm import load_causal_lm

        placement = component_placement(device, precision, placement)
        lm, tokenizer = load_causal_lm(model, placement)
        self._use(lm, tokenizer, reduce, condition, chat_template, max_length, batch_size, empty)
        self.placement = placement

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, reduce: str = "mean", condition: bool = True,
                   chat_template: bool = False, max_length: int | None = None, batch_size: int = 8,
                   empty: float | None = None) -> "Likelihood":
        """Wrap a loaded causal LM and its tokenizer (library callers and tests), on the device it is on."""
        reward = cls.__new__(cls)
        reward._use(model, tokenizer, reduce, condition, chat_template, max_length, batch_size, empty)
        reward.placement = None
        return reward

    def _use(self, model, tokenizer, reduce, condition, chat_template, max_length, batch_size, empty) -> None:
        if reduce not in REDUCTIONS:
            raise RewardkitError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
        if empty is not None and (isinstance(empty, bool) or not math.isfinite(float(empty))):
            raise RewardkitError(f"empty must be a finite number, got {empty!r}")
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = at_least_one(max_length, "max_length") if max_length is not None else int(limit)
        if self.max_length < 2:
            raise RewardkitError(f"max_length must be at least 2, got {self.max_length}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.reduce, self.condition, self.chat_template = reduce, bool(condition), bool(chat_template)
        self.batch_size, self.empty = at_least_one(batch_size, "batch_size"), empty
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self._start = [] if start is None else [int(start)]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad = int(pad) if pad is not None else 0

    # ------------------------------------------------------------------------------------------ tokens
    def _context(self, prompt: Any) -> list[int]:
        if not self.condition or not prompt:
            return list(self._start)
        if isinstance(prompt, str) and not self.chat_template:
            return self.tokenizer(prompt, add_special_tokens=True).input_ids or list(self._start)
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise RewardkitError("the model's tokenizer has no chat template to put the prompt's messages in; give "
                                 "text prompts (without chat_template: true) or condition: false")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _response_tokens(self, response: str) -> tuple[list[int], list[int] | None]:
        """The response's ids and the character offset where each ends (None without offset mappings)."""
        from rewardkit.rewards.dense import offset_token_ends

        offsets = offset_token_ends(response, self.tokenizer)
        if offsets is not None:
            return offsets
        return self.tokenizer(response, add_special_tokens=False).input_ids, None

    @torch.no_grad()
    def token_logprobs(self, prompts: list, responses: list[str]) -> list[tuple[torch.Tensor, list[int] | None]]:
        """Per response: log p of each scored response token (fp32, on the CPU), and where each token ends in the
        text. With no context the first token has nothing to be predicted from and is left out."""
        rows = []
        for j, (prompt, response) in enumerate(zip(prompts, responses)):
            ids, ends = self._response_tokens(response)
            context = self._context(prompt)
            if len(ids) + min(len(context), 1) > self.max_length:
                raise ResponseError(f"{self.name}: response {j} has {len(ids)} tokens, more than max_length "
                                    f"{self.max_length} allows", j)
            context = context[max(0, len(context) + len(ids) - self.max_length):]
            rows.append((context, ids, ends))
        device = next(self.model.parameters()).device
        out: list[tuple[torch.Tensor, list[int] | None]] = []
        order = sorted(range(len(rows)), key=lambda k: len(rows[k][0]) + len(rows[k][1]))
        results: dict[int, tuple[torch.Tensor, list[int] | None]] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            sequences = [rows[k][0] + rows[k][1] for k in chunk]
            width = max(max(len(s) for s in sequences), 1)
            input_ids = torch.full((len(chunk), width), self._pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, seq in enumerate(sequences):
                input_ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[r, :len(seq)] = 1
            logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for r, k in enumerate(chunk):
                context, ids, ends = rows[k]
                first = 0 if context else 1  # without a context the first token is not predicted
                positions = torch.arange(len(context) + first, len(context) + len(ids))
                targets = torch.tensor(ids[first:], dtype=torch.long)
                values = logprobs[r, positions - 1, targets] if len(targets) else torch.zeros(0)
                results[k] = (values, None if ends is None else ends[first:])
        for k in range(len(rows)):
            out.append(results[k])
        return out

    def _reduce(self, total: torch.Tensor | float, count: int) -> float:
        total = float(total)
        if self.reduce == "sum":
            return total
        mean = total / count
        return mean if self.reduce == "mean" else -math.exp(-mean)

    def _empty(self, j: int) -> float:
        if self.empty is None:
            raise ResponseError(f"{self.name}: response {j} has no tokens to score (give `empty: <score>` to score "
                                "empty responses)", j)
        return float(self.empty)

    # ------------------------------------------------------------------------------------------ scores
    def _score(self, prompts, responses, references, finished):
        scores = []
        for j, (values, _) in enumerate(self.token_logprobs(prompts, responses)):
            scores.append(self._empty(j) if len(values) == 0 else self._reduce(values.sum(), len(values)))
        return torch.tensor(scores, dtype=torch.float32)

    def _potentials(self, prompts, texts, references, finished, complete):
        """Φ(prefix) from one forward pass over each whole response (see the module docstring)."""
        groups: list[tuple[int, list[int]]] = []  # (the whole response's index, its prefixes' indices)
        pending: list[int] = []
        for k, text in enumerate(texts):
            pending.append(k)
            if bool(complete[k]):
                groups.append((k, pending))
                pending = []
        if pending or any(not texts[whole].startswith(texts[k]) for whole, members in groups for k in members):
            return super()._potentials(prompts, texts, references, finished, complete)  # not prefixes: score each
        wholes = [whole for whole, _ in groups]
        try:
            scored = self.token_logprobs([prompts[k] for k in wholes], [texts[k] for k in wholes])
        except ResponseError as exc:
            raise ResponseError(str(exc), wholes[exc.index]) from None
        potentials = torch.zeros(len(texts))
        for (whole, members), (values, ends) in zip(groups, scored):
            if len(values) == 0:
                try:
                    potentials[whole] = self._empty(whole)
                except ResponseError as exc:
                    raise ResponseError(str(exc), whole) from None
                continue
            if ends is None:
                raise RewardkitError(f"{self.name}: dense rewards need a fast tokenizer (one with offset mappings) "
                                     "for the language model")
            ends_t = torch.tensor(ends)
            for k in members:
                inside = values[ends_t <= len(texts[k])].sum()
                potentials[k] = self._reduce(inside, len(values)) if self.reduce != "sum" else float(inside)
            potentials[whole] = self._reduce(values.sum(), len(values))
        return potentials
