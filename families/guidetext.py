"""The building blocks of the install guides, shared by every family's steps (pure text).

`repo.guides` writes one guide per catalog target; what a user runs for a package format (add the
key and the repository, install, upgrade, uninstall) is the family's `guide_steps`, made of these.
The commands a user runs are in fenced ```sh blocks, nothing else is: the integration tests extract
those blocks and run them, verbatim, against a published repository. A file is fetched with
`curl -fsSL --create-dirs -o DEST URL` from an http(s) base URL, or copied with
`install -D -m 0644 PATH DEST` from a `file://` one (an air-gapped host needs neither network nor curl).
"""
from __future__ import annotations

import dataclasses
import re

from families.base import KEY_FILE

_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a guide installs from: a published (or mirrored) repository and one of its channels."""

    base_url: str
    channel: str
    #: the repository key(s): pacman's --lsign-key, rpm's gpg-pubkey-<id> on uninstall, shown to the user
    fingerprints: tuple[str, ...]
    #: the newest tarball version in the channel (the tarball steps name it); None: the channel has none
    tarball_version: str | None = None
    #: the other key files the generation publishes in keys/ (e.g. apk's `<name>.rsa.pub`), by file name
    key_files: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def local(self) -> bool:
        return self.url.startswith("file://")

    def path(self, rel: str) -> str:
        """The file's path (file:// base) or URL (http base)."""
        return self.url.removeprefix("file://") + "/" + rel if self.local else f"{self.url}/{rel}"

    def fetch(self, rel: str, dest: str) -> str:
        """The command that puts the repository file `rel` at `dest` (directories created)."""
        if self.local:
            return f"install -D -m 0644 {self.path(rel)} {dest}"
        return f"curl -fsSL --create-dirs -o {dest} {self.path(rel)}"

    def fetch_key(self, dest: str) -> str:
        """The command that puts the repository's public key file at `dest`."""
        return self.fetch(KEY_FILE, dest)

    def cat(self, rel: str) -> str:
        return f"cat {self.path(rel)}" if self.local else f"curl -fsSL {self.path(rel)}"


@dataclasses.dataclass
class Steps:
    """What a user runs for one package manager: each field is Markdown (with ```sh blocks)."""

    repository: str
    install: str
    upgrade: str
    uninstall: str
    prerequisites: str = ""


def sh(*lines: str) -> str:
    return "```sh\n" + "\n".join(lines) + "\n```\n"


def text(body: str) -> str:
    return "```text\n" + body.rstrip("\n") + "\n```\n"


def sh_blocks(markdown: str) -> list[str]:
    """The ```sh blocks of a guide, in order (what a user runs; the tests run exactly these)."""
    return [m.group(1) for m in _SH_BLOCK.finditer(markdown)]


