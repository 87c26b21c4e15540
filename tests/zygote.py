"""Commands (``python -m rlexp.train ...``) for the tests, each in a process of its own, without
paying the interpreter's start and torch's import for each: a *zygote* process imports what the
commands import, once, and forks a child for every command.

A child is a fresh process as the command's own would be: its own pid and process group, the
test's environment, working directory and ``sys.argv``, stdin from /dev/null, stdout and stderr
in files, the module run as ``__main__`` (as ``-m`` runs it), its exit status its own. Nothing
has run in the zygote but imports, so no state of an earlier command (directories claimed,
thread pools, random generators) reaches the next. Commands whose environment must be set before
the interpreter starts (see ``LIVE_ENV``) and tests that look at what a fresh interpreter imports
use ``subprocess`` as before.

    python -m tests.zygote    # the server; the tests start it (:func:`run`)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Environment variables a forked child honours when a test sets them: read when used, not
#: when the interpreter or a library starts.
LIVE_ENV = frozenset({"PYTHONPATH"})

#: What the commands import before they do anything; never a command module itself (runpy runs
#: it as __main__, and warns when it was imported before).
PRELOAD = ("torch", "hydra", "omegaconf", "gymnasium", "rlexp.config", "rlexp.jobs",
           "rlexp.report", "rlexp.evaluator", "tensorboard", "matplotlib.pyplot", "scipy.stats")


# ----------------------------------------------------------------------------------- server

def _serve(requests, replies) -> None:
    """Fork a child per request line; reply with its exit status once it has ended."""
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            _become_command(request)  # returns to the module's end: the child exits there
            return
        deadline = time.monotonic() + request["timeout"]
        status = None
        while status is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(wait_status)
            elif time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "timeout"
            else:
                time.sleep(0.005)
        try:
            replies.write(json.dumps({"status": status}) + "\n")
            replies.flush()
        except BrokenPipeError:  # the tests' process is gone
            return


def _become_command(request: dict) -> None:
    """In the child: set up the process as the command's own, then run its module."""
    import runpy

    os.setpgid(0, 0)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # As `python -m` sets sys.path: the working directory first, then PYTHONPATH's entries.
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:1] = [request["cwd"], *extra]
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_TRUNC), fd)
    sys.argv = ["-m", *request["args"]]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


def main() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    for module in PRELOAD:
        importlib.import_module(module)
    # The pipes to the tests on fds of their own; 0 and 1 are the children's to replace.
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    replies.write("ready\n")
    replies.flush()
    _serve(requests, replies)


# ----------------------------------------------------------------------------------- client

_lock = threading.Lock()
_server: subprocess.Popen | None = None


def _started() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        # Started in the repository, which `-m` puts first on its sys.path (a child puts its
        # own working directory there instead).
        _server = subprocess.Popen([sys.executable, "-m", "tests.zygote"], cwd=REPO,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if _server.stdout.readline() != "ready\n":
            raise RuntimeError("the test zygote did not start")
    return _server


def run(module: str, args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` in ``cwd`` with ``os.environ`` updated by ``env``, as
    ``subprocess.run(..., capture_output=True, text=True, stdin=DEVNULL)`` runs it."""
    command = [sys.executable, "-m", module, *args]
    extra = env or {}
    if set(extra) - LIVE_ENV:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **extra}, stdin=subprocess.DEVNULL)
    fd_out, out = tempfile.mkstemp(prefix="zygote-out-")
    fd_err, err = tempfile.mkstemp(prefix="zygote-err-")
    os.close(fd_out)
    os.close(fd_err)
    try:
        with _lock:
            server = _started()
            server.stdin.write(json.dumps({
                "module": module, "args": [str(a) for a in args], "cwd": str(Path(cwd).resolve()),
                "env": {**os.environ, **extra}, "stdout": out, "stderr": err,
                "timeout": timeout}) + "\n")
            server.stdin.flush()
            reply = server.stdout.readline()
        status = json.loads(reply)["status"]
        stdout, stderr = Path(out).read_text(), Path(err).read_text()
    finally:
        os.unlink(out)
        os.unlink(err)
    if status == "timeout":
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
    return subprocess.CompletedProcess(command, status, stdout, stderr)


if __name__ == "__main__":
    main()
