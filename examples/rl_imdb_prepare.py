"""Prepare the default RL example (examples/rl_imdb.yaml): IMDb prompts and two sentiment reward models.

    python examples/rl_imdb_prepare.py            # data -> runs/rl-imdb-data, reward models -> runs/imdb-rm-{proxy,gold}
    rewardkit rl --config examples/rl_imdb.yaml

From ../shared/data/imdb_sample/texts.csv (800 train / 200 valid reviews, read in place):
- prompts: the first --prompt-words words of each review (train reviews for training, valid ones held out);
- reward-model data, binary feedback {prompt, response, label}: the prompt is the review's opening, the response a
  continuation of 8 to 64 words and again of up to 160 words, so the model learns to judge the short continuations the
  policy will write; the train reviews are split into two disjoint halves: the proxy reward model (optimized) trains
  on one, the gold reward model (only watched) on the other, both with `rewardkit train-rm --feedback binary`.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXTS = REPO.parent / "shared" / "data" / "imdb_sample" / "texts.csv"


def clean(text: str) -> list[str]:
    return text.replace("<br />", " ").replace("<br/>", " ").split()


def feedback_rows(reviews: list[dict], prompt_words: int, rng: random.Random) -> list[dict]:
    rows = []
    for review in reviews:
        words = clean(review["text"])
        prompt, rest = " ".join(words[:prompt_words]), words[prompt_words:]
        for length in (rng.randint(8, 64), 160):
            if rest[:length]:
                rows.append({"prompt": prompt, "response": " " + " ".join(rest[:length]), "label": review["label"]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(TEXTS), help="IMDb sample CSV (label,text,is_valid)")
    parser.add_argument("--out", default="runs/rl-imdb-data", help="folder for prompts and feedback files")
    parser.add_argument("--rm-dir", default="runs", help="folder for the two reward models")
    parser.add_argument("--prompt-words", type=int, default=6, help="words of each review kept as its prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-training", action="store_true", help="only write the data files")
    args = parser.parse_args()

    with open(args.data, encoding="utf-8", newline="") as f:
        reviews = list(csv.DictReader(f))
    train = [r for r in reviews if r["is_valid"] != "True"]
    valid = [r for r in reviews if r["is_valid"] == "True"]
    rng = random.Random(args.seed)
    rng.shuffle(train)
    proxy_half, gold_half = train[:len(train) // 2], train[len(train) // 2:]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "rm_proxy.jsonl", feedback_rows(proxy_half, args.prompt_words, rng))
    write_jsonl(out / "rm_gold.jsonl", feedback_rows(gold_half, args.prompt_words, rng))
    write_jsonl(out / "rm_valid.jsonl", feedback_rows(valid, args.prompt_words, rng))
    opening = lambda r: {"prompt": " ".join(clean(r["text"])[:args.prompt_words])}  # noqa: E731
    write_jsonl(out / "prompts.jsonl", [opening(r) for r in train])
    write_jsonl(out / "eval_prompts.jsonl", [opening(r) for r in valid])
    print(f"wrote {out}: {len(proxy_half)} + {len(gold_half)} reviews for the proxy and gold reward models, "
          f"{len(train)} training prompts, {len(valid)} held-out prompts", file=sys.stderr)
    if args.skip_training:
        return 0
    for name in ("proxy", "gold"):
        target = Path(args.rm_dir) / f"imdb-rm-{name}"
        if (target / "config.json").exists():
            print(f"{target} exists; not retrained", file=sys.stderr)
            continue
        command = [sys.executable, "-m", "rewardkit.cli", "train-rm", "--model", "minilm-l6",
                   "--data", str(out / f"rm_{name}.jsonl"), "--feedback", "binary",
                   "--val-data", str(out / "rm_valid.jsonl"), "--max-length", "256", "--batch-size", "16",
                   "--learning-rate", "5e-5", "--epochs", "3", "--seed", str(args.seed), "--output-dir", str(target),
                   "--no-progress"]
        print("+ " + " ".join(command[2:]), file=sys.stderr)
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
