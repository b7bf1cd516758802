"""Memory and speed of eval-rm's scorer on 10,000 HH pairs: peak RSS must not grow with the number of pairs.

    python benchmarks/eval_scoring_memory.py [--pairs 1000 5000 10000] [--model PATH] [--max-length 256]
                                             [--also-unchunked]

Each measurement runs in a fresh process: load the model and the pairs (HH helpful+harmless test, repeated to reach
the count), note the RSS, score chosen and rejected with `rewardkit.eval.scoring.score_texts` (what `eval-rm` uses)
while a thread samples RSS every 50 ms, and print the peak growth over the pre-scoring RSS and pairs/s. With
--also-unchunked the same is done with `RewardModel.score` on all texts at once (tokenizes everything up front), for
contrast. Without --model a random 2-layer BERT (hidden 32, minilm-l6 tokenizer) is used: the scorer's bookkeeping,
not the network's activations, is what this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def tiny_model(max_length: int):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rewardkit.models import RewardModel
    from rewardkit.models.presets import resolve_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6"))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    return RewardModel(BertForSequenceClassification(config), tokenizer, max_length=max_length)


def worker(n_pairs: int, mode: str, model: str | None, max_length: int, batch_size: int) -> dict:
    from rewardkit.data import load_pairs
    from rewardkit.eval.scoring import score_texts
    from rewardkit.models import RewardModel

    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # the loader's notes about skipped pairs
        pool = load_pairs(HH)
    pairs = [pool[i % len(pool)] for i in range(n_pairs)]
    rm = RewardModel.from_pretrained(model, max_length=max_length) if model else tiny_model(max_length)
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]

    before = rss_mb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    if mode == "chunked":
        scores = score_texts(rm, prompts, responses, batch_size=batch_size, progress=False)
    else:
        scores = rm.score(prompts, responses, batch_size=batch_size).numpy()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return {"pairs": n_pairs, "mode": mode, "rss_before_mb": before, "peak_growth_mb": peak[0] - before,
            "pairs_per_second": n_pairs / seconds, "seconds": seconds, "scores": int(len(scores))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--model", default=None, help="model folder or preset (default: a tiny random BERT)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--also-unchunked", action="store_true", help="also measure RewardModel.score on everything")
    parser.add_argument("--worker", nargs=2, metavar=("PAIRS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1], args.model, args.max_length, args.batch_size)))
        return
    modes = ["chunked"] + (["unchunked"] if args.also_unchunked else [])
    print(f"{'scorer':<10} {'pairs':>7} {'RSS before':>11} {'peak growth':>12} {'pairs/s':>8}")
    for mode in modes:
        for n in args.pairs:
            command = [sys.executable, __file__, "--worker", str(n), mode, "--max-length", str(args.max_length),
                       "--batch-size", str(args.batch_size)] + (["--model", args.model] if args.model else [])
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{mode:<10} {r['pairs']:>7,} {r['rss_before_mb']:>9.0f}MB {r['peak_growth_mb']:>10.0f}MB "
                  f"{r['pairs_per_second']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
