"""How long rewardkit.data takes to load the real feedback in ../shared/data, and what it loads.

    python benchmarks/data_loading.py [--repeats 5]

Prints, per dataset, the records loaded, the best and median wall time over the repeats, and records per second.
The loaders' own stderr notes (identical pairs skipped, empty responses kept, OASST messages dropped) are silenced
after the first repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

from rewardkit.data import load_binary, load_pairs, load_rankings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CASES = {
    "hh-rlhf (both files, pairs)": lambda: load_pairs(DATA / "hh-rlhf"),
    "llmbar (13 subsets, pairs)": lambda: load_pairs(DATA / "llmbar"),
    "oasst en_100_tree (ranked groups)": lambda: load_rankings(DATA / "oasst_sample" / "en_100_tree.jsonl"),
    "imdb texts.csv (binary)": lambda: load_binary(DATA / "imdb_sample" / "texts.csv",
                                                   columns={"prompt": None, "response": "text"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"shared data not found at {DATA}")
    print(f"{'dataset':36} {'records':>8} {'best s':>8} {'median s':>9} {'records/s':>10}")
    for name, load in CASES.items():
        times = []
        for repeat in range(args.repeats):
            quiet = contextlib.redirect_stderr(io.StringIO()) if repeat else contextlib.nullcontext()
            with quiet:
                start = time.perf_counter()
                records = load()
                times.append(time.perf_counter() - start)
        best = min(times)
        print(f"{name:36} {len(records):>8} {best:>8.3f} {statistics.median(times):>9.3f} {len(records) / best:>10.0f}")


if __name__ == "__main__":
    main()
