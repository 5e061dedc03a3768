"""The index caches (`families.indexcache`: apt-ftparchive --db, createrepo_c --update) make a publish
faster, never wrong: when what they remember disagrees with the manifests the index is rebuilt
without them, and real apt and dnf clients install from the result. A published file modified in
the tree is refused."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from families import indexcache
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import verify
from tests.integration.test_publish import _stop_gpg_agents, apt_client, madison, publish  # noqa: F401 (autouse fixture)
from toolbox.files import sha256_file
from toolbox.run import run

pytestmark = pytest.mark.slow


def _rebuilt_with_other_bytes(dist: Path, dest: Path) -> Path:
    """dist's 1.0.1 build again, its .deb with other bytes of the same size and mtime: one byte of the
    debsig signature member (the last ar member; apt and dpkg do not read it) flipped."""
    shutil.copytree(dist, dest)
    deb = next(dest.glob("*_amd64.deb"))
    st = deb.stat()
    data = bytearray(deb.read_bytes())
    data[-30] ^= 0x01
    deb.write_bytes(bytes(data))
    os.utime(deb, ns=(st.st_atime_ns, st.st_mtime_ns))
    manifest = json.loads((dest / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["file"] == deb.name:
            a["sha256"] = sha256_file(deb)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return deb


def test_a_stale_apt_cache_is_caught_and_the_index_rebuilt(tmp_path, dist_v1, dist_v2, debian_root):
    """The case size+mtime cannot tell: 1.0.1 published, rolled back, rebuilt with other bytes, published again."""
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    publish(root, "--dist", str(dist_v2), "--no-verify")
    publish(root, "--rollback", "--no-verify")
    assert (root / indexcache.CACHE_DIR / indexcache.APT_DB).is_file()
    deb = _rebuilt_with_other_bytes(dist_v2, tmp_path / "rebuilt")

    _, proc = publish(root, "--dist", str(deb.parent), "--no-verify")
    assert "apt-ftparchive's cache" in proc.stderr and "disagrees with the manifests" in proc.stderr, proc.stderr
    packages = (root / "current/apt/dists/latest/main/binary-amd64/Packages").read_text()
    listed = indexcache.packages_listed(packages)
    assert listed[debrepo.deb_pool_path(deb.name).removeprefix("apt/")] == (sha256_file(deb), deb.stat().st_size)
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        assert madison(client) == ["1.0.0-1", "1.0.1-1"]
        debrepo.apt_get(client, "install", "--no-install-recommends", "endura-sensor")  # apt checks the .deb's hash
    assert debrepo.chroot(client, "endura-sensor", "--version").stdout.strip() == "endura-sensor 1.0.1"


def test_createrepo_metadata_that_disagrees_is_not_reused(tmp_path, dist_v1, dist_v2, debian_root):
    """The previous generation's primary metadata given a wrong checksum for 1.0.0: --update would copy it."""
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    repo_dir = root / "current/rpm/latest/x86_64"
    repomd = (repo_dir / "repodata/repomd.xml").read_text()
    primary = repo_dir / re.search(r'<data type="primary">.*?<location href="([^"]+)"', repomd, re.S).group(1)
    text = gzip.decompress(primary.read_bytes()).decode()
    good = re.search(r'<checksum type="sha256" pkgid="YES">([0-9a-f]{64})</checksum>', text).group(1)
    primary.unlink()  # a new inode: the hardlinked copies elsewhere keep the right bytes
    primary.write_bytes(gzip.compress(text.replace(good, "0" * 64).encode()))

    _, proc = publish(root, "--dist", str(dist_v2), "--no-verify")
    assert "createrepo_c --update reused metadata" in proc.stderr and "disagrees with the manifests" in proc.stderr, proc.stderr
    listed = indexcache.repodata_listed(root / "current/rpm/latest/x86_64")
    assert good in {digest for digest, _size in listed.values()} and "0" * 64 not in {d for d, _ in listed.values()}
    rpmrepo.prepare_rpm_root(debian_root)
    with verify.serve(root / "current") as url:
        conf = rpmrepo.dnf_config(tmp_path / "dnf", (root / "current/rpm/endura-latest.repo").read_text(), url)
        # dnf checks each package against the checksum in primary
        run(rpmrepo.dnf_argv(conf, debian_root, "--setopt=tsflags=noscripts", "install", "endura-sensor-1.0.0"), timeout=600)
    assert run(["rpm", "--root", str(debian_root), "-q", "endura-sensor"]).stdout.startswith("endura-sensor-1.0.0-1")


def test_a_published_file_modified_in_the_tree_is_refused(tmp_path, dist_v1):
    root, dist = tmp_path / "repo", tmp_path / "dist"
    shutil.copytree(dist_v1, dist)  # the pool's files are hardlinks of the build's: leave the session's build alone
    publish(root, "--dist", str(dist), "--no-verify")
    deb = next((root / "current/apt/pool").rglob("*_1.0.0_amd64.deb"))
    data = bytearray(deb.read_bytes())
    data[-30] ^= 0x01
    deb.write_bytes(bytes(data))  # in place (a new mtime): every generation holding this inode sees it
    _, proc = publish(root, "--refresh", "--no-verify", check=False)
    assert proc.returncode == 1
    assert "does not match the published packages' manifests" in proc.stderr and deb.name in proc.stderr, proc.stderr
    assert "restore it from its build" in proc.stderr
    assert os.readlink(root / "current") == "generations/000001"
