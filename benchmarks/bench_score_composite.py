"""Throughput of `rewardkit score` with a composite reward: reward model + ROUGE-L + target length, on HH responses.

    python benchmarks/bench_score_composite.py [--model minilm-l6|RUN_DIR] [--responses 2000] [--batch-size 256]

Takes HH helpful-base test pairs from ../shared/data/hh-rlhf, scores both responses of each pair (the other response
serves as the ROUGE reference), and prints responses/s for each component alone and for the whole composite, scored
through the same functions as the command (spec factory, batches, JSON output records). Model loading is excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "helpful-base.test.jsonl.gz"


def hh_items(n_responses: int):
    from rewardkit.rewards.command import _Item, read_items

    items = []
    for pair in read_items(str(HH)):
        chosen, rejected = pair.responses
        items.append(_Item(pair.source, pair.prompt, [chosen], reference=rejected))
        items.append(_Item(pair.source, pair.prompt, [rejected], reference=chosen))
        if len(items) >= n_responses:
            break
    return items[:n_responses]


def throughput(reward, items, batch_size: int) -> tuple[float, float]:
    """(seconds, responses/s) for scoring `items` into output records, batch by batch as the command does."""
    from rewardkit.rewards.command import _batches, score_batch

    start = time.perf_counter()
    for batch in _batches(iter(items), batch_size):
        for record in score_batch(reward, batch):
            json.dumps(record)
    seconds = time.perf_counter() - start
    return seconds, len(items) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6", help="reward model preset or trained model folder")
    parser.add_argument("--responses", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    if not HH.exists():
        print(f"HH data not found at {HH}", file=sys.stderr)
        return 1
    import torch

    from rewardkit.rewards.spec import build_reward

    items = hh_items(args.responses)
    components = {
        "reward_model": {"type": "reward_model", "path": args.model, "max_length": args.max_length, "weight": 1.0},
        "rougeL": {"type": "rouge", "variant": "rougeL", "weight": 0.5},
        "length": {"type": "length", "target": 400, "tolerance": 200, "unit": "chars", "weight": 0.2},
    }
    print(f"{len(items)} HH responses (helpful-base test), batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, model {args.model}, max_length {args.max_length}")
    results = {}
    for name, component in components.items():
        reward = build_reward({"components": [component]}, source=name)
        seconds, rate = throughput(reward, items, args.batch_size)
        results[name] = rate
        print(f"  {name:<14} {rate:10.1f} responses/s  ({seconds:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "reward.yaml")
        spec.write_text(json.dumps({"components": list(components.values())}))  # JSON is YAML
        reward = build_reward(spec)
    seconds, rate = throughput(reward, items, args.batch_size)
    results["composite"] = rate
    print(f"  {'composite':<14} {rate:10.1f} responses/s  ({seconds:.1f} s)")
    print(json.dumps({"responses_per_second": {k: round(v, 1) for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
