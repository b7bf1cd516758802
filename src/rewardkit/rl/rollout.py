"""Rollouts: turn prompts into token ids, sample responses with a KV cache, and score the sampled tokens' log-probs.

Layout of a batch: queries are LEFT-padded (so every response starts at the same column, as batched generation
needs) and responses are RIGHT-padded. A response ends at its first EOS; the EOS token is part of the response (the
policy chose to stop, and that choice gets credit like any other token), everything after it is padding. A response
that reaches `max_new_tokens` without an EOS is `truncated`.

Position ids are rebuilt from the attention mask exactly as `generate` builds them, so the log-probs computed here for
training are those of the distribution the tokens were sampled from.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch

from rewardkit.data.types import Prompt
from rewardkit.device import host_side
from rewardkit.rl.losses import entropy_from_logits


@dataclass
class SamplingSettings:
    max_new_tokens: int = 32
    temperature: float = 1.0   # 0 means greedy decoding
    top_k: int = 0             # 0 disables top-k filtering
    top_p: float = 1.0


@dataclass
class Rollout:
    query_ids: torch.Tensor       # [B, Q] left-padded
    query_mask: torch.Tensor      # [B, Q] 1 on prompt tokens
    response_ids: torch.Tensor    # [B, T] right-padded
    response_mask: torch.Tensor   # [B, T] float, 1 on response tokens up to and including the first EOS
    truncated: torch.Tensor       # [B] bool: no EOS within max_new_tokens
    logprobs: torch.Tensor | None = None  # [B, T] log π(token) recorded while sampling (temperature applied)
    entropy: torch.Tensor | None = None   # [B, T] entropy of π at each sampled position

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=1)

    def __len__(self) -> int:
        return self.query_ids.shape[0]

    def select(self, index: torch.Tensor | slice) -> "Rollout":
        """The rows `index` (a slice or index tensor), trimmed of columns that are padding in every selected row."""
        query_mask = self.query_mask[index]
        keep_from = int((query_mask.sum(0) > 0).nonzero()[0]) if query_mask.any() else 0
        keep_to = max(int(self.response_mask[index].sum(1).max()), 1)

        def tokens(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index][:, :keep_to]

        return Rollout(self.query_ids[index][:, keep_from:], query_mask[:, keep_from:], tokens(self.response_ids),
                       tokens(self.response_mask), self.truncated[index], tokens(self.logprobs), tokens(self.entropy))


def prompt_token_ids(tokenizer, prompts: Sequence[Prompt], chat_template: bool = False,
                     max_prompt_tokens: int | None = None) -> tuple[list[list[int]], int]:
    """Token ids of each prompt and how many were left-truncated to `max_prompt_tokens` (the opening is dropped:
    the end of a prompt is what the response continues).

    Conversations (lists of messages) always go through the chat template with an open assistant turn; plain strings
    do too when `chat_template` is set (as one user message), else they are continued as raw text.
    """
    ids, truncated = [], 0
    for prompt in prompts:
        if isinstance(prompt, str) and not chat_template:
            tokens = tokenizer(prompt, add_special_tokens=True).input_ids
        else:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            tokens = tokenizer(text, add_special_tokens=False).input_ids
        if max_prompt_tokens and len(tokens) > max_prompt_tokens:
            tokens = tokens[-max_prompt_tokens:]
            truncated += 1
        ids.append(tokens)
    return ids, truncated


@host_side  # token ids are batched on the CPU; the caller moves them to the policy
def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def response_mask_after_eos(response_ids: torch.Tensor, eos_token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, truncated): the mask is 1 up to and including each row's first EOS, 0 after it; rows without an EOS are
    all 1 and flagged truncated."""
    is_eos = torch.isin(response_ids, torch.as_tensor(list(eos_token_ids), dtype=response_ids.dtype,
                                                      device=response_ids.device))
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()  # EOS strictly before this column
    mask = (eos_before == 0).float()
    truncated = ~is_eos.any(dim=1)
    return mask, truncated


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a response: the tokenizer's EOS plus the model's generation config EOS (one id or a list)."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the tokenizer has no EOS token: responses could never end")
    return sorted(ids)


class LogprobRecorder:
    """A logits processor that changes nothing and records, at each generation step, the log-prob of the token then
    sampled and the entropy of the (temperature-scaled, untruncated) distribution — what a training forward would
    compute, for free, keeping one [B, vocab] tensor at a time. `generate` runs custom processors before its
    temperature/top-k/top-p warpers, so it sees the model's raw logits."""

    def __init__(self, temperature: float):
        self.temperature = temperature or 1.0
        self.logprobs: list[torch.Tensor] = []
        self.entropy: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None

    def _take(self, sampled: torch.Tensor) -> None:
        if self._pending is not None:
            self.logprobs.append(self._pending.gather(1, sampled[:, None]).squeeze(1))
            self._pending = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._take(input_ids[:, -1])  # the token sampled after the previous call
        scaled = scores.float() / self.temperature
        self.entropy.append(entropy_from_logits(scaled))
        self._pending = torch.log_softmax(scaled, dim=-1)
        return scores

    def result(self, response_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._take(response_ids[:, -1])
        return torch.stack(self.logprobs, dim=1), torch.stack(self.entropy, dim=1)


@torch.no_grad()
def sample(model, query_ids: torch.Tensor, query_mask: torch.Tensor, settings: SamplingSettings,
           eos_ids: Sequence[int], pad_token_id: int) -> Rollout:
    """Sample one response per query row with HF `generate` (KV cache, left padding), recording the sampled tokens'
    log-probs and the entropies on the way."""
    from transformers import GenerationConfig, LogitsProcessorList

    greedy = settings.temperature == 0
    config = GenerationConfig(
        do_sample=not greedy, max_new_tokens=settings.max_new_tokens,
        temperature=None if greedy else settings.temperature, top_k=0 if greedy else settings.top_k,
        top_p=None if greedy else settings.top_p, eos_token_id=list(eos_ids), pad_token_id=pad_token_id,
        use_cache=True)
    recorder = LogprobRecorder(settings.temperature)
    output = model.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config,
                            logits_processor=LogitsProcessorList([recorder]))
    response_ids = output[:, query_ids.shape[1]:]
    mask, truncated = response_mask_after_eos(response_ids, eos_ids)
    response_ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_token_id))
    logprobs, entropy = recorder.result(output[:, query_ids.shape[1]:])
    return Rollout(query_ids, query_mask, response_ids, mask, truncated, logprobs * mask, entropy * mask)


def decode_responses(tokenizer, rollout: Rollout) -> list[str]:
    """Response texts without their EOS or padding."""
    return [tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            for ids, mask in zip(rollout.response_ids, rollout.response_mask)]


@dataclass
class ResponseForward:
    logprobs: torch.Tensor             # [B, T] log π(a_t | context) of the sampled tokens
    entropy: torch.Tensor | None       # [B, T] entropy of π(· | context) at each response position
    hidden: torch.Tensor | None        # [B, T, H] last hidden state at the position that predicts each token


def _accepts(model, argument: str) -> bool:
    forward = getattr(model, "get_base_model", lambda: model)().forward
    return argument in inspect.signature(forward).parameters


def forward_responses(model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False,
                      with_hidden: bool = False) -> ResponseForward:
    """One forward pass over prompt + response; grad flows when the caller enables it.

    Logits are divided by the sampling temperature so that log-probs match the sampling distribution (top-k/top-p
    truncation is not reflected, as in every PPO implementation). Only the response positions' logits are computed
    where the model supports `logits_to_keep`: the vocabulary projection dominates memory for long prompts.
    """
    input_ids = torch.cat([rollout.query_ids, rollout.response_ids], dim=1)
    attention_mask = torch.cat([rollout.query_mask.long(), rollout.response_mask.long()], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    n_response = rollout.response_ids.shape[1]
    kwargs = {"output_hidden_states": with_hidden}
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = n_response + 1
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                   **kwargs)
    # The logit at position p predicts token p + 1, so response token t is predicted at column Q - 1 + t.
    logits = output.logits[:, -(n_response + 1):-1].float()
    if temperature and temperature != 1.0:
        logits = logits / temperature
    logprobs = torch.gather(logits, 2, rollout.response_ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    entropy = entropy_from_logits(logits) if with_entropy else None
    hidden = output.hidden_states[-1][:, -(n_response + 1):-1] if with_hidden else None
    return ResponseForward(logprobs, entropy, hidden)
