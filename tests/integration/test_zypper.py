"""zypper against the published rpm repository, served on 127.0.0.1: the SUSE guides followed verbatim, and
the signature checks seen failing.

zypper here is Debian 12's (1.14.42, libzypp 17.25), run inside the guides' Debian root (chroot, see
`guide_rootfs_tar`) with the root as its system, like the dnf guide in test_guides. The root is made to stand
for a SUSE host in two ways, neither of them touching the guide's commands:

- one rpm database: Debian's rpm keeps its database in `~/.rpmdb` (its `%_dbpath`), while libzypp opens
  `/var/lib/rpm` when that directory exists (Debian's rpm package ships it, empty). Left apart, `rpm --import`
  writes a database zypper never reads, so zypper trusts nothing (and sees no installed package). On SLES and
  openSUSE both use the one system database; `/etc/rpm/macros` sets `%_dbpath /var/lib/rpm` here to match.
- SUSE's python3 and libbpf1 are stood in for by the file-less rpm that provides them
  (`families.rpm.repository.dependency_shim()`), installed before the guide runs.

zypper trusts the keys in the rpm database (libzypp copies them into its trusted keyring), so the guide's
`rpm --import` is all the trust there is: no `--gpg-auto-import-keys`, and a root without that import is
refused. `zypper refresh` checks `repomd.xml.asc` (libzypp checks a signature that is there even with
`repo_gpgcheck=0`; `repo_gpgcheck=1` also refuses a repomd.xml served without one); `pkg_gpgcheck=1` makes
`zypper install` check each package's signature (before the checksum from the metadata).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from distros import load_catalog
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import layout, verify
from tests.integration.guidetools import CHROOT_ENV, follow
from tests.integration.test_guides import served  # noqa: F401 (the published repository, a fixture)
from toolbox.run import run

pytestmark = pytest.mark.slow

ZYPPER_TARGETS = [t.id for t in load_catalog().targets if t.package_manager == "zypper"]
REPO_FILE = "etc/zypp/repos.d/endura-latest.repo"
SENSOR_RPM = "rpm/latest/x86_64/packages/endura-sensor-1.0.1-1.x86_64.rpm"
REPOMD = "rpm/latest/x86_64/repodata/repomd.xml"


def as_suse_host(root: Path) -> Path:
    """One rpm database for rpm and zypper, and the dependency shim in it (see the module's docstring)."""
    (root / "etc/rpm").mkdir(parents=True, exist_ok=True)
    (root / "etc/rpm/macros").write_text("%_dbpath /var/lib/rpm\n")
    assert debrepo.chroot(root, "rpm", "--eval", "%_dbpath").stdout.strip() == "/var/lib/rpm"
    shutil.copyfile(rpmrepo.dependency_shim(), root / "tmp/shim.rpm")
    debrepo.chroot(root, "rpm", "--nodeps", "--noscripts", "-i", "/tmp/shim.rpm")
    return root


@pytest.fixture
def suse(host) -> Path:
    return as_suse_host(host)


def zypper(root: Path, *args: str):
    proc = run(["chroot", str(root), "zypper", "--non-interactive", *args], env=CHROOT_ENV, check=False, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def installed(root: Path, name: str) -> bool:
    return debrepo.chroot(root, "rpm", "-q", name, check=False).returncode == 0


def add_repository(root: Path, gen: Path, published_url: str, url: str, *, trust: bool = True) -> None:
    """The guide's first block, pointed at `url`: the key at the `.repo` file's `gpgkey=` path, `rpm --import`
    (unless `trust` is False), the generated `.zypper.repo`."""
    key = root / rpmrepo.RPM_KEYRING.lstrip("/")
    key.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gen / layout.KEY_FILE, key)
    if trust:
        debrepo.chroot(root, "rpm", "--import", rpmrepo.RPM_KEYRING)
    text = (gen / "rpm/endura-latest.zypper.repo").read_text()
    assert f"baseurl={published_url}/rpm/latest/$basearch" in text, text
    (root / REPO_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / REPO_FILE).write_text(text.replace(published_url, url))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def tampered(served, tmp_path) -> tuple[Path, str]:
    """A copy of the served generation to break, and the URL it was published for: (copy, published URL)."""
    repo_tree, url = served
    copy = tmp_path / "tampered"
    shutil.copytree((repo_tree / "current").resolve(), copy)
    return copy, url


def test_catalog_has_suse_targets():
    assert {"sles-15", "opensuse-leap-15"} <= set(ZYPPER_TARGETS), ZYPPER_TARGETS


@pytest.mark.parametrize("target", ZYPPER_TARGETS)
def test_zypper_guide_followed_verbatim(served, suse, target):
    guide = (served[0] / f"current/install/latest/{target}.md").read_text()
    assert "zypper --non-interactive refresh" in guide and "--gpg-auto-import-keys" not in guide
    ran = follow(suse, guide)
    outputs = "\n".join(r.output for r in ran)
    assert "endura-sensor 1.0.1" in outputs, outputs[-3000:]
    assert "All repositories have been refreshed." in outputs, outputs[-3000:]
    # libzypp's log in the root: repomd.xml was checked against the key rpm --import trusted, and each package's signature
    log = (suse / "var/log/zypper.log").read_text(errors="replace")
    assert "Key is trusted" in log and "repomd.xml" in log
    for name in ("endura-sensor-1.0.1-1.x86_64.rpm", "endura-archive-keyring-"):
        assert any(name in line and "[0-Signature is OK]" in line for line in log.splitlines()), name
    # the uninstall block ran last: packages, .repo file and imported key are gone
    assert not installed(suse, "endura-sensor") and not installed(suse, "endura-archive-keyring")
    assert not installed(suse, "gpg-pubkey")
    assert not (suse / REPO_FILE).exists()


def test_flipped_byte_in_repomd_xml_fails_the_refresh(tampered, suse):
    gen, published_url = tampered
    repomd = gen / REPOMD
    flip_byte(repomd, repomd.read_bytes().index(b"<revision>") + len(b"<revision>"))
    with verify.serve(gen) as url:
        add_repository(suse, gen, published_url, url)
        code, out = zypper(suse, "refresh")
        assert code != 0, out
        assert "Signature verification failed for file 'repomd.xml'" in out, out
        assert "modified after it has been signed" in out, out
        code, out = zypper(suse, "install", "endura-sensor")
    assert code != 0, out
    assert not installed(suse, "endura-sensor")


def test_repomd_xml_without_its_signature_fails_the_refresh(tampered, suse):
    """What repo_gpgcheck=1 adds: libzypp checks a signature that is there even with repo_gpgcheck=0, but only
    repo_gpgcheck=1 refuses a repomd.xml whose signature was taken away (edited, then served unsigned)."""
    gen, published_url = tampered
    (gen / f"{REPOMD}.asc").unlink()
    with verify.serve(gen) as url:
        add_repository(suse, gen, published_url, url)
        code, out = zypper(suse, "refresh")
    assert code != 0, out
    assert "File 'repomd.xml' from repository 'Endura Runtime Sensor (latest)' is unsigned" in out, out
    assert "Signature verification failed for repomd.xml" in out, out


def test_flipped_byte_in_the_rpm_fails_the_install(tampered, suse):
    """pkg_gpgcheck=1: the package's signature (over header and payload) is checked, and fails. (With
    pkg_gpgcheck=0 the install still fails, later, on the checksum in the metadata: "corrupted during transfer".)"""
    gen, published_url = tampered
    rpm = gen / SENSOR_RPM
    flip_byte(rpm, rpm.stat().st_size - 100)  # in the payload
    with verify.serve(gen) as url:
        add_repository(suse, gen, published_url, url)
        code, out = zypper(suse, "refresh")
        assert code == 0, out  # the metadata is intact
        code, out = zypper(suse, "install", "endura-sensor")
    assert code != 0, out
    assert "endura-sensor-1.0.1-1.x86_64" in out and "Signature verification failed" in out, out
    assert "digest: BAD" in out, out
    assert not installed(suse, "endura-sensor")


def test_a_root_that_does_not_trust_the_key_fails_the_refresh(served, suse):
    """The key file is where `gpgkey=` points, but was never `rpm --import`ed: zypper does not trust it on its own."""
    repo_tree, url = served
    add_repository(suse, repo_tree / "current", url, url, trust=False)
    code, out = zypper(suse, "refresh")
    assert code != 0, out
    assert "is signed with an unknown key" in out, out
    assert "Signature verification failed for repomd.xml" in out, out
    code, out = zypper(suse, "install", "endura-sensor")
    assert code != 0, out
    assert not installed(suse, "endura-sensor") and not installed(suse, "gpg-pubkey")
