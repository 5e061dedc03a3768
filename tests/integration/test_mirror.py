"""`python3 -m channels.mirror`: the offline bundle of a channel, installed from on a host with no network source.

The repository is published with a Valid-Until that has already passed (apt refuses it: shown), then
bundled. In a Debian 12 root without any apt source, the bundle's INSTALL.md, its Debian 12 guide (apt
from file://) and its RHEL 9 guide (dnf from file://, gpgcheck and repo_gpgcheck) are followed verbatim
(see test_guides for the root and the dnf adaptation). gpgv checks SHA256SUMS against the key of the
published generation; a byte changed in a .deb or an .rpm of the unpacked bundle makes apt or dnf fail.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from channels import mirror
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from release.signing import resolve_key
from repo import layout, verify
from tests.integration.guidetools import follow
from tests.integration.test_publish import apt_client
from toolbox import dates
from toolbox.errors import EnduraError
from toolbox.gpg import verify_detached
from toolbox.run import run

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "https://repo.example.test"
NAME = "endura-latest-1.0.1-offline"

pytestmark = pytest.mark.slow


def _run(module: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{module} {args} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, dist_v2) -> dict:
    """1.0.1 published into `latest` with a Valid-Until already past, and its offline bundle."""
    top = tmp_path_factory.mktemp("mirror")
    date = max(resolve_key().created, int(time.time()) - 120)  # a signature cannot predate the key
    _run("channels.publish", "--repo-root", str(top / "repo"), "--base-url", BASE_URL, "--dist", str(dist_v2),
         "--no-verify", "--date", str(date), "--valid-days", str(1 / 86400))
    while time.time() < date + 3:
        time.sleep(0.5)
    started = time.monotonic()
    result = _run("channels.mirror", "latest", "--repo-root", str(top / "repo"), "--out", str(top / "out"))
    result["wall_seconds"] = round(time.monotonic() - started, 2)
    result["repo"] = top / "repo"
    return result


def unpack_into(host: Path, tar: Path) -> str:
    """INSTALL.md of the bundle, followed verbatim: gpgv, sha256sum, copy to /srv/endura."""
    shutil.copyfile(tar, host / "var/tmp" / tar.name)
    with tarfile.open(tar) as t:
        install = t.extractfile(f"{NAME}/INSTALL.md").read().decode()
    follow(host, install)
    return install


def flip_byte(path: Path, offset: int = -200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_bundle_holds_one_channel_signed_and_re_dated(bundle, tmp_path):
    tar = Path(bundle["path"])
    assert tar.name == f"{NAME}.tar" and bundle["version"] == "1.0.1"
    assert not list(tar.parent.glob(".*")), "nothing left aside"
    with tarfile.open(tar) as t:
        names = t.getnames()
        assert all(n == NAME or n.startswith(NAME + "/") for n in names)
        t.extractall(tmp_path, filter="tar")
    tree = tmp_path / NAME
    for rel in ("INSTALL.md", "bundle.json", "SHA256SUMS", "SHA256SUMS.asc", layout.KEY_FILE, "install/latest/debian-12.md",
                "apt/dists/latest/InRelease", "apt/endura-latest.sources", "rpm/latest/x86_64/repodata/repomd.xml.asc",
                "rpm/endura-latest.repo", "tarball/latest/SHA256SUMS.asc", "arch/latest/x86_64/endura.db.sig"):
        assert (tree / rel).is_file(), rel
    assert not (tree / "generations").exists() and not (tree / "channels").exists()
    # SHA256SUMS is signed by the key of the *published* repository (not only by the key the bundle carries)
    verify_detached(bundle["repo"] / "current" / layout.KEY_FILE, tree / "SHA256SUMS", tree / "SHA256SUMS.asc")
    run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=tree)
    listed = {line.split("  ", 1)[1] for line in (tree / "SHA256SUMS").read_text().splitlines()}
    on_disk = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()} - {"SHA256SUMS", "SHA256SUMS.asc"}
    assert listed == on_disk
    # the published suite has expired; the bundle's copy is re-signed with a year's window, same indexes
    published = debrepo.release_fields((bundle["repo"] / "current/apt/dists/latest/InRelease").read_text())
    offline = debrepo.release_fields((tree / "apt/dists/latest/InRelease").read_text())
    assert dates.parse_rfc2822(published["Valid-Until"]) < time.time()
    date, until = dates.parse_rfc2822(offline["Date"]), dates.parse_rfc2822(offline["Valid-Until"])
    assert until - date == mirror.DEFAULT_VALID_DAYS * 86400 and date > dates.parse_rfc2822(published["Date"])
    assert (tree / "apt/dists/latest/main/binary-amd64/Packages").read_bytes() == \
        (bundle["repo"] / "current/apt/dists/latest/main/binary-amd64/Packages").read_bytes()
    assert "URIs: file:///srv/endura/apt" in (tree / "apt/endura-latest.sources").read_text()
    repo_file = (tree / "rpm/endura-latest.repo").read_text()
    assert "baseurl=file:///srv/endura/rpm/latest/$basearch" in repo_file and "repo_gpgcheck=1" in repo_file
    info = json.loads((tree / "bundle.json").read_text())
    assert info["channel"] == "latest" and info["versions"] == ["1.0.1"] and info["generation"] == 1


def test_published_suite_is_expired_for_apt(bundle, debian_root):
    """Why the bundle re-signs: apt refuses the published suite once its Valid-Until has passed."""
    with verify.serve(bundle["repo"] / "current") as url:
        client = apt_client(debian_root, bundle["repo"] / "current", url)
        proc = debrepo.apt_get(client, "update", check=False)
    assert proc.returncode != 0 and "expired" in (proc.stdout + proc.stderr), proc.stdout + proc.stderr


def test_offline_install_with_apt_and_dnf_from_file_urls(bundle, host):
    unpack_into(host, Path(bundle["path"]))
    assert (host / "srv/endura/apt/dists/latest/InRelease").is_file()
    ran = follow(host, (host / "srv/endura/install/latest/debian-12.md").read_text())
    outputs = "\n".join(r.output for r in ran)
    assert "endura-sensor 1.0.1" in outputs and "file:/srv/endura/apt latest InRelease" in outputs, outputs[-3000:]
    assert "curl" not in "\n".join(r.block for r in ran), "the offline guide needs no network tool"

    run(["cp", str(rpmrepo.dependency_shim()), str(host / "tmp/shim.rpm")])
    debrepo.chroot(host, "rpm", "--nodeps", "--noscripts", "-i", "/tmp/shim.rpm")
    ran = follow(host, (host / "srv/endura/install/latest/rhel-9.md").read_text())
    outputs = "\n".join(r.output for r in ran)
    assert "endura-sensor 1.0.1" in outputs and "Importing GPG key" in outputs, outputs[-3000:]


def test_tampered_deb_in_the_bundle_makes_apt_fail(bundle, host):
    unpack_into(host, Path(bundle["path"]))
    flip_byte(next((host / "srv/endura/apt/pool").rglob("*.deb")))
    with pytest.raises(AssertionError, match="Hash Sum mismatch"):
        follow(host, (host / "srv/endura/install/latest/debian-12.md").read_text())
    assert not (host / "usr/bin/endura-sensor").exists()


@pytest.mark.parametrize("pattern,error", [("*.rpm", "has incorrect checksum"),
                                           ("repomd.xml", "repomd.xml GPG signature verification error")])
def test_tampered_rpm_or_repomd_in_the_bundle_makes_dnf_fail(bundle, host, pattern, error):
    unpack_into(host, Path(bundle["path"]))
    flip_byte(next((host / "srv/endura/rpm/latest/x86_64").rglob(pattern)))
    run(["cp", str(rpmrepo.dependency_shim()), str(host / "tmp/shim.rpm")])
    debrepo.chroot(host, "rpm", "--nodeps", "--noscripts", "-i", "/tmp/shim.rpm")
    with pytest.raises(AssertionError, match=error):
        follow(host, (host / "srv/endura/install/latest/rhel-9.md").read_text())
    assert debrepo.chroot(host, "rpm", "-q", "endura-sensor", check=False).returncode != 0


def test_tampered_tar_fails_the_install_md_checks(bundle, host, tmp_path):
    """A file changed inside the tar (its SHA256SUMS left as it was) stops INSTALL.md at sha256sum."""
    tree = tmp_path / "t"
    with tarfile.open(bundle["path"]) as t:
        t.extractall(tree, filter="tar")
    flip_byte(tree / NAME / "install/latest/debian-12.md", offset=10)
    bad = tmp_path / f"{NAME}.tar"
    with tarfile.open(bad, "w") as t:
        t.add(tree / NAME, arcname=NAME)
    with pytest.raises(AssertionError, match="sha256sum"):
        unpack_into(host, bad)
    assert not (host / "srv/endura").exists()


def test_bundle_of_testing_holds_only_that_channel(tmp_path, dist_v1, dist_v2):
    """latest holds 1.0.0 and 1.0.1, testing 1.0.0 (promoted with a policy that needs no evidence): the bundle of
    testing carries testing's suite, pool files and trees only; the promotion's generation has both channels' guides."""
    root = tmp_path / "repo"
    _run("channels.publish", "--repo-root", str(root), "--base-url", BASE_URL, "--dist", str(dist_v1), "--no-verify")
    _run("channels.publish", "--repo-root", str(root), "--base-url", BASE_URL, "--dist", str(dist_v2), "--no-verify")
    policy = tmp_path / "policy.toml"
    policy.write_text("[testing]\nevidence = []\n")
    _run("channels.promote", "testing", "1.0.0", "--repo-root", str(root), "--policy", str(policy), "--no-verify")
    assert (root / "current/install/testing/debian-12.md").is_file() and (root / "current/install/latest/index.md").is_file()
    result = _run("channels.mirror", "testing", "--repo-root", str(root), "--out", str(tmp_path / "out"))
    assert Path(result["path"]).name == "endura-testing-1.0.0-offline.tar"
    with tarfile.open(result["path"]) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    assert not [n for n in names if "latest" in n], [n for n in names if "latest" in n]
    debs = sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".deb"))
    keyring = [d for d in debs if d.startswith("endura-archive-keyring_")]
    assert len(keyring) == 1 and sorted(set(debs) - set(keyring)) == ["endura-sensor_1.0.0_amd64.deb",
                                                                        "endura-sensor_1.0.0_arm64.deb"]
    assert not [n for n in names if "1.0.1" in n]
    assert {n.split("/")[0] for n in names} == {"INSTALL.md", "SHA256SUMS", "SHA256SUMS.asc", "bundle.json", "keys",
                                                 "apt", "rpm", "arch", "apk", "tarball", "install"}
    assert [n for n in names if n.startswith("keys/") and n.endswith(".rsa.pub")], names  # the apk key


def test_refusals(bundle, tmp_path):
    with pytest.raises(EnduraError, match="channel 'stable' is empty"):
        mirror.make_bundle(bundle["repo"], "stable", tmp_path)
    with pytest.raises(EnduraError, match="no generation is current"):
        mirror.make_bundle(tmp_path / "nothing", "latest", tmp_path)
    with pytest.raises(EnduraError, match="unknown channel 'beta'"):
        mirror.make_bundle(bundle["repo"], "beta", tmp_path)
    assert not list(tmp_path.iterdir())


def test_modified_published_tree_is_refused_and_nothing_is_left(bundle, tmp_path):
    """The bundle re-signs the suite: an artifact that is not the published one is refused, mid-way, leaving nothing."""
    repo = tmp_path / "repo"
    shutil.copytree(bundle["repo"], repo, symlinks=True)
    flip_byte(next((repo / "current/rpm/latest").rglob("*.rpm")))
    out = tmp_path / "out"
    with pytest.raises(EnduraError, match=r"\.rpm does not match its sha256"):
        mirror.make_bundle(repo, "latest", out)
    assert list(out.iterdir()) == []
