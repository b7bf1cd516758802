"""What each training speed lever is worth: forward + backward seconds per pair on the same HH pairs, one lever at a time.

    python benchmarks/bench_levers.py                             # minilm-l6, 6 batches of 16 pairs (~5 min)
    python benchmarks/bench_levers.py --backbone smollm2-135m     # 3 batches, max_length 256 (~25 min)

The same sample of training pairs (the default 90/10 split, seed 0) goes through every setting; only the named lever
changes from the row above it:
- random batches, padded: what a plain loop does (TRL's default collator);
- length-grouped batches, padded: the same pairs sorted by length before batching;
- packed: every token of a batch in one row, no padding (attention per text);
- shared prompt: (decoders) a pair's common prompt encoded once, both responses attending to it;
- and, one at a time: gradient checkpointing on and eager instead of SDPA attention (both on padded batches, against
  the padded row), 1 thread instead of all cores (packed), and the optimizer step of a foreach instead of a fused
  AdamW.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time

from common import HH, fill_defaults  # also sets the offline environment
DEFAULTS = {"minilm-l6": {"batches": 6, "max_length": 512}, "smollm2-135m": {"batches": 3, "max_length": 256}}


def seconds_per_pair(rm, batches, make_inputs) -> float:
    """Forward + backward of every batch (after one untimed warm-up batch), per pair."""
    from rewardkit.losses import bradley_terry_loss

    def step(groups):
        rewards = rm(**make_inputs(groups))
        bradley_terry_loss(rewards[0::2], rewards[1::2]).backward()

    rm.train()
    step(batches[0])
    started = time.perf_counter()
    for groups in batches:
        step(groups)
    rm.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / sum(len(g) for g in batches)


def optimizer_step_seconds(rm, fused: bool) -> float:
    import torch

    params = [p for p in rm.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=fused, foreach=None if fused else True)
    optimizer.step()
    started = time.perf_counter()
    for _ in range(3):
        optimizer.step()
    rm.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm-l6", choices=sorted(DEFAULTS))
    parser.add_argument("--batches", type=int, help="batches of pairs per setting (default per backbone)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per batch")
    parser.add_argument("--max-length", type=int, help="default per backbone")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    fill_defaults(args, DEFAULTS[args.backbone])

    import torch

    from rewardkit.data import loaders, train_val_split
    from rewardkit.models import RewardModel, packing

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, _ = train_val_split(loaders.load_pairs([str(p) for p in HH], on_identical="skip"), 0.1, seed=0)
    sample = random.Random(0).sample(train, args.batches * args.batch_size)
    rm = RewardModel.from_pretrained(args.backbone, max_length=args.max_length, dropout=False)
    encoded = rm.encode_many([p.prompt for p in sample for _ in range(2)],
                             [r for p in sample for r in (p.chosen, p.rejected)])
    groups = [encoded[i:i + 2] for i in range(0, len(encoded), 2)]
    random_batches = [groups[i:i + args.batch_size] for i in range(0, len(groups), args.batch_size)]
    by_length = sorted(groups, key=lambda g: -max(len(e.input_ids) for e in g))
    grouped_batches = [by_length[i:i + args.batch_size] for i in range(0, len(by_length), args.batch_size)]
    tokens = sum(len(e.input_ids) for e in encoded)
    print(f"{args.backbone}: {len(groups)} HH training pairs ({tokens} tokens) in {args.batches} batches of "
          f"{args.batch_size}, max_length {args.max_length}, {args.threads} threads; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    def padded(batch):
        return rm.collate([e for g in batch for e in g])

    def packed_without_sharing(batch):  # an infinite attention weight: sharing a prompt never pays
        return packing.pack([[e.input_ids for e in g] for g in batch], rm.is_decoder, math.inf,
                            token_types=None if rm.is_decoder else [[e.token_type_ids for e in g] for g in batch])

    def measure(label: str, batches, make_inputs) -> float:
        value = seconds_per_pair(rm, batches, make_inputs)
        print(f"  {label:58s} {value:7.3f} s/pair  {1 / value:6.2f} pairs/s", flush=True)
        return value

    baseline = measure("random batches, padded", random_batches, padded)
    measure("length-grouped batches, padded", grouped_batches, padded)
    if rm.is_decoder:
        measure("length-grouped, packed (a row per text)", grouped_batches, packed_without_sharing)
        best_label = "length-grouped, packed, shared prompt encoded once"
    else:
        best_label = "length-grouped, packed"
    best = measure(best_label, grouped_batches, rm.collate_groups)
    print("  one lever at a time:")
    rm.model.gradient_checkpointing_enable()  # its recomputation runs outside the packed-attention context: padded
    measure("  gradient checkpointing, padded (vs padded above)", grouped_batches, padded)
    rm.model.gradient_checkpointing_disable()
    implementation = rm.model.config._attn_implementation
    rm.model.set_attn_implementation("eager")
    measure("  eager attention, padded (vs SDPA, padded, above)", grouped_batches, padded)
    rm.model.set_attn_implementation(implementation)
    torch.set_num_threads(1)
    measure("  1 thread", grouped_batches, rm.collate_groups)
    torch.set_num_threads(args.threads)
    fused, foreach = optimizer_step_seconds(rm, fused=True), optimizer_step_seconds(rm, fused=False)
    print(f"  AdamW step over {sum(p.numel() for p in rm.parameters()) / 1e6:.1f}M weights: fused {fused:.3f} s, "
          f"foreach {foreach:.3f} s (per pair at batch {args.batch_size}: {fused / args.batch_size:.4f} vs "
          f"{foreach / args.batch_size:.4f} s)")
    print(f"\n{best_label} vs random batches, padded: {baseline / best:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
