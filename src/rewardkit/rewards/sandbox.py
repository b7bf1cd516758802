"""Run untrusted Python code against its tests in a sandbox, and count the tests it passes.

One run is one fresh process tree, started through `unshare` (util-linux) in new namespaces:
- **network**: its own network namespace, with only a loopback interface that is down: no connection leaves it, not
  even to this machine's 127.0.0.1;
- **processes**: its own PID namespace (it sees only itself; /proc is its own) whose first process is the harness
  (`sandbox_harness.py`): when the run ends, the namespace ends and the kernel kills every process the code started;
- **files**: its own mount namespace with empty tmpfs over /tmp, /var/tmp, /dev/shm, /run, /root, /home and any
  `hide` directories (the Python installation is bound back read-only where it lives under them); the code runs in a
  fresh /tmp/work, with HOME there, and sees none of the host's temporary files, home directories or keys;
- **user**: as root, the code runs as a fresh unprivileged uid (so it can write nowhere else, and RLIMIT_NPROC, which
  does not bind root, bounds its processes); without root, in a user namespace with every capability dropped; and
  PR_SET_NO_NEW_PRIVS, so no setuid program gives privileges back;
- **limits**: rlimits on address space (`memory_mb`), CPU seconds, processes/threads (`processes`), file size
  (`file_mb`) and open files, plus, where the cgroup file system is writable, a cgroup with the same memory and process
  limits for the whole tree; the wall clock (`time_s`, from the moment the code starts) is enforced from outside by
  killing the process group, the PID namespace and the cgroup;
- **environment**: built from scratch (PATH, HOME, LANG and thread counts of 1): no variable of the host reaches it.
Its printed output goes to /dev/null; results come back on a pipe, each line prefixed by a random nonce the code is
not given, so printing fake results does nothing.

What the sandbox does not stop: code that games its own tests from inside its process (e.g. redefining `__eq__` so
that every comparison holds, or digging the nonce out of the harness's memory). Exiting early (`sys.exit(0)`,
`os._exit(0)`) fails the tests that did not run. Write tests that compare plain values.

`isolation: none` runs without namespaces (rlimits, a fresh uid when root, a temporary directory and the cgroup
only): the code can then reach the network and read whatever the user can. It must be asked for explicitly; without
it, a machine where the namespaces cannot be made refuses with a one-line error that says why.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ISOLATIONS = ("namespaces", "none")
HIDDEN = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home")
_HARNESS = (Path(__file__).parent / "sandbox_harness.py").read_text(encoding="utf-8")
_STARTUP_S = 30.0  # interpreter start and mounts, before the code's clock starts (generous: under load)
_MAX_REPORT_BYTES = 1 << 20
_SIGNALS = {signal.SIGKILL: "SIGKILL", signal.SIGXCPU: "SIGXCPU: the CPU time limit",
            signal.SIGXFSZ: "SIGXFSZ: the file size limit", signal.SIGSEGV: "SIGSEGV", signal.SIGABRT: "SIGABRT"}


class SandboxError(Exception):
    """The sandbox itself could not run (not the code's fault): worth a retry."""


@dataclass(frozen=True)
class Limits:
    time_s: float = 5.0        # wall clock for the code and all its tests, from the moment the code starts
    memory_mb: int = 1024      # address space of each process, and memory of the whole tree where cgroups allow
    processes: int = 16        # processes and threads at once
    file_mb: int = 16          # the largest file it may write
    tmp_mb: int = 64           # its /tmp (the work directory lives there)
    files: int = 256           # open files per process

    @property
    def cpu_s(self) -> int:
        return int(self.time_s) + 1


@dataclass
class SandboxResult:
    passed: int
    total: int
    reason: str | None  # None when every test passed
    seconds: float

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


@lru_cache(maxsize=1)
def namespace_prefix() -> tuple[tuple[str, ...] | None, str]:
    """The `unshare` command line that makes the namespaces here, or None and why not (probed once)."""
    unshare = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.path.exists(p)),
                                              None)
    if unshare is None:
        return None, "the unshare program (util-linux) is not installed"
    flags = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--ipc", "--uts"]
    prefix = [unshare, *flags] if os.geteuid() == 0 else [unshare, "--user", "--map-root-user", *flags]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{' '.join(prefix[1:])} could not run ({exc})"
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return None, f"unshare {' '.join(prefix[1:])} failed here ({detail})"
    return tuple(prefix), ""


class _Cgroups:
    """A memory and process-count cgroup for one run (v1 or v2), where /sys/fs/cgroup is writable; else none."""

    _counter = 0
    _lock = threading.Lock()

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs

    @classmethod
    def create(cls, limits: Limits) -> "_Cgroups | None":
        with cls._lock:
            cls._counter += 1
            name = f"rewardkit-sandbox-{os.getpid()}-{cls._counter}-{secrets.token_hex(3)}"
        memory = str(limits.memory_mb * 1024 * 1024)
        root = Path("/sys/fs/cgroup")
        made: list[Path] = []
        try:
            if (root / "pids" / "cgroup.procs").exists() and (root / "memory" / "cgroup.procs").exists():  # v1
                pids, mem = root / "pids" / name, root / "memory" / name
                pids.mkdir()
                made.append(pids)
                (pids / "pids.max").write_text(str(limits.processes))
                mem.mkdir()
                made.append(mem)
                (mem / "memory.limit_in_bytes").write_text(memory)
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    (mem / "memory.memsw.limit_in_bytes").write_text(memory)
            elif (root / "cgroup.subtree_control").exists():  # v2, where the root delegates pids and memory
                enabled = (root / "cgroup.subtree_control").read_text().split()
                if "pids" not in enabled or "memory" not in enabled:
                    return None
                group = root / name
                group.mkdir()
                made.append(group)
                (group / "pids.max").write_text(str(limits.processes))
                (group / "memory.max").write_text(memory)
                if (group / "memory.swap.max").exists():
                    (group / "memory.swap.max").write_text("0")
            else:
                return None
        except OSError:
            cls(made).remove()
            return None
        return cls(made)

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def kill(self) -> None:
        for directory in self.dirs:
            try:
                pids = (directory / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass

    def remove(self) -> None:
        for directory in self.dirs:
            for _ in range(100):  # processes killed a moment ago may still be exiting
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.02)


def _python_paths_under(hidden: list[str]) -> list[str]:
    """The Python installation's directories (prefixes, the interpreter's, site-packages) that lie under a hidden
    directory, to bind back; outermost only, and never a hidden directory itself (a script's folder on sys.path,
    such as /tmp, stays hidden)."""
    import site

    candidates = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))}
    candidates |= {os.path.realpath(p) for p in site.getsitepackages() if os.path.isdir(p)}
    candidates |= {os.path.realpath(p) for p in sys.path
                   if p and os.path.isdir(p) and os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")}
    roots = [h.rstrip("/") + "/" for h in hidden]
    under = sorted(p for p in candidates if any(p.startswith(root) for root in roots))
    outermost: list[str] = []
    for path in under:
        if not any(path.startswith(o.rstrip("/") + "/") for o in outermost):
            outermost.append(path)
    return outermost


class Sandbox:
    """Runs Python code and test steps under `limits` (see the module docstring)."""

    def __init__(self, limits: Limits = Limits(), isolation: str = "namespaces", hide: tuple[str, ...] = ()):
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
        self.limits, self.isolation = limits, isolation
        self.hide = tuple(dict.fromkeys([*HIDDEN, *(os.path.realpath(h) for h in hide)]))
        self.prefix: tuple[str, ...] = ()
        if isolation == "namespaces":
            prefix, why = namespace_prefix()
            if prefix is None:
                raise SandboxUnavailable(why)
            self.prefix = prefix
        self.keep = _python_paths_under(list(self.hide)) if isolation == "namespaces" else []
        if isolation == "none" and os.geteuid() == 0:
            closed = _closed_to_others(os.path.dirname(os.__file__))
            if closed is not None:
                raise SandboxUnavailable(f"without namespaces the code runs as a fresh unprivileged uid, which cannot "
                                         f"read this Python installation ({closed} is closed to other users); run "
                                         "it with a Python that other users can read, or where namespaces work")

    def _job(self, code: str, steps: list[dict], nonce: str, uid: int | None, workdir: str,
             cgroups: _Cgroups | None) -> dict:
        limits = self.limits
        mounts = []
        if self.isolation == "namespaces":
            for target in self.hide:
                size = limits.tmp_mb if target == "/tmp" else 1
                mode = "1777" if target in ("/tmp", "/var/tmp", "/dev/shm") else "755"
                mounts.append([target, f"size={size}m,mode={mode}"])
        return {"nonce": nonce, "code": code, "steps": steps, "uid": uid, "workdir": workdir, "mounts": mounts,
                "keep": self.keep, "cgroups": cgroups.procs_files if cgroups else [],
                "limits": {"memory_bytes": limits.memory_mb * 1024 * 1024, "cpu_s": limits.cpu_s,
                           "processes": (limits.processes if uid is not None else
                                         None if os.geteuid() == 0 else _user_tasks() + limits.processes),
                           "file_bytes": limits.file_mb * 1024 * 1024, "files": limits.files}}

    def run(self, code: str, steps: list[dict]) -> SandboxResult:
        """Run `code`, then `steps` ({"kind": "setup" | "test", "source": ...}) in its namespace."""
        start = time.perf_counter()
        nonce = secrets.token_hex(16)
        uid = 2_000_000 + secrets.randbelow(1_000_000_000) if os.geteuid() == 0 else None
        host_dir = None
        if self.isolation == "namespaces":
            workdir = "/tmp/work"
        else:
            host_dir = tempfile.mkdtemp(prefix="rewardkit-sandbox-")
            os.chmod(host_dir, 0o711)  # the sandbox's uid passes through to its own work directory
            workdir = os.path.join(host_dir, "work")
        cgroups = _Cgroups.create(self.limits)
        if cgroups is None:
            _warn_without_cgroups(self.limits)
        python_dir = os.path.dirname(sys.executable)
        env = {"PATH": f"{python_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        job = self._job(code, steps, nonce, uid, workdir, cgroups)
        events: list[list] = []
        timed_out = flooded = False
        try:
            with tempfile.TemporaryFile() as errors:
                try:
                    process = subprocess.Popen([*self.prefix, sys.executable, "-I", "-c", _HARNESS],
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env,
                                               cwd="/", start_new_session=True)
                except OSError as exc:
                    raise SandboxError(f"cannot start the sandbox: {exc}")
                try:
                    process.stdin.write((json.dumps(job) + "\n").encode("utf-8"))
                    process.stdin.close()
                except BrokenPipeError:
                    pass
                timed_out, flooded = self._read(process, nonce, events)
                _kill(process)
                if cgroups is not None:
                    cgroups.kill()
                process.wait()
                process.stdout.close()
                errors.seek(0)
                harness_errors = errors.read()[-2000:].decode("utf-8", "replace").strip()
        finally:
            if cgroups is not None:
                cgroups.remove()
            if host_dir is not None:
                shutil.rmtree(host_dir, ignore_errors=True)
        return self._result(steps, events, timed_out, flooded, harness_errors, time.perf_counter() - start)

    def _read(self, process: subprocess.Popen, nonce: str, events: list[list]) -> tuple[bool, bool]:
        """Collect the run's report lines until the harness reports the exit, the pipe closes or time runs out."""
        fd = process.stdout.fileno()
        deadline = time.monotonic() + _STARTUP_S
        buffer, total = b"", 0
        prefix = nonce.encode() + b" "
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True, False
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return False, False
            total += len(chunk)
            if total > _MAX_REPORT_BYTES:
                return False, True
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(prefix):
                    continue  # not from the harness (or forged without the nonce)
                try:
                    event = json.loads(line[len(prefix):])
                except ValueError:
                    continue
                if not isinstance(event, list) or not event:
                    continue
                events.append(event)
                if event[0] == "ready":
                    deadline = time.monotonic() + self.limits.time_s
                elif event[0] == "exit":
                    return False, False

    def _result(self, steps, events, timed_out, flooded, harness_errors, seconds) -> SandboxResult:
        tests = [i for i, s in enumerate(steps) if s["kind"] == "test"]
        number = {index: k + 1 for k, index in enumerate(tests)}
        passed: set[int] = set()
        failures: dict[int, str] = {}
        load_failed = setup_failed = error = None
        ready = done = False
        exit_code = None
        for event in events:
            what = event[0]
            if what == "ready":
                ready = True
            elif what == "pass" and len(event) == 2 and event[1] in number:
                passed.add(event[1])
            elif what == "fail" and len(event) == 3 and event[1] in number:
                failures.setdefault(event[1], str(event[2]))
            elif what == "load_failed":
                load_failed = str(event[1])
            elif what == "setup_failed":
                setup_failed = (event[1], str(event[2]))
            elif what == "done":
                done = True
            elif what == "exit":
                exit_code = event[1]
            elif what == "error":
                error = str(event[1])
        if error is not None:
            raise SandboxError(error)
        if not ready:
            if timed_out:
                raise SandboxError(f"the sandbox did not start within {_STARTUP_S:g} s")
            detail = harness_errors.splitlines()[-1] if harness_errors else f"exit status {exit_code}"
            raise SandboxError(f"the sandbox stopped before the code started ({detail})")
        total = len(tests)
        count = len(passed)
        current = next((number[i] for i in tests if i not in passed and i not in failures), None)
        at = f" in test {current} of {total}" if current is not None else ""
        if load_failed is not None:
            why = f"the code raised {load_failed}"
        elif timed_out:
            why = f"time limit of {self.limits.time_s:g} s exceeded" + (at if failures or passed or current else "")
        elif flooded:
            why = "the run wrote more than 1 MB of results"
        elif setup_failed is not None:
            why = f"a test setup statement raised {setup_failed[1]}"
        elif not done:
            if isinstance(exit_code, int) and exit_code < 0:
                name = _SIGNALS.get(-exit_code, f"signal {-exit_code}")
                hint = " (over the memory limit?)" if -exit_code == signal.SIGKILL else ""
                why = f"killed by {name}{hint}{at}"
            else:
                why = f"the process exited (status {exit_code}){at} before its tests finished"
        elif failures:
            first = min(failures)
            why = f"test {number[first]} of {total} failed: {failures[first]}"
        else:
            why = None
        if why is not None:
            why = f"{count} of {total} tests passed; {why}"
        return SandboxResult(count, total, why, seconds)


class SandboxUnavailable(Exception):
    """The namespaces cannot be made on this machine (the message says why)."""


_warned: list[bool] = []


def _warn_without_cgroups(limits: Limits) -> None:
    if not _warned:
        _warned.append(True)
        import warnings

        warnings.warn(f"code_tests: no writable cgroup here, so the sandbox's memory is bounded per process only: "
                      f"in all by processes x memory_mb = {limits.processes} x {limits.memory_mb} MB", stacklevel=3)


def _closed_to_others(path: str) -> str | None:
    """The first directory on the way to `path` (included) that other users cannot enter or read, or None."""
    current = "/"
    for part in Path(os.path.realpath(path)).parts[1:]:
        current = os.path.join(current, part)
        mode = os.stat(current).st_mode
        if not mode & 0o001 or (current == os.path.realpath(path) and not mode & 0o004):
            return current
    return None


def process_statuses():
    """The fields of /proc/PID/status of every process running now (one that ends while being read is left out)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            yield dict(line.split(":", 1) for line in status.splitlines() if ":" in line)


def _user_tasks() -> int:
    """Tasks (threads) this user runs now: RLIMIT_NPROC counts them all, so without a uid of its own the sandbox's
    limit is this many plus its own allowance."""
    uid, count = str(os.getuid()), 0
    for fields in process_statuses():
        if fields.get("Uid", "").split()[:1] == [uid]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL the run's process group (unshare and the namespace's first process: the kernel then kills the rest)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
