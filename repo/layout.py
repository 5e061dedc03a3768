"""Where everything lives in a repository root and a generation, and the channels (pure code).

A repository root (`--repo-root`, default `build/repo`) holds::

    generations/000007/            one complete, signed, verified tree (the web server's view)
    generations/.building-000008/  a generation being built (never served, removed if abandoned)
    current -> generations/000007  the web server's document root (switched with one rename)

and one generation holds, for every channel (`latest`, `testing`, `stable`)::

    keys/endura-archive-keyring.asc          the OpenPGP public key(s): what clients bootstrap with
    keys/<name>.rsa.pub                      the apk RSA public key (for /etc/apk/keys/)
    keys/endura-archive-keyring.json, keys/packages/   the keyring packages (deb+rpm) carrying them (`repo.keyring`)
    apt/dists/<channel>/InRelease, Release, Release.gpg, main/binary-<arch>/Packages{,.gz,.xz},
                       main/binary-<arch>/by-hash/SHA256|SHA512/<digest>
    apt/pool/main/e/endura-sensor/*.deb      shared by every suite: promotion keeps the same bytes
    apt/endura-<channel>.sources             deb822 source for /etc/apt/sources.list.d/
    rpm/<channel>/<x86_64|aarch64>/packages/*.rpm, repodata/repomd.xml(.asc)
    rpm/endura-<channel>.repo                for dnf/yum (/etc/yum.repos.d/)
    rpm/endura-<channel>.zypper.repo         for zypper (/etc/zypp/repos.d/)
    arch/<channel>/<x86_64|aarch64>/*.pkg.tar.zst(.sig), endura.db(.sig), endura.files
    arch/endura-<channel>.pacman.conf        the [endura] section for /etc/pacman.conf
    apk/<channel>/<x86_64|aarch64>/*.apk, APKINDEX.tar.gz (RSA-signed)   for /etc/apk/repositories
    tarball/<channel>/*.tar.gz(.sig), index.json, SHA256SUMS(.asc)
    channels/state.json(.asc), promotions.jsonl(.asc)   which version each channel holds, and how it got there
    install/index.md, install/<channel>/<target-id>.md   install guides (see `repo.guides`)
    generation.json                          what this generation holds and where it came from

Each family's part of the tree (apt/, rpm/, arch/, apk/, tarball/) is defined by the family
(`families.<name>.repository`); this module asks it (`artifact_paths`).
"""
from __future__ import annotations

import enum
import re
from typing import Any, Iterable

from families import FAMILIES, detached_signature, published
from families import KEY_FILE as KEY_FILE  # the key file is part of the layout too
from toolbox.errors import EnduraError


class Channel(str, enum.Enum):
    """The channels, in promotion order: a build enters `latest`; the same bytes move to `testing`, then `stable`."""

    LATEST = "latest"
    TESTING = "testing"
    STABLE = "stable"

    def __str__(self) -> str:
        return self.value

    @property
    def source(self) -> Channel | None:
        """The channel a promotion into this one takes its builds from (None for `latest`)."""
        order = list(Channel)
        i = order.index(self)
        return order[i - 1] if i else None


#: the channel names, in promotion order (the exact on-disk strings)
CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
#: the channels a promotion can target (the signed channel state tracks these; `latest` is what publish put there)
PROMOTED: tuple[str, ...] = CHANNELS[1:]
DEFAULT_CHANNEL = Channel.LATEST.value
DEFAULT_BASE_URL = "https://repo.endurasecurity.com"
DEFAULT_VALID_DAYS = 7
DEFAULT_KEEP = 5

GENERATION_FILE = "generation.json"
#: the signed channel state and promotion log (written by `channels.promote`, carried by every publish)
CHANNEL_RECORDS_DIR = "channels"
GENERATIONS_DIR = "generations"
CURRENT = "current"
BUILDING_PREFIX = ".building-"
#: scratch space of a verification (Debian root, dnf roots) in the repository root, not served
VERIFY_PREFIX = ".verify-"


def published_families() -> tuple[str, ...]:
    return tuple(f.name for f in published())


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise EnduraError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
    return channel


def artifact_paths(channel: str, artifact: dict) -> list[str]:
    """Relative paths (in a generation) of an artifact and of its detached signature, if any."""
    family = FAMILIES.get(artifact["family"])
    if family is None or not family.published:
        raise EnduraError(f"artifact {artifact['file']} has family {artifact['family']!r}, which is not published; "
                          f"publish only {', '.join(published_families())}")
    return family.artifact_paths(channel, artifact)


def artifact_files(channel: str, artifact: dict) -> list[tuple[str, str]]:
    """(build file name, path in a generation) of an artifact and of its detached signature: the name a build
    gives a file is not always the name it is published under (apk names `<arch>/<name>-<version>.apk`)."""
    names = [artifact["file"]]
    sig = detached_signature(artifact)
    if sig:
        names.append(sig)
    return list(zip(names, artifact_paths(channel, artifact)))


def next_date(now: float, previous: int | None) -> int:
    """The new Release Date: now, but always after the previous one (apt keeps the newer Release)."""
    date = int(now)
    if previous is not None and date <= previous:
        date = previous + 1
    return date


def generation_name(number: int) -> str:
    return f"{number:06d}"


def parse_generation_name(name: str) -> int | None:
    return int(name) if re.fullmatch(r"\d{6,}", name) else None


def generations_to_keep(numbers: Iterable[int], current: int | None, keep: int) -> set[int]:
    """The newest `keep` generations, and always the current one (a rollback may have made it older)."""
    ordered = sorted(numbers, reverse=True)
    kept = set(ordered[:max(1, keep)])
    if current is not None:
        kept.add(current)
    return kept


#: the manifest fields a generation records for each published artifact
def merge_build(existing: list[dict], build: Any) -> tuple[list[dict], list[dict]]:
    """Add a build's artifacts (`release.manifest.Build`, already narrowed to the published families) to a
    channel's list: returns (merged list, newly added).

    Publishing the same build twice adds nothing; a file name that is already published with other
    bytes is refused (a published version is immutable)."""
    by_file = {a["file"]: a for a in existing}
    added: list[dict] = []
    for artifact in build.artifacts:
        entry = artifact.entry()
        old = by_file.get(entry["file"])
        if old is None:
            by_file[entry["file"]] = entry
            added.append(entry)
        elif old["sha256"] != entry["sha256"]:
            raise EnduraError(
                f"{entry['file']} is already published with sha256 {old['sha256'][:16]}…, this build has "
                f"{entry['sha256'][:16]}…; a published version is immutable: build a new version (ENDURA_VERSION or a new tag)"
            )
    merged = sorted(by_file.values(), key=lambda a: (a["family"], a["arch"], a["file"]))
    return merged, added
