"""What a publish derives from the repository keys alone, kept between publishes (and repository roots).

Every publish needs the keyring's `KeySet` (`repo.keyring.export_key_set`: the keys imported one by one into
a scratch GNUPGHOME for canonical bytes; four gpg runs and a gpg-agent to stop) and, when no previous
generation holds them, the keyring packages (`repo.keyring.build_packages`: nfpm twice, signed with
the families' signing: debsigs and rpmsign). Both are pure functions of the keys: the KeySet of the exported public keys, the
packages of the KeySet and the signing key (built at the keys' own newest signature time: the same
bytes every time, see `repo.keyring`). So they are computed once and kept in the user's cache
(`$ENDURA_CACHE_DIR` or `~/.cache/endura`, beside the development key), under `repo-keyring/`:

- `keysets/<sha256 of the armored export of the publish's keys>.json`: the KeySet. The armored export is
  the key file every generation publishes (`keys/endura-archive-keyring.asc`), made anyway; a changed key
  (new expiry, new subkey, revocation) changes it, so a stale entry is never found.
- `packages/<KeySet digest>-<digest of the nfpm configs>-<signing key fingerprint>/`: the .deb, the .rpm and
  `files.json` with their sha256. A cached package whose bytes no longer match its sha256 is built again.

Entries are written to a scratch name and renamed into place, so a killed publish leaves no half entry
(at worst an unused `.tmp-*` that the next writer of that entry replaces).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from toolbox import log
from toolbox.files import cache_dir, sha256_file

SCHEMA = 2  # 2: the packages' entry records how each package is signed
T = TypeVar("T")


def cache_root() -> Path:
    return cache_dir() / "repo-keyring"


def _write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def key_set(exported: str, compute: Callable[[], T], kind: type[T]) -> T:
    """The KeySet (a dataclass `kind`) of the keys whose armored export is `exported` (from the cache, else `compute()`)."""
    path = cache_root() / "keysets" / f"{hashlib.sha256(exported.encode()).hexdigest()}.json"
    try:
        data = json.loads(path.read_text())
        if data.get("schema") == SCHEMA:
            return kind(data["armored"], tuple(data["fingerprints"]), tuple(data["created"]), data["newest_signature"])  # type: ignore[call-arg]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = compute()
    try:
        _write_json_atomically(path, {"schema": SCHEMA, **dataclasses.asdict(found)})  # type: ignore[call-overload]
    except OSError as exc:  # a read-only cache costs time, not correctness
        log.debug(f"    not caching the key set in {path.parent}: {exc}")
    return found


def packages(digest: str, signer: str, names: dict[str, str],
             build: Callable[[Path], dict[str, tuple[Path, str]]]) -> dict[str, tuple[Path, str]]:
    """{family: (path, how it is signed)} of the keyring packages for `digest` (of the KeySet and the package
    definition) signed by `signer`: the cached files when they still match their recorded sha256, else
    `build(out_dir)` (then cached)."""
    entry = cache_root() / "packages" / f"{digest}-{signer.upper()}"
    try:
        files = json.loads((entry / "files.json").read_text())
        if (files.get("schema") == SCHEMA and files["names"] == names
                and all(sha256_file(entry / name) == files["sha256"][name] for name in names.values())):
            return {family: (entry / name, files["signature"][family]) for family, name in names.items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    except OSError as exc:
        log.debug(f"    not caching the keyring packages in {entry.parent}: {exc}")
        tmp = Path(tempfile.mkdtemp(prefix="endura-keyring-out-"))
        return build(tmp)
    built = build(tmp)
    (tmp / "files.json").write_text(json.dumps({"schema": SCHEMA, "names": names, "sha256": {
        p.name: sha256_file(p) for p, _how in built.values()}, "signature": {f: how for f, (_p, how) in built.items()}},
        indent=2, sort_keys=True) + "\n")
    shutil.rmtree(entry, ignore_errors=True)
    try:
        os.rename(tmp, entry)
    except OSError:  # another publish cached the same entry meanwhile: use ours, once
        return built
    return {family: (entry / path.name, how) for family, (path, how) in built.items()}
