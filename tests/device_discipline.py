"""A check, run on a CPU, for what a GPU run trips on: tensors that end up on the CPU while the model is elsewhere.

On a CPU every tensor is on the right device, so a mistake that breaks a GPU run (a `torch.zeros(())` stacked with a
loss, a `.cpu()` result handed to a collective) passes unseen. `DeviceDiscipline` makes them visible: inside it, code
of rewardkit itself may not create a tensor without naming its device (`torch.tensor`, `zeros`, `arange`...) nor move
one to the CPU (`.cpu()`, `.to("cpu")`, `.numpy()`), except in blocks that say they work on the host on purpose
(`rewardkit.device.on_host` / `host_side`: collating token ids, the figures a step logs). Library code (torch,
transformers, accelerate) is not checked: only the frames of rewardkit's own files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import rewardkit
from rewardkit.device import is_on_host

PACKAGE = str(Path(rewardkit.__file__).parent)
FACTORIES = {torch.tensor, torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.randn, torch.rand,
             torch.randint, torch.linspace, torch.eye, torch.as_tensor}
TRANSFERS = {torch.Tensor.cpu, torch.Tensor.numpy}


def _caller() -> str | None:
    """`file:line` of the innermost rewardkit frame that called into torch, or None when library code did."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(PACKAGE):
            return f"{name[len(PACKAGE) + 1:]}:{frame.f_lineno}"
        if "/torch/" not in name and name != __file__:
            return None
        frame = frame.f_back
    return None


def _to_cpu(func, args, kwargs) -> bool:
    """`.to("cpu")` named as such (a `.to(device)` whose device is the model's, the CPU in this run, is right)."""
    if func is not torch.Tensor.to:
        return False
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    return isinstance(target, str) and target.split(":")[0] == "cpu"


class DeviceDiscipline(TorchFunctionMode):
    """Collects every violation (`found`) with where rewardkit made it."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not is_on_host():
            what = None
            if func in FACTORIES and kwargs.get("device") is None and not (
                    func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)):
                what = f"torch.{func.__name__} without a device"
            elif func in TRANSFERS or _to_cpu(func, args, kwargs):
                what = f"a tensor moved to the CPU ({getattr(func, '__name__', func)})"
            if what and (where := _caller()):
                self.found.append(f"{where}: {what}")
        return func(*args, **kwargs)
