"""The pacman (Arch Linux) repository of a generation, and its check with pacman: per channel and arch, `endura.db` by repo-add, signed.

pacman.conf on a client::

    [endura]
    Server = https://repo.endurasecurity.com/arch/latest/$arch
    SigLevel = Required

(`SigLevel = Required` covers packages and the database; the key is added with `pacman-key --add`
and `pacman-key --lsign-key`). repo-add reads each package's detached `.sig` into the database.
Its `endura.db` / `endura.files` symlinks are replaced by hardlinks, so that the tree survives any
copy (rsync, object stores), and `endura.db` gets a detached binary signature, `endura.db.sig`.

Verification (`verify_pacman`): the generated `[endura]` section with `SigLevel = Required` and a
keyring holding only our key: `pacman -Sy` (database signature) and `pacman -Sw` (package checksum
and signature) per arch.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
from pathlib import Path

from families.base import KEY_FILE, PACKAGE, machine_arches
from families.clients import client_env
from toolbox import gpg
from toolbox.run import run
from toolbox.tools import require

DB_NAME = "endura"


def pacman_dir(channel: str, package_arch: str) -> str:
    return f"arch/{channel}/{package_arch}"


def point_at(text: str, base_url: str) -> str:
    """The generated [endura] section with its Server pointed at `base_url`."""
    return re.sub(r"^(Server = )\S+?(/arch/)", lambda m: f"{m.group(1)}{base_url}{m.group(2)}", text, flags=re.M)


def repo_add_argv(directory: Path, packages: list[str]) -> list[str]:
    return ["repo-add", "--nocolor", "--quiet", str(directory / f"{DB_NAME}.db.tar.gz"), *packages]


def pacman_conf_snippet(channel: str, base_url: str) -> str:
    return (f"[{DB_NAME}]\n"
            f"Server = {base_url.rstrip('/')}/{pacman_dir(channel, '$arch')}\n"
            "SigLevel = Required\n")


def build_channel(gen: Path, channel: str, entries: list[dict], keys: gpg.Keys, *, date: int, base_url: str) -> list[Path]:
    def one_arch(arch: str) -> Path:
        directory = gen / pacman_dir(channel, arch)
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
        # the primary key only: pacman fails on a signature by a key it does not know (see `release.signing`, key rotation)
        gpg.detached(keys.primary, db, directory / f"{DB_NAME}.db.sig", armor=False, epoch=date)
        os.link(directory / f"{DB_NAME}.db.sig", directory / f"{DB_NAME}.db.tar.gz.sig")
        for name in (f"{DB_NAME}.db", f"{DB_NAME}.db.tar.gz", f"{DB_NAME}.db.sig", f"{DB_NAME}.files"):
            os.utime(directory / name, (date, date))
        return directory

    # the arches side by side: separate directories, and each mostly waits on repo-add/bsdtar and gpg
    arches = list(machine_arches())
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(arches)) as pool:
        dirs = list(pool.map(one_arch, arches))
    (gen / "arch" / f"endura-{channel}.pacman.conf").write_text(pacman_conf_snippet(channel, base_url))
    return dirs


def pacman_client(workdir: Path, snippet: str, base_url: str, key_file: Path) -> list[str]:
    """A private pacman (config, root, db, cache, keyring holding only our key): returns its argv prefix."""
    require("pacman", "pacman-key", "pacman-key-libs")
    gpgdir, root, cache = workdir / "gnupg", workdir / "root", workdir / "cache"
    for d in (root / "var/lib/pacman", cache):
        d.mkdir(parents=True, exist_ok=True)
    conf = workdir / "pacman.conf"
    conf.write_text(f"[options]\nArchitecture = auto\nSigLevel = Required\nGPGDir = {gpgdir}\n\n" + point_at(snippet, base_url))
    fprs = gpg.key_file_fingerprints(key_file)  # primary keys only; the file holds two during a rotation
    run(["pacman-key", "--config", str(conf), "--gpgdir", str(gpgdir), "--init"], timeout=300)
    run(["pacman-key", "--config", str(conf), "--gpgdir", str(gpgdir), "--add", str(key_file)])
    for fpr in fprs:
        run(["pacman-key", "--config", str(conf), "--gpgdir", str(gpgdir), "--lsign-key", fpr])
    return ["pacman", "--config", str(conf), "--root", str(root), "--dbpath", str(root / "var/lib/pacman"),
            "--cachedir", str(cache), "--noconfirm", "--noprogressbar"]


def verify_pacman(gen: Path, channel: str, url: str, workdir: Path) -> list[str]:
    """`pacman -Sy` (database signature) and `-Sw` (download, checksum and package signature) per arch."""
    snippet = (gen / "arch" / f"endura-{channel}.pacman.conf").read_text()
    fetched = []
    for arch in machine_arches():
        if not list((gen / pacman_dir(channel, arch)).glob("*.pkg.tar.*[!g]")):
            continue
        # one client per arch: pacman's sync db is per name, not per $arch
        pacman = pacman_client(workdir / f"pacman-{arch}", snippet, url, gen / KEY_FILE)
        run([*pacman, "--arch", arch, "-Sy"], env=client_env(), timeout=300)
        run([*pacman, "--arch", arch, "-Swdd", PACKAGE], env=client_env(), timeout=300)
        fetched.append(arch)
    return fetched


