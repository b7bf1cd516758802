"""Metrics to a JSONL file (one object per write) and, optionally, TensorBoard: shared by every training loop."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rewardkit.runs import json_ready


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
