"""The program `rewardkit.rewards.sandbox` starts inside the sandbox (as `python -I -c <this file's text>`): standard
library only, nothing from rewardkit, because it runs before and under the limits.

It reads one JSON job from stdin, then, as the sandbox's first process (PID 1 of its PID namespace when isolated):
1. joins the job's cgroups (process count and memory for everything it starts);
2. when isolated and privileged: mounts empty tmpfs over the directories to hide (/tmp, /root, /home, /run, ...) and
   binds back the Python installation that lives under them (read through file descriptors opened before);
3. forks the worker and waits for it, reporting its exit; when it returns, the PID namespace ends and with it every
   process the code started.
The worker drops privileges (a fresh unprivileged uid when root, else every capability), sets the rlimits, points its
stdout and stderr at /dev/null, says "ready", and runs the code, then each test step, reporting each result on the
host's pipe, each line prefixed with the job's nonce (printed output never reaches the host).
"""

import ctypes
import json
import os
import resource
import sys
import traceback


def main():
    job = json.loads(sys.stdin.readline())
    nonce = job.pop("nonce")
    report_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)

    def report(*parts):
        line = nonce + " " + json.dumps(list(parts)) + "\n"
        try:
            os.write(report_fd, line.encode("utf-8", "replace"))
        except OSError:
            pass

    for path in job["cgroups"]:
        with open(path, "w") as handle:
            handle.write("0")
    libc = ctypes.CDLL(None, use_errno=True)
    if job["mounts"]:
        keep = {}
        for path in job["keep"]:
            try:
                keep[path] = os.open(path, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                pass
        for target, options in job["mounts"]:
            if os.path.isdir(target) and not os.path.islink(target):
                if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 2 | 4, options.encode()) != 0:  # nosuid, nodev
                    report("error", f"cannot mount a tmpfs on {target}: {os.strerror(ctypes.get_errno())}")
                    os._exit(3)
        for path, fd in keep.items():
            os.makedirs(path, mode=0o755, exist_ok=True)
            if libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, 4096 | 16384, None) != 0:  # bind, rec
                report("error", f"cannot bind {path}: {os.strerror(ctypes.get_errno())}")
                os._exit(3)
            os.close(fd)
    workdir = job["workdir"]
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    uid = job["uid"]
    if uid is not None:
        os.chown(workdir, uid, uid)

    pid = os.fork()
    if pid == 0:
        worker(job, report, libc, null, workdir, uid)
        os._exit(0)
    os.close(null)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 0
            break
        except InterruptedError:
            continue
    report("exit", os.waitstatus_to_exitcode(status))
    os._exit(0)


def drop_privileges(libc, uid):
    """A fresh unprivileged uid (so that RLIMIT_NPROC binds) when root; in a user namespace, no capabilities."""
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif os.geteuid() == 0:  # root of a user namespace: give up every capability
        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                        ("inheritable", ctypes.c_uint32)]

        header, data = Header(0x20080522, 0), (Data * 2)()
        if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
            raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: no setuid program can give privileges back
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def worker(job, report, libc, null, workdir, uid):
    try:
        os.chdir(workdir)
        drop_privileges(libc, uid)
        limits = job["limits"]
        for name, value in (("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", limits["files"]),
                            ("RLIMIT_FSIZE", limits["file_bytes"]), ("RLIMIT_CPU", limits["cpu_s"]),
                            ("RLIMIT_NPROC", limits["processes"]), ("RLIMIT_AS", limits["memory_bytes"])):
            if value is not None:
                resource.setrlimit(getattr(resource, name), (value, value))
    except (OSError, ValueError) as exc:
        report("error", f"cannot set up the sandbox: {exc}")
        return
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)

    def describe(exc):
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("solution.py", "test")]
        where = f" (line {frames[-1].lineno} of {'the code' if frames[-1].filename == 'solution.py' else 'the test'})" \
            if frames else ""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return (text[:300] + where).replace("\n", " ")

    steps = job["steps"]
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    report("ready")
    try:
        exec(compile(job["code"], "solution.py", "exec"), namespace)
    except BaseException as exc:  # noqa: B036 - SystemExit and KeyboardInterrupt too: the code must not end the run
        report("load_failed", describe(exc))
        return
    report("loaded")
    for index, step in enumerate(steps):
        try:
            exec(compile(step["source"], "test", "exec"), namespace)
        except BaseException as exc:  # noqa: B036
            report("setup_failed" if step["kind"] == "setup" else "fail", index, describe(exc))
            if step["kind"] == "setup":
                return
            continue
        if step["kind"] == "test":
            report("pass", index)
    report("done")


main()
