"""The generation engine: build a repository generation aside, verify it with the real clients, switch
it in atomically, prune (`commit`), and what every command that makes one hands in (`Options`, `Change`).
The commands live a layer above (`channels.command` and the commands on it); whatever a command adds to
a generation it hands in through `Change` (`check_extra`, `write_extra`): this module knows nothing of
channel records.

Every generation (see `repo.layout` for the tree) is the channels' content (hardlinked), fresh
indexes, every suite re-signed with a Date after the previous one and `Valid-Until` = Date +
`--valid-days`; it is verified with each family's real client over loopback HTTP while still invisible,
then `current` is switched to it. What differs per package family (the index, its signature, its
client) is the family's (`families.<name>`): this module loops over `families.published()`. With a
target (see `repo.remote`) the local tree is the staging mirror of the web host: the verified
generation is rsynced there aside and switched there first.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import AbstractSet, Any, Callable

from families import IndexContext, indexcache, published
from repo import guides, keyring, layout
from repo.generations import RepoRoot, place
from repo.remote import Target, push
from toolbox import gpg, log
from toolbox.dates import rfc2822
from toolbox.errors import EnduraError
from toolbox.files import json_text

SCHEMA = 1


# --- checks ---------------------------------------------------------------------------------------------


def check_key_outlives(key: gpg.SigningKey, valid_until: int) -> None:
    """apt rejects signatures by an expired key (EXPKEYSIG): the key must outlive the Valid-Until window."""
    if key.expires is not None and key.expires < valid_until:
        raise EnduraError(
            f"signing key {key.fingerprint} expires on {rfc2822(key.expires)}, before this publish's Valid-Until "
            f"({rfc2822(valid_until)}); extend it with 'gpg --quick-set-expire {key.fingerprint} 2y' and publish the "
            "updated public key, or shorten --valid-days"
        )


# --- building a generation ---------------------------------------------------------------------------


def _place_channel(gen: Path, channel: str, entries: list[dict], sources: dict[str, Path | str]) -> list[str]:
    """Hardlink (else copy) every artifact of the channel into the generation; what is there already stays.
    Returns the paths (relative to `gen`). Strings rather than Path objects (2,000 files: the objects cost
    more than the links)."""
    placed: list[str] = []
    top = os.fspath(gen)
    for entry in entries:
        for name, rel in layout.artifact_files(channel, entry):
            place(sources[name], os.path.join(top, rel))
            placed.append(rel)
    return placed


def sources_in(gen_dir: Path, channels: dict[str, list[dict]]) -> dict[str, Path | str]:
    """build file name -> path of every artifact (and detached signature) in an existing generation (strings:
    2,000 Path objects cost more than the links made from them)."""
    found: dict[str, Path | str] = {}
    top = os.fspath(gen_dir)
    for channel, entries in channels.items():
        for entry in entries:
            for name, rel in layout.artifact_files(channel, entry):
                found.setdefault(name, os.path.join(top, rel))
    return found


def build_generation(gen: Path, *, channels: dict[str, list[dict]], sources: dict[str, Path | str], keys: gpg.Keys,
                     date: int, valid_until: int, base_url: str, previous_dirs: list[Path], apk_key: Any = None,
                     cache: Path | None = None) -> None:
    """Place the channels' files (hardlinks), then build every published family's index for every channel,
    the families side by side: they write apart (apt/, rpm/, arch/, apk/, tarball/) and mostly wait on their tools."""
    (gen / "keys").mkdir(parents=True, exist_ok=True)
    gpg.export_public_keys(keys, gen / layout.KEY_FILE)
    channels, sources = keyring.include(gen, channels, sources, keys, previous_dirs)  # every channel lists it
    present: set[str] = set()
    for channel in sorted(channels):
        present.update(_place_channel(gen, channel, channels[channel], sources))
    ctx = IndexContext(keys=keys, date=date, valid_until=valid_until, base_url=base_url, previous=tuple(previous_dirs),
                       cache=cache, apk_key=apk_key)

    def every_channel(family) -> None:
        for channel in sorted(channels):
            family.build_channel(gen, channel, [e for e in channels[channel] if e["family"] == family.name], ctx)

    families = published()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(families)) as pool:
        for future in [pool.submit(every_channel, family) for family in families]:
            future.result()
    guides.write_generation_guides(gen, channels, keys.fingerprints, base_url)
    carried = carry_previous_files(gen, previous_dirs, present) + keyring.carry_previous(gen, previous_dirs)
    if carried:
        log.debug(f"    kept {carried} files of previous generations for clients in flight")


def carry_previous_files(gen: Path, previous_dirs: list[Path], present: AbstractSet[str] = frozenset()) -> int:
    """Hardlink the packages and index files (`Family.carried_files`) the previous generations listed into the new one.

    A client that read generation N's index just before the switch to N+1 still downloads what that
    index names (a package dropped by a rollback, repodata files whose names carry their checksum).
    They are not listed by the new indexes, and go when the generation that listed them is pruned.
    Runs after the indexes are built, so createrepo_c never sees them. (apt's by-hash files are
    carried the same way in `families.deb.repository`.) `present`: paths this generation placed already (not tried again)."""
    carried = 0
    # a path is taken from the newest previous generation that has it; `present`: what this generation placed
    seen: set[str] = set(present)
    for old in previous_dirs:
        state_file = old / layout.GENERATION_FILE
        if not state_file.exists():
            continue
        wanted: list[str] = []
        for channel, entries in json.loads(state_file.read_text())["channels"].items():
            for entry in entries:
                wanted += layout.artifact_paths(channel, entry)
            for family in published():
                wanted += family.carried_files(old, channel)
        for rel in wanted:
            if rel in seen:
                continue
            try:
                linked = place(os.path.join(old, rel), os.path.join(gen, rel))
            except FileNotFoundError:  # not in `old` (pruned, or never there): an older generation may have it
                continue
            seen.add(rel)
            carried += linked
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



@dataclasses.dataclass
class Change:
    """What a new generation holds and why: the channels' artifact lists and where their files come from."""

    action: str
    channels: dict[str, list[dict]]
    sources: dict[str, Path | str]
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


def commit(root: RepoRoot, keys: gpg.Keys, change: Change, opts: Options, *, target: Target | None,
           current: int | None, apk_key: Any = None) -> dict:
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
        log.warn(f"the Release Date {rfc2822(date)} is {ahead:.0f}s ahead of this clock (it follows the previous "
                 "generation's); apt refuses files dated more than 10s ahead ('not valid yet'): check the clock")
    if opts.dry_run:
        pub = change.published
        what = change.describe or (f"{pub['version']} from {pub['build']}" if pub
                                   else f"the content of generation {current}")
        log.info(f"    would {change.action} {what} as generation {number} in {root.path} (Date {rfc2822(date)})")
        return {"generation": number, "action": change.action, "dry_run": True}

    if change.check_extra is not None:  # e.g. the records a publish carries must be intact: before building
        change.check_extra()
    started = time.monotonic()
    building = root.start(number)
    previous_dirs = [root.dir(n) for n in sorted(root.numbers(), reverse=True)[:max(0, opts.keep - 1)]]
    with log.step(f"building generation {number} ({change.action}) in {building}"):
        build_generation(building, channels=change.channels, sources=change.sources, keys=keys, date=date,
                         valid_until=valid_until, base_url=opts.base_url, previous_dirs=previous_dirs, apk_key=apk_key,
                         cache=root.path / indexcache.CACHE_DIR)
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
        (building / layout.GENERATION_FILE).write_text(json_text(state) + "\n")
    verified = None
    if opts.verify:
        from repo.verify import verify_generation

        with log.step(f"verifying generation {number} with {', '.join(f.name for f in published())}'s clients"):
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
            "date": rfc2822(date), "valid_until": rfc2822(valid_until), "verified": verified,
            "pruned": pruned, "seconds": seconds, "development_key": key.development}
