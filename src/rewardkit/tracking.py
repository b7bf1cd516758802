"""A training run's record: metrics to a JSONL file (one object per write) and, optionally, TensorBoard, and `Run`,
the part of the run loop that train-rm and rl share (resume, log, progress, checkpoint cadence)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

from rewardkit.errors import RewardkitError
from rewardkit.runs import (check_keep_checkpoints, checkpoint_dir, checkpoint_dirs, json_ready, progress_bar,
                            prune_checkpoints, truncate_jsonl, write_atomically)


class MetricsLog:
    """Append `{"step", "time", "<prefix>/<name>": value}` rows to DIR/metrics.jsonl and scalars to DIR/tensorboard."""

    def __init__(self, directory: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(directory) / "metrics.jsonl"
        self._writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(Path(directory) / "tensorboard"))

    def write(self, step: int, values: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        named = {f"{prefix}/{k}" if prefix else k: v for k, v in values.items() if v is not None}
        row = {"step": step, "time": round(time.time(), 3), **named}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(json_ready(row)) + "\n")  # NaN (e.g. the loss of a run that diverged) as null
        if self._writer is not None:
            for name, value in named.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Run:
    """One training command's run in its output folder, kept the same way by `train-rm` and `rl`: whether it resumes
    and from where, the metrics log, the progress bar and the lines printed beside it, when a checkpoint is due,
    and the pruning of old checkpoints. The loop itself (what a step is, what a checkpoint holds) stays the
    command's. Every process keeps one, so that they agree on the cadence; only the main process writes or prints.
    """

    def __init__(self, command: str, output_dir: str | Path, *, resume: bool, is_main: bool, save_every: int,
                 keep_checkpoints: int, tensorboard: bool, logs: tuple[str, ...] = ("metrics.jsonl",)):
        check_keep_checkpoints(keep_checkpoints)
        self.command, self.output_dir, self.resume, self.is_main = command, Path(output_dir), resume, is_main
        self.save_every, self.keep_checkpoints, self.tensorboard = save_every, keep_checkpoints, tensorboard
        self.logs = logs  # the JSONL files keyed by step that a resumed run rewinds to its checkpoint
        self.log: MetricsLog | None = None
        self.bar = None

    def checkpoint_to_resume(self) -> Path | None:
        """The newest complete checkpoint when resuming, or None for a fresh start.

        `--resume` with nothing to resume starts fresh, said in a line (so a script may pass it on every call).
        Without `--resume`, a folder that already holds a run (checkpoints or a metrics log) is refused: a second
        run there would mix its log and checkpoints with the first one's."""
        found = checkpoint_dirs(self.output_dir)
        if self.resume:
            if not found:
                self.say(f"{self.command}: --resume given but no checkpoint in {self.output_dir}; starting fresh")
            return found[-1] if found else None
        if found or (self.output_dir / "metrics.jsonl").exists():
            raise RewardkitError(f"{self.output_dir} already holds a run; pass --resume to continue it or choose "
                                 f"another --output-dir")
        return None

    def start(self, total_steps: int, done_steps: int, progress: bool) -> None:
        """Open the metrics log and the progress bar. A resumed run first drops the rows its logs hold beyond its
        checkpoint: it runs those steps again, and logs them again."""
        if self.is_main and done_steps:
            for name in self.logs:
                truncate_jsonl(self.output_dir / name, done_steps)
        self.log = MetricsLog(self.output_dir, enabled=self.is_main, tensorboard=self.tensorboard)
        self.bar = progress_bar(progress and self.is_main, total_steps, done_steps, self.command)

    def say(self, line: str) -> None:
        """A line on stderr from the main process, written through the progress bar when there is one so that
        neither is torn."""
        if not self.is_main:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def stepped(self, **shown: str) -> None:
        """One step done: the bar moves on and shows `shown` beside it."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(**shown)

    def checkpoint_due(self, step: int) -> bool:
        """Whether step `step` ends with a checkpoint (--save-every; 0: none along the way)."""
        return bool(self.save_every) and step % self.save_every == 0

    def save_checkpoint(self, step: int, *writers: Callable[[Path], object]) -> Path:
        """Write checkpoint `step` (each writer fills the folder; it appears whole or not at all) and prune the
        old ones to --keep-checkpoints. Main process only: the others return the folder's path."""
        target = checkpoint_dir(self.output_dir, step)
        if self.is_main:
            write_atomically(target, *writers)
            prune_checkpoints(self.output_dir, self.keep_checkpoints)
        return target

    def close(self) -> None:
        """Close the bar and the log (also when the loop stopped on an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.log is not None:
            self.log.close()

    def finished(self) -> None:
        """After the final model is saved: checkpoints beyond --keep-checkpoints go, even the newest if it is 0."""
        if self.is_main:
            prune_checkpoints(self.output_dir, self.keep_checkpoints, run_finished=True)
