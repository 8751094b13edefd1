"""Scheduled and on-demand pipelines on Dagster (hourly, daily, backfill) over the SDK's own functions.
The top layer: it may import everything below it; nothing imports it but cli.py."""
