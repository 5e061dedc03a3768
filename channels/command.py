"""What every command that changes what a channel holds shares: its options and its preamble.

publish (and its --refresh and --rollback), promote (and its --rollback), approve, status and the
offline bundle (`channels.mirror`) work on one repository root. The ones that make a new generation
(publish, promote) open it the same way (`open_repository`): refuse an unverified run without root,
resolve the key(s) (`release.signing`), check the web host target, require the tools every published
family needs, take the root's lock, remove what an interrupted run left, read the current
generation, and check the host still serves it. The generation itself is made by `repo.engine.commit`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

from families import FAMILIES, published
from release import signing
from repo import layout
from repo.engine import Options
from repo.generations import RepoRoot
from repo.remote import Target, check_host, parse_target
from toolbox import gpg, log
from toolbox.errors import EnduraError
from toolbox.files import REPO_TOP
from toolbox.tools import require

#: the default repository root (a local tree; with --target, the staging mirror of the web host)
DEFAULT_REPO_ROOT = REPO_TOP / "build" / "repo"


def generation_tools() -> tuple[str, ...]:
    """The tools every generation needs: gpg, and every published family's index tools."""
    return ("gpg", "gpgv", *(t for f in published() for t in f.index_tools))


def add_repo_root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo-root", type=Path, default=DEFAULT_REPO_ROOT, help="local repository tree (default build/repo)")


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that makes a new generation (publish, promote)."""
    add_repo_root_option(p)
    p.add_argument("--target", help="web host to push to: ssh://[user@]host[:port]/path or [user@]host:/path "
                   "(rsync over ssh; --repo-root is the local mirror; needs the release key)")
    p.add_argument("--valid-days", type=float, default=layout.DEFAULT_VALID_DAYS,
                   help="apt Valid-Until window in days (re-sign with --refresh before it ends)")
    p.add_argument("--keep", type=int, default=layout.DEFAULT_KEEP, help="generations to keep (by-hash, rollback)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the client checks (local tests only)")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")


def check_generation_options(args: argparse.Namespace) -> None:
    if args.keep < 2:
        raise EnduraError(f"--keep {args.keep} is too small; keep at least 2 generations (the current and the previous)")
    if args.target and not args.verify:
        raise EnduraError("--no-verify is for local trees only; drop it to change a remote target")


def options(args: argparse.Namespace, *, base_url: str) -> Options:
    return Options(base_url=base_url, valid_days=args.valid_days, keep=args.keep, verify=args.verify,
                   dry_run=args.dry_run, date=getattr(args, "date", None))


def check_target(target: str | None, key: gpg.SigningKey) -> Target | None:
    """A remote target (rsync over ssh) needs the release key: the development key is refused first."""
    if not target:
        return None
    if key.development:
        raise EnduraError(f"refusing to publish to {target} with the DEVELOPMENT key {key.fingerprint}; "
                          "set ENDURA_SIGNING_KEY to the release key (and build with it)")
    return parse_target(target)


@dataclasses.dataclass
class Repository:
    """An opened repository root: locked, cleaned, its current generation read."""

    root: RepoRoot
    keys: gpg.Keys
    #: the apk RSA key (`release.signing.ApkKey`) that signs the apk indexes
    apk_key: Any
    target: Target | None
    current: int | None


@contextlib.contextmanager
def open_repository(args: argparse.Namespace, *, wait: float = 0.0) -> Iterator[Repository]:
    """The preamble of publish and promote (see the module's docstring); the lock is held inside the block."""
    if args.verify and not args.dry_run and os.geteuid() != 0:
        raise EnduraError("verification installs the packages in a chroot and needs root; run as root "
                          "or pass --no-verify for a local test tree (never for a release)")
    keys = signing.resolve_repo_keys()
    target = check_target(args.target, keys.primary)
    if target:
        require("rsync", "ssh")
    require(*generation_tools())
    apk_key = signing.resolve_apk_key(keys.primary) if FAMILIES["apk"].published else None
    root = RepoRoot(Path(args.repo_root))
    with root.lock(wait=wait):
        for p in root.remove_abandoned():
            log.info(f"    removed {p} (left by an interrupted publish or promotion)")
        current = root.current()
        if target:
            check_host(target, current)
        yield Repository(root, keys, apk_key, target, current)
