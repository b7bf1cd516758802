"""Peak memory of reward-model training: full fine-tuning, LoRA and gradient checkpointing, a few steps of each.

    python benchmarks/bench_memory.py                                  # smollm2-135m, 4 steps x 8 pairs each: ~5 min
    python benchmarks/bench_memory.py --device cuda --batch-size 16    # on a GPU: peak GPU memory
    python benchmarks/bench_memory.py --model minilm-l6 --steps 2 --batch-size 2      # smoke test, ~1 min

Runs `rewardkit train-rm` three times in a subprocess, on the same HH pairs (../shared/data/hh-rlhf, seed 0) with
--max-length 256 and --freeze-layers 0:
  full          full fine-tuning
  lora          --lora-rank 16 (only the adapters and the head train)
  full+ckpt     full fine-tuning with --gradient-checkpointing
Nothing is held out (--val-fraction 0): the peak is the training's. Prints a table: setting, peak memory (on a GPU the
process's GPU memory from nvidia-smi, polled every 0.2 s; on a CPU its peak resident memory, VmHWM), that peak over
the full fine-tuning's, seconds per optimizer step (train_seconds / steps from train_summary.json: the first step's
warm-up included) and pairs/s, then each run's placement line. A setting whose flag `rewardkit train-rm --help` does
not list fails at once, naming it, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import HH_DIR, exit_on_sigterm, machine_text, measures_gpu, missing_flags, placement_lines, run_cli

SETTINGS = {"full": [], "lora": ["--lora-rank", "16"], "full+ckpt": ["--gradient-checkpointing"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m",
                        help="reward-model backbone: preset, folder or hub id (default: smollm2-135m)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per setting (default: 4)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step (default: 8)")
    parser.add_argument("--max-length", type=int, default=256, help="maximum tokens per text (default: 256)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                        help=f"which settings to run (default: {' '.join(SETTINGS)})")
    parser.add_argument("--device", help="train-rm --device (default: the command's own, auto)")
    parser.add_argument("--precision", help="train-rm --precision (default: the command's own, auto)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds before a setting's run is stopped (default: 900)")
    args = parser.parse_args()
    exit_on_sigterm()
    gpu = measures_gpu(args.device)
    placement = [arg for flag, value in (("--device", args.device), ("--precision", args.precision)) if value
                 for arg in (flag, value)]
    print(f"machine: {machine_text()}")
    print(f"{args.model}: {args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}, "
          f"freeze-layers 0; {' '.join(placement) or 'device and precision: auto'}", flush=True)
    rows, said = [], []
    full_peak = None
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for name in args.settings:
            out = Path(tmp) / name.replace("+", "-")
            argv = ["--model", args.model, "--data", str(HH_DIR), "--output-dir", str(out), "--max-steps",
                    str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                    "--freeze-layers", "0", "--val-fraction", "0", "--save-every", "0", "--no-tensorboard",
                    "--no-progress", *placement, *SETTINGS[name]]
            absent = missing_flags("train-rm", argv)
            if absent:
                rows.append(f"{name:10s} {'FAILED':8s} `rewardkit train-rm --help` lacks {', '.join(absent)}")
                print(rows[-1], flush=True)
                continue
            run = run_cli("train-rm", argv, Path(tmp) / "logs", gpu, name=name.replace("+", "-"),
                          timeout=args.timeout)
            if not run.ok:
                rows.append(f"{name:10s} {'FAILED':8s} {run.failure(4)}")
                print(rows[-1], flush=True)
                continue
            summary = json.loads((out / "train_summary.json").read_text())
            full_peak = run.peak_mib if name == "full" else full_peak
            ratio = f"{run.peak_mib / full_peak:5.2f}x" if full_peak else f"{'':6s}"
            rows.append(f"{name:10s} {'ok':8s} {run.peak_mib:8.0f} MiB {ratio} "
                        f"{summary['train_seconds'] / max(summary['steps'], 1):10.2f} "
                        f"{summary['examples_per_second']:8.2f}   ({run.seconds:.0f} s in all)")
            print(rows[-1], flush=True)
            said += [f"{name:10s} {line}" for line in placement_lines(run.stderr(), "train-rm")] or \
                [f"{name:10s} no placement line printed"]
    print()
    print(f"{'setting':10s} {'status':8s} {'peak GPU' if gpu else 'peak RSS':>12s} {'/full':>6s} {'s/step':>10s} "
          f"{'pairs/s':>8s}")
    for row in rows:
        print(row)
    if said:
        print()
        print("placement lines:")
        for line in said:
            print(f"  {line}")
    return 0 if all(" ok " in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
