"""The catalog of supported targets, as data (catalog.toml), and its small typed loader.

    from distros import load_catalog
    catalog = load_catalog()
    catalog.target("debian-12").libbpf_package        # 'libbpf1'
    catalog.build("rpm").depends(catalog)            # ['(python3 >= 3.9 or python3.11 or python311)', ...]
    FAMILIES["rpm"].arch_name("arm64")                # 'aarch64'

`python3 -m distros` lists the targets; `python3 -m distros show <id>` prints one as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Sequence

from distros.model import DEFAULT_PATH, INITS, Build, Catalog, Kernel, Target, load_catalog
from families import ARCHES, FAMILIES, Dependency, Family, family
from toolbox.errors import cli_main

__all__ = [
    "ARCHES", "DEFAULT_PATH", "FAMILIES", "INITS", "Build", "Catalog", "Dependency", "Family", "Kernel",
    "Target", "family", "load_catalog", "main",
]


def _cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m distros", description="Show the catalog of supported targets.")
    parser.add_argument("--catalog", help=f"catalog file (default: {DEFAULT_PATH})")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="one line per target (the default)")
    show = sub.add_parser("show", help="one target as JSON")
    show.add_argument("target")
    sub.add_parser("builds", help="builds with their arches, targets and dependencies as JSON")
    args = parser.parse_args(list(argv))
    catalog = load_catalog(args.catalog)
    if args.command == "show":
        print(json.dumps(dataclasses.asdict(catalog.target(args.target)), indent=2))
    elif args.command == "builds":
        data = {
            b.id: {
                "family": b.family,
                "arches": {a: b.package_family.arch_name(a) for a in b.arches},
                "targets": [t.id for t in catalog.targets_for_build(b.id)],
                "depends": b.depends(catalog),
            }
            for b in catalog.builds
        }
        print(json.dumps(data, indent=2))
    else:
        for t in catalog.targets:
            lsm = "bpf-lsm" if t.bpf_lsm_default else "no-bpf-lsm"
            print(f"{t.id:20} {t.family:5} {','.join(t.arches):12} {t.python_package:11} {t.libbpf_package:8} {lsm}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors become `error: ...` on stderr and a non-zero exit code."""
    return cli_main(_cli, argv)
