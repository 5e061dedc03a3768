"""The file tree that every package format ships, staged once per arch.

`stage(arch, ...)` lays out the final paths (usr/bin, usr/lib/endura-sensor, etc/endura, ...) under a
staging directory and returns the entries with their kind (file, config, dir) and mode, so nfpm
configs and the tarball are built from one description. Timestamps are set to SOURCE_DATE_EPOCH.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from release import distro_data, manpage
from toolbox.errors import EnduraError
from toolbox.files import REPO_TOP as REPO

SENSOR_SRC = REPO / "sensor" / "endura_sensor"
PACKAGING = REPO / "sensor" / "packaging"
LIBDIR = "/usr/lib/endura-sensor"
BPF_DIR = f"{LIBDIR}/bpf"
SERVICE = "endura-sensor"
CONFIG = "/etc/endura/sensor.conf"
STATE_DIRS = ("/var/lib/endura", "/var/log/endura")
#: BPF objects every package must carry (one per enforcement tier)
BPF_OBJECTS = ("sensor_lsm.bpf.o", "sensor_fentry.bpf.o", "sensor_tp.bpf.o")


@dataclasses.dataclass(frozen=True)
class Entry:
    dst: str  # absolute path on the target system
    src: Path | None  # staged file (None for directories)
    mode: int
    kind: str  # "file" | "config" | "dir"
    #: which init systems need this entry (None = all)
    init: str | None = None


def _copy(src: Path, dest: Path, mode: int, epoch: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)
    os.utime(dest, (epoch, epoch))


def _write(dest: Path, text: str, mode: int, epoch: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    os.chmod(dest, mode)
    os.utime(dest, (epoch, epoch))


def build_info(version: str) -> str:
    return (
        '"""Generated at build time by release/stage.py."""\n'
        f"VERSION = {version!r}\n"
        f"BPF_DIR = {BPF_DIR!r}\n"
    )


def stage(arch: str, version: str, bpf_objects: list[Path], root: Path, epoch: int) -> list[Entry]:
    """Stage the package tree for `arch` under `root`; return its entries sorted by destination."""
    found = {p.name: p for p in bpf_objects}
    missing = [name for name in BPF_OBJECTS if name not in found]
    if missing:
        raise EnduraError(f"BPF object(s) {', '.join(missing)} missing for {arch}; build them with 'nox -s bpf'")
    if root.exists():
        shutil.rmtree(root)
    entries: list[Entry] = []

    def add(dst: str, src: Path, mode: int, kind: str = "file", init: str | None = None) -> None:
        staged = root / dst.lstrip("/")
        _copy(src, staged, mode, epoch)
        entries.append(Entry(dst, staged, mode, kind, init))

    add("/usr/bin/endura-sensor", PACKAGING / "endura-sensor.sh", 0o755)
    sources = sorted(p for p in SENSOR_SRC.rglob("*.py") if "__pycache__" not in p.parts and p.name != "_build_info.py")
    if not sources:
        raise EnduraError(f"no sensor sources under {SENSOR_SRC}; is this a complete checkout?")
    for src in sources:
        add(f"{LIBDIR}/endura_sensor/{src.relative_to(SENSOR_SRC).as_posix()}", src, 0o644)
    info = root / LIBDIR.lstrip("/") / "endura_sensor" / "_build_info.py"
    _write(info, build_info(version), 0o644, epoch)
    entries.append(Entry(f"{LIBDIR}/endura_sensor/_build_info.py", info, 0o644, "file"))
    # which package gives libbpf on which distribution: generated from distros/catalog.toml
    data = distro_data.write(root / LIBDIR.lstrip("/") / "endura_sensor" / distro_data.FILE_NAME, epoch)
    entries.append(Entry(f"{LIBDIR}/endura_sensor/{distro_data.FILE_NAME}", data, 0o644, "file"))
    # endura-sensor(1), from the staged sensor's own --help
    page = manpage.write(root / manpage.MAN_PATH.lstrip("/"), root / LIBDIR.lstrip("/"), version=version, epoch=epoch)
    entries.append(Entry(manpage.MAN_PATH, page, 0o644, "file"))
    for name in BPF_OBJECTS:
        add(f"{BPF_DIR}/{name}", found[name], 0o644)
    add(f"/usr/lib/systemd/system/{SERVICE}.service", PACKAGING / f"{SERVICE}.service", 0o644, init="systemd")
    add(f"/etc/init.d/{SERVICE}", PACKAGING / f"{SERVICE}.openrc", 0o755, init="openrc")
    add(CONFIG, PACKAGING / "sensor.conf", 0o640, kind="config")
    add("/usr/share/doc/endura-sensor/README.md", REPO / "README.md", 0o644)
    add("/usr/share/doc/endura-sensor/copyright", REPO / "LICENSE", 0o644)
    add("/usr/share/doc/endura-sensor/POLICIES.md", REPO / "sensor" / "README.md", 0o644)
    # an example only: a file in /etc/endura/policies would be enforced as soon as the service starts
    add("/usr/share/doc/endura-sensor/examples/example.toml", PACKAGING / "policies" / "example.toml", 0o644)
    for directory in ("/etc/endura/policies", *STATE_DIRS):
        (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        entries.append(Entry(directory, None, 0o750, "dir"))
    for path in sorted(root.rglob("*"), reverse=True):  # directories get the epoch too
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    return sorted(entries, key=lambda e: e.dst)


def maintainer_script(family: str, hook: str) -> str:
    """One hook's script: the shared implementation plus the line that dispatches this hook."""
    body = (PACKAGING / "scripts" / "maintscript.sh").read_text()
    return f"#!/bin/sh\n{body}\nendura_hook {family} {hook} \"$@\"\n"
