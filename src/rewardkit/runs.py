"""Run plumbing shared by the training commands (`train-rm`, `rl`) and the preset cache: atomic folder writes,
checkpoint listing and pruning, the RNG state a checkpoint holds, the progress bar and the offline environment.

A run's checkpoints are `OUTPUT_DIR/checkpoints/step-N/`, each complete once its `trainer_state.json` exists (folders
are written elsewhere and renamed into place, so a listed checkpoint is never half written). No torch here: the
config modules import this to build `--help`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from rewardkit.errors import RewardkitError

STATE_FILE = "trainer_state.json"
_CHECKPOINT_NAME = re.compile(r"step-\d+")
KEEP_CHECKPOINTS_HELP = ("how many of the newest checkpoints to keep; older ones are deleted as newer ones are "
                         "written. 0 keeps none once the run has finished and saved its final model (while it runs, "
                         "the newest is kept so that a crashed run can --resume)")


def cache_dir() -> Path:
    """rewardkit's cache on this machine: `$REWARDKIT_CACHE`, default ~/.cache/rewardkit (converted presets, feature
    caches, the machine's measurements)."""
    return Path(os.environ.get("REWARDKIT_CACHE", Path.home() / ".cache" / "rewardkit"))


def offline_environment() -> None:
    """Defaults for every command (and the presets, which library code may resolve without the CLI): never reach a
    model hub (HF_HUB_OFFLINE=1: models come from local folders and pip packages), and no tokenizers warning after a
    fork (TOKENIZERS_PARALLELISM=false). A value the user set wins. Set before transformers is imported, which reads
    them once."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def progress_bar(enabled: bool, total: int, done: int, desc: str):
    """A bar over a run's steps (--progress; only on the main process), or None. tqdm is imported only when shown."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit="step", dynamic_ncols=True)


def write_atomically(target: Path, *writers: Callable[[Path], object], keep_existing: bool = False) -> None:
    """Call each writer with a temporary sibling folder, then rename that folder to `target`: a crash mid-write leaves
    no half-written `target`, only a hidden `.tmp-*` folder.

    An existing `target` is replaced, unless `keep_existing` (a cache several processes may fill at once): then a
    `target` that another process put in place first is kept, and this copy dropped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # a name of our own (not mkdtemp, whose 0700 mode the renamed folder would keep)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for write in writers:
            write(tmp)
        if target.exists() and not keep_existing:
            shutil.rmtree(target)
        os.replace(tmp, target)  # fails on a non-empty target: a race lost under keep_existing
    except OSError:
        if not (keep_existing and target.exists()):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / "checkpoints" / f"step-{step}"


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (by step number: step-10 comes after step-9). Only folders named
    exactly step-N count: a copy such as step-2.bak or step-3-keep is neither resumed from nor pruned."""
    root = output_dir / "checkpoints"
    found = [p for p in root.glob("step-*") if _CHECKPOINT_NAME.fullmatch(p.name) and (p / STATE_FILE).exists()] \
        if root.exists() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the rows a resumed run logged after the checkpoint it resumes from (it logs them again)."""
    if path.exists():
        rows = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= last_step]
        write_text_atomically(path, "".join(row + "\n" for row in rows))


def json_ready(value: Any) -> Any:
    """Replace NaN/inf floats by None (JSON has no NaN: strict readers such as jq refuse it) and numpy scalars by
    Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a numpy (or torch) scalar, without importing it
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_jsonl_atomically(path: Path, rows: list[dict]) -> None:
    """One JSON object per line (non-ASCII text kept as is), written row by row through `open_atomically`; creates
    the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomically(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Replace the file's text in one step: a crash leaves the old file or the new one, never half of one."""
    with open_atomically(path) as f:
        f.write(text)


@contextlib.contextmanager
def open_atomically(path: Path) -> Iterator[TextIO]:
    """A text file to write (UTF-8) that replaces `path` in one step when the block ends; an error in the block (or a
    crash) leaves `path` as it was, not half written."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_keep_checkpoints(keep: int) -> None:
    if keep < 0:
        raise RewardkitError(f"--keep-checkpoints must be 0 or more, got {keep}")


def prune_checkpoints(output_dir: Path, keep: int, *, run_finished: bool = False) -> None:
    """Delete all but the newest `keep` checkpoints (the meaning of --keep-checkpoints).

    Call it after writing each checkpoint, and once with `run_finished` after the final model is saved. Until then
    the newest checkpoint survives even `keep` 0: it is the only one a crashed run could resume from.
    """
    kept = keep if run_finished else max(keep, 1)
    found = checkpoint_dirs(output_dir)
    for old in found[:max(len(found) - kept, 0)]:
        # the state file first: a crash mid-delete leaves a folder that no --resume picks
        (old / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
    if kept == 0:
        try:
            (output_dir / "checkpoints").rmdir()  # asked for none: no empty folder either
        except OSError:
            pass  # absent, or holding something that is not ours to delete


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of integers, the same in every process and Python version."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def rng_state(device) -> dict:
    """The RNG states a run draws from, for its checkpoints: torch's CPU generator (dropout, sampling), Python's
    (batch order), and the GPU's when the run is on one (dropout and sampling there draw from it). Nothing in a run
    draws from numpy's global RNG."""
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    """Restore what `rng_state` saved; a GPU checkpoint resumes on a CPU too (its GPU state is then not needed)."""
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
