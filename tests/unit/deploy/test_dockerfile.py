"""deploy/Dockerfile, checked without Docker: pinned bases, the locked install, a non-root user, `ems`
as the command, and every system library the locked wheels link against."""

from __future__ import annotations

import json
import re
import shlex
import struct
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from core.settings import ROOT
from tests.unit.deploy.conftest import DOCKERFILE, IMAGE_WORKDIR

# Libraries python:3.11-slim-bookworm already has (libc6, libgcc-s1, libstdc++6, zlib1g).
SLIM_BASE_LIBRARIES = {
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libresolv.so.2",
    "libutil.so.1", "ld-linux-x86-64.so.2", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
}
# The Debian package that provides each other library a wheel links against.
DEBIAN_PACKAGE = {"libgomp.so.1": "libgomp1", "libgomp.so.1.0.0": "libgomp1"}
# Linked by optional extensions that load only if the library exists (missing here too).
OPTIONAL = {"libtbb.so.12"}  # numba's TBB threading layer; numba falls back to OpenMP / workqueue


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def _of(keyword: str) -> list[str]:
    return [args for kw, args in _instructions() if kw == keyword]


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and bool(re.search(r"\d", tag)) and not tag.startswith("latest")


def test_base_and_copied_images_are_pinned():
    images = [args.split()[0] for args in _of("FROM")]
    images += [m for args in _of("COPY") for m in re.findall(r"--from=(\S+)", args)]
    assert images
    for image in images:
        assert _pinned(image), image


def test_base_python_satisfies_requires_python():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.match(r"python:(\d+\.\d+\.\d+)", _of("FROM")[0])[1]
    assert version in SpecifierSet(requires)


def test_uv_is_the_makefile_version():
    makefile = (ROOT / "Makefile").read_text()
    wanted = re.search(r"^UV_VERSION\s*:=\s*(\S+)", makefile, re.M)[1]
    assert any(f"ghcr.io/astral-sh/uv:{wanted} " in args + " " for args in _of("COPY"))


def test_dependencies_install_from_the_lock_file_only():
    runs = " && ".join(_of("RUN"))
    syncs = re.findall(r"uv sync[^&]*", runs)
    assert len(syncs) == 2 and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    assert "pip install" not in runs and "uv pip" not in runs and "uv add" not in runs
    assert any("uv.lock" in args.split() for args in _of("COPY"))


def test_runs_as_an_unprivileged_user_who_can_write_only_ems_home():
    user = _of("USER")[-1]
    assert user not in ("root", "0", "0:0")
    useradd = next(args for args in _of("RUN") if "useradd" in args)
    assert re.search(rf"useradd .*--uid (\d+) .*\b{re.escape(user)}\b", useradd)
    assert int(re.search(r"--uid (\d+)", useradd)[1]) >= 1000
    assert f"chown {user} {IMAGE_WORKDIR}/.ems" in useradd and "chown -R" not in useradd


def test_workdir_is_where_the_compose_file_expects_the_repo():
    assert _of("WORKDIR") == [IMAGE_WORKDIR]


def test_default_command_runs_ems():
    entrypoints, cmds = _of("ENTRYPOINT"), _of("CMD")
    argv = [*shlex.split(" ".join(entrypoints)), *json.loads(cmds[-1])]
    assert argv[0] == "ems"


def _elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF shared object (what `ldd` starts from)."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:6] != b"\x7fELF\x02\x01":
            return []
        shoff, = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
        f.seek(shoff)
        sections = [struct.unpack_from("<IIQQQQIIQQ", f.read(shentsize)) for _ in range(shnum)]
        needed = []
        for _, sh_type, _, _, offset, size, link, *_ in sections:
            if sh_type != 6:  # SHT_DYNAMIC; sh_link is its string table
                continue
            f.seek(offset)
            entries = struct.iter_unpack("<qQ", f.read(size))
            strtab_offset, strtab_size = sections[link][4], sections[link][5]
            f.seek(strtab_offset)
            strtab = f.read(strtab_size)
            for tag, value in entries:
                if tag == 0:
                    break
                if tag == 1:  # DT_NEEDED
                    needed.append(strtab[value:strtab.index(b"\0", value)].decode())
        return needed


def _system_libraries_needed() -> set[str]:
    """Libraries the installed wheels' extensions link against that no wheel bundles."""
    objects = [p for p in (Path(sys.prefix) / "lib").rglob("*.so*") if p.is_file()]
    bundled = {p.name for p in objects}
    return {lib for p in objects for lib in _elf_needed(p)} - bundled


@pytest.mark.skipif(sys.platform != "linux", reason="the image is Linux; wheels here differ elsewhere")
def test_image_installs_every_system_library_the_wheels_link_against():
    installed = " ".join(args for args in _of("RUN") if "apt-get install" in args)
    missing = []
    for lib in sorted(_system_libraries_needed() - SLIM_BASE_LIBRARIES - OPTIONAL):
        package = DEBIAN_PACKAGE.get(lib)
        if package is None or not re.search(rf"\b{re.escape(package)}\b", installed):
            missing.append(f"{lib} ({package or 'unknown package: add it to DEBIAN_PACKAGE'})")
    assert not missing, f"the slim image lacks: {', '.join(missing)}"


def _shell(command: str, extras: str) -> list[str]:
    """A RUN command's words as /bin/sh expands them with EMS_EXTRAS set (commands echoed, not run)."""
    import subprocess

    out = subprocess.run(["sh", "-c", f"set -- ; printf '%s\\n' {command}"], env={"EMS_EXTRAS": extras},
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.mark.parametrize("extras", ["", "spark", "dask", "spark dask"])
def test_build_arg_extras_install_the_extras_and_java_for_spark(extras):
    assert any(args.startswith("EMS_EXTRAS") for args in _of("ARG"))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    runs = _of("RUN")
    apt = next(r for r in runs if "apt-get install" in r)
    install = _shell(apt[apt.index("apt-get install"):apt.index("&& rm")], extras)
    assert ("openjdk-17-jre-headless" in install) == ("spark" in extras.split()), install
    for run in (r for r in runs if "uv sync" in r):
        words = _shell(run[run.index("uv sync"):], extras)
        named = [words[i + 1] for i, w in enumerate(words) if w == "--extra"]
        assert named == extras.split() and set(named) <= set(declared), words
