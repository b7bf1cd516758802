"""The one tokenization rule: how a (prompt, response) becomes token ids, and how encoded texts become a padded batch.

Training, evaluation, scoring, serving and RL all encode texts through `RewardModel.encode_many` (`encode` for one),
so a text is scored the same way everywhere (see `rewardkit.models.reward_model` for the rule in words). The mixin
reads the model's `tokenizer`, `max_length`, `use_chat_template`, `is_decoder`, `pooling`, and the special-token
templates `_single`/`_pair` and `_append_eos` that `RewardModel.__init__` sets.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Sequence

import torch

from rewardkit.data.types import Prompt, conversation_from_text, prompt_as_text
from rewardkit.device import host_side
from rewardkit.errors import RewardkitError


@dataclass(slots=True)
class Encoded:
    """Token ids of one (prompt, response); `response_start` indexes the first response token in `input_ids`."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    response_start: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class _SpecialTokens:
    """Where a tokenizer puts its special tokens around one or two segments, with their token types."""

    head: list[int]
    middle: list[int]
    tail: list[int]
    types: tuple[int, int, int, int, int]  # head, first segment, middle, second segment, tail

    @classmethod
    def of(cls, tokenizer, pair: bool) -> "_SpecialTokens":
        # v5 tokenizers no longer expose build_inputs_with_special_tokens: read the template off one call instead.
        a, b = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("x", "y"))
        enc = tokenizer("x", "y") if pair else tokenizer("x")
        ids = enc["input_ids"]
        types = enc.get("token_type_ids") or [0] * len(ids)
        if len(a) != 1 or len(b) != 1 or a[0] not in ids or (pair and b[0] not in ids):
            raise RewardkitError("cannot read the tokenizer's special-token template")
        ia = ids.index(a[0])
        ib = ids.index(b[0], ia + 1) if pair else ia
        return cls(ids[:ia], ids[ia + 1:ib] if pair else [], ids[ib + 1:],
                   (types[0] if ia else 0, types[ia], types[ia], types[ib], types[-1]))

    @property
    def count(self) -> int:
        return len(self.head) + len(self.middle) + len(self.tail)


def _truncate_left(prompt_ids: list[int], response_ids: list[int], budget: int) -> tuple[list[int], list[int], bool]:
    """Cut the oldest tokens first: prompt from its start, then (only if needed) the response from its start."""
    excess = len(prompt_ids) + len(response_ids) - budget
    if excess <= 0:
        return prompt_ids, response_ids, False
    cut_prompt = min(excess, len(prompt_ids))
    prompt_ids = prompt_ids[cut_prompt:]
    response_ids = response_ids[excess - cut_prompt:]
    return prompt_ids, response_ids, True


class TextEncoding:
    """(prompt, response) -> `Encoded` token ids -> a padded batch."""

    def _ids_many(self, texts: Sequence[str], chunk: int = 1024) -> list[list[int]]:
        """Token ids of many texts through batched tokenizer calls (several times faster than a call per text)."""
        ids: list[list[int]] = []
        # texts longer than the model are expected here (`_assemble` truncates them): silence the tokenizer's warning
        getattr(self.tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
        for start in range(0, len(texts), chunk):
            ids += self.tokenizer(list(texts[start:start + chunk]), add_special_tokens=False)["input_ids"]
        return [i if text else [] for i, text in zip(ids, texts)]

    @functools.cached_property
    def _template_markers(self) -> tuple[str, ...]:
        """Special tokens that the chat template writes into a rendered prompt (e.g. `<|im_start|>`)."""
        probe = self.tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                                   tokenize=False)
        return tuple(t for t in self.tokenizer.all_special_tokens if t and t in probe)

    @functools.cached_property
    def _assistant_turn_end(self) -> str:
        """What the template writes after an assistant message's content (e.g. `<|im_end|>\n`)."""
        _, response_text = self._chat_texts([{"role": "user", "content": "x"}], "RESPONSE", {})
        return response_text.split("RESPONSE", 1)[-1]

    def _chat_texts(self, prompt: Prompt, response: str, prefixes: dict[str, str]) -> tuple[str, str]:
        """The rendered prompt (cached in `prefixes`, one render per distinct prompt) and the response's text.

        A text prompt that holds the template's own special tokens was rendered already (e.g. by an RL framework
        applying the same chat template): it is taken as is rather than rendered a second time.
        """
        if isinstance(prompt, str) and any(marker in prompt for marker in self._template_markers):
            return prompt, response + self._assistant_turn_end
        messages = prompt if isinstance(prompt, list) else conversation_from_text(prompt)
        template = self.tokenizer.apply_chat_template
        key = prompt if isinstance(prompt, str) else json.dumps(prompt)
        if key not in prefixes:
            prefixes[key] = template(messages, add_generation_prompt=True, tokenize=False)
        prefix = prefixes[key]
        full = template(messages + [{"role": "assistant", "content": response}], tokenize=False)
        if not full.startswith(prefix):  # templates that rewrite earlier turns: fall back to the response text
            return prefix, response + (self.tokenizer.eos_token or "")
        return prefix, full[len(prefix):]

    def encode(self, prompt: Prompt, response: str) -> Encoded:
        """Token ids for one (prompt, response), truncated from the left to `max_length`."""
        return self.encode_many([prompt], [response])[0]

    def encode_many(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Encoded]:
        """`encode` for many (prompt, response) at once: batched tokenization, each distinct prompt done once."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        prompt_index: dict[str, int] = {}
        prefixes: dict[str, str] = {}
        rows = []  # (index of the prompt text, response text, whether they form a sentence pair)
        for prompt, response in zip(prompts, responses):
            if self.use_chat_template:
                prompt_text, response_text = self._chat_texts(prompt, response, prefixes)
                pair = False
            else:
                prompt_text, response_text = prompt_as_text(prompt), response
                pair = self._pair is not None and bool(prompt_text)
            rows.append((prompt_index.setdefault(prompt_text, len(prompt_index)), response_text, pair))
        ids = self._ids_many(list(prompt_index) + [response_text for _, response_text, _ in rows])
        prompt_ids = ids[:len(prompt_index)]
        return [self._assemble(prompt_ids[p], response_ids, pair)
                for (p, _, pair), response_ids in zip(rows, ids[len(prompt_index):])]

    def _assemble(self, prompt_ids: list[int], response_ids: list[int], pair: bool) -> Encoded:
        """Special tokens around the segments, left truncation to `max_length`, token types for encoders."""
        if self.use_chat_template:
            specials = _SpecialTokens([], [], [], (0, 0, 0, 0, 0))
        else:
            specials = self._pair if pair else self._single
            if self._append_eos:
                response_ids = response_ids + [self.tokenizer.eos_token_id]
        budget = self.max_length - specials.count
        if budget < 1:
            raise RewardkitError(f"max_length {self.max_length} leaves no room for text")
        prompt_ids, response_ids, truncated = _truncate_left(prompt_ids, response_ids, budget)
        if pair:
            parts = [specials.head, prompt_ids, specials.middle, response_ids, specials.tail]
        else:  # one segment: prompt and response concatenated
            parts = [specials.head, prompt_ids, [], response_ids, specials.tail]
        input_ids = [t for part in parts for t in part]
        token_type_ids = None
        if not self.is_decoder:
            types = specials.types if pair else (specials.types[0],) + (specials.types[1],) * 3 + (specials.types[4],)
            token_type_ids = [ty for part, ty in zip(parts, types) for _ in part]
        response_start = len(specials.head) + len(prompt_ids) + len(specials.middle)
        return Encoded(input_ids, token_type_ids, response_start, truncated)

    @host_side  # built on the CPU; the forward moves the batch to the model
    def collate(self, encoded: Sequence[Encoded], padding_side: str | None = None) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest member (dynamic padding).

        Decoders pad on the tokenizer's side unless told otherwise (pooling and positions follow the mask). Encoders
        always pad right: their CLS token must stay at position 0, where HF's classifier pools it.
        """
        side = (padding_side or self.tokenizer.padding_side) if self.is_decoder else "right"
        width = max(len(e.input_ids) for e in encoded)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        types = torch.zeros((len(encoded), width), dtype=torch.long) if not self.is_decoder else None
        for row, e in enumerate(encoded):
            n = len(e.input_ids)
            cols = slice(width - n, width) if side == "left" else slice(0, n)
            ids[row, cols] = torch.tensor(e.input_ids)
            mask[row, cols] = 1
            if types is not None and e.token_type_ids is not None:
                types[row, cols] = torch.tensor(e.token_type_ids)
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = types
        if self.pooling == "response":
            batch["response_starts"] = torch.tensor([self._pooled_from(e) for e in encoded])
        return batch

    @staticmethod
    def _pooled_from(e: Encoded) -> int:
        """Where "response" pooling starts in a text: its response, or its last token when the response is empty."""
        return min(e.response_start, len(e.input_ids) - 1)
