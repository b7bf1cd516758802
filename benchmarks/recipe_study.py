"""Which train-rm recipe learns what people prefer rather than length? Train variants, evaluate each the same way.

    python benchmarks/recipe_study.py                               # every variant below (hours on a CPU)
    python benchmarks/recipe_study.py --variants default pool-mean ensemble-3
    python benchmarks/recipe_study.py --variants default lr-3e-4 --max-steps 20 --limit 100   # a smoke run

Each variant is train-rm's default (BASELINE: minilm-l6 read at its CLS token) with a few options changed
(VARIANTS below). Each is trained on the shared HH pairs into
OUT/NAME (a finished variant is not trained again, so an interrupted study resumes). Every variant is then scored on
the same held-out data:
- HH validation: the pairs train-rm held out (same seed and fraction);
- LLMBar natural: LLMBar_Natural, Processed_FairEval, Processed_LLMEval_2, Processed_MT-Bench (human judgments);
- LLMBar adversarial: the four LLMBar_Adversarial_* sets (the longer or more fluent answer is the wrong one);
- AlpacaEval held out: 1,000 pairs (seeded) on the AlpacaEval instructions held out by prompt (a tenth of the 419,
  by a hash of the instruction: 35 instructions, 4,163 pairs); variants that train on AlpacaEval train on the other
  instructions only (OUT/data/alpaca_train.jsonl.gz), so no instruction is on both sides.

The table gives, per variant and data: accuracy with its bootstrap 95% interval; the paired difference from the first
variant with its interval (the same pairs, paired bootstrap; "*" when the interval excludes 0); debiased accuracy (on
the pairs where people preferred the shorter answer); and how often the model prefers the longer answer. "Longer
wins" is the accuracy of always picking the longer answer. Figures and per-variant train summaries also go to
OUT/study.json. Training times hold for the CPU or GPU printed on the first line only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from common import DATA, HH, machine_text  # also sets the offline environment

# What the variants change: train-rm's default, minilm-l6 read at the CLS token (written out, so that the study
# keeps its meaning if the default moves; for a while the default was mean pooling, the variant pool-mean).
BASELINE = {"pooling": "cls"}


def hh_and_alpaca(alpaca_pairs: int | None = None) -> dict:
    """train-rm options for HH and the AlpacaEval instructions not held out, as many pairs whose chosen answer is
    shorter as longer ({out}: the study's folder; hh.jsonl.gz is both HH files in one, so HH splits as one source, its
    held-out pairs inside the validation side). With alpaca_pairs, all of HH and that many AlpacaEval pairs."""
    options = {"balance_length": True, "data": ["{out}/data/hh.jsonl.gz", "{out}/data/alpaca_train.jsonl.gz"]}
    return options if alpaca_pairs is None else {**options, "mixture": ["1", f"n={alpaca_pairs}"]}


# name -> train-rm options changed from BASELINE (flag names as in `rewardkit train-rm --help`, with underscores)
VARIANTS: dict[str, dict] = {
    "default": {},
    # the default on HH and 3,000 length-balanced AlpacaEval pairs (1,500 chosen-shorter, 1,500 chosen-longer)
    "alpaca-3k": hh_and_alpaca(3000),
    "lr-3e-5": {"learning_rate": 3e-5},
    "lr-3e-4": {"learning_rate": 3e-4},
    "epochs-2": {"epochs": 2},
    "freeze-0": {"freeze_layers": 0},
    "lora-16": {"lora_rank": 16, "freeze_layers": 0, "learning_rate": 3e-4},
    "center-0.01": {"center_rewards_coefficient": 0.01},
    "ensemble-3": {"ensemble": 3},
    "pool-mean": {"pooling": "mean"},
    "pool-last": {"pooling": "last"},
    "pool-response": {"pooling": "response"},
    "mean-epochs-2": {"pooling": "mean", "epochs": 2},
    "mean+lora-16": {"pooling": "mean", "lora_rank": 16, "freeze_layers": 0, "learning_rate": 3e-4},
    "mean+freeze-0": {"pooling": "mean", "freeze_layers": 0},
    "decorrelate": {"length_decorrelation": 1.0},
    "decorrelate-0.1": {"length_decorrelation": 0.1},
    "odin": {"length_head": True, "length_decorrelation": 1.0},
    "mean+decorrelate": {"pooling": "mean", "length_decorrelation": 1.0},
    "mean+odin": {"pooling": "mean", "length_head": True, "length_decorrelation": 1.0},
    # TRL's RewardTrainer recipe (the model's own CLS pooler, every layer trained, dropout kept, lr 5e-5)
    "trl-recipe": {"pooling": "cls", "freeze_layers": 0, "dropout": True, "learning_rate": 5e-5},
    # HH and every AlpacaEval pair not held out, length-balanced
    "mean+alpaca-balanced": {"pooling": "mean", **hh_and_alpaca()},
    "trl-recipe+alpaca-balanced": {"pooling": "cls", "freeze_layers": 0, "dropout": True, "learning_rate": 5e-5,
                                   **hh_and_alpaca()},
    # the 110M sentence encoder (minilm-l6's bigger sibling), read as it was trained: the mean of its tokens
    "mpnet-mean": {"model": "mpnet-base", "pooling": "mean"},
    # HH and 3,000 length-balanced AlpacaEval pairs (1,500 chosen-shorter, 1,500 chosen-longer). mpnet-base on them
    # ran at 0.8-1.9 pairs/s on the 2-core AMD EPYC (bf16, padded batches: MPNet's relative position bias does not
    # pack), about 1.5-2 hours for its 6,951 pairs: beyond a CPU recipe's hour, so it is left to machines with AMX
    "mean+alpaca-3k": {"pooling": "mean", **hh_and_alpaca(3000)},
    "mpnet-mean+alpaca-3k": {"model": "mpnet-base", "pooling": "mean", **hh_and_alpaca(3000)},
    "smollm2": {"model": "smollm2-135m", "pooling": "last", "max_length": 384, "batch_size": 16},
    # Gemma 3 270M (base), read at its last token, the lower half of its layers frozen (train-rm's own defaults)
    "gemma3": {"model": "gemma3-270m", "pooling": "auto"},
    "gemma3+alpaca-3k": {"model": "gemma3-270m", "pooling": "auto", **hh_and_alpaca(3000)},
    # the same with 2,000 AlpacaEval pairs (1,000 chosen-shorter, 1,000 chosen-longer), to fit a CPU without AMX's hour
    "gemma3+alpaca-2k": {"model": "gemma3-270m", "pooling": "auto", **hh_and_alpaca(2000)},
    # frozen backbones (train-rm --frozen): features once, in inference precision, then only a head trains
    "frozen-mlp": {"frozen": True, "head": "mlp"},
    "smollm2-frozen": {"model": "smollm2-135m", "pooling": "last", "max_length": 384, "frozen": True},
    "smollm2-frozen-mlp": {"model": "smollm2-135m", "pooling": "last", "max_length": 384, "frozen": True,
                           "head": "mlp"},
    # the first half of the same data order (131 of 263 steps, the schedule compressed to them): ~40 min on AVX2
    "smollm2-half": {"model": "smollm2-135m", "pooling": "last", "max_length": 384, "batch_size": 16,
                     "max_steps": 131},
}
NATURAL = ("LLMBar_Natural", "Processed_FairEval", "Processed_LLMEval_2", "Processed_MT-Bench")
ADVERSARIAL = ("LLMBar_Adversarial_Neighbor", "LLMBar_Adversarial_GPTInst", "LLMBar_Adversarial_GPTOut",
               "LLMBar_Adversarial_Manual")


ALPACA = DATA / "alpaca_eval" / "pairs.jsonl.gz"
ALPACA_EVAL_PAIRS = 1000


def alpaca_held_out(prompt: str) -> bool:
    """Whether an AlpacaEval instruction is held out for evaluation (a tenth of them, fixed by a hash)."""
    import hashlib

    return int(hashlib.sha1(prompt.encode()).hexdigest(), 16) % 10 == 0


def split_alpaca(out: Path) -> tuple[Path, Path]:
    """OUT/data/alpaca_train.jsonl.gz (pairs on the instructions not held out, for training variants) and
    OUT/data/alpaca_eval.jsonl.gz (ALPACA_EVAL_PAIRS pairs drawn with seed 0 from the held-out instructions); also
    OUT/data/hh.jsonl.gz, both HH files in one (a variant with several --data sources splits each source alone)."""
    import gzip
    import random

    folder = out / "data"
    train_path, eval_path, hh_path = (folder / name for name in ("alpaca_train.jsonl.gz", "alpaca_eval.jsonl.gz",
                                                                "hh.jsonl.gz"))
    if train_path.exists() and eval_path.exists() and hh_path.exists():
        return train_path, eval_path
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(hh_path, "wt") as f:
        for path in HH:
            with gzip.open(path, "rt") as part:
                f.writelines(part)
    train_lines, eval_lines = [], []
    with gzip.open(ALPACA, "rt") as f:
        for line in f:
            (eval_lines if alpaca_held_out(json.loads(line)["prompt"]) else train_lines).append(line)
    eval_lines = random.Random(0).sample(eval_lines, min(ALPACA_EVAL_PAIRS, len(eval_lines)))
    for path, lines in ((train_path, train_lines), (eval_path, eval_lines)):
        with gzip.open(path, "wt") as f:
            f.writelines(lines)
    return train_path, eval_path


def evaluation_sets(cfg, limit: int | None, out: Path) -> dict[str, list]:
    """The held-out pairs every variant is scored on, by name (the first `limit` of each, when given)."""
    from rewardkit.data import load_pairs, train_val_split

    hh = train_val_split(load_pairs([str(p) for p in HH], on_identical=cfg.on_identical), cfg.val_fraction,
                         seed=cfg.seed)[1]
    sets = {"HH validation": hh,
            "LLMBar natural": load_pairs([str(DATA / "llmbar" / name) for name in NATURAL]),
            "LLMBar adversarial": load_pairs([str(DATA / "llmbar" / name) for name in ADVERSARIAL]),
            "AlpacaEval held out": load_pairs([str(split_alpaca(out)[1])])}
    return {name: list(pairs)[:limit] if limit else list(pairs) for name, pairs in sets.items()}


def train(name: str, overrides: dict, out: Path, common: dict) -> dict:
    from rewardkit.models.config import TrainRMConfig
    from rewardkit.models.command import train_reward_model

    folder = out / name
    summary_path = folder / "train_summary.json"
    if not summary_path.exists():
        if "data" in overrides:
            overrides = {**overrides, "data": [path.format(out=out) for path in overrides["data"]]}
        frozen = overrides.get("frozen", False)
        if frozen and folder.exists():  # an unfinished frozen run: its features are in the cache, its head retrains
            shutil.rmtree(folder)
        settings = {**common, **BASELINE, **overrides, "output_dir": str(folder)}
        if frozen:  # no fine-tuning schedule and no checkpoint to resume: train-rm refuses both with --frozen
            settings.pop("max_steps")
        else:
            settings["resume"] = True
        cfg = TrainRMConfig(**settings)
        print(f"\n== training {name}: {overrides or 'the baseline'}", file=sys.stderr, flush=True)
        train_reward_model(cfg)
    return json.loads(summary_path.read_text())


def score_pairs(model_dir: Path, set_name: str, pairs: list, batch_size: int):
    """(chosen, rejected, chosen lengths, rejected lengths) arrays of one model on the pairs. The rewards are kept in
    MODEL/study_scores.npz, so a rerun that only prints the table scores nothing again (a model trained anew has a
    newer train_summary.json than its scores, and is scored again)."""
    import numpy as np

    from rewardkit.eval.metrics import response_lengths
    from rewardkit.eval.scoring import score_texts
    from rewardkit.models.ensemble import load_reward_model

    lengths = (response_lengths([p.chosen for p in pairs]), response_lengths([p.rejected for p in pairs]))
    cache = model_dir / "study_scores.npz"
    key = f"{set_name}/{len(pairs)}"
    kept = dict(np.load(cache)) if cache.exists() and \
        cache.stat().st_mtime > (model_dir / "train_summary.json").stat().st_mtime else {}
    if f"{key}/chosen" not in kept:
        model = load_reward_model(str(model_dir))
        prompts = [p.prompt for p in pairs]
        kept[f"{key}/chosen"] = score_texts(model, prompts, [p.chosen for p in pairs], batch_size=batch_size,
                                            progress=False)
        kept[f"{key}/rejected"] = score_texts(model, prompts, [p.rejected for p in pairs], batch_size=batch_size,
                                              progress=False)
        np.savez(cache, **kept)
    return kept[f"{key}/chosen"], kept[f"{key}/rejected"], *lengths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="variants to run; the first is the one the others are compared with")
    parser.add_argument("--out", default="runs/study", help="where the variants' models and study.json go")
    parser.add_argument("--max-steps", type=int, default=-1, help="train every fine-tuned variant for this many "
                        "steps only (quick looks; -1: train-rm's epochs; a frozen variant's head trains its epochs)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each set")
    parser.add_argument("--bootstrap-resamples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass when scoring")
    args = parser.parse_args()

    from rewardkit.eval import metrics
    from rewardkit.models.config import TrainRMConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(machine_text(), flush=True)
    common = {"progress": False, "tensorboard": False, "max_steps": args.max_steps}
    sets = evaluation_sets(TrainRMConfig(), args.limit, out)
    results: dict = {"machine": machine_text(), "variants": {}, "sets": {n: len(p) for n, p in sets.items()}}
    outcomes: dict[str, dict] = {}
    for name in args.variants:
        started = time.perf_counter()
        summary = train(name, VARIANTS[name], out, common)
        entry = {"options": VARIANTS[name], "train_seconds": summary.get("train_seconds"),
                 "val_accuracy_in_training": summary.get("val_accuracy"), "sets": {}}
        outcomes[name] = {}
        for set_name, pairs in sets.items():
            chosen, rejected, chosen_len, rejected_len = score_pairs(out / name, set_name, pairs, args.batch_size)
            figures = metrics.summarize_pairs(chosen, rejected, chosen_len, rejected_len,
                                              n_resamples=args.bootstrap_resamples)
            outcomes[name][set_name] = (chosen, rejected)
            if name != args.variants[0]:
                base = outcomes[args.variants[0]][set_name]
                figures["versus_first"] = metrics.compare_pairs(chosen, rejected, *base,
                                                                n_resamples=args.bootstrap_resamples)["accuracy"]
            entry["sets"][set_name] = figures
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results["variants"][name] = entry
        (out / "study.json").write_text(json.dumps(results, indent=2) + "\n")

    first = args.variants[0]
    print(f"\nRecipe study: {', '.join(f'{n} ({c} pairs)' for n, c in results['sets'].items())}; differences are "
          f"paired against '{first}' (* = the 95% interval excludes 0).\n")
    print("| variant | data | accuracy [95% CI] | vs " + first + " | debiased acc. | prefers longer | longer wins |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, entry in results["variants"].items():
        for set_name, f in entry["sets"].items():
            versus = f.get("versus_first")
            diff = "—" if versus is None else (f"{versus['difference']:+.3f} [{versus['ci95'][0]:+.3f}, "
                                               f"{versus['ci95'][1]:+.3f}]{' *' if versus['excludes_zero'] else ''}")
            print(f"| {name} | {set_name} | {f['accuracy']:.3f} [{f['ci95'][0]:.3f}, {f['ci95'][1]:.3f}] | {diff} | "
                  f"{f['debiased_accuracy']:.3f} | {100 * f['prefers_longer']:.0f}% | {f['length_baseline']:.3f} |")
    print("\ntraining time: " + "; ".join(f"{n} {e['train_seconds']:.0f} s" for n, e in results["variants"].items()
                                          if e["train_seconds"] is not None))
    print(f"figures: {out / 'study.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
