"""The tarball index of a channel: `index.json` (versions, arches, sizes, sha256) and `SHA256SUMS(.asc)`;
checked with gpgv against the published key and `sha256sum -c`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from families.base import KEY_FILE, detached_signature
from toolbox import gpg
from toolbox.files import sha256_file
from toolbox.run import run


def tarball_dir(channel: str) -> str:
    return f"tarball/{channel}"


def index(channel: str, entries: list[dict]) -> dict:
    tarballs = [e for e in entries if e["family"] == "tgz"]
    return {
        "schema": 1,
        "channel": channel,
        "tarballs": [
            {"file": e["file"], "version": e["version"], "arch": e["arch"], "size": e["size"], "sha256": e["sha256"],
             "signature": detached_signature(e)}
            for e in sorted(tarballs, key=lambda e: (e["version"], e["arch"]))
        ],
    }


def sha256sums(directory: Path, names: list[str]) -> str:
    """`sha256sum -c` lines for the named files (the channel's tarballs, signatures and index.json only:
    files kept from previous generations for clients in flight are not part of the channel)."""
    return "".join(f"{sha256_file(directory / name)}  {name}\n" for name in sorted(names))


def build_channel(gen: Path, channel: str, entries: list[dict], keys: gpg.Keys, *, date: int) -> Path:
    directory = gen / tarball_dir(channel)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").write_text(json.dumps(index(channel, entries), indent=2, sort_keys=True) + "\n")
    names = ["index.json"] + [n for e in entries if e["family"] == "tgz"
                              for n in (e["file"], detached_signature(e)) if n]
    (directory / "SHA256SUMS").write_text(sha256sums(directory, names))
    gpg.detached(keys, directory / "SHA256SUMS", directory / "SHA256SUMS.asc", epoch=date)
    for name in ("index.json", "SHA256SUMS", "SHA256SUMS.asc"):
        os.utime(directory / name, (date, date))
    return directory


def verify_channel(gen: Path, channel: str) -> str:
    """gpgv of SHA256SUMS against the published key only, then `sha256sum --check` of the channel's files."""
    directory = gen / tarball_dir(channel)
    gpg.verify_detached(gen / KEY_FILE, directory / "SHA256SUMS", directory / "SHA256SUMS.asc")
    run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=directory)
    return "SHA256SUMS.asc"
