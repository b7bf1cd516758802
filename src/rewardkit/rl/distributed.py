"""Several processes, one update: how `rewardkit rl` runs under `torchrun` or `accelerate launch`.

Each process samples, scores and backpropagates a contiguous share of each step's prompts, so that a prompt's group of
samples stays on one process (GRPO and RLOO compare within groups). Everything that spans the batch is computed from
sums over the processes (`Processes.sum`): the whitening statistics, the REINFORCE baseline, the token count that
normalises a minibatch's loss, the KL controller's input and the logged metrics. Minibatches are drawn over the global
sample index by a generator seeded from (seed, step, epoch), each process backpropagates the rows of a minibatch that
it holds, and the gradients are summed over the processes before clipping and the optimizer step. N processes thus
take the update that one process takes on the same global batch; one process (no launcher) makes every collective
the identity.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import torch

from rewardkit.device import Placement
from rewardkit.runs import derived_seed


class Processes:
    """This process's place among the run's processes, and the collectives the RL loop needs."""

    def __init__(self, world: int = 1, rank: int = 0):
        self.world, self.rank = world, rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, count: int) -> slice:
        """This process's contiguous share of `count` items (a multiple of the process count)."""
        if count % self.world:
            raise ValueError(f"{count} items do not split evenly over {self.world} processes")
        size = count // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over the processes (every process gets it)."""
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        total = tensor.clone()
        dist.all_reduce(total)
        return total

    def mean(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of the (valid) elements of every process's `values`."""
        from rewardkit.rl.masked import masked_sum

        mask = torch.ones_like(values) if mask is None else mask
        count, total = self.sum(torch.stack([mask.sum(), masked_sum(values, mask)]).float()).unbind()
        return total / count.clamp(min=1)

    def moments(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, unbiased variance) of the (valid) elements of every process's `values`."""
        from rewardkit.rl.masked import masked_moments

        return masked_moments(values, torch.ones_like(values) if mask is None else mask, self.sum)

    def gather(self, items: list) -> list:
        """Every process's list of picklable items, concatenated in process order (on every process)."""
        if self.world == 1:
            return list(items)
        import torch.distributed as dist

        parts: list = [None] * self.world
        dist.all_gather_object(parts, list(items))
        return [item for part in parts for item in part]

    def gather_values(self, values: torch.Tensor) -> torch.Tensor:
        """Every process's 1-D `values` (lengths may differ), concatenated in process order (on every process)."""
        if self.world == 1:
            return values
        return torch.tensor(self.gather(values.tolist()), dtype=values.dtype)

    def wait(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its sum over the processes, in one flat all-reduce. A process that held no row of
        the minibatch adds zeros; a parameter that no process has a gradient for keeps none, as it would in one process
        (AdamW then leaves it alone rather than decaying it)."""
        if self.world == 1:
            return
        params = list(parameters)
        if not params:
            return
        like = params[0]
        flat = torch.cat([p.grad.reshape(-1).float() if p.grad is not None else like.new_zeros(p.numel())
                          for p in params] + [torch.tensor([float(p.grad is not None) for p in params],
                                                           device=like.device)])
        flat = self.sum(flat)
        offset = 0
        for p, had_grad in zip(params, flat[-len(params):].tolist()):
            if had_grad:
                p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()


def launch(placement: Placement) -> tuple[Processes, Placement]:
    """(processes, placement) of this run: Accelerate reads what `torchrun` or `accelerate launch` set (one process
    without them) and starts the process group (gloo on the CPU, NCCL on GPUs). Several processes on CUDA take one
    GPU each."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=placement.device_type == "cpu")
    processes = Processes(accelerator.num_processes, accelerator.process_index)
    if processes.world > 1 and placement.device_type == "cuda":
        placement = dataclasses.replace(placement, device=str(accelerator.device))
    return processes, placement


def minibatch_order(count: int, seed: int, step: int, epoch: int) -> torch.Tensor:
    """A permutation of the global sample indices 0..count-1: the same on every process and for any process count,
    so the minibatches (and hence the updates) do not depend on how many processes share the batch."""
    generator = torch.Generator().manual_seed(derived_seed(seed, step, epoch))
    return torch.randperm(count, generator=generator)


def held_rows(rows: torch.Tensor, held: slice) -> torch.Tensor:
    """The local indices of the global `rows` that this process holds (global rows held.start..held.stop-1), in the
    minibatch's order."""
    inside = (rows >= held.start) & (rows < held.stop)
    return rows[inside] - held.start
