"""tgz: the tarball every target can use (any systemd or OpenRC host), with a detached gpg signature and
`install.sh`/`uninstall.sh` inside; published per channel with a signed SHA256SUMS and an index
(`families.tgz.repository`). It has no dependency metadata: its install script checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from families.base import PACKAGE, Dependency, Family, IndexContext, copy_metadata, detached_sign
from families.guidetext import Source, sh
from families.tgz import repository as tarrepo
from toolbox import gpg


class Tgz(Family):
    name = "tgz"
    extension = ".tar.gz"
    arch_scheme = "debian"
    package_managers = ()
    native = False

    def package_version(self, version: Any) -> str:
        """The semver string (also the tarball's version in file names)."""
        return version.semver

    def file_name(self, package: str, package_version: str, package_arch: str) -> str:
        return f"{package}-{package_version}-{package_arch}.tar.gz"

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> None:
        return None

    def sign(self, key: gpg.SigningKey, path: Path, *, epoch: int) -> str:
        return detached_sign(key, path, epoch=epoch)

    def check_signature(self, path: Path, key_file: Path) -> None:
        gpg.verify_detached(key_file, path, path.with_name(path.name + ".sig"))

    def artifact_path(self, channel: str, entry: dict) -> str:
        return f"{tarrepo.tarball_dir(channel)}/{entry['file']}"

    def build_channel(self, gen: Path, channel: str, entries: list[dict], ctx: IndexContext) -> None:
        tarrepo.build_channel(gen, channel, entries, ctx.keys, date=ctx.date)

    def mirror_channel(self, gen: Path, out: Path, channel: str, ctx: IndexContext) -> None:
        rel = tarrepo.tarball_dir(channel)
        for name in ("index.json", "SHA256SUMS", "SHA256SUMS.asc"):
            copy_metadata(gen / rel / name, out / rel / name)

    def verify_channel(self, gen: Path, channel: str, url: str, workdir: Path, *, expected_version: Any = None) -> str:
        return tarrepo.verify_channel(gen, channel)


def tarball_blocks(src: Source, prerequisites: str = "") -> tuple[str, str]:
    """(install, uninstall) of the tarball: SHA256SUMS checked with gpgv against the repository key, then install.sh."""
    ch = src.channel
    if src.tarball_version is None:
        none = f"Channel `{ch}` holds no tarball yet.\n"
        return none, none
    tdir = tarrepo.tarball_dir(ch)
    arch = "ARCH=$(uname -m | sed -e s/x86_64/amd64/ -e s/aarch64/arm64/)"
    version = f"VERSION={src.tarball_version}"
    name = f"{PACKAGE}-$VERSION-$ARCH"
    workdir = "/var/tmp/endura"
    install = (
        prerequisites
        + "`SHA256SUMS.asc` is checked with `gpgv` against the repository key only, then the tarball against "
        f"`SHA256SUMS`; `install.sh` installs into `/` and enables the service without starting it (how: "
        f"\"Start the sensor\" below). Keep `{workdir}`: "
        "its `uninstall.sh` removes what `install.sh` installed.\n\n"
        + sh(arch, version, f"mkdir -p {workdir}", f"cd {workdir}",
              src.fetch_key("endura-archive-keyring.asc"),
              src.fetch(f"{tdir}/SHA256SUMS", "SHA256SUMS"), src.fetch(f"{tdir}/SHA256SUMS.asc", "SHA256SUMS.asc"),
              src.fetch(f"{tdir}/{name}.tar.gz", f"{name}.tar.gz"),
              "gpg --batch --yes --dearmor -o endura-archive-keyring.gpg endura-archive-keyring.asc",
              "gpgv --keyring ./endura-archive-keyring.gpg SHA256SUMS.asc SHA256SUMS",
              f'grep "  {name}.tar.gz$" SHA256SUMS | sha256sum -c -',
              f"tar -xzf {name}.tar.gz", f"./{name}/install.sh", f"{PACKAGE} --version")
        + f"\nThe channel's tarballs, with versions and checksums, are listed in `{src.path(tdir + '/index.json')}`.\n")
    uninstall = (sh(arch, version, f"{workdir}/{name}/uninstall.sh")
                 + "\n`uninstall.sh --purge` also deletes `/etc/endura`, `/var/lib/endura` and `/var/log/endura`.\n")
    return install, uninstall


