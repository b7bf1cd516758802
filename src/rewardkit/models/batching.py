"""How encoded texts become forward passes: packed or padded training batches, and scoring in batches.

Training batches (`collate_groups`) are packed when the backbone allows it: no padding, and a decoder encodes the
prompt that a pair's (or a ranking's) texts share once (see `rewardkit.models.packing`). Whether the backbone allows
it is checked once, on the first batch, against the padded forward. A mixin of `RewardModel`: it calls the model's
`collate`, `pooled_states` and forward.
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import torch

from rewardkit.data.types import Prompt
from rewardkit.device import on_host
from rewardkit.models import packing
from rewardkit.models.tokenization import Encoded


# How far a text's pooled state may move, relative to its norm, between a packed and a padded batch with weights in
# bf16/fp16: rounding alone moved it by up to 0.6% (minilm-l6) and 2.1% (smollm2-135m, 30 layers) on HH pairs, while
# four texts packed into one attention row (the bug the check exists for) moved them by 50-87% (minilm-l6, bf16).
PACKED_LOW_PRECISION_DRIFT = 0.05


class Batching:
    """Training batches of groups of texts, and rewards for many texts without gradients."""

    def collate_groups(self, groups: Sequence[Sequence[Encoded]]) -> dict[str, torch.Tensor]:
        """A training batch of groups of texts (a pair's chosen and rejected, a ranking's responses, or single texts).

        Packed when the backbone supports it (see `rewardkit.models.packing`): no padding, and for a decoder each
        group's shared prompt encoded once. The rewards and their gradients equal those of `collate` with the same
        texts, in the same flat order.
        """
        if self._checkpointing or not self._packing_works(groups):
            return self.collate([e for group in groups for e in group])
        return self._pack(groups)

    def group_length(self, group: Sequence[Encoded]) -> int:
        """Width of a group's attention rows in a training batch; batching groups of similar width keeps the
        attention's padding small."""
        return packing.row_width([e.input_ids for e in group], self.is_decoder, self._attention_weight)

    def _pack(self, groups: Sequence[Sequence[Encoded]]) -> dict[str, torch.Tensor]:
        types = None if self.is_decoder or groups[0][0].token_type_ids is None else \
            [[e.token_type_ids for e in group] for group in groups]
        starts = [[self._pooled_from(e) for e in group] for group in groups] if self.pooling == "response" else None
        return packing.pack([[e.input_ids for e in group] for group in groups], self.is_decoder,
                            self._attention_weight, token_types=types, pooling=self.pooling, pool_starts=starts)

    @functools.cached_property
    def _attention_weight(self) -> float:
        return packing.attention_weight(self.model)

    def _binding_sliding_window(self) -> int | None:
        """The backbone's sliding attention window when texts of max_length can outgrow it (Mistral, Gemma 2/3,
        Qwen2 with use_sliding_window), else None."""
        config = self.model.config
        window = getattr(config, "sliding_window", None)
        if not window or getattr(config, "use_sliding_window", True) is False:
            return None
        return window if window < self.max_length else None

    def _packing_works(self, groups: Sequence[Sequence[Encoded]]) -> bool:
        """Packing needs a backbone whose attention goes through transformers' attention registry and that takes
        explicit positions. Checked once, on the first batch, against the padded forward; left off if they differ."""
        if self._packing_ok is None and (window := self._binding_sliding_window()):
            # packed rows attend in full; a first batch of short texts would pass the check and hide that
            self._packing_ok = False
            warnings.warn(f"rewardkit: {type(self.model).__name__} attends through a sliding window of {window} "
                          f"tokens, shorter than max_length {self.max_length}; training on padded batches (slower)",
                          stacklevel=2)
        if self._packing_ok is None:
            sample = [list(group)[:3] for group in groups[:2]]
            was_training = self.model.training
            self.model.eval()
            # The pooled states are compared, not the rewards: a reward head fresh from initialization gives rewards
            # near 0 whose rounding noise is as large as they are. fp32 layouts agree to summation order; in bf16
            # they round differently (other shapes, other kernels): see PACKED_LOW_PRECISION_DRIFT.
            low_precision = next(self.model.parameters()).dtype != torch.float32
            try:
                with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
                    packed = self.pooled_states(**self._pack(sample)).float()
                    padded = self.pooled_states(**self.collate([e for g in sample for e in g])).float()
                difference = ((packed - padded).norm(dim=-1) / padded.norm(dim=-1).clamp(min=1e-6)).max()
                self._packing_ok = bool(difference <= (PACKED_LOW_PRECISION_DRIFT if low_precision else 1e-4))
            except (TypeError, ValueError, RuntimeError, IndexError):
                self._packing_ok = False
            finally:
                self.model.train(was_training)
            if not self._packing_ok:
                warnings.warn(f"rewardkit: {type(self.model).__name__} gives different rewards on packed batches; "
                              f"training on padded batches (slower)", stacklevel=2)
        return self._packing_ok

    @torch.no_grad()
    def score_encoded(self, encoded: Sequence[Encoded], batch_size: int = 32, progress: bool = False,
                      with_length: bool = False) -> torch.Tensor:
        """Rewards for already-encoded texts, returned in input order; `with_length` (a model with a length head):
        [2, N], the rewards and the length head's outputs.

        Batches are formed longest first (least padding). A decoder scores texts that share a prompt (pairs,
        best-of-n samples) as packed groups, the prompt encoded once; `batch_size` counts texts.
        """
        was_training = self.model.training
        self.model.eval()
        with on_host():  # rewards are returned on the CPU, in fp32
            scores = torch.empty((2, len(encoded)) if with_length else len(encoded), dtype=torch.float32)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(encoded), desc="scoring", unit="text")
        try:
            for rows, packed in self._scoring_batches(encoded, batch_size):
                if packed:
                    batch = self._pack([[encoded[i] for i in group] for group in rows])
                    rows = [i for group in rows for i in group]
                else:
                    batch = self.collate([encoded[i] for i in rows])
                rewards = self(**batch, with_length=with_length).float()
                with on_host():
                    rewards = rewards.cpu()
                scores[..., rows] = rewards.T if with_length else rewards  # [B, 2] -> [2, B]
                if bar is not None:
                    bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
            self.model.train(was_training)
        return scores

    def _scoring_batches(self, encoded: Sequence[Encoded], batch_size: int):
        """(rows, packed) per batch: groups of indices with one prompt when packing a decoder, else indices."""
        if self.is_decoder and len(encoded) > 1:
            by_prompt: dict[tuple[int, ...], list[int]] = {}
            for i, e in enumerate(encoded):
                by_prompt.setdefault(tuple(e.input_ids[:e.response_start]), []).append(i)
            groups = [g[start:start + batch_size] for g in by_prompt.values() for start in range(0, len(g), batch_size)]
            if any(len(g) > 1 for g in groups) and self._packing_works([[encoded[i] for i in g] for g in groups[:2]]):
                groups.sort(key=lambda g: -self.group_length([encoded[i] for i in g]))
                batch: list[list[int]] = []
                for group in groups:
                    if batch and sum(map(len, batch)) + len(group) > batch_size:
                        yield batch, True
                        batch = []
                    batch.append(group)
                if batch:
                    yield batch, True
                return
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size], False

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 32,
              progress: bool = False) -> torch.Tensor:
        """Rewards [B] for (prompt, response) pairs, without gradients, on CPU, in input order."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not responses:
            return torch.empty(0)
        encoded = self.encode_many(prompts, responses)
        return self.score_encoded(encoded, batch_size=batch_size, progress=progress)
