"""The `.tar.gz` for hosts without a native package: the staged tree plus install/uninstall scripts.

Layout: `endura-sensor-<version>-<arch>/{install.sh,uninstall.sh,VERSION,files/...}`. Written with
the stdlib tarfile: sorted entries, root-owned, mtimes at SOURCE_DATE_EPOCH, gzip header without a
timestamp, so the same commit always gives the same bytes.
"""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from release.stage import PACKAGING, Entry


def _info(name: str, mode: int, epoch: int, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = mode
    info.size = size
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build(entries: list[Entry], version: str, arch: str, out: Path, epoch: int) -> Path:
    top = f"endura-sensor-{version}-{arch}"
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    dirs: set[str] = {top, f"{top}/files"}
    for e in entries:
        parts = e.dst.strip("/").split("/")
        for i in range(1, len(parts) + (e.kind == "dir")):
            dirs.add(f"{top}/files/" + "/".join(parts[:i]))
        if e.kind != "dir":
            data = Path(str(e.src)).read_bytes()
            members.append((_info(f"{top}/files{e.dst}", e.mode, epoch, size=len(data)), data))
    for script in ("install.sh", "uninstall.sh"):
        data = (PACKAGING / "tarball" / script).read_bytes()
        members.append((_info(f"{top}/{script}", 0o755, epoch, size=len(data)), data))
    data = f"{version}\n".encode()
    members.append((_info(f"{top}/VERSION", 0o644, epoch, size=len(data)), data))
    modes = {e.dst.strip("/"): e.mode for e in entries if e.kind == "dir"}
    for d in dirs:
        rel = d[len(f"{top}/files/"):] if d.startswith(f"{top}/files/") else None
        members.append((_info(d, modes.get(rel or "", 0o755), epoch, directory=True), None))
    members.sort(key=lambda m: m[0].name)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out
