"""`python3 -m channels.promote testing|stable [VERSION]`: move the very same build one channel on.

    python3 -m channels.promote testing            # the newest version in latest that passes the gates
    python3 -m channels.promote stable 1.2.3
    python3 -m channels.promote testing 1.2.2 --rollback --reason "1.2.3 breaks RHEL 8"

A promotion is a new repository generation (see `repo.engine.commit`): the channel's artifact list
gains the version's entries from the channel before it; the packages are the same files (hardlinked,
sha256 checked in the new tree against the source channel), never rebuilt nor re-signed; only the
channel's metadata (apt suite, repodata, pacman db, tarball index) is regenerated and signed. The
signed channel state and promotion log (`channels.records`) get one more entry, with the digests
and the evidence records that allowed it (copied into the tree). The generation is verified with
apt and dnf pointed at the promoted channel (they must install the promoted version) before the
atomic switch, so a refused or failed promotion leaves every channel as it was.

Gates and rules: `channels.rules` and `channels/policy.toml`. Promotions and publishes of one
repository root are serialized by its lock (`--wait SECONDS` queues behind a running one).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from channels import evidence, records, rules
from channels.command import add_generation_options, check_generation_options, open_repository, options
from channels.policy import load_policy
from repo import layout
from repo.engine import Change, commit, sources_in
from toolbox import log
from toolbox.errors import EnduraError, cli_main
from toolbox.files import sha256_file


def lookup_in(directory: Path | None, channels: dict[str, list[dict]], source: str, keyring: Path):
    """The evidence lookup the rules use: records for the version's bytes as published in `source`."""
    def lookup(kind: str, version: str, not_before: int | None):
        return evidence.find_valid(kind, version, rules.digests(channels.get(source, []), version), keyring,
                                   directory=directory, not_before=not_before)
    return lookup


def promoted_list(channels: dict[str, list[dict]], channel: str, version: str, rollback: bool) -> list[dict]:
    """The target channel's new artifact list: plus the version's entries, or (rollback) without anything newer."""
    target = channels.get(channel, [])
    if rollback:
        kept = [e for e in target if not rules.parse(version) < rules.parse(e["version"])]
        if not any(e["version"] == version for e in kept):
            raise EnduraError(f"{channel} no longer lists the files of {version}; promote it again instead of rolling back")
        return kept
    by_file = {e["file"]: e for e in target}
    for entry in channels[rules.source_of(channel)]:
        if entry["version"] != version:
            continue
        old = by_file.get(entry["file"])
        if old is not None and old["sha256"] != entry["sha256"]:
            raise EnduraError(f"{channel} already lists {entry['file']} with other bytes (sha256 {old['sha256'][:16]}…); "
                              "a published file is immutable: repair the repository before promoting")
        by_file[entry["file"]] = entry
    return sorted(by_file.values(), key=lambda a: (a["family"], a["arch"], a["file"]))


def check_same_bytes(gen: Path, channel: str, entries: list[dict], source_gen: Path, source: str) -> dict[str, str]:
    """Every promoted file in the new tree has the sha256 it has in the source channel and in the entries."""
    found: dict[str, str] = {}
    for entry in entries:
        source_paths = layout.artifact_paths(source, entry)
        for (name, rel), src_rel in zip(layout.artifact_files(channel, entry), source_paths):
            digest = sha256_file(gen / rel)
            if digest != sha256_file(source_gen / src_rel):
                raise EnduraError(f"{rel} differs from {src_rel} in the current generation; a promotion must carry the "
                                  "same bytes: repair the repository (the current generation's files were modified)")
            found[name] = digest
        if found[entry["file"]] != entry["sha256"]:
            raise EnduraError(f"{entry['file']} has sha256 {found[entry['file']][:16]}… but its manifest entry says "
                              f"{entry['sha256'][:16]}…; the repository was modified: republish the build")
    return found


def choose_version(channel: str, *, channels, recs, policy, now, lookup) -> rules.Decision:
    """Default VERSION: the newest version of the source channel, newer than the target's, that passes the gates."""
    source = rules.source_of(channel)
    current = rules.current_version(recs, channels, channel)
    candidates = [v for v in reversed(rules.versions_in(channels.get(source, [])))
                  if current is None or rules.parse(current) < rules.parse(v)]
    if channel == "stable":
        candidates = [v for v in candidates if rules.parse(v).is_release] or candidates
    if not candidates:
        raise EnduraError(f"nothing to promote to {channel}: {source} holds nothing newer than {channel}'s "
                          f"{current or 'nothing'}; see 'nox -s channels'")
    first: rules.Decision | None = None
    for version in candidates:
        decision = rules.evaluate(channel, version, channels=channels, records=recs, policy=policy, now=now, lookup=lookup)
        if decision.allowed:
            return decision
        first = first or decision
    assert first is not None  # candidates is not empty
    return first


def promote(args: argparse.Namespace) -> dict:
    channel = layout.check_channel(args.channel)
    source = rules.source_of(channel)
    if args.rollback and not (args.reason or "").strip():
        raise EnduraError("--rollback needs --reason \"...\" (it goes into the signed promotion log)")
    if args.rollback and not args.version:
        raise EnduraError(f"--rollback needs the VERSION to return {channel} to; see 'nox -s channels'")
    policy = load_policy(args.policy)
    with open_repository(args, wait=args.wait) as repo:
        root, keys, current = repo.root, repo.keys, repo.current
        if current is None:
            raise EnduraError(f"nothing is published in {root.path}; publish a build first ('nox -s publish')")
        base = root.state(current)
        gen = root.dir(current)
        channels = base["channels"]
        recs = records.read(gen)
        now = int(time.time())
        lookup = lookup_in(args.evidence_dir, channels, source, gen / layout.KEY_FILE)
        if args.version:
            decision = rules.evaluate(channel, args.version, channels=channels, records=recs, policy=policy, now=now,
                                      lookup=lookup, rollback=args.rollback)
        else:
            decision = choose_version(channel, channels=channels, recs=recs, policy=policy, now=now, lookup=lookup)
        version = decision.version
        if decision.noop:
            log.info(f"    {channel} already holds {version} (generation {current}); nothing to do")
            return {"generation": current, "action": "none", "channel": channel, "version": version}
        if decision.refusals:
            raise EnduraError(f"cannot promote {version} to {channel}: " + "; ".join(decision.refusals))

        new_list = promoted_list(channels, channel, version, args.rollback)
        moved = [e for e in new_list if e["version"] == version]
        action = "rollback" if args.rollback else "promote"
        who = evidence.actor()

        def write_records(building: Path, date: int) -> None:
            with log.step(f"checking the sha256 of every {version} file in {channel} against {source}"):
                digests = check_same_bytes(building, channel, moved, gen, channel if args.rollback else source)
            entry = {"time": date, "who": who, "action": action, "channel": channel, "version": version,
                     "from": decision.current, "based_on_generation": current, "artifacts": digests,
                     "evidence": [{"kind": r.kind, "record": r.path.name, "sha256": sha256_file(r.path)}
                                  for r in decision.evidence]}
            if args.reason:
                entry["reason"] = args.reason
            new = records.append(recs, entry)
            records.check_append_only(recs, new)
            cited = [r.path for r in decision.evidence]
            old_cited = sorted((gen / records.EVIDENCE).glob("*.json")) if (gen / records.EVIDENCE).is_dir() else []
            records.write(building, new, keys, date=date, evidence=old_cited + cited)

        change = Change(action=action, channels={**channels, channel: new_list},
                        sources=sources_in(gen, channels), previous_content=current,
                        published={"channel": channel, "version": version, "from": decision.current, "who": who},
                        verify_channel=channel, expected_version=version, write_extra=write_records,
                        describe=f"{version} into {channel} (from {decision.current or 'nothing'})")
        opts = options(args, base_url=base.get("base_url", layout.DEFAULT_BASE_URL))
        result = commit(root, keys, change, opts, target=repo.target, current=current, apk_key=repo.apk_key)
        result.update({"channel": channel, "version": version, "from": decision.current,
                       "evidence": [str(r.path) for r in decision.evidence]})
        if not args.dry_run:
            log.info(f"==> {channel} now holds {version} (was {decision.current or 'nothing'})")
        return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m channels.promote", description=__doc__.split("\n")[0])
    p.add_argument("channel", help="testing or stable")
    p.add_argument("version", nargs="?", help="version to promote (default: the newest eligible)")
    p.add_argument("--rollback", action="store_true", help="move the channel back to an older version it held before")
    p.add_argument("--reason", help="why (required with --rollback; logged)")
    p.add_argument("--policy", type=Path, help="promotion policy (default channels/policy.toml)")
    p.add_argument("--evidence-dir", type=Path, help="evidence store (default $ENDURA_EVIDENCE_DIR or build/evidence)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running publish/promotion (default 0)")
    add_generation_options(p)
    return p


def run_cli(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    check_generation_options(args)
    result = promote(args)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
