"""The dependencies each built package declares, read back with the format's own tool, name every
catalog target's interpreter and libbpf package (RHEL 8: python3.11, SLES 15: python311, ...)."""
from __future__ import annotations

import gzip
import io
import json
import re
import tarfile

import pytest

from distros import load_catalog
from tests.integration.test_package_signatures import _gzip_streams
from toolbox.run import run


def _declared(dist, entry) -> str:
    path = dist / entry["file"]
    family = entry["family"]
    if family == "deb":
        return run(["dpkg-deb", "--field", str(path), "Depends"]).stdout
    if family == "rpm":
        return run(["rpm", "-qp", "--requires", str(path)]).stdout
    if family == "apk":
        control = _gzip_streams(path.read_bytes())[1]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(control))) as tar:
            pkginfo = tar.extractfile(".PKGINFO").read().decode()
        return "\n".join(l.split(" = ", 1)[1] for l in pkginfo.splitlines() if l.startswith("depend = "))
    if family == "arch":
        pkginfo = run(["bsdtar", "-xOf", str(path), ".PKGINFO"]).stdout
        return "\n".join(l.split(" = ", 1)[1] for l in pkginfo.splitlines() if l.startswith("depend = "))
    raise AssertionError(family)


@pytest.mark.parametrize("target", load_catalog().targets, ids=lambda t: t.id)
def test_every_target_s_interpreter_and_libbpf_are_declared(dist_v1, target):
    manifest = json.loads((dist_v1 / "manifest.json").read_text())
    entries = [a for a in manifest["artifacts"] if a["build"] == target.build]
    assert {a["arch"] for a in entries} >= set(target.arches), "a package for every arch of the target"
    for entry in entries:
        assert target.id in entry["targets"]
        names = set(re.findall(r"[A-Za-z0-9][A-Za-z0-9.+_-]*", _declared(dist_v1, entry)))
        assert target.python_package in names, (entry["file"], target.python_package)
        assert target.libbpf_package in names, (entry["file"], target.libbpf_package)


def test_tarball_serves_every_target(dist_v1):
    manifest = json.loads((dist_v1 / "manifest.json").read_text())
    ids = {t.id for t in load_catalog().targets}
    for a in manifest["artifacts"]:
        if a["family"] == "tgz":
            assert set(a["targets"]) == ids
