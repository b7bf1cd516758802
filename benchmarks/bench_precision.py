"""Scoring a reward model's evaluation pairs in fp32 against bf16 (or fp16): speed, and whether each pair keeps its order.

    python benchmarks/bench_precision.py runs/hh-rm                       # HH pairs, fp32 against bf16 on the CPU
    python benchmarks/bench_precision.py runs/hh-rm --pairs 500 --turns 2
    python benchmarks/bench_precision.py runs/hh-rm --device cuda --low fp16

The model (a trained reward-model folder or a preset) scores the same HH pairs (../shared/data/hh-rlhf, both files,
in file order) the way `eval-rm` does (`rewardkit.eval.scoring.score_texts`), once with its weights in fp32 and once
loaded directly in the low precision (the reward head stays fp32), taking turns chunk by chunk so that load changes hit
both. It prints each precision's pairs/s and held-out-style accuracy (chosen scored higher, ties half), the speed-up,
and the paired comparison: the share of pairs whose chosen-minus-rejected margin keeps its sign, the pairs each gets
right and the pairs they disagree on. Speed claims hold for the CPU printed on the first line only.
"""

from __future__ import annotations

import argparse
import sys
import time

from common import HH, machine_text  # also sets the offline environment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="reward model folder or preset")
    parser.add_argument("--pairs", type=int, default=1000, help="HH pairs scored (in file order)")
    parser.add_argument("--turns", type=int, default=4, help="chunks each precision scores in turn")
    parser.add_argument("--device", default="cpu", help="device (as --device of the commands)")
    parser.add_argument("--low", default="bf16", choices=("bf16", "fp16"), help="the low precision to compare")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    args = parser.parse_args()

    import numpy as np

    from rewardkit.data import loaders
    from rewardkit.device import choose_placement
    from rewardkit.eval.scoring import score_texts
    from rewardkit.models import RewardModel

    pairs = loaders.load_pairs([str(p) for p in HH])[:args.pairs]
    prompts = [p.prompt for p in pairs]
    precisions = ("fp32", args.low)
    models = {name: RewardModel.from_pretrained(args.model, placement=choose_placement(args.device, name))
              for name in precisions}
    print(machine_text())
    print(f"{args.model}: {len(pairs)} HH pairs, batch {args.batch_size} texts, max_length "
          f"{models['fp32'].max_length}, device {args.device}, {args.turns} turns each")
    margins = {name: np.empty(len(pairs)) for name in precisions}
    seconds = dict.fromkeys(precisions, 0.0)
    bounds = np.linspace(0, len(pairs), args.turns + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for name in precisions:
            began = time.perf_counter()
            chosen = score_texts(models[name], prompts[start:stop], [p.chosen for p in pairs[start:stop]],
                                 batch_size=args.batch_size, progress=False)
            rejected = score_texts(models[name], prompts[start:stop], [p.rejected for p in pairs[start:stop]],
                                   batch_size=args.batch_size, progress=False)
            seconds[name] += time.perf_counter() - began
            margins[name][start:stop] = chosen - rejected
        print(f"  {stop:5d} pairs: " + ", ".join(f"{n} {stop / seconds[n]:.2f} pairs/s" for n in precisions),
              flush=True)

    right = {name: (m > 0) + 0.5 * (m == 0) for name, m in margins.items()}
    for name in precisions:
        print(f"{name:5s} {len(pairs) / seconds[name]:7.2f} pairs/s ({seconds[name]:.1f} s)  accuracy "
              f"{right[name].mean():.4f}  ties {int((margins[name] == 0).sum())}")
    low = args.low
    same_order = np.sign(margins["fp32"]) == np.sign(margins[low])
    disagree = right["fp32"] != right[low]
    print(f"speed: {low} / fp32 = {seconds['fp32'] / seconds[low]:.2f}x")
    print(f"order: {same_order.mean():.2%} of pairs keep the sign of their margin ({int((~same_order).sum())} flip); "
          f"fp32 gets {right['fp32'].sum():.1f} right, {low} {right[low].sum():.1f}, they disagree on "
          f"{int(disagree.sum())}; largest |margin difference| {np.abs(margins['fp32'] - margins[low]).max():.3g} "
          f"(margins span {np.abs(margins['fp32']).max():.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
