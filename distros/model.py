"""The catalog's typed model: frozen dataclasses, and the loader that validates catalog.toml into them.

Every problem in the file is an EnduraError naming the file, the target or build id, the key and
the fix. The schema is the `_TARGET_KEYS` / `_KERNEL_KEYS` / `_BUILD_KEYS` tables below; the
meaning of each key is documented at the top of catalog.toml.
"""
from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import tomllib

from families import ARCHES, FAMILIES, Dependency, Family
from toolbox.errors import EnduraError

DEFAULT_PATH = Path(__file__).with_name("catalog.toml")

INITS: tuple[str, ...] = ("systemd", "openrc")
KERNEL_SOURCES: tuple[str, ...] = ("apt", "url")
_ID_RE = re.compile(r"[a-z0-9][a-z0-9.-]*")


@dataclass(frozen=True)
class Kernel:
    """The kernel test VMs boot for a target, and where it comes from.

    `package` and `mirror` may contain `{arch}`, replaced by the family's own arch name.
    `source = "apt"` means an apt suite (`suite`) on `mirror`; `obtainable` says whether this
    machine can fetch it (only Debian's archive is reachable here).
    """

    package: str
    source: str
    mirror: str
    obtainable: bool
    suite: str = ""
    note: str = ""


@dataclass(frozen=True)
class Target:
    """One supported distro release (one `[target.<id>]` table)."""

    id: str
    name: str
    distro: str
    version: str
    family: str
    build: str
    arches: tuple[str, ...]
    package_manager: str
    init: str
    python_package: str
    python_command: str
    libbpf_package: str
    bpf_lsm_default: bool
    kernel: Kernel
    variant: str = ""
    bpf_lsm_fix: str = ""
    bpf_lsm_note: str = ""
    notes: tuple[str, ...] = ()
    #: for maintainers only (how the facts were reached, where they differ from the spec): never printed
    internal_notes: tuple[str, ...] = ()

    @property
    def package_family(self) -> Family:
        return FAMILIES[self.family]

    @property
    def native_arches(self) -> tuple[str, ...]:
        """`arches` in the family's own names (`x86_64`, `aarch64` for rpm)."""
        return tuple(self.package_family.arch_name(a) for a in self.arches)

    def kernel_package(self, arch: str) -> str:
        """The kernel package name for one of our arches (`linux-image-cloud-amd64`, `kernel-core`)."""
        return self.kernel.package.format(arch=self.package_family.arch_name(arch))

    def kernel_mirror(self, arch: str) -> str:
        """The kernel's mirror URL for one of our arches."""
        return self.kernel.mirror.format(arch=self.package_family.arch_name(arch))


@dataclass(frozen=True)
class Build:
    """One artifact group (`[build.<id>]`): a package per arch serving several targets."""

    id: str
    family: str
    arches: tuple[str, ...]
    description: str
    all_targets: bool = False

    @property
    def package_family(self) -> Family:
        return FAMILIES[self.family]

    def depends(self, catalog: Catalog) -> list[str]:
        """Runtime dependencies in the family's syntax, derived from the targets this build serves.

        One line for the interpreter and one for libbpf, each listing every package its targets
        name as alternatives: the package used by the most targets first, then by name. Generic
        interpreter packages (`python3`) get `>= python.min_version` where the format can say it.
        """
        targets = catalog.targets_for_build(self.id)
        python = [
            Dependency(n, catalog.python_min_version if n in catalog.python_generic_packages else None)
            for n in _most_used_first([t.python_package for t in targets])
        ]
        libbpf = [Dependency(n) for n in _most_used_first([t.libbpf_package for t in targets])]
        rendered: list[str] = []
        for alternatives in (python, libbpf):
            line = self.package_family.render_alternatives(alternatives) if alternatives else None
            if line is not None:
                rendered.append(line)
        return rendered


def _most_used_first(names: list[str]) -> list[str]:
    """Distinct names, the one most targets use first, ties by name (deterministic)."""
    counts = Counter(names)
    return sorted(counts, key=lambda n: (-counts[n], n))


@dataclass(frozen=True)
class Catalog:
    """All targets and builds of one catalog file."""

    path: Path
    python_min_version: str
    python_generic_packages: tuple[str, ...]
    targets: tuple[Target, ...]
    builds: tuple[Build, ...]

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.targets)

    def target(self, target_id: str) -> Target:
        """The target called `target_id`; an unknown id names close matches and how to list all."""
        for t in self.targets:
            if t.id == target_id:
                return t
        raise EnduraError(_unknown("target", target_id, self.target_ids, self.path))

    def build(self, build_id: str) -> Build:
        for b in self.builds:
            if b.id == build_id:
                return b
        raise EnduraError(_unknown("build", build_id, tuple(b.id for b in self.builds), self.path))

    def targets_for_build(self, build_id: str) -> tuple[Target, ...]:
        """The targets a build serves (all of them for a build with `all_targets = true`)."""
        build = self.build(build_id)
        if build.all_targets:
            return self.targets
        return tuple(t for t in self.targets if t.build == build_id)


def _unknown(kind: str, value: str, known: tuple[str, ...], path: Path) -> str:
    close = difflib.get_close_matches(value.lower(), known, n=3, cutoff=0.6)
    message = f"unknown {kind} {value!r} (not in {path})"
    if close:
        message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    else:
        message += f"; known {kind}s: {', '.join(known)}."
    if kind == "target":
        example = close[0] if close else known[0]
        message += f" Pass a target id, e.g. 'nox -s vmtest -- {example}'; list them with 'python3 -m distros'"
    else:
        message += " List builds with 'python3 -m distros builds'"
    return message


# -- loading and validation -----------------------------------------------------------------------
# key -> (type, required, example used in the fix of an error)
_Spec = Mapping[str, tuple[type, bool, str]]

_TOP_KEYS: _Spec = {
    "python": (dict, True, '[python] min_version = "3.9"'),
    "build": (dict, True, '[build.deb] family = "deb" ...'),
    "target": (dict, True, '[target.debian-12] ...'),
}
_PYTHON_KEYS: _Spec = {
    "min_version": (str, True, '"3.9"'),
    "generic_packages": (list, True, '["python3", "python"]'),
}
_BUILD_KEYS: _Spec = {
    "family": (str, True, '"rpm"'),
    "arches": (list, True, '["amd64", "arm64"]'),
    "description": (str, True, '"one .rpm per arch for every rpm target"'),
    "all_targets": (bool, False, "true"),
}
_TARGET_KEYS: _Spec = {
    "name": (str, True, '"Debian 12 (bookworm)"'),
    "distro": (str, True, '"debian"'),
    "version": (str, True, '"12"'),
    "variant": (str, False, '"uek"'),
    "family": (str, True, '"deb"'),
    "build": (str, True, '"deb"'),
    "arches": (list, True, '["amd64", "arm64"]'),
    "package_manager": (str, True, '"apt"'),
    "init": (str, True, '"systemd"'),
    "python_package": (str, True, '"python3"'),
    "python_command": (str, True, '"python3"'),
    "libbpf_package": (str, True, '"libbpf1"'),
    "bpf_lsm_default": (bool, True, "true"),
    "bpf_lsm_fix": (str, False, '"boot with lsm=...,bpf"'),
    "bpf_lsm_note": (str, False, '"..."'),
    "notes": (list, False, '["..."]'),
    "internal_notes": (list, False, '["..."]'),
    "kernel": (dict, True, '{ package = "kernel-core", source = "url", mirror = "https://...", obtainable = false }'),
}
_KERNEL_KEYS: _Spec = {
    "package": (str, True, '"linux-image-cloud-{arch}"'),
    "source": (str, True, '"apt"'),
    "mirror": (str, True, '"http://deb.debian.org/debian"'),
    "obtainable": (bool, True, "false"),
    "suite": (str, False, '"bookworm"'),
    "note": (str, False, '"..."'),
}
_TYPE_NAMES = {str: "a string", bool: "true or false", list: "a list", dict: "a table"}


class _Where:
    """Formats errors as `<file>: <what> '<id>': key '<key>': <problem>; <fix>`."""

    def __init__(self, path: Path, what: str = "", ident: str = "") -> None:
        self.path, self.what, self.ident = path, what, ident

    def error(self, key: str, problem: str, fix: str) -> EnduraError:
        place = f"{self.path}:"
        if self.what:
            place += f" {self.what} '{self.ident}':"
        if key:
            place += f" key '{key}':"
        return EnduraError(f"{place} {problem}; {fix}")


def _check_table(table: Any, spec: _Spec, where: _Where, prefix: str = "") -> dict[str, Any]:
    """Unknown keys, missing required keys and wrong types; returns the table unchanged."""
    if not isinstance(table, dict):
        raise where.error(prefix.rstrip("."), "is not a table", "write it as a [table] or { inline = table }")
    for key in table:
        if key not in spec:
            close = difflib.get_close_matches(key, list(spec), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"known keys: {', '.join(spec)}"
            raise where.error(prefix + key, "unknown key", f"remove it or fix its name ({hint})")
    for key, (kind, required, example) in spec.items():
        if key not in table:
            if required:
                raise where.error(prefix + key, "missing required key", f"add {prefix}{key} = {example}")
            continue
        value: Any = table[key]
        if kind is list:
            well_typed = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            well_typed = isinstance(value, kind)
        if not well_typed:
            wanted = "a list of strings" if kind is list else _TYPE_NAMES[kind]
            raise where.error(prefix + key, f"is {value!r}, not {wanted}", f"write it like {prefix}{key} = {example}")
        if isinstance(value, str) and not value.strip():
            raise where.error(prefix + key, "is empty", f"give it a value like {example}, or remove it if optional")
    return table


def _check_choice(value: str, choices: tuple[str, ...], where: _Where, key: str) -> None:
    if value not in choices:
        raise where.error(key, f"unknown value {value!r}", f"use one of {', '.join(choices)}")


def _check_arches(values: list[str], where: _Where, key: str = "arches") -> tuple[str, ...]:
    if not values:
        raise where.error(key, "is empty", f"list at least one of {', '.join(ARCHES)}")
    for a in values:
        _check_choice(a, ARCHES, where, key)
    if len(set(values)) != len(values):
        raise where.error(key, f"repeats an arch in {values!r}", "list each arch once")
    return tuple(values)


def _check_placeholders(text: str, where: _Where, key: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise where.error(key, f"{text!r} is not a valid pattern ({exc})", "only '{arch}' may appear in braces") from None
    if fields - {"arch"}:
        raise where.error(key, f"unknown placeholder(s) {sorted(fields - {'arch'})} in {text!r}",
                          "only '{arch}' (the family's arch name) is replaced")


def _load_build(build_id: str, table: Any, path: Path) -> Build:
    where = _Where(path, "build", build_id)
    if not _ID_RE.fullmatch(build_id):
        raise where.error("", f"id {build_id!r} is not lowercase letters, digits, '.' and '-'", "rename the table")
    _check_table(table, _BUILD_KEYS, where)
    _check_choice(table["family"], tuple(FAMILIES), where, "family")
    return Build(build_id, table["family"], _check_arches(table["arches"], where), table["description"],
                 table.get("all_targets", False))


def _load_target(target_id: str, table: Any, path: Path) -> Target:
    where = _Where(path, "target", target_id)
    if not _ID_RE.fullmatch(target_id):
        raise where.error("", f"id {target_id!r} is not lowercase letters, digits, '.' and '-'",
                          f"rename the table, e.g. [target.{target_id.lower()}]")
    for key, value in (table.items() if isinstance(table, dict) else ()):
        if key not in _TARGET_KEYS and isinstance(value, dict):
            split = f"{target_id}.{key}"
            raise where.error(key, f"is a table: TOML split the id '{split}' at its dot",
                              f'quote ids that contain dots: [target."{split}"] and [target."{split}".kernel]')
    _check_table(table, _TARGET_KEYS, where)
    native = tuple(name for name, f in FAMILIES.items() if f.native)
    _check_choice(table["family"], native, where, "family")
    _check_choice(table["init"], INITS, where, "init")
    managers = FAMILIES[table["family"]].package_managers
    if table["package_manager"] not in managers:
        all_managers = sorted({m for f in FAMILIES.values() for m in f.package_managers})
        problem = (f"unknown value {table['package_manager']!r}" if table["package_manager"] not in all_managers
                   else f"{table['package_manager']!r} does not install {table['family']} packages")
        raise where.error("package_manager", problem, f"use one of {', '.join(managers)} for family {table['family']}")
    default = table["bpf_lsm_default"]
    if not default and "bpf_lsm_fix" not in table:
        raise where.error("bpf_lsm_fix", "missing: BPF LSM is not active by default",
                          'add bpf_lsm_fix = "boot with lsm=<the distro\'s list>,bpf" (or the kernel it needs)')
    if default and "bpf_lsm_fix" in table:
        raise where.error("bpf_lsm_fix", "given although bpf_lsm_default = true",
                          "remove it, or set bpf_lsm_default = false if the fix is needed")

    kernel_table = _check_table(table["kernel"], _KERNEL_KEYS, where, "kernel.")
    _check_choice(kernel_table["source"], KERNEL_SOURCES, where, "kernel.source")
    if kernel_table["source"] == "apt" and "suite" not in kernel_table:
        raise where.error("kernel.suite", "missing for an apt kernel source", 'add kernel.suite = "bookworm"')
    for key in ("package", "mirror"):
        _check_placeholders(kernel_table[key], where, f"kernel.{key}")
    kernel = Kernel(kernel_table["package"], kernel_table["source"], kernel_table["mirror"],
                    kernel_table["obtainable"], kernel_table.get("suite", ""), kernel_table.get("note", ""))

    return Target(
        id=target_id, name=table["name"], distro=table["distro"], version=table["version"],
        family=table["family"], build=table["build"], arches=_check_arches(table["arches"], where),
        package_manager=table["package_manager"], init=table["init"],
        python_package=table["python_package"], python_command=table["python_command"],
        libbpf_package=table["libbpf_package"], bpf_lsm_default=default, kernel=kernel,
        variant=table.get("variant", ""), bpf_lsm_fix=table.get("bpf_lsm_fix", ""),
        bpf_lsm_note=table.get("bpf_lsm_note", ""), notes=tuple(table.get("notes", ())),
        internal_notes=tuple(table.get("internal_notes", ())),
    )


def _cross_check(catalog: Catalog) -> None:
    """Relations between tables: builds named by targets, families, arches, duplicates."""
    builds = {b.id: b for b in catalog.builds}
    seen: dict[tuple[str, str, str], str] = {}
    for t in catalog.targets:
        where = _Where(catalog.path, "target", t.id)
        build = builds.get(t.build)
        if build is None:
            raise where.error("build", f"names unknown build {t.build!r}",
                              f"use one of {', '.join(builds)} or add a [build.{t.build}] table")
        if build.all_targets:
            raise where.error("build", f"build {t.build!r} serves every target already (all_targets)",
                              f"name the {t.family} build instead")
        if build.family != t.family:
            raise where.error("build", f"build {t.build!r} makes {build.family} packages but the target's family "
                              f"is {t.family!r}", f"point it at a {t.family} build or fix 'family'")
        missing = [a for a in t.arches if a not in build.arches]
        if missing:
            raise where.error("arches", f"build {t.build!r} is not made for {', '.join(missing)}",
                              f"add {', '.join(missing)} to [build.{t.build}] arches or remove it here")
        key = (t.distro, t.version, t.variant)
        if key in seen:
            raise where.error("", f"describes the same distro/version/variant {key} as target '{seen[key]}'",
                              "remove one of them, or set 'variant' to tell them apart")
        seen[key] = t.id
    for b in catalog.builds:
        if not b.all_targets and not catalog.targets_for_build(b.id):
            raise _Where(catalog.path, "build", b.id).error(
                "", "serves no target", f"remove [build.{b.id}] or set build = \"{b.id}\" on its targets")
    for b in catalog.builds:  # e.g. apk cannot express alternatives: fail at load time, not at package time
        try:
            b.depends(catalog)
        except EnduraError as exc:
            raise EnduraError(f"{catalog.path}: build '{b.id}': {exc.message}") from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file (default: distros/catalog.toml beside this module)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise EnduraError(f"catalog {path} does not exist; pass the path of a catalog.toml "
                          f"(the default is {DEFAULT_PATH})") from None
    except tomllib.TOMLDecodeError as exc:
        if "Cannot declare" in str(exc):
            raise EnduraError(f"{path}: duplicate id: {exc}; each [target.<id>] and [build.<id>] table may "
                              "appear once: rename or merge the second one") from None
        raise EnduraError(f"{path}: not valid TOML: {exc}; fix the syntax at that line") from None

    where = _Where(path)
    _check_table(data, _TOP_KEYS, where)
    python = _check_table(data["python"], _PYTHON_KEYS, where, "python.")
    if not re.fullmatch(r"3\.[0-9]+", python["min_version"]):
        raise where.error("python.min_version", f"{python['min_version']!r} is not a Python 3 version like 3.9",
                          'write python.min_version = "3.9"')

    builds = tuple(_load_build(bid, table, path) for bid, table in data["build"].items())
    targets = tuple(_load_target(tid, table, path) for tid, table in data["target"].items())
    catalog = Catalog(path, python["min_version"], tuple(python["generic_packages"]), targets, builds)
    _cross_check(catalog)
    return catalog
