"""nfpm: one config per (package format, arch), built from the staged tree; nfpm writes and signs.

`config(...)` is pure (unit-tested) and asks the family for its own section (`Family.nfpm_section`); `build(...)` writes the config as JSON (YAML's subset, which
nfpm reads) and runs `nfpm package`. Arch packages get a detached
`.sig` from gpg afterwards (release/package.py).

nfpm itself signs at the current time, which would make every build differ; so nfpm signs only apk
(whose RSA signature carries no time) and rpm/deb are signed afterwards with rpmsign and
debsigs' layout by `release.signing`, at SOURCE_DATE_EPOCH.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from families import Family
from release import changelog
from release.stage import PACKAGING, Entry, maintainer_script
from toolbox.run import run

NAME = "endura-sensor"
MAINTAINER = "Endura Security <security@endurasecurity.com>"
VENDOR = "Endura Security"
HOMEPAGE = "https://endurasecurity.com"
LICENSE = "Apache-2.0 AND (GPL-2.0-only OR BSD-2-Clause)"
SUMMARY = "Endura Runtime Sensor: eBPF runtime security enforcement"
#: the long description, one paragraph (each family lays it out: `Family.nfpm_description`)
DESCRIPTION = (
    "Lightweight runtime security agent that enforces policy in the kernel with eBPF "
    "(LSM hooks, with fentry and tracepoint fallbacks) in standalone or Team Server mode."
)
#: the package linters' overrides and configuration, each rule with its reason (tests/integration/test_package_lint.py)
LINT_DIR = PACKAGING / "lint"
RPMLINT_CONFIG = LINT_DIR / "rpmlint.toml"

#: our hook names -> nfpm's top-level `scripts` (a family adds its upgrade hook in its own section)
HOOKS = ("postinstall", "preremove", "postremove")


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def lint_files(family: Family, package: str, epoch: int) -> list[dict]:
    """The linter overrides file the package carries (a deb's lintian overrides), if its family has one."""
    dst = family.lint_overrides_path(package)
    if dst is None:
        return []
    info = {"mode": 0o644, "owner": "root", "group": "root", "mtime": rfc3339(epoch)}
    return [{"src": str(LINT_DIR / f"{package}.lintian-overrides"), "dst": dst, "type": "file", "file_info": info}]


def contents(entries: list[Entry], family: Family, epoch: int) -> list[dict]:
    out = []
    for e in entries:
        if e.init is not None and e.init != family.init:
            continue
        info = {"mode": e.mode, "owner": "root", "group": "root", "mtime": rfc3339(epoch)}
        if e.kind == "dir":
            out.append({"dst": e.dst, "type": "dir", "file_info": info})
        else:
            # deb: conffile; rpm: %config(noreplace); apk/arch: nfpm marks it as backup/config too
            kind = {"config": "config|noreplace", "file": family.nfpm_file_type(e.dst)}[e.kind]
            out.append({"src": str(e.src), "dst": e.dst, "type": kind, "file_info": info})
    return out + lint_files(family, NAME, epoch)


def config(
    *,
    family: Family,
    arch_name: str,
    version: str,
    depends: list[str],
    entries: list[Entry],
    scripts_dir: Path,
    epoch: int,
    apk_key: object = None,
) -> dict:
    """The nfpm config for one package. `arch_name` is already in the format's own nomenclature."""
    if family.nfpm_packager is None:
        raise ValueError(f"nfpm does not build family {family.name!r}")
    scripts = {}
    upgrade = family.upgrade_hook()
    for hook in HOOKS + ((upgrade,) if upgrade else ()):
        path = scripts_dir / f"{family.name}-{hook}.sh"
        path.write_text(maintainer_script(family.name, hook))
        os.utime(path, (epoch, epoch))  # apk records the scripts' mtimes
        scripts[hook] = str(path)
    cfg = {
        "name": NAME,
        "arch": arch_name,
        "platform": "linux",
        "version": version,
        "version_schema": "none",
        "release": family.release,
        "maintainer": MAINTAINER,
        "description": family.nfpm_description(SUMMARY, DESCRIPTION),
        "vendor": VENDOR,
        "homepage": HOMEPAGE,
        "license": LICENSE,
        "section": "admin",
        "priority": "optional",
        "mtime": rfc3339(epoch),
        "umask": 0o022,
        "depends": list(depends),
        "contents": contents(entries, family, epoch),
        "scripts": {k: v for k, v in scripts.items() if k in HOOKS},
        family.nfpm_packager: family.nfpm_section(arch_name, scripts,
                                                  {"summary": SUMMARY, "maintainer": MAINTAINER, "apk_key": apk_key}),
    }
    if family.changelog:
        cfg["changelog"] = str(changelog.write(scripts_dir / "changelog.yml", package_version=version,
                                               release=family.release, epoch=epoch, packager=MAINTAINER,
                                               note=f"Endura Runtime Sensor {version}."))
    return cfg


def package_argv(config_path: Path, family: Family, target: Path) -> list[str]:
    return ["nfpm", "package", "--config", str(config_path), "--packager", str(family.nfpm_packager), "--target", str(target)]


def build(cfg: dict, family: Family, work: Path, target: Path, *, epoch: int, passphrase_env: dict[str, str]) -> Path:
    """Write the config and run nfpm; `target` is the exact output file path."""
    config_path = work / f"nfpm-{family.name}-{cfg['arch']}.json"
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    run(package_argv(config_path, family, target), cwd=work,
        extra_env={"SOURCE_DATE_EPOCH": str(epoch), **passphrase_env},
        hint=f"nfpm could not build the {family.name} package; its config is {config_path}")
    return target
