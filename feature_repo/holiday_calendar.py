"""Public holidays for the calendar on-demand view, by the asset's IANA time zone.

The country is the one the tz database assigns the zone (zone.tab: America/New_York -> US,
Africa/Casablanca -> MA); zones without one (UTC, Etc/*, link names such as US/Eastern) have no
holidays. Each (country, year) set is built once per process by the `holidays` package, so a lookup
on the online path is a set membership test."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path

SYSTEM_ZONE_TAB = Path("/usr/share/zoneinfo/zone.tab")


@lru_cache(maxsize=1)
def zone_countries() -> dict[str, str]:
    """IANA zone -> ISO 3166 country code, from the tzdata package's zone.tab (else the system's)."""
    from importlib import resources

    try:
        text = resources.files("tzdata").joinpath("zoneinfo/zone.tab").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        text = SYSTEM_ZONE_TAB.read_text() if SYSTEM_ZONE_TAB.is_file() else ""
    out = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and not line.startswith("#"):
            out[fields[2]] = fields[0]
    return out


def country_of(zone: str | None) -> str | None:
    return zone_countries().get(zone) if zone else None


@lru_cache(maxsize=512)
def holiday_dates(country: str, year: int) -> frozenset[date]:
    """The country's public holidays (observed days included) in one year; none for a country the
    `holidays` package does not know."""
    import holidays

    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:
        return frozenset()


def is_holiday(zone: str | None, day: date) -> int:
    """1 if `day` (a local date) is a public holiday in the zone's country, else 0."""
    country = country_of(zone)
    return int(country is not None and day in holiday_dates(country, day.year))
