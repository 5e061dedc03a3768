"""Package families: what truly differs between deb, rpm, apk, arch and the tgz tarball.

One small class per family carries its architecture names, file extension and how it writes a
dependency with alternatives (its version strings: `format_version` in release/version.py). Everything else
about a target is data in catalog.toml.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from toolbox.errors import EnduraError

#: our architecture names (the ones catalog.toml uses), in a stable order
ARCHES: tuple[str, ...] = ("amd64", "arm64")


@dataclass(frozen=True)
class Dependency:
    """One package that satisfies a requirement, optionally with a minimum version."""

    name: str
    min_version: str | None = None


class Family:
    """Base class; subclasses set the class attributes and override `render_alternatives`."""

    name: ClassVar[str]
    #: file name suffix of one package, with the leading dot
    extension: ClassVar[str]
    #: our arch name -> the format's own name
    arch_names: ClassVar[dict[str, str]]
    #: package managers that install this format (validation of catalog.toml)
    package_managers: ClassVar[tuple[str, ...]]
    #: whether targets can name this family as their native format
    native: ClassVar[bool] = True

    def arch_name(self, arch: str) -> str:
        """`amd64` -> `x86_64` (rpm/apk/arch) etc.; an unknown arch is an error naming the choices."""
        try:
            return self.arch_names[arch]
        except KeyError:
            raise EnduraError(
                f"unknown architecture {arch!r} for {self.name}; use one of {', '.join(self.arch_names)}"
            ) from None

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str | None:
        """One dependency line satisfied by any of `alternatives` (None: the format has no depends)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<family {self.name}>"


class Deb(Family):
    name = "deb"
    extension = ".deb"
    arch_names = {"amd64": "amd64", "arm64": "arm64"}
    package_managers = ("apt",)

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str:
        """`python3 (>= 3.9) | python3.9`."""
        return " | ".join(f"{d.name} (>= {d.min_version})" if d.min_version else d.name for d in alternatives)


class Rpm(Family):
    name = "rpm"
    extension = ".rpm"
    arch_names = {"amd64": "x86_64", "arm64": "aarch64"}
    package_managers = ("dnf", "yum", "zypper")

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str:
        """`(python3 >= 3.9 or python3.11 or python311)`: a boolean (rich) dependency, rpm >= 4.13."""
        parts = [f"{d.name} >= {d.min_version}" if d.min_version else d.name for d in alternatives]
        return parts[0] if len(parts) == 1 else f"({' or '.join(parts)})"


class _PlainNames(Family):
    """Formats whose dependencies we write as bare package names (no alternatives syntax)."""

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str:
        names = [d.name for d in alternatives]
        if len(names) != 1:
            raise EnduraError(
                f"{self.name} packages cannot express alternatives ({' or '.join(names)}); give every "
                f"target of the {self.name} build the same package, or split the build in catalog.toml"
            )
        return names[0]


class Apk(_PlainNames):
    name = "apk"
    extension = ".apk"
    arch_names = {"amd64": "x86_64", "arm64": "aarch64"}
    package_managers = ("apk",)


class Arch(_PlainNames):
    name = "arch"
    extension = ".pkg.tar.zst"
    arch_names = {"amd64": "x86_64", "arm64": "aarch64"}
    package_managers = ("pacman",)


class Tgz(Family):
    """The tarball every target can use; it has no dependency metadata (its install script checks)."""

    name = "tgz"
    extension = ".tar.gz"
    arch_names = {"amd64": "amd64", "arm64": "arm64"}
    package_managers = ()
    native = False

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> None:
        return None


#: family name (the exact string used in catalog.toml) -> its behaviour
FAMILIES: dict[str, Family] = {f.name: f for f in (Deb(), Rpm(), Apk(), Arch(), Tgz())}


def family(name: str) -> Family:
    """The family called `name`, or an EnduraError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise EnduraError(f"unknown package family {name!r}; use one of {', '.join(FAMILIES)}") from None
