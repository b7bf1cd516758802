"""RLVR on arithmetic: GRPO on SmolLM2-135M-Instruct with the verifiable `math` reward, a few steps on a CPU.

    python examples/rlvr_arithmetic.py                 # writes runs/rlvr-arithmetic-data/, trains into runs/rlvr-arithmetic
    python examples/rlvr_arithmetic.py --steps 20 --output-dir runs/rlvr-longer

The problems are generated here (seeded): "What is 17 + 5? Answer with the number only." with the right answer as
each record's `reference`, which `rewardkit rl` passes to the `math` component (1 when the response's final answer
equals it by math-verify, else 0). 256 training problems and 32 held-out ones; the held-out reward is measured
before training and after it, on the same sampled seeds, and printed with the time taken. The reward spec and the
prompts stay in the data folder, so the same run is also

    rewardkit rl --policy smollm2-135m --reward runs/rlvr-arithmetic-data/reward.yaml \\
        --prompts runs/rlvr-arithmetic-data/prompts.jsonl --eval-prompts runs/rlvr-arithmetic-data/eval_prompts.jsonl \\
        --chat-template --algorithm grpo --samples-per-prompt 4 ...
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import time
from pathlib import Path

OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def problems(count: int, seed: int) -> list[dict]:
    """`count` problems a 135M model sometimes gets right: sums and differences of numbers to 20 (never negative),
    products of one-digit numbers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        op = rng.choice(list(OPERATIONS))
        a, b = (rng.randint(2, 9), rng.randint(2, 9)) if op == "*" else (rng.randint(1, 20), rng.randint(1, 20))
        if op == "-" and b > a:
            a, b = b, a
        rows.append({"prompt": f"What is {a} {op} {b}? Answer with the number only.",
                     "reference": str(OPERATIONS[op](a, b))})
    return rows


def write_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("prompts.jsonl", problems(256, seed=1)), ("eval_prompts.jsonl", problems(32, seed=2))):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "reward.yaml").write_text(
        "# the verifiable reward: 1 when the final answer equals the record's reference (math-verify), else 0\n"
        "components:\n"
        "  - {type: math, extract: [boxed, answer_is, last_number]}\n")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="runs/rlvr-arithmetic-data")
    parser.add_argument("--output-dir", default="runs/rlvr-arithmetic")
    parser.add_argument("--policy", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    from rewardkit.rl.command import run_rl
    from rewardkit.rl.config import RLConfig

    data = Path(args.data_dir)
    write_data(data)
    cfg = RLConfig(policy=args.policy, reward=str(data / "reward.yaml"), prompts=str(data / "prompts.jsonl"),
                   eval_prompts=str(data / "eval_prompts.jsonl"), eval_size=32, eval_samples_per_prompt=2,
                   output_dir=args.output_dir, algorithm="grpo", steps=args.steps, prompts_per_step=8,
                   samples_per_prompt=4, learning_rate=args.learning_rate, kl_coef=0.01, max_new_tokens=16,
                   chat_template=True,
                   temperature=1.0, eval_every=args.steps, sample_every=0, save_every=0, log_every=1, num_threads=1,
                   tensorboard=False, report=True, seed=0, precision=args.precision)
    start = time.perf_counter()
    run_rl(cfg)
    seconds = time.perf_counter() - start
    evals = json.loads((Path(args.output_dir) / "summary.json").read_text())["evals"]
    before, after = evals[0]["eval/proxy"], evals[-1]["eval/proxy"]
    history = [json.loads(line) for line in (Path(args.output_dir) / "metrics.jsonl").read_text().splitlines()]
    train = [round(row["reward/proxy"], 3) for row in history if "reward/proxy" in row]
    print(f"held-out math reward (32 problems x 2 samples): {before:.3f} before, {after:.3f} after {args.steps} GRPO "
          f"steps; training batches' reward by step: {train}; {seconds:.0f} s in all on {cpu_name()}")


if __name__ == "__main__":
    main()
