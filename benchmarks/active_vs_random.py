"""One unattended round of the feedback loop, once per queue order: the same labelling budget spent on actively
chosen items (by default the seed reward model's smallest |margin| first) or on random items; which retrained model is
more accurate on held-out pairs?

    python benchmarks/active_vs_random.py                 # 3 repeats, ~25 min on a 2-core CPU
    python benchmarks/active_vs_random.py --repeats 1 --orders margin bald --seed-ensemble 3 --words 130
    python benchmarks/active_vs_random.py --repeats 1 --orders margin bald --seed-ensemble 3 --words 130 \
        --annotator gold --output gold-2.json
    python benchmarks/active_vs_random.py --combine gold-*.json   # the repeats of several runs, summarized together
    python benchmarks/active_vs_random.py --seed-base 40 --repeats 8 --orders margin --seed-ensemble 3 --words 130 \
        --annotator gold --gold-model gold-f5 --pool-pairs 900 --freeze-layers 5   # the README's confirmatory run

Data: IMDb reviews (../shared/data/imdb_sample/texts.csv, read in place) as responses to "Write a short movie
review.", optionally cut to their first --words words. Each repeat (its own seed) splits them into held-out reviews
and pool reviews. The held-out reviews are paired at random, each once; the pool's pairs are drawn at random among all
pairs of pool reviews (a review can sit in several, as a policy's samples do when several of its answers to one
prompt are compared). Then it:
1. trains a seed reward model (`rewardkit train-rm`, minilm-l6; an ensemble with --seed-ensemble) on --seed-pairs
   pool pairs labelled by the hidden rule (examples/scripted_annotator.py: a sentiment lexicon the model never sees;
   with --annotator gold, a "gold" minilm-l6 reward model trained on GOLD_PAIRS lexicon-labelled pairs of all the
   reviews, whose preferences, unlike the lexicon's word counts, a model of the learner's family can represent);
2. imports the rest of the pool into one database per order (`rewardkit label import`): each of --orders by the seed
   model (`--order margin --reward-model seed-rm`, ...), and one in random order (`--order random`);
3. runs `rewardkit label` on each and lets the scripted annotator judge the first --budget items over HTTP;
4. retrains from the same backbone on the seed pairs plus the database (`train-rm --data seed.jsonl labels.sqlite`);
5. scores every model on the held-out reviews: accuracy on the held-out pairs (those the rule does not call a tie),
   and on all pairs of held-out reviews the rule decides ("all pairs": 400 reviews make ~80,000 pairs instead of
   200, so it measures the same thing with less noise).
It prints each model's held-out accuracies with 95% bootstrap intervals (all pairs: resampling reviews), the paired
difference of each active order from random with its interval, and over the repeats the mean differences.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
from scripted_annotator import annotate, sentiment  # noqa: E402

from rewardkit.cli import main as rewardkit  # noqa: E402
from rewardkit.eval.metrics import (  # noqa: E402
    PairedDifference,
    bootstrap_ci,
    bootstrap_statistic_ci,
    pair_outcomes,
    paired_mean_difference,
    paired_statistic_difference,
    pairwise_concordance,
)
from rewardkit.label.export import export_rows  # noqa: E402
from rewardkit.label.store import Store  # noqa: E402

TEXTS = REPO.parent / "shared" / "data" / "imdb_sample" / "texts.csv"
PROMPT = "Write a short movie review."


def reviews(words: int = 0) -> list[str]:
    """The reviews, each cut to its first `words` words when given (so the rule reads no more than the model)."""
    with TEXTS.open(encoding="utf-8") as f:
        texts = [row["text"].replace("<br />", " ") for row in csv.DictReader(f)]
    return [" ".join(t.split()[:words]) for t in texts] if words else texts


def random_pairs(texts: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """The texts paired at random, each in one pair."""
    shuffled = rng.sample(texts, len(texts))
    return list(zip(shuffled[0::2], shuffled[1::2]))


def distinct_pairs(texts: list[str], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """n different pairs of two different texts, drawn uniformly among all such pairs."""
    if n > len(texts) * (len(texts) - 1) // 2:
        raise SystemExit(f"{len(texts)} texts make fewer than {n} pairs")
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < n:
        i, j = rng.sample(range(len(texts)), 2)
        chosen.setdefault((min(i, j), max(i, j)))
    return [(texts[i], texts[j]) for i, j in chosen]


def labelled(pairs: list[tuple[str, str]], rule: Callable[[str], float] = sentiment) -> list[dict]:
    """The pairs the hidden rule decides, as train-rm rows (ties dropped, as the rule has no preference there)."""
    rows = []
    for a, b in pairs:
        score_a, score_b = rule(a), rule(b)
        if score_a != score_b:
            chosen, rejected = (a, b) if score_a > score_b else (b, a)
            rows.append({"prompt": PROMPT, "chosen": chosen, "rejected": rejected})
    return rows


GOLD_PAIRS = 1000


def gold_rule(texts: list[str], folder: Path, args) -> Callable[[str], float]:
    """The gold annotator's scores of `texts`: a minilm-l6 reward model trained (into `folder`, unless one is there)
    on GOLD_PAIRS lexicon-labelled pairs drawn among all the texts with a seed of its own, then read once per text."""
    from rewardkit.models.ensemble import load_reward_model

    if not (folder / "rewardkit.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        rows = labelled(distinct_pairs(texts, GOLD_PAIRS, random.Random(12345)))
        train(folder, [write_jsonl(folder.parent / f"{folder.name}-pairs.jsonl", rows)], 12345, args, epochs=2)
    scores = load_reward_model(str(folder)).score([PROMPT] * len(texts), texts)
    table = {text: float(score) for text, score in zip(texts, scores)}
    return table.__getitem__


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(*argv: str) -> None:
    code = rewardkit([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"rewardkit {' '.join(map(str, argv[:2]))} failed with {code}")


def train(output: Path, data: list[Path], seed: int, args, ensemble: int = 1, epochs: int | None = None) -> Path:
    run("train-rm", "--model", "minilm-l6", "--data", *data, "--val-fraction", "0", "--output-dir", output,
        "--max-length", args.max_length, "--epochs", epochs or args.epochs, "--batch-size", 8, "--seed", seed,
        "--freeze-layers", args.freeze_layers, "--ensemble", ensemble, "--save-every", 0, "--keep-checkpoints", 0,
        "--no-progress", "--no-tensorboard")
    return output


def label_round(db: Path, budget: int, workdir: Path, rule: Callable[[str], float]) -> int:
    """Serve `db`, let the scripted annotator judge `budget` items, stop the server; returns items judged."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tokens_file = workdir / f"{db.stem}-tokens.json"
    server = subprocess.Popen([sys.executable, "-m", "rewardkit.cli", "label", str(db), "--port", str(port),
                               "--annotators", "scripted", "--tokens-file", str(tokens_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            if tokens_file.exists():
                try:
                    httpx.get(url, timeout=1.0)
                    break
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        token = json.loads(tokens_file.read_text())["tokens"]["scripted"]
        return annotate(url, token, budget, score=lambda prompt, responses: [rule(r) for r in responses])
    finally:
        server.terminate()
        server.wait()


class HeldOut:
    """The held-out reviews with the rule's scores, and their pairs (each review in one) that the rule decides."""

    def __init__(self, texts: list[str], rng: random.Random, rule: Callable[[str], float]):
        self.texts = texts
        self.gold = np.array([rule(t) for t in texts])
        self.pairs = labelled(random_pairs(texts, rng), rule)

    def scores(self, model_dir: Path) -> np.ndarray:
        from rewardkit.models.ensemble import load_reward_model

        model = load_reward_model(str(model_dir))  # a seed ensemble scores as its members' mean
        return np.asarray(model.score([PROMPT] * len(self.texts), self.texts), dtype=np.float64)

    def pair_outcomes(self, scores: np.ndarray) -> np.ndarray:
        by_text = dict(zip(self.texts, scores))
        return pair_outcomes([by_text[p["chosen"]] for p in self.pairs], [by_text[p["rejected"]] for p in self.pairs])

    def all_pairs(self, scores: np.ndarray) -> Callable[[np.ndarray], float]:
        """All-pairs accuracy of the reviews at the given indices (a bootstrap resample of the reviews)."""
        return lambda indices: pairwise_concordance(scores[indices], self.gold[indices])


def describe(name: str, figures: dict) -> str:
    (low, high), (all_low, all_high) = figures["ci95"], figures["all_pairs_ci95"]
    return (f"{name:<8} held-out accuracy {figures['accuracy']:.3f}  95% CI [{low:.3f}, {high:.3f}];  all pairs "
            f"{figures['all_pairs_accuracy']:.3f}  [{all_low:.3f}, {all_high:.3f}]")


def signed(difference: PairedDifference) -> str:
    return f"{difference.difference:+.3f}  95% CI [{difference.ci95[0]:+.3f}, {difference.ci95[1]:+.3f}]"


def one_repeat(seed: int, args, workdir: Path, rule: Callable[[str], float]) -> dict:
    rng = random.Random(seed)
    texts = reviews(args.words)
    texts = rng.sample(texts, len(texts))
    held_out = HeldOut(texts[:args.held_out_reviews], rng, rule)
    pool = distinct_pairs(texts[args.held_out_reviews:], args.seed_pairs + args.pool_pairs, rng)
    seed_rows = labelled(pool[:args.seed_pairs], rule)
    seed_file = write_jsonl(workdir / "seed.jsonl", seed_rows)
    # unlabelled candidates: import keeps the texts and drops the order, so "chosen" here means nothing
    candidates = write_jsonl(workdir / "candidates.jsonl", [{"prompt": PROMPT, "chosen": a, "rejected": b}
                                                            for a, b in pool[args.seed_pairs:]])
    seed_model = train(workdir / "seed-rm", [seed_file], seed, args, ensemble=args.seed_ensemble)
    result = {"repeat_seed": seed, "seed_pairs": len(seed_rows), "held_out_pairs": len(held_out.pairs),
              "candidates": len(pool) - args.seed_pairs}
    scores = {"seed": held_out.scores(seed_model)}
    arms = [(order, ["--order", order, "--reward-model", seed_model]) for order in args.orders]
    for arm, order in [*arms, ("random", ["--order", "random"])]:
        db = workdir / f"{arm}.sqlite"
        run("label", "import", db, candidates, *order, "--seed", seed)
        result[f"{arm}_judged"] = label_round(db, args.budget, workdir, rule)
        result[f"{arm}_ties"] = len(export_rows(Store(db))[1])  # judged but stating no preference: not trained on
        scores[arm] = held_out.scores(train(workdir / f"{arm}-rm", [seed_file, db], seed, args))
    reviews_held_out = len(held_out.texts)
    outcomes = {name: held_out.pair_outcomes(values) for name, values in scores.items()}
    all_pairs = {name: held_out.all_pairs(values) for name, values in scores.items()}
    for name in scores:
        result[name] = {"accuracy": float(outcomes[name].mean()), "ci95": bootstrap_ci(outcomes[name]),
                        "all_pairs_accuracy": all_pairs[name](np.arange(reviews_held_out)),
                        "all_pairs_ci95": bootstrap_statistic_ci(all_pairs[name], reviews_held_out)}
        ties = f"  ({result[f'{name}_judged']} judged, {result[f'{name}_ties']} ties)" if name != "seed" else \
            f"  ({len(seed_rows)} seed pairs)"
        print(describe(name, result[name]) + ties, flush=True)
    for order in args.orders:
        difference = paired_mean_difference(outcomes[order], outcomes["random"])
        all_pairs_difference = paired_statistic_difference(all_pairs[order], all_pairs["random"], reviews_held_out)
        result[f"{order}_minus_random"] = difference.as_dict()
        result[f"{order}_minus_random_all_pairs"] = all_pairs_difference.as_dict()
        print(f"{order} - random: {signed(difference)};  all pairs {signed(all_pairs_difference)}", flush=True)
    return result


def repeats_interval(differences: list[float]) -> str:
    """The t 95% interval of the mean difference over repeats: unlike each repeat's paired bootstrap (which resamples
    held-out pairs only), it includes the training randomness and the draw of pool and seed pairs."""
    if len(differences) < 2:
        return ""
    from scipy.stats import t

    n = len(differences)
    centre = statistics.fmean(differences)
    half = t.ppf(0.975, n - 1) * statistics.stdev(differences) / n ** 0.5
    return f" 95% CI over repeats [{centre - half:+.3f}, {centre + half:+.3f}]"


def combined(files: list[Path]) -> list[dict]:
    """The repeats of several --output files, refused when two record different settings (or one records none) or
    share a repeat seed."""
    results = [r for f in files for r in json.loads(f.read_text())]
    settings = {json.dumps(r.get("settings"), sort_keys=True) for r in results}  # null: an older file records none
    if len(settings) > 1:
        raise SystemExit(f"--combine: the files were run with different settings: {' | '.join(sorted(settings))}")
    seeds = [r["repeat_seed"] for r in results]
    if len(set(seeds)) < len(seeds):
        raise SystemExit(f"--combine: a repeat seed appears twice among {sorted(seeds)}")
    return results


def summarize(results: list[dict]) -> None:
    mean = statistics.fmean
    orders = [key.removesuffix("_minus_random") for key in results[0]
              if key.endswith("_minus_random") and all(key in r for r in results)]  # the arms every repeat ran
    print(f"=== over {len(results)} repeat(s): seed {mean(r['seed']['accuracy'] for r in results):.3f}, random "
          f"{mean(r['random']['accuracy'] for r in results):.3f}")
    for order in orders:
        for label, suffix in (("held-out pairs", ""), ("all pairs", "_all_pairs")):
            scored = [r for r in results if f"{order}_minus_random{suffix}" in r]  # older files: no all-pairs figure
            if not scored:
                continue
            differences = [r[f"{order}_minus_random{suffix}"]["difference"] for r in scored]
            accuracy = "all_pairs_accuracy" if suffix else "accuracy"
            print(f"    {label}, {len(scored)} repeat(s): random {mean(r['random'][accuracy] for r in scored):.3f}, "
                  f"{order} {mean(r[order][accuracy] for r in scored):.3f}; {order} - random "
                  f"{mean(differences):+.3f}{repeats_interval(differences)} (per repeat: "
                  f"{', '.join(f'{d:+.3f}' for d in differences)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-base", type=int, default=0)
    parser.add_argument("--seed-pairs", type=int, default=100, help="pool pairs the seed model trains on")
    parser.add_argument("--pool-pairs", type=int, default=300, help="candidate pairs offered for labelling")
    parser.add_argument("--budget", type=int, default=80, help="judgments bought in the round, per arm")
    parser.add_argument("--held-out-reviews", type=int, default=400,
                        help="reviews kept out of the pool, paired once each into the held-out pairs")
    parser.add_argument("--orders", nargs="+", default=["margin"], choices=["margin", "disagreement", "bald"],
                        help="the active orders, each an arm of its own beside random (disagreement and bald need "
                             "--seed-ensemble 2 or more)")
    parser.add_argument("--seed-ensemble", type=int, default=1,
                        help="the seed reward model is a train-rm --ensemble of this many members")
    parser.add_argument("--words", type=int, default=0,
                        help="cut every review to its first N words (0: whole reviews, which --max-length cuts, so "
                             "the model misses words the rule counts)")
    parser.add_argument("--annotator", choices=["lexicon", "gold"], default="lexicon",
                        help="the scripted annotator's hidden rule: the sentiment lexicon, or a gold reward model "
                             "trained on the lexicon's labels (see step 1)")
    parser.add_argument("--gold-model", type=Path, default=None,
                        help="with --annotator gold: keep the gold model in this folder (trained there when absent, "
                             "reused when present); default: a temporary folder")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--freeze-layers", type=int, default=-1,
                        help="train-rm's --freeze-layers for every model trained here (gold, seed and retrained "
                             "alike, so that the learner can represent the gold rule): -1 trains minilm-l6's upper "
                             "half, 5 its top layer only (less training noise per repeat)")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the figures as JSON here, after every repeat")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="run nothing: summarize over the repeats of these --output files together")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.combine:
        summarize(combined(args.combine))
        return 0
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("repeats", "seed_base", "output", "combine")}
    results = []
    with contextlib.ExitStack() as stack:
        rule = sentiment
        if args.annotator == "gold":
            folder = args.gold_model or Path(stack.enter_context(tempfile.TemporaryDirectory())) / "gold-rm"
            rule = gold_rule(reviews(args.words), folder, args)
        for repeat in range(args.repeats):
            print(f"--- repeat {repeat + 1}/{args.repeats} (seed {args.seed_base + repeat})", flush=True)
            with tempfile.TemporaryDirectory(prefix="active-vs-random-") as tmp:
                results.append({"settings": settings, **one_repeat(args.seed_base + repeat, args, Path(tmp), rule)})
            if args.output:  # after every repeat, so that an interrupted run keeps the repeats it finished
                args.output.write_text(json.dumps(results, indent=1))
    summarize(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
