"""`python3 -m channels.mirror <channel>`: a self-contained offline bundle of one channel, for air-gapped hosts.

    python3 -m channels.mirror stable [--repo-root build/repo] [--out build/offline] [--base-url file:///srv/endura]
                                  [--valid-days 365]

From the current generation of a repository root it takes only that channel: the apt suite and the
.debs it lists, `rpm/<channel>`, `arch/<channel>`, `tarball/<channel>`, the public keys; it adds the
install guides written for `--base-url` (where the air-gapped hosts will find the bundle: `file://` by
default, or a web server there), `INSTALL.md`, `bundle.json`, and `SHA256SUMS` + `SHA256SUMS.asc` over
every file. The result is one tar, `endura-<channel>-<version>-offline.tar`, written aside and renamed
into place.

**Valid-Until.** The published suite expires `--valid-days` (default 7) after its Date: `--refresh`
keeps it alive online, but an air-gapped mirror is never refreshed. So the bundle's apt suite is re-signed
with the repository key (the same `apt-ftparchive release` and signing code as a publish) with a new
Date and `Valid-Until` = Date + the bundle's `--valid-days` (default 365): still a window, after which
apt refuses the mirror and a newer bundle is needed, but one that fits how air-gapped sites update. The
indexes and packages are the published bytes (each artifact is checked against its sha256 in
generation.json first). rpm, pacman and tarball metadata carry no expiry and are copied as published.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Sequence

from families import IndexContext, copy_metadata, published
from release.signing import resolve_repo_keys
from release.version import Version
from repo import guides, keyring, layout
from repo.engine import check_key_outlives
from repo.generations import RepoRoot, place
from toolbox import gpg, log
from toolbox.dates import rfc2822
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP, sha256_file
from toolbox.run import run
from toolbox.tools import require

DEFAULT_BASE_URL = "file:///srv/endura"
DEFAULT_VALID_DAYS = 365
BUNDLE_FILE = "bundle.json"
BINARY_KEYRING = "keys/endura-archive-keyring.gpg"
SUMS, SUMS_SIG = "SHA256SUMS", "SHA256SUMS.asc"


def bundle_name(channel: str, version: str) -> str:
    return f"endura-{channel}-{version}-offline"


def newest_version(entries: list[dict]) -> str:
    return str(max({e["version"] for e in entries}, key=Version.parse))


# --- copying one channel out of a generation -----------------------------------------------------------------


def copy_artifacts(gen: Path, out: Path, channel: str, entries: list[dict]) -> int:
    """The channel's packages and their detached signatures, each checked against its sha256 in generation.json."""
    count = 0
    for entry in entries:
        paths = layout.artifact_paths(channel, entry)
        if sha256_file(gen / paths[0]) != entry["sha256"]:
            raise EnduraError(f"{gen / paths[0]} does not match its sha256 in {gen / layout.GENERATION_FILE}; the "
                              "published tree was modified: publish again ('nox -s publish --refresh') before mirroring")
        for rel in paths:
            if not (out / rel).exists():  # a deb listed for several arches is one pool file
                place(gen / rel, out / rel)  # never modified here: a hardlink is fine
                count += 1
    return count


# --- the bundle's own texts -----------------------------------------------------------------------------------


def install_text(name: str, info: dict) -> str:
    """INSTALL.md: check the bundle, put it in place, then follow a guide. Its ```sh blocks run as they are."""
    local = info["base_url"].startswith("file://")
    where = info["base_url"].removeprefix("file://") if local else "/srv/endura"
    fprs = " and ".join(f"`{f}`" for f in info["key_fingerprints"])
    serve = ("" if local else
             f"\nThe bundle's guides and `.sources`/`.repo` files point at `{info['base_url']}`: serve `{where}` there "
             "with any static web server.\n")
    return f"""# Endura Runtime Sensor {info['version']}: offline bundle of channel `{info['channel']}`

Made {info['date']} from generation {info['generation']} of `{info['source_base_url']}`. It holds the channel's
apt suite (amd64, arm64), rpm repositories (x86_64, aarch64; dnf, yum, zypper), pacman repositories, tarballs,
the repository key, and an install guide per supported target in `install/{info['channel']}/`.

## 1. Check and unpack it

Copy `{name}.tar` to `/var/tmp` on the air-gapped host and run, as root:

```sh
cd /var/tmp
tar -xf {name}.tar
cd {name}
gpgv --keyring ./{BINARY_KEYRING} {SUMS_SIG} {SUMS}
sha256sum --check --strict --quiet {SUMS}
mkdir -p {where}
cp -a . {where}/
```

`gpgv` proves that the repository key signed `{SUMS}`, and `sha256sum` that every file is the signed one. The key
travels inside the bundle, so also compare its fingerprint, {fprs}, with the one your organisation obtained out of
band (`gpg --show-keys keys/endura-archive-keyring.asc`).
{serve}
## 2. Install

Follow the guide of the target in [install/{info['channel']}/index.md](install/{info['channel']}/index.md) (e.g.
`install/{info['channel']}/debian-12.md`, `install/{info['channel']}/rhel-9.md`). They read the packages from
`{info['base_url']}`; no network is needed beyond it. The distribution's own packages the sensor depends on
(Python >= 3.9 and libbpf) must come from the site's distribution mirror or media.

## How long it stays installable

The apt suite in this bundle was re-signed with the repository key on {info['date']} with
`Valid-Until: {info['valid_until']}` ({info['valid_days']} days; the online repository uses 7 and is re-signed
every few days). After that date `apt-get update` refuses the suite as expired: bring a newer bundle
(`nox -s mirror -- {info['channel']}` on the connected side) and replace `{where}` with it. The rpm, pacman and tarball
metadata have no expiry date.

## Updating

Unpack and check the newer bundle as in step 1, then replace the old copy (`rm -rf {where}` before `cp -a`), then
`apt-get update && apt-get upgrade`, `dnf upgrade endura-sensor`, `zypper update endura-sensor` or `pacman -Syu`.
"""


def write_sums(out: Path, keys: gpg.Keys, date: int) -> int:
    """SHA256SUMS over every file of the bundle (sha256sum -c format, sorted) and its detached signature."""
    files = sorted(rel for p in out.rglob("*") if p.is_file() and (rel := str(p.relative_to(out))) not in (SUMS, SUMS_SIG))
    (out / SUMS).write_text("".join(f"{sha256_file(out / f)}  {f}\n" for f in files))
    gpg.detached(keys, out / SUMS, out / SUMS_SIG, epoch=date)
    return len(files)


def write_tar(tree: Path, dest: Path, mtime: int) -> None:
    """An uncompressed tar of `tree` (packages are compressed already): sorted, root-owned, one mtime."""
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = mtime
        return info

    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(tree, arcname=tree.name, recursive=False, filter=normalise)
            for path in sorted(tree.rglob("*")):
                tar.add(path, arcname=f"{tree.name}/{path.relative_to(tree)}", recursive=False, filter=normalise)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- the command ---------------------------------------------------------------------------------------------------


def make_bundle(repo_root: Path, channel: str, out_dir: Path, *, base_url: str = DEFAULT_BASE_URL,
                valid_days: float = DEFAULT_VALID_DAYS, now: float | None = None) -> dict:
    layout.check_channel(channel)
    require("apt-ftparchive", "gpg")
    root = RepoRoot(repo_root)
    number = root.current()
    if number is None:
        raise EnduraError(f"no generation is current in {repo_root}; publish first ('nox -s publish') or pass --repo-root")
    gen = root.dir(number)
    state = root.state(number)
    entries = state["channels"].get(channel) or []
    if not entries:
        raise EnduraError(f"channel {channel!r} is empty in generation {number} of {repo_root}; "
                          f"promote a build into it first ('nox -s promote -- {channel}') or mirror another channel")
    keys = resolve_repo_keys()
    if state["key"]["fingerprint"].upper() not in [f.upper() for f in keys.fingerprints]:
        raise EnduraError(f"generation {number} was signed with key {state['key']['fingerprint']} but the repository key "
                          f"here is {' + '.join(keys.fingerprints)}; the bundle's suite is re-signed with the key its "
                          "packages are signed with: set ENDURA_SIGNING_KEY to that key")
    published_date = state["date"]
    date = layout.next_date(time.time() if now is None else now, published_date)
    valid_until = date + int(valid_days * 86400)
    for k in keys.all:
        check_key_outlives(k, valid_until)
    version = newest_version(entries)
    name = bundle_name(channel, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{name}.tar"
    started = time.monotonic()
    building = out_dir / f".building-{name}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    tree = building / name
    try:
        with log.step(f"bundling channel {channel} ({version}) of generation {number} into {dest}"):
            tree.mkdir(parents=True)
            copy_metadata(gen / layout.KEY_FILE, tree / layout.KEY_FILE)
            run(gpg.dearmor_argv(tree / layout.KEY_FILE, tree / BINARY_KEYRING))
            # the keyring packages the channel's indexes list too (see repo.keyring), checked the same way
            record = keyring.read_record(gen)
            listed = entries + (keyring.channel_entries(record, entries) if record else [])
            artifacts = copy_artifacts(gen, tree, channel, listed)
            ctx = IndexContext(keys=keys, date=date, valid_until=valid_until, base_url=base_url)
            for family in published():
                family.mirror_channel(gen, tree, channel, ctx)
            fingerprints = gpg.key_file_fingerprints(tree / layout.KEY_FILE)
            src = guides.Source(base_url, channel, fingerprints, guides.newest_tarball_version(entries),
                                guides.published_key_files(gen))
            guides.write(tree / guides.GUIDES_DIR, [src])
            info = {"schema": 1, "channel": channel, "version": version,
                    "versions": sorted({e["version"] for e in entries}, key=Version.parse),
                    "generation": number, "source_base_url": state.get("base_url"), "base_url": base_url,
                    "date": rfc2822(date), "valid_until": rfc2822(valid_until), "valid_days": valid_days,
                    "key_fingerprints": list(fingerprints), "artifacts": sorted(e["file"] for e in entries)}
            (tree / BUNDLE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            (tree / "INSTALL.md").write_text(install_text(name, info))
            files = write_sums(tree, keys, date)
            write_tar(tree, dest, date)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    seconds = round(time.monotonic() - started, 2)
    size = dest.stat().st_size
    log.info(f"==> {dest} ({size / 1e6:.1f} MB, {files} files, apt Valid-Until {rfc2822(valid_until)}, {seconds}s)")
    return {"path": str(dest), "channel": channel, "version": version, "generation": number, "files": files,
            "artifacts": artifacts, "size": size, "base_url": base_url, "date": rfc2822(date),
            "valid_until": rfc2822(valid_until), "seconds": seconds}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m channels.mirror", description=__doc__.split("\n")[0])
    p.add_argument("channel", help=f"one of {', '.join(layout.CHANNELS)}")
    p.add_argument("--repo-root", default=str(REPO_TOP / "build" / "repo"), help="repository root (default build/repo)")
    p.add_argument("--out", default=str(REPO_TOP / "build" / "offline"), help="where the tar goes (default build/offline)")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL,
                   help=f"where the air-gapped hosts find the unpacked bundle (default {DEFAULT_BASE_URL})")
    p.add_argument("--valid-days", type=float, default=DEFAULT_VALID_DAYS,
                   help=f"apt Valid-Until of the bundle's re-signed suite, in days (default {DEFAULT_VALID_DAYS})")
    p.add_argument("--date", type=int, help=argparse.SUPPRESS)  # tests: bundle at a given time
    return p


def run_cli(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if not re.match(r"^(file:///|https?://)\S+$", args.base_url):
        raise EnduraError(f"--base-url {args.base_url!r} is not a file:/// or http(s):// URL; e.g. {DEFAULT_BASE_URL}")
    if args.valid_days <= 0:
        raise EnduraError(f"--valid-days {args.valid_days} must be positive; e.g. {DEFAULT_VALID_DAYS}")
    result = make_bundle(Path(args.repo_root), args.channel, Path(args.out), base_url=args.base_url.rstrip("/"),
                         valid_days=args.valid_days, now=args.date)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
