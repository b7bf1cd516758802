"""Where and in what precision a command runs: the one rule that `train-rm`, `eval-rm`, `score`, `serve`, `rl` and the
`reward_model` reward component all use.

`--device auto|cpu|cuda[:N]|mps` and `--precision auto|fp32|bf16|fp16` resolve to a `Placement`:
- device `auto` is CUDA when a GPU is visible, else the CPU (MPS only when asked for: not every op has an MPS kernel);
- precision `auto` is bf16 on a GPU that supports it, else fp16 (with loss scaling) on a GPU; on a CPU it is bf16
  where a matmul, measured once per machine, runs at least twice as fast in bf16 as in fp32 (`cpu_bf16_speedup`:
  Intel Xeon with AMX, 2048^3 at ~2,100 GFLOP/s in bf16 against ~330 in fp32; AMD EPYC with AVX512-BF16, 1024^3 at
  954 against 147), else fp32, because without bf16 units bf16 runs slower than fp32 (AMD EPYC with AVX2 only); on
  MPS it is fp32.

The hardware is read at run time through `Hardware.detect()`, and every function takes a `Hardware` so that each
branch can be tested on any machine. Nothing here imports torch at module level: the CLI builds its parsers from the
config dataclasses without loading torch.

Training keeps fp32 master weights and optimizer state; in bf16 the forward and backward run on a bf16 working copy
of the weights (`rewardkit.models.precision`), in fp16 under autocast (`Placement.autocast`) with a loss scale.
Inference loads the weights directly in the chosen dtype (`Placement.weights_dtype`). Losses, log-sigmoids and reward
comparisons are always computed in fp32 by their callers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rewardkit.config import option
from rewardkit.errors import RewardkitError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPU_BF16_ENV = "REWARDKIT_CPU_BF16_UNITS"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(kw_only=True)
class DeviceOptions:
    """The two options every command that runs a model shares (a base class of each command's config)."""

    device: str = option("auto", "where models run: auto (a CUDA GPU when present, else the CPU), cpu, cuda, "
                                 "cuda:N or mps")
    precision: str = option("auto", "number format: auto (bf16 on a GPU that has it, else fp16 on a GPU; on a CPU "
                                    "bf16 where its bf16 units (AMX, AVX512-BF16) make a matmul at least twice as "
                                    "fast as in fp32, measured once per machine, else fp32), fp32, bf16 or fp16. "
                                    "Training keeps fp32 master weights (bf16 trains on a bf16 copy of them, fp16 "
                                    "under autocast); inference loads the weights in this format", choices=PRECISIONS)


@dataclass(frozen=True)
class Hardware:
    """What the machine offers, as far as the device and precision choice cares."""

    cuda_devices: int = 0
    cuda_bf16: bool = False          # the GPU computes bf16 natively (Ampere and later)
    mps: bool = False
    cpu_bf16_units: bool = False     # the CPU computes bf16 matmuls clearly faster than fp32 (AMX, AVX512-BF16)
    cpu_bf16_evidence: str = ""      # how that was known: the measured speed-up, or the override
    cpu_name: str = "CPU"

    @classmethod
    def detect(cls) -> "Hardware":
        import torch

        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
        mps_backend = getattr(torch.backends, "mps", None)
        return cls(cuda_devices=cuda,
                   # native bf16 only (Ampere and later): an older GPU emulates it, slower than fp16
                   cuda_bf16=bool(cuda) and torch.cuda.is_bf16_supported(including_emulation=False),
                   mps=bool(mps_backend is not None and mps_backend.is_available()),
                   cpu_bf16_units=cpu_has_bf16_units(),
                   cpu_bf16_evidence=cpu_bf16_evidence(),
                   cpu_name=cpu_model_name())


# bf16 must beat fp32 by this factor on a matmul for `auto` to pick it on a CPU: bf16 units make it 5-7x (AMX, and
# AVX512-BF16 on AMD EPYC: 954 against 147 GFLOP/s on 2 cores), a CPU without them makes it slower than fp32, so the
# margin keeps timing noise from ever flipping the choice.
CPU_BF16_SPEEDUP_NEEDED = 2.0


def cpu_has_bf16_units(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 matmuls clearly faster than fp32 (bf16 units: AMX tiles, AVX512-BF16 dot
    products), by a measurement (`cpu_bf16_speedup`) made once per machine and kept in rewardkit's cache folder.

    With `cpuinfo` (the text of /proc/cpuinfo) only its flags are read: amx_bf16 or avx512_bf16.
    `REWARDKIT_CPU_BF16_UNITS=1` makes any CPU count as one (so `auto` picks bf16 as it would there: bf16 runs on
    any CPU, only slowly without the units), and `=0` as one without; CI runs the suite under both."""
    if cpuinfo is not None:
        flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
        return bool(flags & {"amx_bf16", "avx512_bf16"})
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    return cpu_bf16_speedup() >= CPU_BF16_SPEEDUP_NEEDED


def cpu_bf16_evidence() -> str:
    """How `cpu_has_bf16_units` knew, for the placement's reason: the override, or the measured speed-up."""
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return f"{CPU_BF16_ENV}={override}"
    return f"bf16 matmuls measured {cpu_bf16_speedup():.1f}x as fast as fp32"


def _time_matmul(dtype, size: int = 1024, repeats: int = 3) -> float:
    """Seconds for one size^3 matmul in `dtype` on the CPU, the best of `repeats` after a warm-up."""
    import time

    import torch

    a, b = torch.randn(size, size, device="cpu").to(dtype), torch.randn(size, size, device="cpu").to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return best


def measured_once(name: str, key: str, measure):
    """`measure()` (a JSON number or string), taken once per machine and kept under `key` in
    `$REWARDKIT_CACHE/NAME.json` (default ~/.cache/rewardkit), so that every command and process on the machine, a
    resumed run included, makes the same choice from it. The key is prefixed with the machine (CPU model and flags)
    and the torch version."""
    import json

    import torch

    from rewardkit.runs import cache_dir, write_text_atomically

    key = f"{cpu_model_name()} | {cpu_flags_digest()} | torch {torch.__version__} | {key}"
    path = cache_dir() / f"{name}.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}
    if key in known:
        return known[key]
    value = measure()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps({**known, key: value}, indent=1))  # a reader never sees half a file
    except OSError:  # a read-only home: measured again by the next process
        pass
    return value


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """How many times faster a 1024^3 matmul runs in bf16 than in fp32 on this CPU (with this torch), measured once
    per machine (~0.1 s, `measured_once`)."""
    import torch

    return float(measured_once("cpu_bf16", "matmul 1024",
                               lambda: round(_time_matmul(torch.float32) / _time_matmul(torch.bfloat16), 2)))


def cpu_flags_digest() -> str:
    """A short digest of the CPU's flags: two machines with one model name but other instruction sets differ."""
    import hashlib

    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]


def cpu_model_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (what speed claims must name)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"


@dataclass(frozen=True)
class Placement:
    """The resolved device and precision, and why they were chosen."""

    device: str        # "cpu", "cuda", "cuda:1", "mps"
    precision: str     # "fp32", "bf16" or "fp16"
    reason: str

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def torch_device(self):
        import torch

        return torch.device(self.device)

    @property
    def weights_dtype(self):
        """The dtype inference loads weights in (training keeps fp32 weights whatever the precision)."""
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    @property
    def mixed(self) -> bool:
        return self.precision != "fp32"

    @property
    def loss_scaling(self) -> bool:
        """fp16 gradients underflow without a loss scale; bf16 has fp32's exponent range and needs none."""
        return self.precision == "fp16"

    def autocast(self):
        """The training forward's context: autocast to the chosen precision, or nothing in fp32."""
        if not self.mixed:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.device_type, dtype=self.weights_dtype)

    def describe(self) -> str:
        return f"device {self.device}, precision {self.precision} ({self.reason})"

    def as_dict(self) -> dict:
        return {"device": self.device, "precision": self.precision, "reason": self.reason}

    def announce(self, command: str) -> None:
        """The one line each command prints when it starts."""
        import sys

        print(f"rewardkit {command}: {self.describe()}", file=sys.stderr, flush=True)


def choose_placement(device: str = "auto", precision: str = "auto", hardware: Hardware | None = None) -> Placement:
    """Resolve `--device` and `--precision` against the hardware (detected when not given)."""
    device = (device or "auto").strip().lower()
    precision = (precision or "auto").strip().lower()
    if not DEVICE_PATTERN.match(device):
        raise RewardkitError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {device!r}")
    if precision not in PRECISIONS:
        raise RewardkitError(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    hw = hardware if hardware is not None else Hardware.detect()

    if device == "auto":
        device = "cuda" if hw.cuda_devices else "cpu"
    device_type = device.split(":")[0]
    if device_type == "cuda":
        if not hw.cuda_devices:
            raise RewardkitError(f"--device {device}: no CUDA GPU is visible (use --device cpu or auto)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= hw.cuda_devices:
            raise RewardkitError(f"--device {device}: only {hw.cuda_devices} CUDA GPU(s) visible")
    if device_type == "mps" and not hw.mps:
        raise RewardkitError("--device mps: MPS is not available on this machine (use --device cpu or auto)")

    if precision != "auto":
        if precision == "fp16" and device_type == "cpu":
            raise RewardkitError("--precision fp16 needs a GPU (the CPU has no fp16 loss-scaling path); use bf16 or "
                                 "fp32 on the CPU")
        if precision == "bf16" and device_type == "cuda" and not hw.cuda_bf16:
            raise RewardkitError("--precision bf16: this GPU does not support bf16; use fp16 or fp32")
        return Placement(device, precision, "as asked")
    if device_type == "cuda":
        if hw.cuda_bf16:
            return Placement(device, "bf16", "auto: the GPU supports bf16")
        return Placement(device, "fp16", "auto: the GPU has no bf16, fp16 with loss scaling")
    if device_type == "mps":
        return Placement(device, "fp32", "auto: fp32 on MPS")
    evidence = f"; {hw.cpu_bf16_evidence}" if hw.cpu_bf16_evidence else ""
    if hw.cpu_bf16_units:
        return Placement(device, "bf16", f"auto: {hw.cpu_name} has bf16 units{evidence}")
    return Placement(device, "fp32", f"auto: {hw.cpu_name} has no bf16 units, where bf16 is slower than "
                                     f"fp32{evidence}")


def component_placement(device: str, precision: str, command: Placement | None) -> Placement:
    """Where a reward component runs: its own `device`/`precision` where its spec sets them, else the command's
    placement, resolved once per process (and kept whole, with the reason it gives). Without a command placement
    (library callers) auto resolves as `choose_placement` does."""
    if command is None:
        return choose_placement(device, precision)
    device, precision = (device or "auto").strip().lower(), (precision or "auto").strip().lower()
    if device == "auto" and precision == "auto":
        return command
    return choose_placement(command.device if device == "auto" else device,
                            command.precision if precision == "auto" else precision)


def placement_of(options: DeviceOptions, command: str | None = None,
                 hardware: Hardware | None = None) -> Placement:
    """The placement a command's config asks for; with `command`, the choice is printed in one line."""
    placement = choose_placement(options.device, options.precision, hardware)
    if command:
        placement.announce(command)
    return placement


# ------------------------------------------------------------------------------------------------ host-side code
# Code that works on the CPU on purpose while a model runs elsewhere (collating token ids, the figures a step logs)
# says so with `on_host`, so that a check run on a CPU (tests/device_discipline.py) can tell it from a tensor that
# a GPU run would find on the wrong device.
_ON_HOST = contextvars.ContextVar("rewardkit_on_host", default=False)


@contextlib.contextmanager
def on_host():
    """A block that works on CPU tensors on purpose, whatever the device."""
    token = _ON_HOST.set(True)
    try:
        yield
    finally:
        _ON_HOST.reset(token)


def host_side(function):
    """Decorate a function that builds or reads CPU tensors on purpose (see `on_host`)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with on_host():
            return function(*args, **kwargs)
    return wrapper


def is_on_host() -> bool:
    return _ON_HOST.get()
