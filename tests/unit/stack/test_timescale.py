"""TimescaleDB for the local Postgres (stack/timescale.py) and its preload (stack/services.py), without
building or starting anything: source discovery, the build cache, installing from it, the preload flags."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from core.settings import ROOT, Settings
from stack import services, timescale
from stack.process import ServiceError


def _tarball(path, version: str, top: str | None = None):
    """A minimal source-release-shaped archive: top folder with version.config."""
    top = top or f"timescaledb-{version}"
    with tarfile.open(path, "w:gz") as tar:
        data = f"version = {version}\nprevious_version = 0.0.1\n".encode()
        info = tarfile.TarInfo(f"{top}/version.config")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def _fake_pg(tmp_path, with_timescaledb: bool = False) -> timescale.PgInstall:
    pg = timescale.PgInstall(tmp_path / "pg" / "bin", tmp_path / "pg" / "lib", tmp_path / "pg" / "share", "18.6")
    for d in (pg.bin, pg.pkglibdir, pg.extension_dir):
        d.mkdir(parents=True, exist_ok=True)
    if with_timescaledb:
        pg.library.write_bytes(b"\x7fELF loader")
        (pg.extension_dir / "timescaledb.control").write_text("default_version = '2.29.2'\n")
    return pg


def _fake_cache(tools, version: str = timescale.VERSION, major: int = 18):
    cache = timescale.cache_dir(tools, version, major)
    (cache / "lib").mkdir(parents=True)
    (cache / "extension").mkdir()
    (cache / "lib" / "timescaledb.so").write_bytes(b"\x7fELF loader")
    (cache / "lib" / f"timescaledb-{version}.so").write_bytes(b"\x7fELF versioned")
    (cache / "extension" / "timescaledb.control").write_text(f"default_version = '{version}'\n")
    (cache / "extension" / f"timescaledb--{version}.sql").write_text("-- script\n")
    (cache / "manifest.json").write_text(json.dumps({"timescaledb": version, "build_seconds": 68.0}))
    return cache


# ------------------------------------------------------------------ source
def test_the_source_comes_from_the_environment_first(tmp_path, monkeypatch):
    archive = _tarball(tmp_path / "ts.tar.gz", "2.30.0")
    monkeypatch.setenv(timescale.SOURCE_ENV, str(archive))
    source = timescale.find_source(vendor_dir=tmp_path / "nowhere")
    assert (source.path, source.version) == (archive, "2.30.0")  # version read from version.config


def test_a_missing_source_is_one_error_naming_the_variable_and_the_place_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(timescale.SOURCE_ENV, raising=False)
    with pytest.raises(timescale.TimescaleError) as caught:
        timescale.find_source(vendor_dir=tmp_path / "vendor")
    message = str(caught.value)
    assert timescale.SOURCE_ENV in message and str(tmp_path / "vendor") in message and "\n" not in message
    monkeypatch.setenv(timescale.SOURCE_ENV, str(tmp_path / "gone.tar.gz"))
    with pytest.raises(timescale.TimescaleError, match=f"{timescale.SOURCE_ENV}=.*gone.tar.gz does not exist"):
        timescale.find_source(vendor_dir=tmp_path / "vendor")


def test_the_vendored_release_of_this_version_is_preferred(tmp_path, monkeypatch):
    monkeypatch.delenv(timescale.SOURCE_ENV, raising=False)
    for v in ("2.9.0", timescale.VERSION, "9.0.0"):
        _tarball(tmp_path / f"timescaledb-{v}.tar.gz", v)
    assert timescale.find_source(vendor_dir=tmp_path).version == timescale.VERSION
    (tmp_path / f"timescaledb-{timescale.VERSION}.tar.gz").unlink()
    assert timescale.find_source(vendor_dir=tmp_path).version == "9.0.0"  # newest, not the last by name


def test_the_vendor_folder_is_beside_the_repo():
    assert timescale.VENDOR_DIR == ROOT.parent / "shared" / "vendor"


# ------------------------------------------------------------------ cache and install
def test_a_cached_build_is_copied_in_without_building(tmp_path, monkeypatch):
    monkeypatch.delenv(timescale.SOURCE_ENV, raising=False)
    monkeypatch.setattr(timescale, "VENDOR_DIR", tmp_path / "no-vendor")
    monkeypatch.setattr(timescale, "build", lambda *a, **k: pytest.fail("built although a cache exists"))
    pg, tools = _fake_pg(tmp_path), tmp_path / "tools"
    cache = _fake_cache(tools)
    assert not pg.has_timescaledb()
    timescale.ensure(tools, pg)
    assert pg.has_timescaledb() and pg.timescaledb_version() == timescale.VERSION
    assert sorted(p.name for p in pg.extension_dir.iterdir()) == sorted(p.name for p in (cache / "extension").iterdir())
    assert timescale.install_from(cache, pg) == 0  # second run: nothing to copy


def test_an_incomplete_cache_entry_is_not_used(tmp_path):
    cache = _fake_cache(tmp_path / "tools")
    (cache / "manifest.json").unlink()  # written last: its absence means the build did not finish
    assert timescale.cached(cache) is None


def test_without_source_or_cache_ensure_fails_with_the_source_error(tmp_path, monkeypatch):
    monkeypatch.delenv(timescale.SOURCE_ENV, raising=False)
    monkeypatch.setattr(timescale, "VENDOR_DIR", tmp_path / "no-vendor")
    with pytest.raises(timescale.TimescaleError, match="TimescaleDB source not found"):
        timescale.ensure(tmp_path / "tools", _fake_pg(tmp_path))


def test_availability_says_installed_cached_buildable_or_why_not(tmp_path, monkeypatch):
    monkeypatch.delenv(timescale.SOURCE_ENV, raising=False)
    monkeypatch.setattr(timescale, "VENDOR_DIR", tmp_path / "vendor")
    tools, pg = tmp_path / "tools", _fake_pg(tmp_path)
    ok, reason = timescale.availability(tools, pg)
    assert not ok and "TimescaleDB source not found" in reason
    (tmp_path / "vendor").mkdir()
    _tarball(tmp_path / "vendor" / f"timescaledb-{timescale.VERSION}.tar.gz", timescale.VERSION)
    assert timescale.availability(tools, pg) == (
        True, f"TimescaleDB {timescale.VERSION} can be built from {tmp_path / 'vendor'}/timescaledb-"
              f"{timescale.VERSION}.tar.gz")
    _fake_cache(tools)
    assert timescale.availability(tools, pg)[1].startswith(f"TimescaleDB {timescale.VERSION} is built")
    timescale.install_from(timescale.cache_dir(tools, timescale.VERSION, 18), pg)
    assert timescale.availability(tools, pg)[1].startswith(f"TimescaleDB {timescale.VERSION} is installed")


# ------------------------------------------------------------------ preload in the local Postgres
PRELOAD = ["-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off",
           "-c", "max_worker_processes=32"]


def _postgres(tmp_path, monkeypatch, mode: str | None, installed: bool) -> services.Postgres:
    if mode is None:
        monkeypatch.delenv("EMS_PG_TIMESCALEDB", raising=False)
    else:
        monkeypatch.setenv("EMS_PG_TIMESCALEDB", mode)
    monkeypatch.setenv("EMS_HOME", str(tmp_path / "home"))
    pg = _fake_pg(tmp_path, with_timescaledb=installed)
    monkeypatch.setattr(timescale, "pg_install", lambda bin_dir=None: pg)
    return services.Postgres(Settings())


def _preloads(cmd: list[str]) -> bool:
    return any(cmd[i:i + len(PRELOAD)] == PRELOAD for i in range(len(cmd)))


@pytest.mark.parametrize(("mode", "installed", "preload"), [
    (None, True, True), ("auto", True, True), ("auto", False, False), ("on", True, True),
    ("off", True, False), ("off", False, False), ("OFF", True, False)])
def test_timescaledb_is_preloaded_as_the_setting_and_the_install_say(tmp_path, monkeypatch, mode, installed,
                                                                     preload):
    assert _preloads(_postgres(tmp_path, monkeypatch, mode, installed).command()) is preload


def test_on_without_the_library_says_to_run_make_timescaledb(tmp_path, monkeypatch):
    pg = _postgres(tmp_path, monkeypatch, "on", installed=False)
    with pytest.raises(ServiceError, match="make timescaledb"):
        pg.command()


def test_an_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv("EMS_PG_TIMESCALEDB", "maybe")
    with pytest.raises(ValueError, match="pg_timescaledb"):
        Settings()
