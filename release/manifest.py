"""`manifest.json` and `SHA256SUMS` for one build in `dist/<version>/`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from toolbox.files import sha256_file

MANIFEST_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Artifact:
    file: str  # file name inside dist/<version>/
    family: str  # deb | rpm | apk | arch | tgz
    arch: str  # amd64 | arm64 (our names; the format's own name is in `package_arch`)
    package_arch: str
    package_version: str  # the version string in the format's own syntax
    build: str  # catalog build id
    targets: tuple[str, ...]  # catalog target ids this artifact serves
    signature: str  # how it is signed: "rpm-header", "debsig-origin", "apk-rsa", "detached:<file>"
    sbom: str
    depends: tuple[str, ...]


def write(directory: Path, *, version: str, epoch: int, key_fingerprint: str, key_development: bool,
          apk_key: str, artifacts: list[Artifact], source: dict | None = None) -> Path:
    entries = []
    for a in sorted(artifacts, key=lambda a: a.file):
        path = directory / a.file
        entries.append({
            **dataclasses.asdict(a),
            "targets": list(a.targets),
            "depends": list(a.depends),
            "size": path.stat().st_size,
            "sha256": sha256_file(path),
            "version": version,
            "signing_key_fingerprint": key_fingerprint,
        })
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "name": "endura-sensor",
        "version": version,
        "source_date_epoch": epoch,
        # the commit it was built from: evidence records (channels.evidence) tie test runs to builds by it
        "source": source or {"commit": None, "dirty": None},
        "signing_key": {"fingerprint": key_fingerprint, "development": key_development,
                        "public_key": "signing-key.asc", "apk_public_key": apk_key},
        "artifacts": entries,
    }
    out = directory / "manifest.json"
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def write_sha256sums(directory: Path) -> Path:
    """SHA256SUMS over every file in the directory (sha256sum -c format), in name order."""
    lines = [f"{sha256_file(p)}  {p.name}\n" for p in sorted(directory.iterdir())
             if p.is_file() and not p.name.startswith("SHA256SUMS")]
    out = directory / "SHA256SUMS"
    out.write_text("".join(lines))
    return out


def load(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())
