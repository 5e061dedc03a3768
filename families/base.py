"""What every package family implements (`Family`) and what the families share; the registry is `families`.

See the package's docstring (`families/__init__.py`) for who asks a family what.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from toolbox import gpg
from toolbox.errors import EnduraError

if TYPE_CHECKING:  # handed in by the layers above, never imported at run time
    from families.guidetext import Source, Steps

#: the repository's public key file in a generation: what every family's clients bootstrap with
KEY_FILE = "keys/endura-archive-keyring.asc"
#: the product name in repository metadata (apt Label, dnf/zypper repository names)
LABEL = "Endura Runtime Sensor"
#: the sensor package's name, and the package that carries the repository key(s) (`repo.keyring`)
PACKAGE = "endura-sensor"
KEYRING_PACKAGE = "endura-archive-keyring"

#: our architecture names (the ones catalog.toml uses), in a stable order
ARCHES: tuple[str, ...] = ("amd64", "arm64")
#: the one architecture table: our name -> (Debian's name, the kernel's `uname -m` name)
ARCH_NAMES: dict[str, dict[str, str]] = {
    "amd64": {"debian": "amd64", "machine": "x86_64"},
    "arm64": {"debian": "arm64", "machine": "aarch64"},
}


def machine_arches() -> list[str]:
    """`x86_64`, `aarch64`: the directory names of the rpm, apk and pacman repositories."""
    return sorted(names["machine"] for names in ARCH_NAMES.values())


@dataclasses.dataclass(frozen=True)
class Dependency:
    """One package that satisfies a requirement, optionally with a minimum version."""

    name: str
    min_version: str | None = None


@dataclasses.dataclass(frozen=True)
class IndexContext:
    """What a family needs to build its index in a generation (handed in by the engine)."""

    keys: gpg.Keys
    date: int
    valid_until: int
    base_url: str
    #: older generations, newest first (caches, files clients in flight still need)
    previous: tuple[Path, ...] = ()
    #: the repository root's cache of index-tool work (`families.indexcache`; None: no cache)
    cache: Path | None = None
    #: the apk RSA key (`release.signing.ApkKey`), when the generation publishes apk
    apk_key: Any = None


def tilde_version(version: Any) -> str:
    """The `~` scheme shared by dpkg and rpm (both sort `~` before everything, even the end)."""
    sha = f".g{version.commit}" if version.commit else ""
    if version.pre is None and version.dev is None:
        return version.core
    if version.pre is None:
        return f"{version.core}~~dev.{version.dev}{sha}"
    text = f"{version.core}~{version.pre.kind}.{version.pre.number}"
    if version.dev is not None:
        text += f".dev.{version.dev}{sha}"
    return text


class Family:
    """One package family. Subclasses set the class attributes and implement what their format needs."""

    name: ClassVar[str]
    #: file name suffix of one package, with the leading dot
    extension: ClassVar[str]
    #: which column of ARCH_NAMES the format uses (`debian` or `machine`)
    arch_scheme: ClassVar[str]
    #: package managers that install this format (validation of catalog.toml; guide steps)
    package_managers: ClassVar[tuple[str, ...]]
    #: whether targets can name this family as their native format
    native: ClassVar[bool] = True
    #: whether a repository generation publishes the family's packages (with its index)
    published: ClassVar[bool] = True
    #: nfpm's packager name (None: nfpm does not build it) and the init system the package's files are for
    nfpm_packager: ClassVar[str | None] = None
    init: ClassVar[str] = "systemd"
    #: the package release (`-1`, apk's `-r0`)
    release: ClassVar[str] = "1"
    #: the tools (`toolbox.tools` names) building the family's index in a generation needs
    index_tools: ClassVar[tuple[str, ...]] = ()
    #: the package-url type of the format (https://github.com/package-url/purl-spec), for the SBOMs
    purl_type: ClassVar[str] = "generic"
    #: the format's name for an architecture-independent package (the keyring packages)
    noarch_name: ClassVar[str] = "noarch"

    # --- naming and versions ---------------------------------------------------------------------

    def arch_name(self, arch: str) -> str:
        """`amd64` -> `x86_64` (rpm/apk/arch) etc.; an unknown arch is an error naming the choices."""
        try:
            return ARCH_NAMES[arch][self.arch_scheme]
        except KeyError:
            raise EnduraError(f"unknown architecture {arch!r} for {self.name}; use one of {', '.join(ARCH_NAMES)}") from None

    def package_arches(self) -> list[str]:
        return sorted(names[self.arch_scheme] for names in ARCH_NAMES.values())

    def package_version(self, version: Any) -> str:
        """The version string of `version` (a `release.version.Version`) in this format."""
        raise NotImplementedError

    def file_name(self, package: str, package_version: str, package_arch: str) -> str:
        raise NotImplementedError

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str | None:
        """One dependency line satisfied by any of `alternatives` (None: the format has no depends)."""
        raise NotImplementedError

    # --- building ----------------------------------------------------------------------------------

    def nfpm_section(self, package_arch: str, scripts: dict[str, str], meta: dict) -> dict:
        """The format's own section of the nfpm config (`deb:`, `rpm:`, ...). `scripts`: hook -> script path;
        `meta`: `summary`, `maintainer`, and `apk_key` (a `release.signing.ApkKey`) when building apk."""
        raise NotImplementedError(f"nfpm does not build {self.name} packages")

    #: whether the package carries a changelog nfpm writes from a chglog file (`release.changelog`)
    changelog: ClassVar[bool] = False

    def nfpm_description(self, summary: str, long_text: str) -> str:
        """nfpm's `description` in this format. By default the one-line summary: apk and pacman keep only the
        first line of a description (pkgdesc)."""
        return summary

    def nfpm_file_type(self, dst: str) -> str:
        """nfpm's content type of a plain file installed at `dst` (`file`; rpm marks documentation `doc`)."""
        return "file"

    def lint_overrides_path(self, package: str) -> str | None:
        """Where the package carries its linter's overrides (None: the linter reads them from the command line)."""
        return None

    def upgrade_hook(self) -> str | None:
        """The maintainer-script hook the format runs on upgrade, besides the common ones (None: none)."""
        return None

    def sign(self, key: gpg.SigningKey, path: Path, *, epoch: int) -> str:
        """Sign the built package; returns how (`rpm-header`, `debsig-origin`, `apk-rsa`, `detached:<file>`)."""
        raise NotImplementedError

    def check_signature(self, path: Path, key_file: Path) -> None:
        """Check a built package's signature with the format's own tool against `key_file` only (raises)."""
        raise NotImplementedError

    def lint_argv(self, path: Path, overrides: Path | None) -> list[str] | None:
        """The linter's argv for one package (None: the format has none)."""
        return None

    # --- the repository ------------------------------------------------------------------------------

    def artifact_path(self, channel: str, entry: dict) -> str:
        """Where a package (a manifest entry) lives in a generation, relative to its top."""
        raise NotImplementedError

    def artifact_paths(self, channel: str, entry: dict) -> list[str]:
        """The package's path and its detached signature's, if any."""
        paths = [self.artifact_path(channel, entry)]
        sig = detached_signature(entry)
        if sig:
            paths.append(paths[0].rsplit("/", 1)[0] + "/" + sig)
        return paths

    def carried_files(self, old: Path, channel: str) -> list[str]:
        """Index files of an older generation `old` that clients which read its index may still fetch after
        the switch (besides the packages it listed): the new generation keeps them until `old` is pruned."""
        return []

    def build_channel(self, gen: Path, channel: str, entries: list[dict], ctx: IndexContext) -> None:
        """Build and sign the channel's index in `gen` from `entries`, the channel's entries of this family (the
        engine filters them); the packages are already in place."""
        raise NotImplementedError

    def verify_channel(self, gen: Path, channel: str, url: str, workdir: Path, *,
                       expected_version: str | None) -> object:
        """Point the family's real client at `gen` (served at `url`) and install/fetch from `channel`; raises."""
        return None

    def mirror_channel(self, gen: Path, out: Path, channel: str, ctx: IndexContext) -> None:
        """Copy the channel's index out of generation `gen` into an offline bundle `out` (its packages are
        placed already): what carries a date is re-signed at `ctx.date`, client files name `ctx.base_url`."""

    def kernel_args_commands(self, args: str) -> list[str]:
        """The commands that add `args` to the kernel command line on a host of this family (GRUB's default file)."""
        return [f"sed -i 's/^GRUB_CMDLINE_LINUX=\"/&{args} /' /etc/default/grub", "update-grub"]

    def guide_steps(self, target: Any, src: Source) -> Steps | None:
        """The install steps of a catalog target that installs this format (None: the tarball steps)."""
        return None

    def __repr__(self) -> str:
        return f"<family {self.name}>"


def copy_metadata(src: Path, dst: Path) -> None:
    """An index file an offline bundle may re-sign or re-date: a real copy, never a hardlink into the generation."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def detached_signature(entry: dict) -> str | None:
    sig = entry.get("signature", "")
    return sig.split(":", 1)[1] if sig.startswith("detached:") else None


class PlainNames(Family):
    """Formats whose dependencies we write as bare package names (no alternatives syntax)."""

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str:
        names = [d.name for d in alternatives]
        if len(names) != 1:
            raise EnduraError(
                f"{self.name} packages cannot express alternatives ({' or '.join(names)}); give every "
                f"target of the {self.name} build the same package, or split the build in catalog.toml"
            )
        return names[0]


def detached_sign(key: gpg.SigningKey, path: Path, *, epoch: int) -> str:
    """A binary detached signature `<file>.sig` beside the file (pacman's and the tarball's)."""
    sig = path.with_name(path.name + ".sig")
    gpg.detached(key, path, sig, armor=False, epoch=epoch, when="SOURCE_DATE_EPOCH")
    return f"detached:{sig.name}"
