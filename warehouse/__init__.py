"""The warehouse layer: Postgres/TimescaleDB schema, ingest, feature tables, Feast's offline store."""

import core  # noqa: F401  (before Feast: its import is 4.5 s cheaper, see core/__init__.py)
