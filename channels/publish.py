"""`python3 -m channels.publish`: publish one build into channel `latest`, atomically, verified first.

    python3 -m channels.publish [--dist dist/<version>] [--repo-root build/repo] [--base-url URL]
    python3 -m channels.publish --refresh      # re-sign the current content (renews Valid-Until)
    python3 -m channels.publish --rollback     # publish the previous content again, with a newer Date

Every run makes a new generation (see `repo.layout` for the tree): the channels' previous content
(hardlinked) plus the build's packages of every published family, fresh indexes, every suite re-signed with a
Date after the previous one and `Valid-Until` = Date + `--valid-days`. It is verified with each
family's real client over loopback HTTP while still invisible, then `current` is switched to it.

Rollback re-publishes (re-signs) the older content instead of pointing `current` back at the old
tree: apt keeps an InRelease whose Date is newer than the one it is served (it treats the older one
as "not modified"), so an old tree served again would never reach clients that saw the bad one.

The repository key is the one `release.signing.resolve_key()` gives (ENDURA_SIGNING_KEY or the
development key); it must be the key the build's packages are signed with, because clients check
both with the one key they are given (during a rotation, `ENDURA_SIGNING_KEY_NEXT` co-signs the
metadata and the build may be signed by either key: see `release.signing`). A development key is refused
for a non-local target.
The generation is made by `repo.engine.commit` (the engine promotion uses too); a publish, a refresh and a
rollback carry the channel records (signed state, promotion log, evidence) into it unchanged, checked
before anything is built (`channels.records`).
With `--target` (see `repo.remote`) the local tree is the staging mirror of the web host: the
verified generation is rsynced there aside and switched there first, then locally.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from channels import records
from channels.command import add_generation_options, check_generation_options, open_repository, options
from families import detached_signature
from release.manifest import find_build, load_build
from repo import layout
from repo.engine import Change, commit, sources_in
from repo.generations import RepoRoot
from toolbox import gpg, log
from toolbox.errors import EnduraError, cli_main


def records_carrier(root: RepoRoot, current: int | None, keys: gpg.Keys
                    ) -> tuple[Callable[[], None] | None, Callable[[Path, int], None] | None]:
    """(check, write) for a generation that promotes nothing: the current generation's channel records,
    read and checked before anything is built, then re-signed unchanged into the new one."""
    if current is None:
        return None, None
    old = root.dir(current)
    read: list[records.Records] = []

    def check() -> None:
        read.append(records.read(old))

    def write(new: Path, date: int) -> None:
        records.carry(old, read[-1], new, keys, date=date)

    return check, write


def publish(args: argparse.Namespace) -> dict:
    channel = layout.check_channel(args.channel)
    if channel != layout.DEFAULT_CHANNEL and not (args.refresh or args.rollback):
        raise EnduraError(f"builds are published into '{layout.DEFAULT_CHANNEL}' only; "
                          f"'{channel}' receives the same bytes by promotion ('nox -s promote -- {channel}')")
    with open_repository(args) as repo:
        root, keys, current = repo.root, repo.keys, repo.current
        base = root.state(current) if current is not None else None
        base_channels: dict[str, list[dict]] = base["channels"] if base else {}
        sources: dict[str, Path | str] = sources_in(root.dir(current), base_channels) if current is not None else {}
        action, published, expected = "publish", None, None
        previous_content = current
        if args.rollback:
            if base is None:
                raise EnduraError(f"nothing to roll back to in {root.path}: no generation is current; publish a build first")
            if base.get("previous_content") is None:
                raise EnduraError(f"nothing to roll back to in {root.path}: generation {current} holds the first published "
                                  "content; publish the wanted build with --dist instead")
            restore = base["previous_content"]
            if restore not in root.numbers():
                raise EnduraError(f"cannot roll back: generation {restore} was pruned from {root.generations}; "
                                  "publish the wanted build again with --dist")
            old = root.state(restore)
            channels = old["channels"]
            moved = [c for c in layout.PROMOTED if old["channels"].get(c, []) != base_channels.get(c, [])]
            if moved:
                raise EnduraError(f"generation {restore} differs from the current one in channel(s) {', '.join(moved)} "
                                  "(a promotion came between); roll a channel back with 'nox -s promote -- <channel> "
                                  "<version> --rollback --reason ...' and republish latest with --dist")
            sources = sources_in(root.dir(restore), channels)
            action, previous_content = "rollback", old.get("previous_content")
        elif args.refresh:
            if base is None:
                raise EnduraError(f"nothing to refresh in {root.path}: no generation is current; publish a build first")
            channels, action, previous_content = base_channels, "refresh", base.get("previous_content")
        else:
            build = find_build(args.dist)
            loaded = load_build(build, keys.fingerprints, layout.published_families())
            merged, added = layout.merge_build(base_channels.get(channel, []), loaded)
            if not added:
                log.info(f"    {loaded.version} is already published in {channel} (generation {current}); nothing to do")
                return {"generation": current, "path": str(root.dir(current)) if current is not None else None, "action": "none"}
            channels = {**base_channels, channel: merged}
            for a in added:
                sources[a["file"]] = build / a["file"]
                sig = detached_signature(a)
                if sig:
                    sources[sig] = build / sig
            published = {"channel": channel, "version": loaded.version, "build": str(build.resolve()),
                         "manifest_sha256": loaded.manifest_sha256, "added": [a["file"] for a in added]}
            expected = loaded.version

        if args.rollback:
            extra_state: dict = {"restores": restore}
        else:
            extra_state = {}
        check_records, carry_records = records_carrier(root, current, keys)
        change = Change(action=action, channels=channels, sources=sources, previous_content=previous_content,
                        published=published, verify_channel=channel, expected_version=expected, extra_state=extra_state,
                        check_extra=check_records, write_extra=carry_records)
        return commit(root, keys, change, options(args, base_url=args.base_url), target=repo.target, current=current,
                      apk_key=repo.apk_key)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m channels.publish", description=__doc__.split("\n")[0])
    p.add_argument("--dist", help="build directory dist/<version>/ (default: the newest in dist/)")
    p.add_argument("--channel", default=layout.DEFAULT_CHANNEL, help="channel (publishing goes to 'latest')")
    p.add_argument("--base-url", default=layout.DEFAULT_BASE_URL, help="URL the tree is served at (in .sources/.repo files)")
    add_generation_options(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rollback", action="store_true", help="publish the previous content again (newer Date)")
    mode.add_argument("--refresh", action="store_true", help="re-sign the current content (renew Valid-Until)")
    p.add_argument("--date", type=int, help=argparse.SUPPRESS)  # tests: publish at a given time (expired repos)
    return p


def run_cli(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    check_generation_options(args)
    if not re.match(r"^https?://", args.base_url):
        raise EnduraError(f"--base-url {args.base_url!r} is not an http(s) URL; e.g. {layout.DEFAULT_BASE_URL}")
    result = publish(args)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
