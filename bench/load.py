"""Load against a service, bounded in time: windows of a few seconds after a warm-up, N concurrent callers
each sending its next call when the last one answers (asyncio: raw keep-alive HTTP/1.1 or redis.asyncio), one caller in
process for comparison, the CPU each side spent per call, and `ems serve` as a subprocess on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import core
from core.settings import ROOT

logger = logging.getLogger(__name__)

READY_SECONDS = 120.0
UNLIMITED = str(10**9)  # rate limit and burst high enough that the limiter never refuses the bench's load
JSON = {"content-type": "application/json"}


@dataclass
class Window:
    """One bounded load window: calls completed inside it and latencies (ms) of the calls started in it."""

    clients: int
    seconds: float
    completed: int
    latencies: list[float]
    calls: int = 0  # every call made, warm-up included
    errors: list[str] = field(default_factory=list)  # calls that failed (not counted, not timed)
    cpu_ms: float | None = None  # CPU time of the serving side per call (workers, or this process in process)
    client_cpu_ms: float | None = None  # CPU time of the load generator (this process) per call

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds

    def summary(self) -> dict:
        return {"clients": self.clients, "seconds": round(self.seconds, 3), "completed": self.completed,
                "per_s": round(self.throughput, 1), "cpu_ms_per_call": self.cpu_ms,
                "client_cpu_ms_per_call": self.client_cpu_ms, "failed": len(self.errors),
                "first_failure": self.errors[0] if self.errors else None, **core.summary(self.latencies)}


def window(spans: list[tuple[float, float]], start: float, end: float, clients: int) -> Window:
    """Reduce (started, finished) times in seconds to a Window over [start, end): throughput counts the calls
    finished inside it, latency the calls started inside it (so a call cut by either edge counts once)."""
    done = sum(1 for _, t1 in spans if start <= t1 < end)
    return Window(clients, end - start, done, [(t1 - t0) * 1e3 for t0, t1 in spans if start <= t0 < end], len(spans))


# ---------------------------------------------------------------------------------------- load
async def drive(send: Callable[[], Awaitable[str | None]], clients: int, warmup_s: float,
                 seconds: float) -> Window:
    """`clients` callers, each sending its next call when the last one answers, until the window closes.
    `send` returns None, or what went wrong: such calls are listed, not counted."""
    return await drive_each([send] * clients, warmup_s, seconds)


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise AssertionError(f"{response.request.url.path} answered {response.status_code}: {response.text[:2000]}")
    return response


def http_load(base: str, path: str, body: bytes, clients: int, warmup_s: float, seconds: float) -> Window:
    """POST `body` to `path` from `clients` concurrent callers, a keep-alive HTTP/1.1 connection each, written
    and read on asyncio streams: a few bytes of request and a Content-Length read per call, so the generator's
    own CPU (httpx.AsyncClient spent 8-10 ms per call on these cores, more than the service) does not starve
    the workers it measures. A non-200 answer or a broken connection is listed as a failed call."""
    from urllib.parse import urlsplit

    url = urlsplit(base)
    request = (f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def run() -> Window:
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def caller_send():
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            streams.append((reader, writer))

            async def send() -> str | None:
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    payload = await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, StopIteration,
                        ValueError) as e:  # e.g. a worker killed mid-call
                    return f"{type(e).__name__}: {e}"
                return None if status == 200 else f"{status}: {payload[:300].decode(errors='replace')}"

            return send

        senders = [await caller_send() for _ in range(clients)]
        try:
            return await drive_each(senders, warmup_s, seconds)
        finally:
            for _, writer in streams:
                writer.close()

    return asyncio.run(run())


def keep_alive_post(base: str, path: str, body: bytes) -> Callable[[], None]:
    """One caller's POST on a kept-alive connection (stdlib http.client: the least a Python caller spends
    per call); raises on anything but 200."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"content-type": "application/json"}

    def post() -> None:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise AssertionError(f"{path} answered {response.status}: {payload[:2000].decode(errors='replace')}")

    return post


async def drive_each(sends: list[Callable[[], Awaitable[str | None]]], warmup_s: float, seconds: float) -> Window:
    """One caller per `send` (e.g. each with its own connection), each sending its next call when the last
    one answers, until the window closes."""
    spans: list[tuple[float, float]] = []
    errors: list[str] = []
    start = time.perf_counter() + warmup_s
    end = start + seconds

    async def caller(send) -> None:
        while (t0 := time.perf_counter()) < end:
            error = await send()
            if error is None:
                spans.append((t0, time.perf_counter()))
            else:
                errors.append(error)

    await asyncio.gather(*(caller(send) for send in sends))
    w = window(spans, start, end, len(sends))
    w.errors = errors
    return w


def redis_load(settings, key: bytes, clients: int, warmup_s: float, seconds: float) -> Window:
    """HGETALL of `key` from `clients` concurrent callers on one redis.asyncio client (a connection each)."""
    import redis.asyncio as aioredis

    async def run() -> Window:
        addr = settings.redis
        r = aioredis.Redis(host=addr.host, port=addr.port, db=addr.db, username=addr.username,
                           password=addr.password)
        try:
            async def send() -> str | None:
                return None if await r.hgetall(key) else f"online key {key!r} is empty; run `ems materialize`"

            return await drive(send, clients, warmup_s, seconds)
        finally:
            await r.aclose()

    return asyncio.run(run())


def in_process(call: Callable[[], object], warmup_s: float, seconds: float) -> Window:
    """One caller calling back to back for `seconds` after `warmup_s`."""
    gc.collect()
    spans = []
    cpu0 = time.process_time()
    start = time.perf_counter() + warmup_s
    end = start + seconds
    while (t0 := time.perf_counter()) < end:
        call()
        spans.append((t0, time.perf_counter()))
    w = window(spans, start, end, 1)
    w.cpu_ms = (time.process_time() - cpu0) * 1e3 / max(w.calls, 1)
    return w


def with_cpu(workers: list, load: Callable[[], Window]) -> Window:
    """`load`'s window, with the CPU time `workers` (psutil processes) and this process spent per call in it."""

    import psutil

    def cpu() -> float:
        total = 0.0
        for w in workers:
            with contextlib.suppress(psutil.NoSuchProcess):  # a worker the supervisor replaced
                t = w.cpu_times()
                total += t.user + t.system
        return total

    cpu0, own0 = cpu(), time.process_time()
    w = load()
    w.client_cpu_ms = (time.process_time() - own0) * 1e3 / max(w.calls, 1)
    if workers:
        w.cpu_ms = (cpu() - cpu0) * 1e3 / max(w.calls, 1)
    return w


# ---------------------------------------------------------------------------------------- the service
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(base: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            status = httpx.get(f"{base}/ready", timeout=5).status_code
            if status == 200:
                return
            logger.debug("ems serve: /ready answered %s (attempt %d)", status, attempt)
        except httpx.TransportError as e:
            logger.debug("ems serve: not listening yet (attempt %d): %s", attempt, e)
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"`ems serve` did not get ready within {READY_SECONDS:.0f} s (exit code "
                               f"{proc.poll()}); its log, {log_path}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def serving(ctx, workers: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """`ems serve --workers N` on a free loopback port, auth off, rate limit out of the way; yields (base URL,
    process) once /ready answers 200 and stops it with SIGTERM (uvicorn's graceful shutdown) afterwards."""
    port = _free_port()
    env = {**os.environ, "EMS_API_HOST": "127.0.0.1", "EMS_API_PORT": str(port),
           "EMS_API_RATE_PER_SECOND": UNLIMITED, "EMS_API_RATE_BURST": UNLIMITED}
    env.pop("EMS_API_JWKS_URL", None)
    base, log_path = f"http://127.0.0.1:{port}", ctx.work / "http_serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "ems"), "serve", "--workers", str(workers)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            _wait_ready(base, proc, log_path)
            yield base, proc
        finally:
            proc.terminate()
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                ctx.log(f"http: `ems serve` exited {code} at shutdown; see {log_path}")


def worker_processes(proc: subprocess.Popen) -> list:
    """The uvicorn workers under `proc` (its multiprocessing spawn children) as psutil processes."""
    import psutil

    found = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
    return found


def worker_rss_mb(workers: list) -> list[float]:
    """RSS of each worker, MB, smallest first."""
    return sorted(w.memory_info().rss / 2**20 for w in workers)
