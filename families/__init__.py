"""Package families: everything that differs between deb, rpm, apk, arch and the tarball, one package each.

Each family (`families/<name>/`) implements `Family` (`families.base`): its `__init__.py` says how a package of the
family is named, versioned, described to nfpm, signed, checked and linted, and how a user installs
it (guide steps); its `repository.py` builds and signs the family's index in a repository generation
and verifies it with the family's own real client. The rest of the tooling asks the family and never
writes `if family == "deb"`:

- `release.package` (nox -s package): `file_name`, `package_version`, `nfpm_section`, `sign`;
- `repo.engine` (every generation): `artifact_paths`, `build_channel`, `verify_channel`;
- `repo.guides` (install guides): `guide_steps`;
- `distros` (the catalog): `package_managers`, `native`, `render_alternatives`.

This package sits just above `toolbox` in the import order (toolbox < families < distros < release <
repo < channels): it imports nothing of the layers above; what it needs from them (a catalog
target, a version, the keys) is handed in.
"""

from __future__ import annotations

from families.base import (
    ARCH_NAMES,
    ARCHES,
    KEY_FILE,
    KEYRING_PACKAGE,
    LABEL,
    PACKAGE,
    Dependency,
    Family,
    IndexContext,
    PlainNames,
    copy_metadata,
    detached_sign,
    detached_signature,
    machine_arches,
    tilde_version,
)
from toolbox.errors import EnduraError

__all__ = [
    "ARCHES",
    "ARCH_NAMES",
    "KEY_FILE",
    "KEYRING_PACKAGE",
    "LABEL",
    "PACKAGE",
    "Dependency",
    "Family",
    "IndexContext",
    "PlainNames",
    "copy_metadata",
    "detached_sign",
    "detached_signature",
    "machine_arches",
    "tilde_version",
    "FAMILIES",
    "family",
    "published",
]


def _registry() -> dict[str, Family]:
    from families.apk import Apk
    from families.arch import Arch
    from families.deb import Deb
    from families.rpm import Rpm
    from families.tgz import Tgz

    return {f.name: f for f in (Deb(), Rpm(), Apk(), Arch(), Tgz())}


#: family name (the exact string used in catalog.toml and the manifest) -> its behaviour
FAMILIES: dict[str, Family] = _registry()


def family(name: str) -> Family:
    """The family called `name`, or an EnduraError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise EnduraError(f"unknown package family {name!r}; use one of {', '.join(FAMILIES)}") from None


def published() -> list[Family]:
    """The families a repository generation publishes, in a stable order."""
    return [f for f in FAMILIES.values() if f.published]
