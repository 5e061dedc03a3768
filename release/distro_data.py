"""Data the sensor needs about the distributions, generated from distros/catalog.toml at package time.

`libbpf_packages.json` (staged beside the sensor's modules by release/stage.py) tells the sensor which
package gives libbpf on the host it runs on, from /etc/os-release's ID and VERSION_ID: the catalog's
`libbpf_package` of the target, with the command that installs it. The sensor reads it
(`endura_sensor.libbpf.libbpf_package`); nothing in the sensor repeats the catalog. Run from a source
checkout (no generated file) the sensor gives a generic answer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from distros import Catalog, load_catalog
from toolbox.errors import EnduraError

#: the data file's name, beside the sensor's modules (endura_sensor/)
FILE_NAME = "libbpf_packages.json"
SCHEMA = 1
#: catalog `distro` -> /etc/os-release `ID`, where they differ
OS_RELEASE_ID = {"alma": "almalinux", "oracle": "ol", "centos-stream": "centos", "amazonlinux": "amzn"}
#: catalog `package_manager` -> the command that installs a package
INSTALL = {"apt": "apt-get install {}", "dnf": "dnf install {}", "yum": "yum install {}",
           "zypper": "zypper install {}", "apk": "apk add {}", "pacman": "pacman -S {}"}


def libbpf_packages(catalog: Catalog) -> dict:
    """{"schema": 1, "hosts": [{"id", "version", "package", "install", "targets"}]}: one row per
    (os-release ID, catalog version); variants of a target (oracle-9-uek) share their distro's row. Pure."""
    rows: dict[tuple[str, str], dict] = {}
    for target in catalog.targets:
        os_id = OS_RELEASE_ID.get(target.distro, target.distro)
        try:
            install = INSTALL[target.package_manager].format(target.libbpf_package)
        except KeyError:
            raise EnduraError(f"catalog target {target.id}: no install command known for package manager "
                              f"{target.package_manager!r}; add it to INSTALL in release/distro_data.py") from None
        row = rows.setdefault((os_id, target.version), {"id": os_id, "version": target.version,
                                                         "package": target.libbpf_package, "install": install,
                                                         "targets": []})
        if (row["package"], row["install"]) != (target.libbpf_package, install):
            raise EnduraError(f"catalog targets {', '.join(row['targets'])} and {target.id} are the same host to "
                              f"/etc/os-release ({os_id} {target.version}) but name different libbpf packages "
                              f"({row['package']}, {target.libbpf_package}); make them agree in distros/catalog.toml")
        row["targets"].append(target.id)
    return {"schema": SCHEMA, "hosts": sorted(rows.values(), key=lambda r: (r["id"], r["version"]))}


def write(path: Path, epoch: int, catalog: Catalog | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(libbpf_packages(catalog or load_catalog()), indent=1, sort_keys=True) + "\n")
    os.chmod(path, 0o644)
    os.utime(path, (epoch, epoch))
    return path
