"""A key rotation reaches clients as an ordinary upgrade of endura-archive-keyring (repo.keyring).

One repository goes through the whole procedure of `repo/README.md` ("Keys"), served on loopback
the whole time, while four real clients watch it: two apt clients (Debian 12 roots) and two dnf
clients (`dnf --installroot`), each bootstrapped the way the install guide says and each installing
endura-archive-keyring. One apt and one dnf client upgrade at every step; the other two never do.
When the repository is finally signed by the new key alone, the upgraded clients still verify it
and the others fail.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import keyring, layout, verify
from tests.integration.pkgtools import build_dist, new_secret_key
from tests.integration.test_publish import BASE_URL, REPO, _stop_gpg_agents  # noqa: F401 (autouse fixture)
from toolbox.run import run

pytestmark = pytest.mark.slow


def _key_params(who: str, days_ago: int) -> str:
    # back-dated creation: the new key is a day younger than the old one, so the keyring version moves
    created = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)).strftime("%Y%m%dT%H%M%S")
    return (f"%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: Endura {who} Release\n"
            f"Name-Email: {who.lower()}@example.test\nCreation-Date: {created}\nExpire-Date: 2y\n%commit\n")


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory):
    home = tmp_path_factory.mktemp("keyring-gnupg")
    old = new_secret_key(home, "old@example.test", batch=_key_params("Old", 3))
    new = new_secret_key(home, "new@example.test", batch=_key_params("New", 2))
    yield home, old, new
    run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def _publish(root: Path, env: dict[str, str], *args: str, check: bool = True):
    proc = subprocess.run([sys.executable, "-m", "channels.publish", "--repo-root", str(root), "--base-url", BASE_URL, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, **env})
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr[-4000:]  # includes the publisher's own apt/dnf/rpm -K checks
    return json.loads(proc.stdout)


def _record(root: Path) -> dict:
    return json.loads((root / "current" / keyring.RECORD).read_text())


def _fingerprints(key_file: Path) -> set[str]:
    listing = run(["gpg", "--batch", "--with-colons", "--show-keys", str(key_file)]).stdout
    fprs, _created, _newest = keyring.parse_key_listing(listing)
    return set(fprs)


class AptClient:
    """A Debian 12 root whose only source is the generated .sources file (bootstrapped with the served key)."""

    def __init__(self, root: Path, tar: Path, gen: Path, url: str) -> None:
        root.mkdir()
        run(["tar", "-C", str(root), "-xf", str(tar)])
        debrepo.configure_apt(root, (gen / "apt/endura-latest.sources").read_text(), gen / layout.KEY_FILE, url)
        self.root = root

    def apt(self, *args: str, check: bool = True):
        return debrepo.apt_get(self.root, *args, check=check)

    def version(self, package: str) -> str:
        return debrepo.chroot(self.root, "dpkg-query", "-W", "-f", "${Version}", package).stdout.strip()

    @property
    def key_file(self) -> Path:
        return self.root / debrepo.APT_KEYRING.lstrip("/")


class DnfClient:
    """`dnf --installroot` with the generated .repo file, whose gpgkey= is the root's own key file."""

    def __init__(self, work: Path, gen: Path, url: str) -> None:
        self.root = work / "root"
        rpmrepo.prepare_rpm_root(self.root)
        self.key_file.parent.mkdir(parents=True)
        shutil.copyfile(gen / layout.KEY_FILE, self.key_file)  # the install guide's bootstrap
        self.conf = rpmrepo.dnf_config(work / "dnf", (gen / "rpm/endura-latest.repo").read_text(), url, root=self.root)

    def dnf(self, *args: str, check: bool = True):
        # --refresh: the .repo's metadata_expire (6h) would otherwise keep the cached repomd.xml
        return run(rpmrepo.dnf_argv(self.conf, self.root, "--refresh", "--setopt=tsflags=noscripts", *args),
                   check=check, timeout=600)

    def version(self, package: str) -> str:
        return run(["rpm", "--root", str(self.root), "-q", "--qf", "%{VERSION}-%{RELEASE}", package]).stdout.strip()

    @property
    def key_file(self) -> Path:
        return self.root / rpmrepo.RPM_KEYRING.lstrip("/")


def test_rotation_reaches_clients_as_a_keyring_upgrade(tmp_path, two_keys, debian_rootfs_tar, release_apk_env):
    home, old, new = two_keys
    gpg = {"GNUPGHOME": str(home), **release_apk_env}
    root = tmp_path / "repo"
    now = str(int(time.time()))
    dist1, _ = build_dist(tmp_path / "dist", "4.0.0", "--format", "deb,rpm,tgz", "--arch", "amd64",
                          env={**gpg, "ENDURA_SIGNING_KEY": old, "SOURCE_DATE_EPOCH": now})

    # 1. the repository as it was: the old key alone; the keyring package carries it
    _publish(root, {**gpg, "ENDURA_SIGNING_KEY": old}, "--dist", str(dist1))
    v1 = _record(root)
    assert v1["fingerprints"] == [old] and v1["signed_by"] == old
    gen = root / "current"
    assert _fingerprints(gen / layout.KEY_FILE) == {old}
    with verify.serve(root / "current") as url:  # follows `current` across the publishes below
        upgraded, stale = (AptClient(tmp_path / f"apt-{n}", debian_rootfs_tar, gen, url) for n in ("upgraded", "stale"))
        dnf_up, dnf_stale = (DnfClient(tmp_path / f"dnf-{n}", gen, url) for n in ("upgraded", "stale"))
        for client in (upgraded, stale):
            client.apt("update")
            client.apt("install", "--no-install-recommends", "endura-archive-keyring", "endura-sensor")
            assert client.version("endura-archive-keyring") == f"{v1['version']}-1"
            # the package took over the hand-placed key file the .sources Signed-By names
            owner = debrepo.chroot(client.root, "dpkg", "-S", debrepo.APT_KEYRING).stdout
            assert owner.startswith("endura-archive-keyring:"), owner
        for client in (dnf_up, dnf_stale):
            client.dnf("install", "endura-archive-keyring", "endura-sensor")
            assert client.version("endura-archive-keyring") == f"{v1['version']}-1"
            owner = run(["rpm", "--root", str(client.root), "-qf", rpmrepo.RPM_KEYRING]).stdout
            assert owner.startswith("endura-archive-keyring-"), owner

        # 2. rotation starts: co-signed by the new key; keyring v2 (both keys, still signed by the old key)
        _publish(root, {**gpg, "ENDURA_SIGNING_KEY": old, "ENDURA_SIGNING_KEY_NEXT": new}, "--refresh")
        v2 = _record(root)
        assert sorted(v2["fingerprints"]) == sorted([old, new]) and v2["signed_by"] == old
        assert keyring.version_key(v2["version"]) > keyring.version_key(v1["version"])
        upgraded.apt("update")
        upgraded.apt("upgrade")
        assert upgraded.version("endura-archive-keyring") == f"{v2['version']}-1"
        assert _fingerprints(upgraded.key_file) == {old, new}
        dnf_up.dnf("upgrade")
        assert dnf_up.version("endura-archive-keyring") == f"{v2['version']}-1"
        assert _fingerprints(dnf_up.key_file) == {old, new}
        stale.apt("update")  # co-signed: a client that trusts only the old key still reads the repository
        dnf_stale.dnf("makecache")

        # 3. packages built with the new key, published with the new key primary and the old one co-signing:
        #    the key set is the same, so the keyring is carried (same bytes), not rebuilt
        dist2, _ = build_dist(tmp_path / "dist", "4.0.1", "--format", "deb,rpm,tgz", "--arch", "amd64",
                              env={**gpg, "ENDURA_SIGNING_KEY": new, "SOURCE_DATE_EPOCH": str(int(time.time()))})
        _publish(root, {**gpg, "ENDURA_SIGNING_KEY": new, "ENDURA_SIGNING_KEY_NEXT": old}, "--dist", str(dist2))
        assert _record(root) == v2
        upgraded.apt("update")
        upgraded.apt("upgrade")
        assert upgraded.version("endura-sensor") == "4.0.1-1"
        dnf_up.dnf("upgrade")  # the new key signs the rpm: dnf imports it from the keyring file
        assert dnf_up.version("endura-sensor") == "4.0.1-1"

        # 4. the new key alone. The publisher refuses it while an rpm signed by the old key is listed
        #    (4.0.0): a client that knows only the new key could not install it
        proc = _publish(root, {**gpg, "ENDURA_SIGNING_KEY": new}, "--refresh", check=False)
        refusal = next((line for line in proc.stderr.splitlines() if "rpm -K failed for" in line), "")
        assert proc.returncode == 1 and "/endura-sensor-4.0.0-1.x86_64.rpm:" in refusal, proc.stderr[-3000:]
        assert _record(root) == v2
        # ... so, with no command yet to re-sign or retire 4.0.0, this tree is published unverified;
        #     what the clients see is the point here: keyring v3 holds only the new key
        _publish(root, {**gpg, "ENDURA_SIGNING_KEY": new}, "--refresh", "--no-verify")
        v3 = _record(root)
        assert v3["fingerprints"] == [new] and v3["signed_by"] == new
        assert keyring.version_key(v3["version"]) > keyring.version_key(v2["version"])
        signers = run(["gpg", "--batch", "--with-colons", "--list-packets",
                       str(root / "current/apt/dists/latest/Release.gpg")]).stdout
        assert new[-16:] in signers and old[-16:] not in signers
        upgraded.apt("update")
        upgraded.apt("upgrade")
        assert upgraded.version("endura-archive-keyring") == f"{v3['version']}-1"
        assert _fingerprints(upgraded.key_file) == {new}  # the old key is no longer trusted by apt
        upgraded.apt("update")
        dnf_up.dnf("upgrade")
        assert dnf_up.version("endura-archive-keyring") == f"{v3['version']}-1"
        assert _fingerprints(dnf_up.key_file) == {new}
        dnf_up.dnf("makecache")

        # the clients that never upgraded the keyring trust only the old key: they fail
        failed = stale.apt("update", check=False)
        assert failed.returncode != 0
        assert "NO_PUBKEY" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
        assert stale.version("endura-sensor") == "4.0.0-1"
        failed = dnf_stale.dnf("makecache", check=False)
        assert failed.returncode != 0
        assert "repomd.xml GPG signature verification error" in failed.stdout + failed.stderr, failed.stderr

        # revocation on rpm clients: the old key stays in the rpm database (dnf imported it) until removed
        pubkeys = run(["rpm", "--root", str(dnf_up.root), "-q", "gpg-pubkey", "--qf", "%{VERSION}\\n"]).stdout.split()
        assert sorted(pubkeys) == sorted([old[-8:].lower(), new[-8:].lower()])
        old_pubkey = run(["rpm", "--root", str(dnf_up.root), "-q", f"gpg-pubkey-{old[-8:].lower()}"]).stdout.strip()
        run(["rpm", "--root", str(dnf_up.root), "-e", old_pubkey])
        # 4.0.0 (signed by the old key) no longer installs: the keyring file cannot bring the old key back
        failed = dnf_up.dnf("downgrade", "endura-sensor-4.0.0", check=False)
        assert failed.returncode != 0 and "GPG check FAILED" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
        assert dnf_up.version("endura-sensor") == "4.0.1-1"
        # dnf's own keyring for repo_gpgcheck (the README's `rm -rf` of it) is in the repo's cache directory
        # (dnf puts the cachedir inside the installroot)
        cache = dnf_up.root / str(dnf_up.conf.parent / "cache").lstrip("/")
        assert [p.name for p in cache.glob("endura-latest-*/pubring")] == ["pubring"]


def test_keyring_never_goes_back(tmp_path, two_keys, release_apk_env):
    """Dropping the newer key again (a rotation 'forgotten') would give an older keyring version:
    refused, even though a previous generation holds exactly that keyring; nothing is switched."""
    home, old, new = two_keys
    dist = tmp_path / "dist"
    build, _ = build_dist(dist, "5.0.0", "--format", "deb,rpm,tgz", "--arch", "amd64",
                          env={"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": old, "SOURCE_DATE_EPOCH": str(int(time.time()))})
    root = tmp_path / "repo"
    env = {"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": old, **release_apk_env}
    _publish(root, env, "--dist", str(build), "--no-verify")
    v1 = _record(root)
    _publish(root, {**env, "ENDURA_SIGNING_KEY_NEXT": new}, "--refresh", "--no-verify")
    v2 = _record(root)
    proc = _publish(root, env, "--refresh", "--no-verify", check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"give version {v1['version']}, which is not newer" in proc.stderr and v2["version"] in proc.stderr
    assert os.readlink(root / "current") == "generations/000002" and _record(root) == v2
    # the same keys again: the packages of generation 2 are reused, byte for byte (hardlinks)
    _publish(root, {**env, "ENDURA_SIGNING_KEY_NEXT": new}, "--refresh", "--no-verify")
    assert _record(root) == v2
    for f in v2["files"].values():
        a, b = root / "generations/000002" / f["path"], root / "current" / f["path"]
        assert a.stat().st_ino == b.stat().st_ino
    # every channel's indexes list it: apt (amd64, the suite's arch) and both rpm arches
    packages = (root / "current/apt/dists/latest/main/binary-amd64/Packages").read_text()
    assert f"Package: endura-archive-keyring\nArchitecture: all\nVersion: {v2['version']}-1\n" in packages
    for arch in ("x86_64", "aarch64"):
        base = root / f"current/rpm/latest/{arch}"
        [href] = re.findall(r'<location href="(repodata/[^"]*primary\.xml\.gz)"', (base / "repodata/repomd.xml").read_text())
        primary = gzip.decompress((base / href).read_bytes()).decode()
        assert f'<version epoch="0" ver="{v2["version"]}" rel="1"/>' in primary
