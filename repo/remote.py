"""Publishing to the web host: rsync over ssh, uploaded aside, then switched with one rename there too.

The local `--repo-root` is the staging mirror: a generation is built and verified there as usual,
then uploaded to `<path>/generations/.upload-<n>/` on the host (`rsync --link-dest` against the
host's current generation, so unchanged files become hardlinks and only what changed travels),
renamed to `generations/<n>`, and `current` is replaced by a new symlink with `mv -T` (rename(2)).
Only then does the local `current` follow. Before anything, the host's `current` must be the local
one: a host changed behind the mirror's back is refused, not overwritten.

Targets: `ssh://[user@]host[:port]/abs/path` or `[user@]host:/abs/path`. Extra ssh options (identity,
known_hosts) come from `ENDURA_PUBLISH_SSH_OPTIONS`, e.g. `-i ~/.ssh/repo -o UserKnownHostsFile=...`.
Commands on the host are built with `shlex.quote` from fixed templates (ssh always hands the host's
shell a string); the host needs only sh, mv, ln, readlink, mkdir, rm and rsync.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
from pathlib import Path

from repo import layout
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.run import run

UPLOAD_PREFIX = ".upload-"


@dataclasses.dataclass(frozen=True)
class Target:
    host: str
    path: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"ssh://{self.destination}{port}{self.path}"


def parse_target(text: str) -> Target:
    m = re.fullmatch(r"ssh://(?:([^@/]+)@)?([^:/@]+)(?::(\d+))?(/.*)", text)
    if m:
        return Target(m.group(2), _clean(m.group(4), text), m.group(1), int(m.group(3)) if m.group(3) else None)
    m = re.fullmatch(r"(?:([^@/:]+)@)?([^:/@]+):(/.*)", text)
    if m:
        return Target(m.group(2), _clean(m.group(3), text), m.group(1))
    raise EnduraError(f"--target {text!r} is not a remote target; use ssh://[user@]host[:port]/abs/path or [user@]host:/abs/path")


def _clean(path: str, text: str) -> str:
    if path.startswith("//"):
        raise EnduraError(f"--target {text!r} looks like a URL; use ssh://[user@]host[:port]/abs/path or [user@]host:/abs/path")
    path = path.rstrip("/") or "/"
    if path == "/" or ".." in path.split("/"):
        raise EnduraError(f"--target {text!r}: the remote path must be an absolute directory below / without '..'")
    return path


def ssh_options(target: Target) -> list[str]:
    extra = shlex.split(os.environ.get("ENDURA_PUBLISH_SSH_OPTIONS", ""))
    return ["-o", "BatchMode=yes", *(["-p", str(target.port)] if target.port else []), *extra]


def ssh_argv(target: Target, command: str) -> list[str]:
    return ["ssh", *ssh_options(target), target.destination, command]


def rsync_argv(target: Target, source: Path, remote_dir: str, link_dest: str | None) -> list[str]:
    """rsync a generation into `remote_dir` (created), hardlinking unchanged files to `link_dest`."""
    return ["rsync", "--archive", "--hard-links", "--delete",
            "-e", shlex.join(["ssh", *ssh_options(target)]),
            *([f"--link-dest={link_dest}"] if link_dest else []),
            f"{source}/", f"{target.destination}:{remote_dir}/"]


def prepare_command(path: str) -> str:
    """Create the tree, drop abandoned uploads, print the current generation's name (or nothing)."""
    q = shlex.quote(path)
    return (f"set -e; mkdir -p {q}/{layout.GENERATIONS_DIR}; rm -rf {q}/{layout.GENERATIONS_DIR}/{UPLOAD_PREFIX}*; "
            f"if [ -L {q}/{layout.CURRENT} ]; then readlink {q}/{layout.CURRENT}; fi")


def switch_command(path: str, number: int) -> str:
    q, name = shlex.quote(path), layout.generation_name(number)
    gens = f"{q}/{layout.GENERATIONS_DIR}"
    return (f"set -e; mv -T {gens}/{UPLOAD_PREFIX}{name} {gens}/{name}; "
            f"ln -sfn {layout.GENERATIONS_DIR}/{name} {q}/.{layout.CURRENT}.tmp; "
            f"mv -T {q}/.{layout.CURRENT}.tmp {q}/{layout.CURRENT}")


def prune_command(path: str, keep: list[int]) -> str:
    """Remove the host's generations that the local mirror no longer keeps."""
    gens = f"{shlex.quote(path)}/{layout.GENERATIONS_DIR}"
    names = " ".join(layout.generation_name(n) for n in sorted(keep))
    return (f"set -e; cd {gens}; for g in [0-9]*; do case \" {names} \" in *\" $g \"*) ;; *) rm -rf -- \"$g\";; esac; done")


def check_host(target: Target, expected_current: int | None) -> int | None:
    """Prepare the host's tree and make sure it serves the generation the local mirror says it does."""
    current = run(ssh_argv(target, prepare_command(target.path)), timeout=120,
                  hint=f"check that ssh reaches {target.destination} (ENDURA_PUBLISH_SSH_OPTIONS)").stdout.strip()
    host_current = layout.parse_generation_name(os.path.basename(current)) if current else None
    if host_current != expected_current:
        raise EnduraError(
            f"{target} serves generation {host_current} but the local mirror's current is {expected_current}; the host "
            "was changed outside this mirror: sync the mirror from the host (rsync) before publishing"
        )
    return host_current


def push(target: Target, local_gen: Path, number: int, *, expected_current: int | None, keep: list[int]) -> None:
    """Upload generation `number` aside, then switch the host's `current` to it."""
    host_current = check_host(target, expected_current)
    name = layout.generation_name(number)
    upload = f"{target.path}/{layout.GENERATIONS_DIR}/{UPLOAD_PREFIX}{name}"
    link_dest = f"../{layout.generation_name(host_current)}" if host_current is not None else None
    with log.step(f"uploading generation {number} to {target} (aside)"):
        run(rsync_argv(target, local_gen, upload, link_dest), timeout=3600)
    with log.step(f"switching {target} to generation {number}"):
        run(ssh_argv(target, switch_command(target.path, number)), timeout=120)
    run(ssh_argv(target, prune_command(target.path, keep)), timeout=600)
