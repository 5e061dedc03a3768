"""The generated install guides, followed verbatim against a published repository served on 127.0.0.1.

The repository is published with the loopback URL it is served at as its base URL, so the guides, the
`.sources` and the `.repo` files name it, and every ```sh block of a guide runs unchanged, in order, with
`sh -e` in a Debian 12 root (chroot). The root stands for the target host: it already has what the guides expect of the
distribution (curl, ca-certificates, python3, libbpf1) and no network source (see guidetools).

The dnf guide (RHEL 9) runs in the same kind of root: dnf and rpm there are Debian's dnf 4 and rpm 4.18,
the same as the host's `dnf --installroot` uses, run with the root as their system instead of through
--installroot, so the guide's commands need no rewriting (`/etc/yum.repos.d`, `rpm --import`, `dnf install`
all act on the root). The one adaptation: RHEL's own python3 and libbpf packages are stood in for by a
file-less rpm that provides them (`repo.rpmrepo.dependency_shim()`), installed into the root's rpm database
before the guide runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import layout, verify
from repo.guides import sh_blocks
from tests.integration.guidetools import follow
from toolbox.run import run

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory, dist_v2) -> Iterator[tuple[Path, str]]:
    """1.0.1 (deb, rpm, tgz for amd64) published into `latest` with the guides, served on 127.0.0.1 at the base URL
    it was published for: (repository root, URL). --no-verify: following the guides is the check here."""
    root = tmp_path_factory.mktemp("guides-repo") / "repo"
    with verify.serve(root / "current") as url:
        proc = subprocess.run([sys.executable, "-m", "channels.publish", "--repo-root", str(root), "--base-url", url,
                               "--dist", str(dist_v2), "--no-verify"], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield root, url


def test_every_publish_writes_a_guide_per_target(served):
    from distros import load_catalog

    repo_tree, url = served
    guides = repo_tree / "current" / "install"
    assert (guides / "index.md").is_file()
    names = {p.stem for p in (guides / "latest").glob("*.md")}
    assert names == {*load_catalog().target_ids, "tarball", "index"}
    internal = [n for t in load_catalog().targets for n in t.internal_notes]
    for p in (guides / "latest").glob("*.md"):
        text = p.read_text()
        if p.stem != "index":
            assert sh_blocks(text), p.name
        assert url in text
        # user-facing text only: the catalog's notes for maintainers stay out
        assert "the spec" not in text.lower() and not [n for n in internal if n in text], p.name
    # a tarball install has no package: its guide says what install.sh does
    tarball = (guides / "latest/tarball.md").read_text()
    assert "The package enables" not in tarball and "`install.sh` enables the service" in tarball
    ubuntu = (guides / "latest/ubuntu-24.04.md").read_text()
    assert "lsm=landlock,lockdown,yama,integrity,apparmor,bpf" in ubuntu and "update-grub" in ubuntu
    assert "grubby --update-kernel=ALL" in (guides / "latest/oracle-9-uek.md").read_text()
    alpine = (guides / "latest/alpine-3.22.md").read_text()
    assert f"{url}/apk/latest >> /etc/apk/repositories" in alpine and "apk add endura-sensor" in alpine
    assert "not published yet" not in alpine
    state = json.loads((repo_tree / "current" / layout.GENERATION_FILE).read_text())
    fpr = state["key"]["fingerprint"]
    assert f"pacman-key --lsign-key {fpr}" in (guides / "latest/arch.md").read_text()
    assert f"rpm -e gpg-pubkey-{fpr[-8:].lower()}" in (guides / "latest/rhel-9.md").read_text()


def test_debian_12_guide_followed_verbatim(served, host):
    guide = (served[0] / "current/install/latest/debian-12.md").read_text()
    ran = follow(host, guide)
    outputs = "\n".join(r.output for r in ran)
    assert "endura-sensor 1.0.1" in outputs, outputs[-3000:]
    assert "Get:" in outputs and "127.0.0.1" in outputs, "apt fetched from the served repository"
    check = next(r for r in ran if r.block.strip() == "endura-sensor check")
    assert "tier" in check.output, check.output
    # the uninstall block ran last: the package is removed (its configuration kept: "rc"), source and key are gone
    status = debrepo.chroot(host, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "endura-sensor").stdout
    assert status.startswith("rc"), status
    assert not (host / "usr/bin/endura-sensor").exists()
    assert not (host / "etc/apt/sources.list.d/endura-latest.sources").exists()
    assert not (host / debrepo.APT_KEYRING.lstrip("/")).exists()


def test_rhel_9_dnf_guide_followed_verbatim(served, host):
    guide = (served[0] / "current/install/latest/rhel-9.md").read_text()
    assert "repo_gpgcheck=1" in guide and "gpgcheck=1" in guide
    run(["cp", str(rpmrepo.dependency_shim()), str(host / "tmp/shim.rpm")])
    debrepo.chroot(host, "rpm", "--nodeps", "--noscripts", "-i", "/tmp/shim.rpm")
    ran = follow(host, guide)
    outputs = "\n".join(r.output for r in ran)
    assert "endura-sensor 1.0.1" in outputs, outputs[-3000:]
    # the uninstall block ran last: package, .repo file and imported key are gone
    assert debrepo.chroot(host, "rpm", "-q", "endura-sensor", check=False).returncode != 0
    assert debrepo.chroot(host, "rpm", "-q", "gpg-pubkey", check=False).returncode != 0
    assert not (host / "etc/yum.repos.d/endura-latest.repo").exists()
