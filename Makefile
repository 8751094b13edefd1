# EMS AI Hub: two commands on a fresh Debian machine.
#   make demo   install, start the local stack, load the real data, feast apply, materialize, show features
#   make test   install and run the unit + integration suites (the suite starts its own services), then
#               the warehouse tests again on TimescaleDB (built from ../shared/vendor, `make timescaledb`)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV   := .venv
BIN    := $(VENV)/bin
EMS    := $(BIN)/ems
FEAST  := $(BIN)/feast
TOOLS  := .ems/tools
UV     := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
UV_VERSION := 0.13.9
TENANT := demo
PLOTS  := .ems/plots
# The demo trains a lighter forecaster (the last 180 days of each asset, 100 boosting rounds) to stay within a
# few minutes; `make demo DEMO_TRAIN=` or `ems train forecast --tenant demo` trains the full one (730 days, 300).
DEMO_TRAIN := --history-days 180 --boost-rounds 100
export UV_COMPILE_BYTECODE := 1
# uv trusts its built-in roots; behind a TLS-inspecting proxy it needs the system bundle.
ifeq ($(origin SSL_CERT_FILE),undefined)
  ifneq ($(wildcard /etc/ssl/certs/ca-certificates.crt),)
    export SSL_CERT_FILE := /etc/ssl/certs/ca-certificates.crt
  endif
endif
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help install up down status demo bench test test-unit test-integration test-timescale timescaledb lint clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS) || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv $(TOOLS); }
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

# --extra spark: pyspark for Feast's spark.engine and Spark batch scoring (needs a Java 17 runtime, see .ci/run);
# --extra dask: distributed, for lightgbm.dask training (`ems train forecast --engine dask`).
$(BIN)/ems: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python 3.11 --extra spark --extra dask
	@touch $@

install: $(BIN)/ems ## create .venv with the locked dependencies

up: install ## start Postgres, Redis, S3 (SeaweedFS) and MLflow on loopback and apply the schema
	$(EMS) up

down: ## stop the services `ems up` started
	$(EMS) down

status: ## show services, URLs and health
	$(EMS) status

demo: up ## the whole foundation on real data (tenant `demo`)
	$(EMS) ingest data/tetouan_power_10min.csv.gz --tenant $(TENANT) --wide --site tetouan \
	  --columns zone1=zone1_power_consumption,zone2=zone2_power_consumption,zone3=zone3_power_consumption
	$(EMS) ingest-weather data/tetouan_power_10min.csv.gz --site tetouan \
	  --columns temperature,humidity,wind_speed,solar_irradiance=general_diffuse_flows
	$(EMS) ingest data/pjm_aep_hourly.csv.gz --tenant $(TENANT) --wide --columns pjm_aep=load_mw --site pjm \
	  --tz America/New_York --period-ending 1h
	$(EMS) ingest data/pjm_pjme_hourly.csv.gz --tenant $(TENANT) --wide --columns pjm_pjme=load_mw --site pjm \
	  --tz America/New_York --period-ending 1h
	$(EMS) refresh
	$(FEAST) apply
	$(EMS) materialize
	$(FEAST) materialize-incremental $$(date -u +%Y-%m-%dT%H:%M:%S)
	for service in forecast_basic forecast_advanced anomaly_detection; do \
	  $(EMS) features --tenant $(TENANT) --service $$service --asset zone1 --asset pjm_aep; done
	forecaster=$$($(EMS) train forecast --tenant $(TENANT) $(DEMO_TRAIN) | tail -n 1) && \
	  $(EMS) models promote $$forecaster --to production
	detector=$$($(EMS) train anomaly --tenant $(TENANT) --method isolation_forest | tail -n 1) && \
	  $(EMS) models promote $$detector --to production
	$(EMS) models list --tenant $(TENANT)
	$(EMS) forecast --tenant $(TENANT) --asset zone1 --horizon 24 --plot $(PLOTS)/forecast_zone1.png
	$(EMS) anomaly --tenant $(TENANT) --asset zone1 --method isolation_forest --lookback-hours 336 \
	  --plot $(PLOTS)/anomalies_isolation_forest_zone1.png
	$(EMS) anomaly --tenant $(TENANT) --asset zone1 --method forecast_residual --lookback-hours 336 \
	  --plot $(PLOTS)/anomalies_forecast_residual_zone1.png
	$(EMS) explain --tenant $(TENANT) --asset zone1 --plot $(PLOTS)/explain_zone1.png
	$(EMS) status
	@echo "Plots: $(PLOTS)/  ·  notebook: notebooks/quickstart.ipynb"
	@echo "MLflow UI (runs, plots, stages): $$($(BIN)/python -c 'from core.settings import Settings; print(Settings().mlflow_tracking_uri)')"

bench: up ## benchmarks against raw floors on the local stack (report in .ems/bench/reports/)
	$(EMS) bench

timescaledb: install ## build TimescaleDB (EMS_TIMESCALEDB_SOURCE or ../shared/vendor) into the local Postgres, cached
	$(BIN)/python -m stack.timescale

# The TimescaleDB pass runs its own private stack on ports moved 100 further than the plain pass's.
TS_TEST_PORT_OFFSET := $(shell echo $$(( $${EMS_TEST_PORT_OFFSET:-0} + 100 )))

# The TimescaleDB pass (its build included) runs beside the plain pass, at lower priority: the plain pass
# keeps one core busy most of the time (CLI subprocesses), so the other core runs the second pass. Its output
# goes to .ems/logs/test-timescale.log and is printed once both have finished. Its OpenMP threads (LightGBM)
# sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE): spinning threads of one pass took the core
# the other pass needed (a 3-quantile fit beside one busy core: 24-136 s spinning, 11-18 s passive, 6.5 s alone).
TS_LOG := .ems/logs/test-timescale.log

test: install ## unit + integration tests on plain Postgres, beside them the warehouse tests on TimescaleDB
	@mkdir -p $(dir $(TS_LOG)); \
	echo "TimescaleDB pass (make test-timescale) runs beside this one at nice 5; output: $(TS_LOG)"; \
	OMP_WAIT_POLICY=PASSIVE nice -n 5 $(MAKE) --no-print-directory test-timescale > $(TS_LOG) 2>&1 & ts=$$!; \
	plain=0; EMS_TEST_PG_FLAVOUR=plain $(BIN)/python -m pytest || plain=$$?; \
	timescale=0; wait $$ts || timescale=$$?; \
	echo "--------------------------------- TimescaleDB pass ($(TS_LOG))"; cat $(TS_LOG); \
	echo "tests: plain PostgreSQL pass exit $$plain, TimescaleDB pass exit $$timescale"; \
	[ $$plain -eq 0 ] && [ $$timescale -eq 0 ]

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-timescale: install ## warehouse tests on TimescaleDB (built first; skipped without its source, except under CI)
	@if reason=$$($(BIN)/python -m stack.timescale status 2>&1 | tail -n 1); then \
	  $(BIN)/python -m stack.timescale; \
	  EMS_TEST_PG_FLAVOUR=timescale EMS_TEST_PORT_OFFSET=$(TS_TEST_PORT_OFFSET) \
	    $(BIN)/python -m pytest tests/integration -m warehouse; \
	elif [ "$${CI:-}" = true ]; then \
	  echo "TimescaleDB pass cannot run under CI: $${reason#timescaledb: }" >&2; exit 1; \
	else \
	  echo "TimescaleDB pass skipped: $${reason#timescaledb: }"; \
	fi

lint: install
	$(UV) run --frozen ruff check .

clean: down ## stop services and delete local state (.ems) and the venv
	rm -rf .ems $(VENV)
