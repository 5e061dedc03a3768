"""The pacman (Arch Linux) repository: per channel and arch, `endura.db` by repo-add, signed.

pacman.conf on a client::

    [endura]
    Server = https://repo.endurasecurity.com/arch/latest/$arch
    SigLevel = Required

(`SigLevel = Required` covers packages and the database; the key is added with `pacman-key --add`
and `pacman-key --lsign-key`). repo-add reads each package's detached `.sig` into the database.
Its `endura.db` / `endura.files` symlinks are replaced by hardlinks, so that the tree survives any
copy (rsync, object stores), and `endura.db` gets a detached binary signature, `endura.db.sig`.
"""
from __future__ import annotations

import os
from pathlib import Path

from repo import layout, sign
from repo.sign import RepoKeys
from toolbox.run import run

DB_NAME = "endura"


def repo_add_argv(directory: Path, packages: list[str]) -> list[str]:
    return ["repo-add", "--nocolor", "--quiet", str(directory / f"{DB_NAME}.db.tar.gz"), *packages]


def pacman_conf_snippet(channel: str, base_url: str) -> str:
    return (f"[{DB_NAME}]\n"
            f"Server = {base_url.rstrip('/')}/{layout.pacman_dir(channel, '$arch')}\n"
            "SigLevel = Required\n")


def build_channel(gen: Path, channel: str, entries: list[dict], keys: RepoKeys, *, date: int, base_url: str) -> list[Path]:
    dirs = []
    for arch in sorted(layout.RPM_ARCH.values()):
        directory = gen / layout.pacman_dir(channel, arch)
        directory.mkdir(parents=True, exist_ok=True)
        packages = sorted(e["file"] for e in entries if e["family"] == "arch" and e["package_arch"] == arch)
        if packages:
            run(repo_add_argv(directory, packages), cwd=directory, timeout=600)
        else:  # an empty, still valid and signed, database
            run(["bsdtar", "-czf", str(directory / f"{DB_NAME}.db.tar.gz"), "--files-from", "/dev/null"])
            run(["bsdtar", "-czf", str(directory / f"{DB_NAME}.files.tar.gz"), "--files-from", "/dev/null"])
        for name in ("db", "files"):
            link = directory / f"{DB_NAME}.{name}"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.link(directory / f"{DB_NAME}.{name}.tar.gz", link)
        db = directory / f"{DB_NAME}.db"
        # the primary key only: pacman fails on a signature by a key it does not know (see repo.sign)
        sign.detached(keys.primary, db, directory / f"{DB_NAME}.db.sig", armor=False, epoch=date)
        os.link(directory / f"{DB_NAME}.db.sig", directory / f"{DB_NAME}.db.tar.gz.sig")
        for name in (f"{DB_NAME}.db", f"{DB_NAME}.db.tar.gz", f"{DB_NAME}.db.sig", f"{DB_NAME}.files"):
            os.utime(directory / name, (date, date))
        dirs.append(directory)
    (gen / "arch" / f"endura-{channel}.pacman.conf").write_text(pacman_conf_snippet(channel, base_url))
    return dirs
