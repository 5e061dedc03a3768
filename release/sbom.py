"""A CycloneDX SBOM per artifact, written with cyclonedx-python-lib.

The SBOM describes the artifact itself (name, version, purl in the format's ecosystem, sha256,
licence), every file it installs with its SHA-256, the runtime packages it depends on, and the
tools that built it. Serial number and timestamp derive from the artifact and SOURCE_DATE_EPOCH,
so the SBOM is reproducible too.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentScope, ComponentType
from cyclonedx.model.license import LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from families import FAMILIES
from release.stage import Entry
from toolbox.files import sha256_file

LICENSE_EXPRESSION = "Apache-2.0 AND (GPL-2.0-only OR BSD-2-Clause)"
#: cyclonedx-python-lib is not thread-safe (seen: a concurrent build turned the licence expression
#: into a plain name in one SBOM); the package build makes SBOMs from several threads
_LOCK = threading.Lock()


def dependency_names(depends: list[str]) -> list[str]:
    """Package names mentioned in dependency expressions (`a (>= 1) | b`, `(a >= 1 or b)`)."""
    names: list[str] = []
    for expr in depends:
        for token in re.findall(r"[A-Za-z0-9][A-Za-z0-9.+_-]*", expr):
            if token in ("or", "and", "if", "with", "without", "unless") or token[0].isdigit():
                continue
            if token not in names:
                names.append(token)
    return names


def build(
    *,
    artifact: Path,
    family: str,
    arch: str,
    version: str,
    package_version: str,
    depends: list[str],
    entries: list[Entry],
    tools: dict[str, str],
    epoch: int,
) -> str:
    """Return the SBOM (CycloneDX 1.6 JSON) for one artifact."""
    with _LOCK:
        return _build(artifact=artifact, family=family, arch=arch, version=version, package_version=package_version,
                      depends=depends, entries=entries, tools=tools, epoch=epoch)


def _build(*, artifact, family, arch, version, package_version, depends, entries, tools, epoch) -> str:
    artifact_sha = sha256_file(artifact)
    bom = Bom()
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"endura-sensor/{artifact.name}/{artifact_sha}")
    bom.metadata.timestamp = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    purl = PackageURL(FAMILIES[family].purl_type, "endura", "endura-sensor", package_version, {"arch": arch})
    main = Component(name="endura-sensor", version=version, type=ComponentType.APPLICATION, purl=purl,
                     bom_ref=str(purl), description=f"{artifact.name}", supplier=None)
    main.hashes.add(HashType(alg=HashAlgorithm.SHA_256, content=artifact_sha))
    main.licenses.add(LicenseExpression(LICENSE_EXPRESSION))
    bom.metadata.component = main
    for name, tool_version in sorted(tools.items()):
        bom.metadata.tools.components.add(Component(name=name, version=tool_version, type=ComponentType.APPLICATION,
                                                    bom_ref=f"tool:{name}"))
    parts = []
    for e in entries:
        if e.kind == "dir":
            continue
        f = Component(name=e.dst, type=ComponentType.FILE, bom_ref=f"file:{e.dst}")
        f.hashes.add(HashType(alg=HashAlgorithm.SHA_256, content=sha256_file(Path(e.src))))
        bom.components.add(f)
        parts.append(f)
    for name in dependency_names(depends):
        dep_purl = PackageURL(FAMILIES[family].purl_type, None, name)
        dep = Component(name=name, type=ComponentType.LIBRARY if "bpf" in name else ComponentType.APPLICATION,
                        purl=dep_purl, bom_ref=f"dep:{name}", scope=ComponentScope.REQUIRED)
        bom.components.add(dep)
        parts.append(dep)
    bom.register_dependency(main, parts)
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
