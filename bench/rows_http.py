"""HTTP rows: the AI Hub API (`ems serve --workers 2`, auth off, loopback) under a bounded asyncio HTTP/1.1 load
(bench/load.py), against the same work done without HTTP in this run: the SDK's forecast call in process,
and raw redis.asyncio HGETALL of the asset's Feast key under the same number of concurrent clients.

The load generator runs in this process and shares the machine's cores with the workers, as a caller on
the same host would. Project and floor windows alternate, so machine noise hits both alike.

    python -m bench.rows_http TENANT ASSET   (the memory floor: see plain_process_rss)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

import httpx

from bench import core, load
from bench.data import DataSet
from core.settings import ROOT

WORKERS = 2
CLIENTS = 32
HORIZON = 24
SERVICE = "forecast_advanced"
MAX_ADDED_MS = 1.5  # forecast over HTTP, one client: p50 at most this much above the in-process p50
MIN_THROUGHPUT = 0.7  # forecast over HTTP, CLIENTS clients: >= this share of WORKERS x in-process 1-caller rate
MAX_FEATURES_RATIO = 3.0  # /ai/features/get p99 vs raw HGETALL p99, both at CLIENTS clients
RSS_CALLS = 50  # calls the memory floor's plain process makes before reporting its RSS


@dataclass
class Measured:
    """What one run of the HTTP group measured (latencies in ms)."""

    http_1: list[float]  # POST /ai/forecast from one keep-alive client, alternated with ...
    local_1: list[float]  # ... the same call in process
    local: list[load.Window]  # one in-process caller, back to back
    http: list[load.Window]  # CLIENTS HTTP callers (forecast), alternated with `local`
    redis: list[load.Window]  # CLIENTS raw HGETALL callers, alternated with ...
    features: list[load.Window]  # ... CLIENTS HTTP callers (features)
    async_1: load.Window  # one asyncio HTTP caller (forecast): the load generator at one client
    rss_mb: list[float]  # per worker, after the load
    plain_rss_mb: float
    model_id: str
    to_json: list[float] = field(default_factory=list)  # in process, forecast made into the endpoint's JSON
    restarted: int = 0  # workers uvicorn's supervisor replaced during the load (no answer to its 5 s ping)


def added_row(name: str, project: float, floor: float, max_added: float, floor_desc: str = "",
              details: dict | None = None) -> core.Row:
    """A latency row judged by what the project adds to the floor (ms), not by their ratio."""
    return core.Row(name, "ms", project, floor, f"<= floor + {max_added:g} ms", project - floor <= max_added,
                    project / floor if floor else None, floor_desc=floor_desc, details=details or {})


def plain_process_rss(tenant: str, asset: str) -> float:
    """The memory floor: RSS (MB) of a fresh process that made the workers' calls through the SDK, no HTTP."""
    out = subprocess.run([sys.executable, "-m", "bench.rows_http", tenant, asset], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "MLFLOW_LOGGING_LEVEL": "ERROR"}, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"bench.rows_http memory floor failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"]


# ---------------------------------------------------------------------------------------- rows
def http_rows(ctx, data: DataSet, store, model_id: str) -> list[core.Row]:
    from inference.client import Client
    from inference.online import online_reader

    client = Client(ctx.settings, store)
    tenant, asset = data.tenant, data.assets[0]
    key = online_reader(store)._key(tenant, asset)
    forecast_body = json.dumps({"tenant_id": tenant, "asset_id": asset, "horizon_hours": HORIZON,
                                "include_quantiles": True}).encode()
    features_body = json.dumps({"tenant_id": tenant, "asset_ids": [asset], "feature_service": SERVICE}).encode()
    seconds, warmup_s, rounds = (3.0, 1.0, 2) if ctx.quick else (5.0, 1.0, 3)

    def in_process_forecast() -> None:
        client.forecast(tenant, asset, HORIZON)

    ctx.log("http: memory floor (a plain process making the same calls through the SDK)")
    plain_rss = plain_process_rss(tenant, asset)
    ctx.log(f"http: starting `ems serve --workers {WORKERS}` on loopback")
    with load.serving(ctx, WORKERS) as (base, proc):
        with httpx.Client(base_url=base, timeout=60) as http:
            def post(path: str, body: bytes) -> httpx.Response:
                return load.checked(http.post(path, content=body, headers=load.JSON))

            got = post("/ai/forecast", forecast_body).json()
            if got.get("model_id") != model_id or got.get("source") != "online":
                raise AssertionError(f"HTTP forecast came from {got.get('source')} / {got.get('model_id')}, "
                                     f"expected online / {model_id}")
            post("/ai/features/get", features_body)
            ctx.log("http: warming both workers")
            load.http_load(base, "/ai/forecast", forecast_body, CLIENTS, 0.0, 3.0)
            load.http_load(base, "/ai/features/get", features_body, CLIENTS, 0.0, 3.0)
            ctx.log(f"http: forecast, 1 client, {ctx.reps} calls alternated with the in-process call")
            one, local = core.paired(load.keep_alive_post(base, "/ai/forecast", forecast_body), in_process_forecast,
                                     ctx.reps, ctx.warmup)
        # where the added time goes: the same call made into the JSON the endpoint returns (not a floor)
        encoded, _ = core.paired(lambda: json.dumps(client.forecast(tenant, asset, HORIZON).to_dict()), lambda: None,
                                 ctx.reps // 2, ctx.warmup)
        ctx.log(f"http: forecast and features at {CLIENTS} clients, {rounds} x {seconds:g} s windows each")
        workers = load.worker_processes(proc)

        def under_load(path: str, body: bytes, clients: int) -> load.Window:
            return load.with_cpu(workers, lambda: load.http_load(base, path, body, clients, warmup_s, seconds))

        m = Measured(one, local, [], [], [], [], load.Window(1, 0.0, 0, []), [], plain_rss, model_id, encoded)
        for _ in range(rounds):
            m.local.append(load.in_process(in_process_forecast, warmup_s, seconds))
            m.http.append(under_load("/ai/forecast", forecast_body, CLIENTS))
            m.redis.append(load.with_cpu([], lambda: load.redis_load(ctx.settings, key, CLIENTS, warmup_s, seconds)))
            m.features.append(under_load("/ai/features/get", features_body, CLIENTS))
        m.async_1 = under_load("/ai/forecast", forecast_body, 1)
        m.rss_mb = load.worker_rss_mb(load.worker_processes(proc))
        m.restarted = sum(1 for w in workers if not w.is_running())
    return _rows(ctx, m)


def _merged(windows: list[load.Window]) -> list[float]:
    return [x for w in windows for x in w.latencies]


def _no_failures(row: core.Row, windows: list[load.Window]) -> core.Row:
    failed = sum(len(w.errors) for w in windows)
    row.passed = row.passed and not failed
    row.target += f"; no failed calls (was {failed:,})"
    return row


def _rows(ctx, m: Measured) -> list[core.Row]:
    one, local, rss, plain_rss = m.http_1, m.local_1, m.rss_mb, m.plain_rss_mb
    single = statistics.median(w.throughput for w in m.local)
    served = statistics.median(w.throughput for w in m.http)
    many, feats, raw = _merged(m.http), _merged(m.features), _merged(m.redis)
    ctx.log(f"http: forecast p50 {core.p(one, 50):.2f} ms over HTTP vs {core.p(local, 50):.2f} ms in process; "
            f"{served:.0f}/s at {CLIENTS} clients vs {single:.0f}/s x {WORKERS}; features p99 "
            f"{core.p(feats, 99):.2f} ms vs HGETALL {core.p(raw, 99):.2f} ms; worker RSS "
            f"{' / '.join(f'{x:.0f}' for x in rss)} MB")
    growth = {"http_1_client": m.async_1.summary(), f"http_{CLIENTS}_clients": core.summary(many)}
    rows = [added_row(
        f"forecast over HTTP, 1 asset, {HORIZON} h with quantiles, 1 client, p50", core.p(one, 50), core.p(local, 50),
        MAX_ADDED_MS,
        floor_desc="the same call in process (inference.client.Client.forecast), alternated call by call with a "
                   "keep-alive http.client POST /ai/forecast (JSON built by both sides)",
        details={"http": core.summary(one), "in_process": core.summary(local),
                 "added_p50_ms": core.p(one, 50) - core.p(local, 50),
                 "added_p99_ms": core.p(one, 99) - core.p(local, 99), "model": m.model_id,
                 "in_process_to_json": core.summary(m.to_json) if m.to_json else None})]
    rows.append(_no_failures(core.ratio_row(
        f"forecast over HTTP, {CLIENTS} clients, {WORKERS} workers, throughput", "req/s", served, single * WORKERS,
        min_ratio=MIN_THROUGHPUT,
        floor_desc=f"{WORKERS} x the in-process single-caller rate (Client.forecast back to back, windows "
                   f"alternated with the HTTP ones); HTTP: {CLIENTS} asyncio keep-alive HTTP/1.1 callers, each "
                   "sending its next call when the last answers, generator on the same cores",
        details={"in_process_windows": [w.summary() for w in m.local], "http_windows": [w.summary() for w in m.http],
                 f"latency_{CLIENTS}_clients": core.summary(many), "in_process_latency": core.summary(
                     _merged(m.local)), "growth": growth, "workers_restarted": m.restarted}), m.http + [m.async_1]))
    rows.append(_no_failures(core.ratio_row(
        f"/ai/features/get {SERVICE}, 1 asset, {CLIENTS} clients, p99", "ms", core.p(feats, 99), core.p(raw, 99),
        max_ratio=MAX_FEATURES_RATIO,
        floor_desc=f"raw HGETALL of the asset's Feast key from {CLIENTS} redis.asyncio callers, windows alternated "
                   "with the HTTP ones (no decoding, no freshness check)",
        details={"http_windows": [w.summary() for w in m.features], "redis_windows": [w.summary() for w in m.redis],
                 "http": core.summary(feats), "redis": core.summary(raw)}), m.features + m.redis))
    worst = max(rss) if rss else float("nan")
    rows.append(core.Row(
        f"API worker RSS after the load (largest of {len(rss)})", "MB", worst, plain_rss, "informational (no target)",
        True, worst / plain_rss if plain_rss else None,
        floor_desc=f"a plain process after {RSS_CALLS} forecast and features calls through the SDK (no HTTP stack)",
        details={"workers_mb": [round(x, 1) for x in rss], "plain_process_mb": round(plain_rss, 1),
                 "workers_restarted": m.restarted}))
    return rows


def main(tenant: str, asset: str) -> None:
    import psutil

    from core.settings import Settings
    from inference.client import Client
    from inference.freshness import stale_warnings
    from warehouse.store import online_features

    settings = Settings()
    client = Client(settings)
    for _ in range(RSS_CALLS):
        client.forecast(tenant, asset, HORIZON)
        online_features(settings, SERVICE, tenant, [asset], store=client.store)
        stale_warnings(settings, tenant, [asset], store=client.store)
    sys.stdout.write(json.dumps({"rss_mb": psutil.Process().memory_info().rss / 2**20}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
