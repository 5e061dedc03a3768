"""The tarball index of a channel: `index.json` (versions, arches, sizes, sha256) and `SHA256SUMS(.asc)`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from repo import layout, sign
from repo.sign import RepoKeys
from toolbox.files import sha256_file


def index(channel: str, entries: list[dict]) -> dict:
    tarballs = [e for e in entries if e["family"] == "tgz"]
    return {
        "schema": 1,
        "channel": channel,
        "tarballs": [
            {"file": e["file"], "version": e["version"], "arch": e["arch"], "size": e["size"], "sha256": e["sha256"],
             "signature": layout.detached_signature(e)}
            for e in sorted(tarballs, key=lambda e: (e["version"], e["arch"]))
        ],
    }


def sha256sums(directory: Path, names: list[str]) -> str:
    """`sha256sum -c` lines for the named files (the channel's tarballs, signatures and index.json only:
    files kept from previous generations for clients in flight are not part of the channel)."""
    return "".join(f"{sha256_file(directory / name)}  {name}\n" for name in sorted(names))


def build_channel(gen: Path, channel: str, entries: list[dict], keys: RepoKeys, *, date: int) -> Path:
    directory = gen / layout.tarball_dir(channel)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").write_text(json.dumps(index(channel, entries), indent=2, sort_keys=True) + "\n")
    names = ["index.json"] + [os.path.basename(rel) for e in entries if e["family"] == "tgz"
                              for rel in layout.artifact_paths(channel, e)]
    (directory / "SHA256SUMS").write_text(sha256sums(directory, names))
    sign.detached(keys, directory / "SHA256SUMS", directory / "SHA256SUMS.asc", epoch=date)
    for name in ("index.json", "SHA256SUMS", "SHA256SUMS.asc"):
        os.utime(directory / name, (date, date))
    return directory
