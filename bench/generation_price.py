"""The bench tenant's wind unit and market zone, from the real series in data/, and their forecasters.

- Wind unit `wind01` (capacity 100, site `bench-wp1`): GEFCom2012 farm wp1's hourly power (data/, % of
  capacity) and the site's weather forecasts as issued (both wp1 forecast files: 2010-12-06 .. 2011-01-04).
  Its forecasts are issued at WIND_ISSUE, an hour every target hour of a day ahead has a weather forecast for.
- Market zone `np01` (site `bench-np`, Europe/Oslo): six weeks of Nord Pool prices (data/epf_np_extract.csv.gz)
  without the last day, and the market's day-ahead load and wind forecasts for every day, issued at 10:00
  local the day before (the rule warehouse/market.py reads by); its forecast is that last day's 24 prices.
The same set-up as tests/integration/test_generation.py and test_price.py, through the ingest code of `ems
ingest` and `ems ingest-weather --forecast`; ingested once, then reused (a rerun finds the rows and the kinds).
The forecasters are trained once and reused while their settings are today's (as bench/rows_serving.ensure_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.data import TENANT
from core.settings import ROOT

WIND_UNIT, WIND_SITE, WIND_CAPACITY = "wind01", "bench-wp1", 100.0
WIND_POWER = ROOT / "data" / "gefcom2012_wind_power_wp1.csv.gz"
WIND_FORECASTS = (ROOT / "data" / "gefcom2012_wind_forecasts_wp1_dec.csv.gz",
                  ROOT / "data" / "gefcom2012_wind_forecasts_wp1.csv.gz")
WIND_ISSUE = pd.Timestamp("2011-01-01T01:00Z")  # the 00:00 issue covers the next 48 h: every input is known
ZONE, ZONE_SITE, ZONE_TZ = "np01", "bench-np", "Europe/Oslo"
PRICES = ROOT / "data" / "epf_np_extract.csv.gz"


@dataclass(frozen=True)
class Units:
    """What the generation and price rows forecast: one wind unit (issued at `wind_issue`) and one zone."""

    tenant: str = TENANT
    wind: str = WIND_UNIT
    wind_site: str = WIND_SITE
    capacity: float = WIND_CAPACITY
    wind_issue: pd.Timestamp = WIND_ISSUE
    zone: str = ZONE
    zone_site: str = ZONE_SITE
    zone_tz: str = ZONE_TZ


def price_files(extract: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(prices, covariates) of the NP extract: the prices of every day but the last (the day to forecast), and
    the load and wind forecasts of every day issued at market.ISSUE_HOUR local on the day before."""
    from warehouse.market import ISSUE_HOUR

    ts = pd.to_datetime(extract["timestamp"])
    last = ts.dt.normalize().max()
    prices = extract.loc[ts < last, ["timestamp", "price"]]
    cov = pd.DataFrame({"issue_time": ts.dt.normalize() - pd.Timedelta(days=1) + pd.Timedelta(hours=ISSUE_HOUR),
                        "target_time": ts, "load_forecast": extract["load_forecast"],
                        "wind_forecast": extract["wind_forecast"]})
    return prices.reset_index(drop=True), cov


def _stored(ctx, asset: str, site: str) -> tuple[str | None, int, int]:
    """(kind, hourly rows, covariate rows) of a bench asset and its site."""
    from warehouse.db import connect

    with connect(ctx.settings) as conn:
        return conn.execute(
            "SELECT (SELECT kind FROM assets WHERE tenant_id = %(t)s AND asset_id = %(a)s),"
            " (SELECT count(*) FROM readings_hourly WHERE tenant_id = %(t)s AND asset_id = %(a)s),"
            " (SELECT count(*) FROM covariate_forecasts WHERE series_id = %(s)s)",
            {"t": TENANT, "a": asset, "s": site}).fetchone()


def ensure(ctx) -> Units:
    """Tenant `bench`'s wind unit and market zone with their readings and covariates. Idempotent: what is
    stored (kind set, every hour and every covariate row) is left as it is."""
    from warehouse.assets import set_kind
    from warehouse.covariates import ingest_forecasts
    from warehouse.ingest import ingest_readings
    from warehouse.refresh import refresh

    power = pd.read_csv(WIND_POWER)
    forecasts = pd.concat([pd.read_csv(f) for f in WIND_FORECASTS])
    issues = len(forecasts.dropna(subset=["wind_speed", "wind_u", "wind_v"], how="all"))  # ingest rejects the rest
    if _stored(ctx, WIND_UNIT, WIND_SITE) != ("generation", len(power), issues):
        ctx.log(f"bench data: wind unit {WIND_UNIT} from GEFCom2012 wp1 (data/), once")
        ingest_readings(ctx.settings, WIND_POWER, TENANT, wide=True, columns=f"{WIND_UNIT}=wp1", site=WIND_SITE)
        refresh(ctx.settings)
        set_kind(ctx.settings, TENANT, WIND_UNIT, "generation", WIND_CAPACITY, "wind")
        for f in WIND_FORECASTS:
            ingest_forecasts(ctx.settings, f, WIND_SITE)
    prices, cov = price_files(pd.read_csv(PRICES))
    if _stored(ctx, ZONE, ZONE_SITE) != ("market", len(prices), len(cov)):
        ctx.log(f"bench data: market zone {ZONE} from the Nord Pool extract (data/), once")
        folder = Path(ctx.work)
        folder.mkdir(parents=True, exist_ok=True)
        prices.to_csv(folder / "np_prices.csv", index=False)
        cov.to_csv(folder / "np_covariates.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        try:
            ingest_readings(ctx.settings, folder / "np_prices.csv", TENANT, wide=True, columns=f"{ZONE}=price",
                            site=ZONE_SITE, tz=ZONE_TZ)
            refresh(ctx.settings)
            set_kind(ctx.settings, TENANT, ZONE, "market")
            ingest_forecasts(ctx.settings, folder / "np_covariates.csv", ZONE_SITE, tz=ZONE_TZ)
        finally:
            (folder / "np_prices.csv").unlink(missing_ok=True)
            (folder / "np_covariates.csv").unlink(missing_ok=True)
    return Units()


def generation_params(unit: str) -> dict[str, str]:
    """The run params a reusable generation model has (as MLflow stores them: strings)."""
    from registry import generation as gen

    model = gen.GenerationModel([unit], gen.TUNED_PARAMS, gen.TUNED_ROUNDS, mix=gen.POINT_MIX)
    return {"assets": unit, "features": ",".join(gen.FEATURES), **{f"lgb.{k}": str(v) for k, v in model.params.items()},
            **{f"rounds.{k}": str(v) for k, v in model.rounds.items()},
            **{f"mix.{k}": str(v) for k, v in model.mix.items()}}


def price_params(zone: str, site: str, tz: str) -> dict[str, str]:
    """The run params a reusable price model has."""
    from registry import train_price
    from warehouse.market import ISSUE_HOUR

    return {"asset": zone, "site": site, "timezone": tz,
            "weights": ",".join(f"{k}={v}" for k, v in train_price.WEIGHTS.items()),
            "ridge_penalty": str(train_price.RIDGE_PENALTY), "issue_hour_local": str(ISSUE_HOUR)}


def reusable(tags: dict, params: dict, current: dict[str, str]) -> bool:
    """A production version is reused while it has its files' location and every current setting (else the
    rows would measure an old model)."""
    from core.names import TAG_ARTIFACT_LOCATION

    return TAG_ARTIFACT_LOCATION in tags and all(params.get(k) == v for k, v in current.items())


def ensure_models(ctx, store, units: Units) -> tuple[str, str]:
    """(generation model id, price model id): the bench tenant's production versions, trained once."""
    from core.errors import ModelNotFoundError
    from core.names import DEFAULT_FORECAST_NAMES
    from registry import lifecycle, train_generation, train_price

    client = lifecycle.client(ctx.settings.mlflow_tracking_uri)

    def production(kind: str, current: dict[str, str]) -> str | None:
        try:
            info = lifecycle.resolve_production(client, units.tenant, DEFAULT_FORECAST_NAMES[kind])
        except ModelNotFoundError:
            return None
        params = client.get_run(info.run_id).data.params if info.run_id else {}
        return info.id if reusable(info.tags, params, current) else None

    gen_id = production("generation", generation_params(units.wind))
    if gen_id is None:
        ctx.log(f"bench model: training {units.tenant}:generation_forecaster on {units.wind} (once)")
        gen_id = train_generation.train(ctx.settings, store, units.tenant, assets=[units.wind], holdout_days=3).model_id
        lifecycle.promote(client, gen_id, "production", force=True)  # latency, not accuracy
    price_id = production("price", price_params(units.zone, units.zone_site, units.zone_tz))
    if price_id is None:
        ctx.log(f"bench model: training {units.tenant}:price_forecaster on {units.zone} (once)")
        price_id = train_price.train(ctx.settings, store, units.tenant, units.zone, holdout_days=7).model_id
        lifecycle.promote(client, price_id, "production", force=True)
    return gen_id, price_id
