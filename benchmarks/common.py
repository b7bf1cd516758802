"""What the benchmark scripts share: offline settings and the HH pairs in ../shared/data (read in place)."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
HH = [REPO.parent / "shared" / "data" / "hh-rlhf" / name
      for name in ("helpful-base.test.jsonl.gz", "harmless-base.test.jsonl.gz")]


def fill_defaults(args, defaults: dict) -> None:
    """Set every option the command line left at None to its per-backbone default."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
