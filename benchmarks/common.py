"""What the benchmark scripts share: offline settings, the data in ../shared/data (read in place), and running a
`rewardkit` command in a subprocess while measuring its peak memory (GPU memory on a GPU, else resident memory)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rewardkit.device import cpu_model_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HH_DIR = DATA / "hh-rlhf"
HH = [HH_DIR / name for name in ("helpful-base.test.jsonl.gz", "harmless-base.test.jsonl.gz")]
LLMBAR = DATA / "llmbar"


def fill_defaults(args, defaults: dict) -> None:
    """Set every option the command line left at None to its per-backbone default."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


# ------------------------------------------------------------------------------------------------ the machine

def nvidia_smi(*query: str) -> list[str]:
    """Lines of `nvidia-smi QUERY... --format=csv,noheader,nounits`; [] when there is no nvidia-smi or it fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi sees (empty without one); the parent never initializes CUDA itself."""
    return nvidia_smi("--query-gpu=name,memory.total")



def machine_text() -> str:
    gpus = gpu_names()
    gpu = "; ".join(f"{g.split(',')[0].strip()} ({g.split(',')[-1].strip()} MiB)" for g in gpus) or "no GPU"
    return f"GPU: {gpu}; CPU: {cpu_model_name()}, {os.cpu_count()} cores"


def measures_gpu(device: str | None) -> bool:
    """Whether a command run with `--device device` (None: the command's default, auto) uses the GPU nvidia-smi
    sees: then its peak GPU memory is what counts, else its peak resident memory."""
    return (device or "auto") not in ("cpu", "mps") and bool(gpu_names())


# ------------------------------------------------------------------------------------------------ peak memory

def _descendants(pid: int) -> set[int]:
    """pid and every process below it (from /proc; just pid where /proc has no children files)."""
    found, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _peak_rss_mib(pid: int) -> float | None:
    """The process's own high-water mark of resident memory (VmHWM), or psutil's current RSS without /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None  # a zombie has no memory lines
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2 ** 20
    except Exception:  # no psutil, or the process is gone
        return None


class PeakMemory:
    """Polls one process every `interval` seconds in a thread and keeps the maximum of its memory.

    On a GPU (`gpu=True`): the GPU memory nvidia-smi reports for the process and its children
    (--query-compute-apps); where it lists none of them (a container's PIDs differ from the host's) the whole GPU's
    memory.used minus what was used before the process started. Otherwise: the process's peak resident memory
    (VmHWM). `label` says which it was.
    """

    def __init__(self, pid: int, gpu: bool, interval: float = 0.2):
        self.pid, self.gpu, self.interval = pid, gpu, interval
        self.peak_mib = 0.0
        self.label = "peak GPU memory" if gpu else "peak RSS"
        self._device_peak = 0.0
        self._per_process_seen = False
        self._baseline = self._device_used() if gpu else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _device_used() -> float:
        return sum(float(v) for v in nvidia_smi("--query-gpu=memory.used"))

    def _poll(self) -> None:
        if not self.gpu:
            rss = _peak_rss_mib(self.pid)
            if rss is not None:
                self.peak_mib = max(self.peak_mib, rss)
            return
        pids = _descendants(self.pid)
        mine = [float(used) for pid, used in (line.split(",") for line in
                                              nvidia_smi("--query-compute-apps=pid,used_memory"))
                if int(pid) in pids and used.strip().replace(".", "", 1).isdigit()]
        if mine:
            self._per_process_seen = True
            self.peak_mib = max(self.peak_mib, sum(mine))
        self._device_peak = max(self._device_peak, self._device_used() - self._baseline)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def stop(self) -> float:
        """Stop polling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        if self.gpu and not self._per_process_seen:
            self.peak_mib = self._device_peak
            self.label = "peak GPU memory (whole GPU minus baseline)"
        return self.peak_mib


# ------------------------------------------------------------------------------------------------ running the CLI

@lru_cache(maxsize=None)
def cli_help(command: str) -> str:
    out = subprocess.run([sys.executable, "-m", "rewardkit.cli", *command.split(), "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    return out.stdout


def missing_flags(command: str, argv: list[str]) -> list[str]:
    """The --flags in argv that `rewardkit COMMAND --help` does not list (not landed yet, or misspelt)."""
    listed = set(re.findall(r"--[a-z0-9][a-z0-9-]*", cli_help(command)))
    return [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] not in listed]


def placement_lines(text: str, command: str) -> list[str]:
    """The line(s) a command prints about its device and precision choice (`rewardkit COMMAND: device ...`)."""
    return [line.strip() for line in text.splitlines() if line.startswith(f"rewardkit {command}: device ")]


_LIVE: set[subprocess.Popen] = set()  # commands started and not yet ended: stopped when this script exits


@atexit.register
def _stop_live() -> None:
    for process in list(_LIVE):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def exit_on_sigterm() -> None:
    """Turn SIGTERM (`timeout`, a job scheduler) into a normal exit, so that the commands this script started are
    stopped with it instead of left running."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@dataclass
class CliRun:
    """One `python -m rewardkit.cli COMMAND ...` subprocess, its logs and its peak memory."""

    command: str
    argv: list[str]
    log_dir: Path
    gpu: bool
    name: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    peak_mib: float = 0.0
    memory_label: str = ""
    timed_out: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self):
        self.name = self.name or self.command
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"{self.name}.stdout"
        self.stderr_path = self.log_dir / f"{self.name}.stderr"

    def start(self) -> "CliRun":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self._started = time.perf_counter()
            self.process = subprocess.Popen([sys.executable, "-m", "rewardkit.cli", *self.command.split(), *self.argv],
                                            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _LIVE.add(self.process)
        self._memory = PeakMemory(self.process.pid, self.gpu)
        return self

    def wait(self, timeout: float | None = None) -> "CliRun":
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.terminate()
        return self._finish()

    def terminate(self, grace: float = 20.0) -> "CliRun":
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self._finish()

    def _finish(self) -> "CliRun":
        if self.returncode is None:
            self.seconds = time.perf_counter() - self._started
            self.peak_mib = self._memory.stop()
            self.memory_label = self._memory.label
            self.returncode = self.process.returncode
            _LIVE.discard(self.process)
        return self

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def failure(self, lines: int = 8) -> str:
        """Why it failed, in a few lines: the end of its stderr."""
        why = "timed out" if self.timed_out else f"exit code {self.returncode}"
        tail = [line for line in self.stderr().splitlines() if line.strip()][-lines:]
        return f"{why}; end of {self.stderr_path}:\n      " + "\n      ".join(tail)


def run_cli(command: str, argv: list[str], log_dir: Path, gpu: bool, name: str = "",
            timeout: float | None = None) -> CliRun:
    """Run the command to the end (or `timeout` seconds), measuring wall time and peak memory."""
    return CliRun(command, [str(a) for a in argv], log_dir, gpu, name=name).start().wait(timeout)
