"""The rpm repositories: per channel and arch, `repodata/` by createrepo_c and a signed `repomd.xml.asc`.

dnf/yum (`repo_gpgcheck=1`) and zypper check `repomd.xml` against `repomd.xml.asc`; repomd.xml in
turn carries the checksums of primary/filelists/other, and those of each package (whose own rpm
header signature `gpgcheck=1` checks). Metadata file names carry their checksum (createrepo_c's
default), so a client that fetched an older repomd.xml never mixes files of two generations.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from repo import indexcache, layout, sign
from repo.sign import RepoKeys
from toolbox import log
from toolbox.run import run


def createrepo(directory: Path, wanted: dict[str, tuple[str, int]], *, date: int, previous: Path | None) -> None:
    """createrepo_c over `directory`, reusing `previous` (an older generation's same directory) for unchanged
    rpms; the metadata is checked against `wanted` (`{packages/<file>: (sha256, size)}`, see `repo.indexcache`)."""
    argv = layout.createrepo_argv(str(directory), revision=date)
    if previous is not None and (previous / "repodata" / "repomd.xml").is_file():
        argv = [argv[0], "--update", "--update-md-path", str(previous), *argv[1:]]
    for attempt in (1, 2):
        run(argv, timeout=600)
        problems = indexcache.differences(indexcache.repodata_listed(directory), wanted)
        if not problems:
            return
        if "--update" not in argv or attempt == 2:
            break
        log.warn(f"createrepo_c --update reused metadata of {previous} that disagrees with the manifests "
                 f"({problems[0]}); indexing again without it")
        shutil.rmtree(directory / "repodata")
        argv = layout.createrepo_argv(str(directory), revision=date)
    raise indexcache.mismatch_error(directory / "repodata", problems)


def build_channel(gen: Path, channel: str, entries: list[dict], keys: RepoKeys, *, date: int, base_url: str,
                  previous: Path | None = None) -> list[Path]:
    """createrepo_c + signature for every arch of the channel (the .rpms are already in place).

    `previous`: an older generation whose metadata createrepo_c may reuse for the rpms it already indexed."""
    dirs = []
    for arch in sorted(layout.RPM_ARCH.values()):
        directory = gen / layout.rpm_dir(channel, arch)
        (directory / "packages").mkdir(parents=True, exist_ok=True)
        createrepo(directory, indexcache.expected(entries, "rpm", "packages/", package_arch=arch), date=date,
                   previous=previous / layout.rpm_dir(channel, arch) if previous is not None else None)
        repomd = directory / "repodata" / "repomd.xml"
        sign.detached(keys, repomd, repomd.with_name("repomd.xml.asc"), epoch=date)
        for path in (directory / "repodata").iterdir():  # If-Modified-Since/ETag see every publish (see apt.set_mtime)
            os.utime(path, (date, date))
        dirs.append(directory)
    rpm_root = gen / "rpm"
    (rpm_root / f"endura-{channel}.repo").write_text(layout.dnf_repo(channel, base_url))
    (rpm_root / f"endura-{channel}.zypper.repo").write_text(layout.zypper_repo(channel, base_url))
    return dirs
