"""Low-precision working weights beside fp32 master weights: how `train-rm` trains and validates in bf16.

Autocast keeps fp32 weights and casts them at every forward (the frozen layers' too), and runs norms and
activations in fp32, so that every linear layer casts its input again. A `WorkingWeights` holds one bf16 (or fp16)
copy of every floating-point weight instead, refreshed from the fp32 masters once per optimizer step: the forward and
backward run wholly in the low precision, the gradients are copied to the masters in fp32, and the optimizer,
checkpoints and saved folders see fp32 weights only, as before.

The working copy is exactly what inference loads: `RewardModel.from_pretrained` with a bf16 placement rounds the saved
fp32 weights to bf16 the same way and keeps the same modules in fp32 (the reward head, ODIN's length head, and what the
HF class keeps in fp32). So train-rm's validation scores a text as `score`, `serve` and `eval-rm` score the saved
model on the same machine.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import nn


def _kept_in_fp32(model: nn.Module) -> set[int]:
    """Parameters that stay fp32 in every precision: the reward head (`keep_head_in_fp32`), a length head, and the
    modules the HF class itself keeps in fp32 (`_keep_in_fp32_modules`)."""
    from rewardkit.models.heads import head_modules

    hf_model = getattr(model, "model", model)
    kept = list(head_modules(hf_model))
    if getattr(model, "length_head", None) is not None:
        kept.append(model.length_head)
    names = getattr(hf_model, "_keep_in_fp32_modules", None) or ()
    kept += [m for name, m in hf_model.named_modules() if any(n in name.split(".") for n in names)]
    return {id(p) for module in kept for p in module.parameters()}


class WorkingWeights:
    """A low-precision copy of a model's floating-point weights that can stand in for them (`in_use`).

    Parameters shared by several modules (tied embeddings) get one working copy. A working copy trains when its
    master does; after a backward pass `gradients_to_masters` moves its gradient to the master in fp32, and after
    an optimizer step (or any change to the masters: a resumed checkpoint, restored best weights) `refresh` copies
    the masters back down.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        self.model, self.dtype = model, dtype
        fp32 = _kept_in_fp32(model)
        copies: dict[int, nn.Parameter] = {}
        self._slots: list[tuple[nn.Module, str, nn.Parameter, nn.Parameter]] = []
        for module in model.modules():
            for name, master in module._parameters.items():
                if master is None or not master.is_floating_point() or id(master) in fp32:
                    continue
                if id(master) not in copies:
                    copies[id(master)] = nn.Parameter(master.detach().to(dtype), requires_grad=master.requires_grad)
                self._slots.append((module, name, master, copies[id(master)]))
        self._pairs = list({id(w): (m, w) for _, _, m, w in self._slots}.values())

    @contextlib.contextmanager
    def in_use(self):
        """The model computes with the working weights inside this block (and with its masters again after it)."""
        for module, name, _, working in self._slots:
            module._parameters[name] = working
        try:
            yield self.model
        finally:
            for module, name, master, _ in self._slots:
                module._parameters[name] = master

    def gradients_to_masters(self) -> None:
        """Add each working weight's gradient to its master's, in fp32, and clear it (accumulation adds in fp32)."""
        for master, working in self._pairs:
            if working.grad is None:
                continue
            grad = working.grad.float()
            master.grad = grad if master.grad is None else master.grad.add_(grad)
            working.grad = None

    @torch.no_grad()
    def refresh(self) -> None:
        """Round the masters down into the working weights (after they changed)."""
        for master, working in self._pairs:
            working.copy_(master)
            working.requires_grad_(master.requires_grad)


@contextlib.contextmanager
def scoring_in(models: Iterable[nn.Module], dtype: torch.dtype):
    """Score fp32 `models` as if loaded in `dtype` (validation of an ensemble's members, a weight average)."""
    with contextlib.ExitStack() as stack:
        for model in models:
            stack.enter_context(WorkingWeights(model, dtype).in_use())
        yield
