"""Processes the local stack starts: pid files, liveness, bounded readiness waits, stopping by PID."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from core.errors import EmsError

logger = logging.getLogger(__name__)


class ServiceError(EmsError, RuntimeError):
    """A local service could not be started, reached or stopped; the message says which and why."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


class PidFile:
    """`<home>/run/<name>.pid`: the PID of a process this project started, and a marker of its command
    line, so that a recycled PID is never mistaken for ours."""

    def __init__(self, path: Path, marker: str):
        self.path = path
        self.marker = marker

    def read(self) -> int | None:
        try:
            pid = int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if pid_alive(pid) and self.marker in cmdline(pid):
            return pid
        return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.Popen:
    """Start a detached process (own session, so it outlives `ems up`), output appended to its log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=log_path.parent,
            **as_user(user),
        )


def as_user(user: str | None) -> dict:
    """subprocess arguments that drop to `user`, with its own group and no inherited groups
    (otherwise root's group permissions would apply)."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    proc: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll `check` with backoff until it holds; fail with one clear message (and the log's tail)."""
    deadline = time.monotonic() + timeout
    delay, attempt = 0.05, 0
    while True:
        attempt += 1
        if check():
            logger.debug("%s ready after %d checks", what, attempt)
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode} while starting{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout:.0f} s ({attempt} checks){_tail(log_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def terminate(pid: int, sig: int = signal.SIGTERM, group: bool = False, timeout: float = 20.0) -> None:
    """Signal a process we started (or its process group) and wait for it to go; SIGKILL after timeout."""
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            logger.warning("pid %d ignored signal %d for %.0f s; killing it", pid, sig, timeout)
            try:
                os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
        time.sleep(0.05)
        try:  # reap if it is our child (in-process use, e.g. the test suite)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _tail(log_path: Path | None, lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log_path}:\n" + "\n".join(text)
