"""The packages' changelog, generated at package time: one entry for the version being built.

deb needs `/usr/share/doc/<package>/changelog.Debian.gz` (Debian policy 12.7) and rpm a `%changelog`
(its newest entry names who built which version-release); nfpm writes both from one chglog file,
which `write()` produces (JSON, the subset of YAML nfpm reads). Dated at SOURCE_DATE_EPOCH, so a
rebuild gives the same bytes.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path


def entries(*, package_version: str, release: str, epoch: int, packager: str, note: str) -> list[dict]:
    """chglog entries (pure): `package_version-release` as the entry's version, the note as its one change."""
    return [{
        "semver": f"{package_version}-{release}",
        "date": dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "packager": packager,
        # a package of our own repository, not of Debian's archive: no distribution's suite name fits
        # better than "stable"; the urgency only matters to Debian's migration tooling
        "deb": {"urgency": "medium", "distributions": ["stable"]},
        "changes": [{"note": note}],
    }]


def write(path: Path, *, package_version: str, release: str, epoch: int, packager: str, note: str) -> Path:
    path.write_text(json.dumps(entries(package_version=package_version, release=release, epoch=epoch,
                                       packager=packager, note=note), indent=2) + "\n")
    os.utime(path, (epoch, epoch))
    return path
