"""The generation engine: build a repository generation aside, verify it with the real clients, switch
it in atomically, prune (`commit`), and what every command that makes one shares (`Options`, `Change`,
the generation options). The commands live a layer above: `channels.publish` (publish, --refresh,
--rollback) and `channels.promote`. Whatever a command adds to a generation it hands in through
`Change` (`check_extra`, `write_extra`); this module knows nothing of channel records.

Every generation (see `repo.layout` for the tree) is the channels' content (hardlinked), fresh
indexes, every suite re-signed with a Date after the previous one and `Valid-Until` = Date +
`--valid-days`; it is verified with apt, dnf and `rpm -K` over loopback HTTP while still invisible,
then `current` is switched to it. With a target (see `repo.remote`) the local tree is the staging
mirror of the web host: the verified generation is rsynced there aside and switched there first.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Callable

from release.signing import SigningKey
from repo import apt, guides, keyring, layout, pacman, rpm, sign, tarball
from repo.generations import RepoRoot, place
from repo.remote import Target, parse_target, push
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.files import sha256_file

REPO_TOP = Path(__file__).resolve().parents[1]
SCHEMA = 1


# --- inputs ----------------------------------------------------------------------------------------


def find_build(dist: str | None) -> Path:
    """`--dist` (a dist/<version>/ directory or its manifest.json), else the newest build in dist/."""
    if dist:
        path = Path(dist)
        if path.name == "manifest.json":
            path = path.parent
        if not (path / "manifest.json").is_file():
            raise EnduraError(f"{path} has no manifest.json; pass a build directory made by 'nox -s package' (dist/<version>/)")
        return path
    builds = sorted((REPO_TOP / "dist").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not builds:
        raise EnduraError(f"no build in {REPO_TOP / 'dist'}; run 'nox -s package' first or pass --dist DIR")
    return builds[-1].parent


def load_build(directory: Path, keys: sign.RepoKeys) -> dict:
    """The build's manifest, after checking every file we publish against its sha256 and the key."""
    manifest = json.loads((directory / "manifest.json").read_text())
    signer = manifest.get("signing_key", {}).get("fingerprint", "")
    if signer.upper() not in [f.upper() for f in keys.fingerprints]:
        raise EnduraError(
            f"build {directory} is signed with key {signer} but the repository key is {' + '.join(keys.fingerprints)}; clients check "
            "packages and metadata with one key: rebuild with the repository key or set ENDURA_SIGNING_KEY to the build's key"
        )
    for a in manifest["artifacts"]:
        if a["family"] not in layout.PUBLISHED_FAMILIES:
            continue
        path = directory / a["file"]
        if not path.is_file():
            raise EnduraError(f"{path} is listed in {directory / 'manifest.json'} but missing; rebuild with 'nox -s package'")
        if sha256_file(path) != a["sha256"]:
            raise EnduraError(f"{path} does not match its sha256 in manifest.json; the build was modified: rebuild it")
        sig = layout.detached_signature(a)
        if sig and not (directory / sig).is_file():
            raise EnduraError(f"{directory / sig} (signature of {a['file']}) is missing; rebuild with 'nox -s package'")
    return manifest


def check_key_outlives(key: SigningKey, valid_until: int) -> None:
    """apt rejects signatures by an expired key (EXPKEYSIG): the key must outlive the Valid-Until window."""
    if key.expires is not None and key.expires < valid_until:
        raise EnduraError(
            f"signing key {key.fingerprint} expires on {layout.rfc2822(key.expires)}, before this publish's Valid-Until "
            f"({layout.rfc2822(valid_until)}); extend it with 'gpg --quick-set-expire {key.fingerprint} 2y' and publish the "
            "updated public key, or shorten --valid-days"
        )


def check_target(target: str | None, key: SigningKey) -> Target | None:
    """A remote target (rsync over ssh) needs the release key: the development key is refused first."""
    if not target:
        return None
    if key.development:
        raise EnduraError(f"refusing to publish to {target} with the DEVELOPMENT key {key.fingerprint}; "
                          "set ENDURA_SIGNING_KEY to the release key (and build with it)")
    return parse_target(target)


# --- building a generation ---------------------------------------------------------------------------


def _place_channel(gen: Path, channel: str, entries: list[dict], sources: dict[str, Path]) -> None:
    for entry in entries:
        for rel in layout.artifact_paths(channel, entry):
            dst = gen / rel
            if not dst.exists():
                place(sources[os.path.basename(rel)], dst)


def sources_in(gen_dir: Path, channels: dict[str, list[dict]]) -> dict[str, Path]:
    """file name -> path of every artifact (and detached signature) in an existing generation."""
    found: dict[str, Path] = {}
    for channel, entries in channels.items():
        for entry in entries:
            for rel in layout.artifact_paths(channel, entry):
                found.setdefault(os.path.basename(rel), gen_dir / rel)
    return found


def build_generation(gen: Path, *, channels: dict[str, list[dict]], sources: dict[str, Path], keys: sign.RepoKeys,
                     date: int, valid_until: int, base_url: str, previous_dirs: list[Path]) -> None:
    """Place the channels' files (hardlinks), then build the apt, rpm, pacman and tarball indexes, the four
    families side by side: they write apart (apt/, rpm/, arch/, tarball/) and mostly wait on their tools."""
    (gen / "keys").mkdir(parents=True, exist_ok=True)
    sign.export_public_keys(keys, gen / layout.KEY_FILE)
    channels, sources = keyring.include(gen, channels, sources, keys, previous_dirs)  # every channel lists it
    for channel in sorted(channels):
        _place_channel(gen, channel, channels[channel], sources)
    previous = previous_dirs[0] if previous_dirs else None
    per_channel = {
        "apt": lambda channel, entries: apt.build_suite(
            gen, channel, entries, keys, date=date, valid_until=valid_until, base_url=base_url,
            previous_suites=[d / layout.apt_suite_dir(channel) for d in previous_dirs]),
        "rpm": lambda channel, entries: rpm.build_channel(gen, channel, entries, keys, date=date, base_url=base_url,
                                                          previous=previous),
        "pacman": lambda channel, entries: pacman.build_channel(gen, channel, entries, keys, date=date, base_url=base_url),
        "tarball": lambda channel, entries: tarball.build_channel(gen, channel, entries, keys, date=date),
    }

    def every_channel(build: Callable[[str, list[dict]], object]) -> None:
        for channel in sorted(channels):
            build(channel, channels[channel])

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(per_channel)) as pool:
        for future in [pool.submit(every_channel, build) for build in per_channel.values()]:
            future.result()
    guides.write_generation_guides(gen, channels, keys.fingerprints, base_url)
    carried = carry_previous_files(gen, previous_dirs) + keyring.carry_previous(gen, previous_dirs)
    if carried:
        log.debug(f"    kept {carried} files of previous generations for clients in flight")


def carry_previous_files(gen: Path, previous_dirs: list[Path]) -> int:
    """Hardlink the packages and rpm metadata files the previous generations listed into the new one.

    A client that read generation N's index just before the switch to N+1 still downloads what that
    index names (a package dropped by a rollback, repodata files whose names carry their checksum).
    They are not listed by the new indexes, and go when the generation that listed them is pruned.
    Runs after the indexes are built, so createrepo_c never sees them. (apt's by-hash files are
    carried the same way in `repo.apt`.)"""
    carried = 0
    for old in previous_dirs:
        state_file = old / layout.GENERATION_FILE
        if not state_file.exists():
            continue
        wanted: list[str] = []
        for channel, entries in json.loads(state_file.read_text())["channels"].items():
            for entry in entries:
                wanted += layout.artifact_paths(channel, entry)
            for repomd in (old / "rpm" / channel).glob("*/repodata/repomd.xml"):
                base = repomd.parent.parent.relative_to(old)
                wanted += [f"{base}/{href}" for href in re.findall(r'<location href="([^"]+)"', repomd.read_text())]
        for rel in wanted:
            src, dst = old / rel, gen / rel
            if src.exists() and not dst.exists():
                place(src, dst)
                carried += 1
    return carried


# --- making a generation current (shared with channels.promote) ------------------------------------------


@dataclasses.dataclass
class Options:
    base_url: str = layout.DEFAULT_BASE_URL
    valid_days: float = layout.DEFAULT_VALID_DAYS
    keep: int = layout.DEFAULT_KEEP
    verify: bool = True
    dry_run: bool = False
    date: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        return cls(base_url=args.base_url, valid_days=args.valid_days, keep=args.keep, verify=args.verify,
                   dry_run=args.dry_run, date=args.date)


@dataclasses.dataclass
class Change:
    """What a new generation holds and why: the channels' artifact lists and where their files come from."""

    action: str
    channels: dict[str, list[dict]]
    sources: dict[str, Path]
    previous_content: int | None
    published: dict | None = None
    #: the channel the clients check, and the version apt must install from it (None: any)
    verify_channel: str = layout.DEFAULT_CHANNEL
    expected_version: str | None = None
    #: more fields for generation.json
    extra_state: dict = dataclasses.field(default_factory=dict)
    #: checks what write_extra will add, before anything is built (e.g. the channel records a publish carries)
    check_extra: Callable[[], None] | None = None
    #: writes more files into the generation being built (e.g. the signed channel state), given (dir, date)
    write_extra: Callable[[Path, int], None] | None = None
    describe: str = ""


def commit(root: RepoRoot, keys: sign.RepoKeys, change: Change, opts: Options, *, target: Target | None,
           current: int | None) -> dict:
    """Build `change` as a new generation aside, verify it with the real clients, switch `current` (and the host).

    Call with `root.lock()` held. Nothing a client sees changes unless every step succeeds."""
    key = keys.primary
    number = root.next_number()
    previous_dates = [root.state(n).get("date", 0) for n in root.numbers()]
    date = layout.next_date(opts.date if opts.date is not None else time.time(), max(previous_dates, default=None))
    valid_until = date + int(opts.valid_days * 86400)
    for k in keys.all:
        check_key_outlives(k, valid_until)
    ahead = date - time.time()
    if ahead > 5:
        log.warn(f"the Release Date {layout.rfc2822(date)} is {ahead:.0f}s ahead of this clock (it follows the previous "
                 "generation's); apt refuses files dated more than 10s ahead ('not valid yet'): check the clock")
    if opts.dry_run:
        published = change.published
        what = change.describe or (f"{published['version']} from {published['build']}" if published
                                   else f"the content of generation {current}")
        log.info(f"    would {change.action} {what} as generation {number} in {root.path} (Date {layout.rfc2822(date)})")
        return {"generation": number, "action": change.action, "dry_run": True}

    if change.check_extra is not None:  # e.g. the records a publish carries must be intact: before building
        change.check_extra()
    started = time.monotonic()
    building = root.start(number)
    previous_dirs = [root.dir(n) for n in sorted(root.numbers(), reverse=True)[:max(0, opts.keep - 1)]]
    with log.step(f"building generation {number} ({change.action}) in {building}"):
        build_generation(building, channels=change.channels, sources=change.sources, keys=keys, date=date,
                         valid_until=valid_until, base_url=opts.base_url, previous_dirs=previous_dirs)
        if change.write_extra is not None:
            change.write_extra(building, date)
        state = {
            "schema": SCHEMA, "generation": number, "action": change.action, "based_on": current,
            "previous_content": change.previous_content, "date": date, "valid_until": valid_until,
            "base_url": opts.base_url, "key": {"fingerprint": key.fingerprint, "development": key.development,
                                               "cosigners": [k.fingerprint for k in keys.cosigners]},
            "published": change.published, "channels": change.channels, **change.extra_state,
        }
        # generation.json last: a generation without it is incomplete
        (building / layout.GENERATION_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    verified = None
    if opts.verify:
        from repo.verify import verify_generation

        with log.step(f"verifying generation {number} with apt, dnf, pacman and rpm -K"):
            try:
                verified = verify_generation(building, change.verify_channel,
                                             root.path / f"{layout.VERIFY_PREFIX}{layout.generation_name(number)}",
                                             expected_version=change.expected_version)
            except EnduraError as exc:
                raise EnduraError(f"generation {number} failed verification and was not published: {exc.message} "
                                  f"(left in {building} for inspection; the next publish removes it)",
                                  detail=exc.detail) from None
    final = root.finish(building, number)
    if target:
        push(target, final, number, expected_current=current,
             keep=sorted(layout.generations_to_keep(root.numbers(), number, opts.keep)))
    root.switch(number)
    pruned = root.prune(opts.keep)
    seconds = round(time.monotonic() - started, 2)
    log.info(f"==> generation {number} is current ({change.action}, {seconds}s); kept {len(root.numbers())}, "
             f"pruned {pruned or 'none'}")
    return {"generation": number, "path": str(final), "current": str(root.current_link), "action": change.action,
            "target": str(target) if target else None,
            "date": layout.rfc2822(date), "valid_until": layout.rfc2822(valid_until), "verified": verified,
            "pruned": pruned, "seconds": seconds, "development_key": key.development}


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that makes a new generation (publish, promote)."""
    p.add_argument("--repo-root", default=str(REPO_TOP / "build" / "repo"), help="local repository tree (default build/repo)")
    p.add_argument("--target", help="web host to push to: ssh://[user@]host[:port]/path or [user@]host:/path "
                   "(rsync over ssh; --repo-root is the local mirror; needs the release key)")
    p.add_argument("--valid-days", type=float, default=layout.DEFAULT_VALID_DAYS,
                   help="apt Valid-Until window in days (re-sign with --refresh before it ends)")
    p.add_argument("--keep", type=int, default=layout.DEFAULT_KEEP, help="generations to keep (by-hash, rollback)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the apt/dnf checks (local tests only)")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")


def check_generation_options(args: argparse.Namespace) -> None:
    if args.keep < 2:
        raise EnduraError(f"--keep {args.keep} is too small; keep at least 2 generations (the current and the previous)")
    if args.target and not args.verify:
        raise EnduraError("--no-verify is for local trees only; drop it to change a remote target")


