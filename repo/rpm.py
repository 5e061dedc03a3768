"""The rpm repositories: per channel and arch, `repodata/` by createrepo_c and a signed `repomd.xml.asc`.

dnf/yum (`repo_gpgcheck=1`) and zypper check `repomd.xml` against `repomd.xml.asc`; repomd.xml in
turn carries the checksums of primary/filelists/other, and those of each package (whose own rpm
header signature `gpgcheck=1` checks). Metadata file names carry their checksum (createrepo_c's
default), so a client that fetched an older repomd.xml never mixes files of two generations.
"""
from __future__ import annotations

import os
from pathlib import Path

from repo import layout, sign
from repo.sign import RepoKeys
from toolbox.run import run


def build_channel(gen: Path, channel: str, entries: list[dict], keys: RepoKeys, *, date: int, base_url: str) -> list[Path]:
    """createrepo_c + signature for every arch of the channel (the .rpms are already in place)."""
    dirs = []
    for arch in sorted(layout.RPM_ARCH.values()):
        directory = gen / layout.rpm_dir(channel, arch)
        (directory / "packages").mkdir(parents=True, exist_ok=True)
        run(layout.createrepo_argv(str(directory), revision=date), timeout=600)
        repomd = directory / "repodata" / "repomd.xml"
        sign.detached(keys, repomd, repomd.with_name("repomd.xml.asc"), epoch=date)
        for path in (directory / "repodata").iterdir():  # If-Modified-Since/ETag see every publish (see apt.set_mtime)
            os.utime(path, (date, date))
        dirs.append(directory)
    rpm_root = gen / "rpm"
    (rpm_root / f"endura-{channel}.repo").write_text(layout.dnf_repo(channel, base_url))
    (rpm_root / f"endura-{channel}.zypper.repo").write_text(layout.zypper_repo(channel, base_url))
    return dirs
