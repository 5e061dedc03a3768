"""`python3 -m channels.publish` end to end, with the real clients over loopback HTTP: apt-get installs from
the published tree in a Debian 12 root, dnf installs with repo_gpgcheck, the publisher verifies before
it switches, a killed publisher leaves the previous generation served intact, rollback reaches apt
clients (whose InRelease Date only moves forward)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from families import clients
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import layout, verify
from toolbox import dates
from toolbox.errors import EnduraError
from toolbox.files import sha256_file
from toolbox.run import run
from toolbox.tools import require

REPO = Path(__file__).resolve().parents[2]
BASE_URL = "https://repo.example.test"

pytestmark = pytest.mark.slow


# --- helpers (also used by test_publish_tamper.py) ---------------------------------------------------


def publish(root: Path, *args: str, check: bool = True) -> tuple[dict | None, subprocess.CompletedProcess]:
    """Run the real command; returns (its JSON result, the process)."""
    proc = subprocess.run([sys.executable, "-m", "channels.publish", "--repo-root", str(root), "--base-url", BASE_URL, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"publish {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return (json.loads(proc.stdout) if proc.returncode == 0 else None), proc


def apt_client(debian_root: Path, gen: Path, url: str, channel: str = "latest") -> Path:
    """A Debian root whose only source is the generated .sources file, pointed at `url`."""
    debrepo.configure_apt(debian_root, (gen / "apt" / f"endura-{channel}.sources").read_text(), gen / layout.KEY_FILE, url)
    return debian_root


def madison(root: Path) -> list[str]:
    out = debrepo.chroot(root, "apt-cache", "madison", "endura-sensor").stdout
    return sorted(line.split("|")[1].strip() for line in out.splitlines() if "|" in line)


def snapshot(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): sha256_file(p) for p in sorted(tree.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _stop_gpg_agents(tmp_path):
    """dnf (librepo) and pacman-key start gpg-agents for their keyrings: stop the ones below this test's tmp_path."""
    yield
    clients.stop_gpg_agents(tmp_path)


_PUBLISHED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def published(tmp_path_factory, dist_v1, dist_v2) -> Path:
    """A repository with 1.0.0 (published with the full apt/dnf verification) and then 1.0.1.

    Built once per test session: the other test_publish_* modules import this fixture, and pytest
    makes one fixture per importing module, so the tree itself is remembered here. Tests must not modify it."""
    if "root" in _PUBLISHED:
        return _PUBLISHED["root"]
    require("apt-ftparchive", "createrepo_c", "dnf", "rpmbuild")
    root = tmp_path_factory.mktemp("repo") / "repo"
    first, _ = publish(root, "--dist", str(dist_v1))
    assert first["generation"] == 1 and first["verified"]["deb"] == "endura-sensor 1.0.0"
    assert first["verified"]["rpm"]["dnf"].startswith("1.0.0-1.") and first["verified"]["rpm"]["rpm_k"] == 4  # endura-sensor + endura-archive-keyring, per arch
    assert first["verified"]["arch"] == ["aarch64", "x86_64"]
    second, _ = publish(root, "--dist", str(dist_v2), "--no-verify")
    assert second["generation"] == 2
    _PUBLISHED["root"] = root
    return root


# --- the published tree ----------------------------------------------------------------------------


def test_tree_layout_and_release_fields(published):
    cur = published / "current"
    assert os.readlink(cur) == "generations/000002"
    suite = cur / "apt/dists/latest"
    for name in ("InRelease", "Release", "Release.gpg", "main/binary-amd64/Packages.xz", "main/binary-arm64/Packages.gz"):
        assert (suite / name).is_file(), name
    release = (suite / "Release").read_text()
    fields = debrepo.release_fields(release)
    assert fields["Suite"] == "latest" and fields["Acquire-By-Hash"] == "yes"
    assert fields["Architectures"] == "amd64 arm64"
    assert "MD5Sum:" not in release and "SHA1:" not in release and "SHA256:" in release and "SHA512:" in release
    assert "MD5sum:" not in (suite / "main/binary-amd64/Packages").read_text()
    date, until = dates.parse_rfc2822(fields["Date"]), dates.parse_rfc2822(fields["Valid-Until"])
    assert until - date == layout.DEFAULT_VALID_DAYS * 86400
    old = debrepo.release_fields((published / "generations/000001/apt/dists/latest/Release").read_text())
    assert dates.parse_rfc2822(old["Date"]) < date, "Date moves forward"
    # every index has its by-hash copies, and generation 1's indexes are still there by hash
    for digest, _size, rel in debrepo.release_checksums(release, "SHA512"):
        assert (suite / os.path.dirname(rel) / "by-hash/SHA512" / digest).is_file()
    old_release = (published / "generations/000001/apt/dists/latest/Release").read_text()
    for digest, _size, rel in debrepo.release_checksums(old_release, "SHA256"):
        assert (suite / os.path.dirname(rel) / "by-hash/SHA256" / digest).is_file()
    sources = (cur / "apt/endura-latest.sources").read_text()
    assert f"URIs: {BASE_URL}/apt" in sources and "Signed-By: /etc/apt/keyrings/endura-archive-keyring.asc" in sources
    for repo_file in ("endura-latest.repo", "endura-latest.zypper.repo"):
        text = (cur / "rpm" / repo_file).read_text()
        assert "gpgcheck=1" in text and "repo_gpgcheck=1" in text and "gpgkey=file:///etc/pki/rpm-gpg/" in text
    for arch in ("x86_64", "aarch64"):
        assert (cur / f"rpm/latest/{arch}/repodata/repomd.xml.asc").is_file()
    for arch in ("x86_64", "aarch64"):
        pac = cur / f"arch/latest/{arch}"
        assert not (pac / "endura.db").is_symlink() and (pac / "endura.db.sig").is_file()
        assert (pac / f"endura-sensor-1.0.0-1-{arch}.pkg.tar.zst.sig").is_file()
    assert "Server = https://repo.example.test/arch/latest/$arch" in (cur / "arch/endura-latest.pacman.conf").read_text()
    index = json.loads((cur / "tarball/latest/index.json").read_text())
    assert {t["version"] for t in index["tarballs"]} == {"1.0.0", "1.0.1"}
    run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=cur / "tarball/latest")
    state = json.loads((cur / "generation.json").read_text())
    assert state["based_on"] == 1 and state["published"]["version"] == "1.0.1" and state["key"]["development"]
    # the pool is shared: the unchanged files are hardlinks of generation 1's
    deb = next((cur / "apt/pool").rglob("*_1.0.0_amd64.deb"))
    assert deb.stat().st_nlink >= 2


def test_apt_get_installs_from_the_published_repo(published, debian_root):
    with verify.serve(published / "current") as url:
        root = apt_client(debian_root, published / "current", url)
        debrepo.apt_get(root, "update")
        assert madison(root) == ["1.0.0-1", "1.0.1-1"]
        debrepo.apt_get(root, "install", "--no-install-recommends", "endura-sensor")
    assert debrepo.chroot(root, "endura-sensor", "--version").stdout.strip() == "endura-sensor 1.0.1"


def test_dnf_installs_with_repo_gpgcheck(published, debian_root, tmp_path):
    """dnf into the Debian root (a real python3 for the launcher) through the generated .repo file."""
    rpmrepo.prepare_rpm_root(debian_root)
    with verify.serve(published / "current") as url:
        conf = rpmrepo.dnf_config(tmp_path / "dnf", (published / "current/rpm/endura-latest.repo").read_text(), url)
        assert "repo_gpgcheck=1" in (tmp_path / "dnf/repos.d/endura.repo").read_text()
        run(rpmrepo.dnf_argv(conf, debian_root, "install", "endura-sensor"), timeout=600)
    assert debrepo.chroot(debian_root, "endura-sensor", "--version").stdout.strip() == "endura-sensor 1.0.1"


#: Debian's dnf-plugins-core (installed by .ci/run): its `local` plugin, enabled by default, adds a repository
#: `_dnf_local` with gpgcheck=1 and no key to every dnf run that loads the host's plugins
DNF_LOCAL_PLUGIN = Path("/usr/lib/python3/dist-packages/dnf-plugins/local.py")


def test_dnf_verification_ignores_the_hosts_dnf_plugins(published, tmp_path):
    """With dnf-plugins-core installed, the publisher's dnf check passes (and `published` verified with it);
    control: the same dnf command loading the host's plugins fails on the plugin's repository."""
    if not DNF_LOCAL_PLUGIN.exists() or "enabled = true" not in Path("/etc/dnf/plugins/local.conf").read_text():
        pytest.skip("dnf-plugins-core (its enabled `local` plugin) is not installed; .ci/run installs it: "
                    "apt-get install dnf-plugins-core")
    gen = published / "current"
    with verify.serve(gen) as url:
        conf = rpmrepo.dnf_config(tmp_path / "control", (gen / "rpm/endura-latest.repo").read_text(), url)
        conf.write_text(conf.read_text().replace("plugins=0\n", ""))
        rpmrepo.prepare_rpm_root(tmp_path / "control-root")
        argv = [a for a in rpmrepo.dnf_argv(conf, tmp_path / "control-root", "--setopt=tsflags=noscripts", "install",
                                            "endura-sensor", "endura-archive-keyring") if a != "--noplugins"]
        control = run(argv, check=False, timeout=600)
        assert control.returncode != 0 and "Problem repository: [_dnf_local]" in control.stderr
        assert rpmrepo.verify_dnf(gen, "latest", url, tmp_path / "work", "1.0.1").startswith("1.0.1-1.")


def test_dnf_failure_names_dnfs_error_line(published, tmp_path):
    """A failing dnf check says dnf's own error (here: nothing listens on the port), not an option dump."""
    with pytest.raises(EnduraError) as info:
        rpmrepo.verify_dnf(published / "current", "latest", "http://127.0.0.1:9", tmp_path / "work")
    assert info.value.message.startswith("dnf failed (exit code 1): Errors during downloading metadata for repository "
                                         "'endura-latest': - Curl error (7): Couldn't connect to server")
    assert "Error: Failed to download metadata for repo 'endura-latest'" in info.value.message


def test_publishing_the_same_build_again_changes_nothing(published, dist_v2):
    result, _ = publish(published, "--dist", str(dist_v2), "--no-verify")
    assert result["action"] == "none" and result["generation"] == 2
    assert os.readlink(published / "current") == "generations/000002"


# --- refusals -------------------------------------------------------------------------------------------


def test_remote_target_with_development_key_is_refused(tmp_path, dist_v1):
    _, proc = publish(tmp_path / "r", "--dist", str(dist_v1), "--target", "deploy@repo.example.test:/srv/repo", check=False)
    assert proc.returncode == 1
    assert "refusing to publish to deploy@repo.example.test:/srv/repo with the DEVELOPMENT key" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_build_signed_with_another_key_is_refused(tmp_path, dist_v1):
    dist = tmp_path / "dist"
    shutil.copytree(dist_v1, dist)
    manifest = json.loads((dist / "manifest.json").read_text())
    manifest["signing_key"]["fingerprint"] = "0123456789ABCDEF0123456789ABCDEF01234567"
    (dist / "manifest.json").write_text(json.dumps(manifest))
    _, proc = publish(tmp_path / "r", "--dist", str(dist), "--no-verify", check=False)
    assert proc.returncode == 1 and "is signed with key 0123456789ABCDEF" in proc.stderr, proc.stderr


def test_modified_build_is_refused(tmp_path, dist_v1):
    dist = tmp_path / "dist"
    shutil.copytree(dist_v1, dist)
    deb = next(dist.glob("*_amd64.deb"))
    data = bytearray(deb.read_bytes())
    data[-50] ^= 1
    deb.write_bytes(bytes(data))
    _, proc = publish(tmp_path / "r", "--dist", str(dist), "--no-verify", check=False)
    assert proc.returncode == 1 and f"{deb.name} does not match its sha256" in proc.stderr, proc.stderr


def test_verification_fails_on_a_bad_generation_before_any_switch(published, tmp_path):
    """The publisher's own pre-switch check (apt-get in a Debian root) rejects a tampered .deb."""
    from toolbox.errors import EnduraError

    gen = tmp_path / "gen"
    shutil.copytree(published / "current", gen)
    deb = next((gen / "apt/pool").rglob("*_1.0.1_amd64.deb"))
    data = bytearray(deb.read_bytes())
    data[-100] ^= 1
    deb.write_bytes(bytes(data))
    with verify.serve(gen) as url, pytest.raises(EnduraError, match="apt-get"):
        debrepo.verify_apt(gen, "latest", url, tmp_path / "work", None)


# --- rollback and the Date that only moves forward -------------------------------------------------------


def test_rollback_republishes_the_previous_content_and_reaches_apt_clients(tmp_path, dist_v1, dist_v2, debian_root):
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    publish(root, "--dist", str(dist_v2), "--no-verify")
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        assert madison(client) == ["1.0.0-1", "1.0.1-1"]

        result, proc = publish(root, "--rollback", "--no-verify")
        assert result["generation"] == 3 and result["action"] == "rollback"
        state = json.loads((root / "current/generation.json").read_text())
        assert state["restores"] == 1 and state["channels"] == json.loads((root / "generations/000001/generation.json").read_text())["channels"]
        debrepo.apt_get(client, "update")
        assert madison(client) == ["1.0.0-1"], "the rolled-back index reached the client"
        # generation 1 had no previous content: a second rollback has nowhere to go
        _, proc = publish(root, "--rollback", "--no-verify", check=False)
        assert proc.returncode == 1 and "nothing to roll back to" in proc.stderr
    assert sorted(p.name for p in (root / "generations").iterdir()) == ["000001", "000002", "000003"]


def test_refresh_renews_valid_until_and_moves_date_forward(tmp_path, dist_v1):
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify", "--date", str(int(time.time()) + 3600))
    first = debrepo.release_fields((root / "current/apt/dists/latest/InRelease").read_text())
    result, _ = publish(root, "--refresh", "--no-verify")  # now < the previous Date: Date still moves forward
    second = debrepo.release_fields((root / "current/apt/dists/latest/InRelease").read_text())
    assert result["action"] == "refresh"
    assert dates.parse_rfc2822(second["Date"]) == dates.parse_rfc2822(first["Date"]) + 1
    assert dates.parse_rfc2822(second["Valid-Until"]) > dates.parse_rfc2822(first["Valid-Until"])


def test_pruning_keeps_the_newest_generations(tmp_path, dist_v1):
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify", "--keep", "2")
    for _ in range(3):
        publish(root, "--refresh", "--no-verify", "--keep", "2")
    assert sorted(p.name for p in (root / "generations").iterdir()) == ["000003", "000004"]
    assert os.readlink(root / "current") == "generations/000004"


# --- a killed publisher --------------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["==> building generation", "==> deb: its client against"])
def test_killed_publisher_leaves_the_previous_generation_served_intact(tmp_path, dist_v1, dist_v2, debian_root, marker):
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    before = snapshot(root / "current")
    proc = subprocess.Popen([sys.executable, "-m", "channels.publish", "--repo-root", str(root), "--base-url", BASE_URL,
                             "--dist", str(dist_v2)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 120
    try:
        for line in proc.stderr:
            seen += line
            if marker in line or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # the publisher and the tools it started (apt-get, tar)
    finally:
        proc.wait(timeout=30)
    assert marker in seen, seen
    assert proc.returncode == -signal.SIGKILL
    assert os.readlink(root / "current") == "generations/000001"
    assert snapshot(root / "current") == before, "the served generation was not touched"
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        assert madison(client) == ["1.0.0-1"]
    # the next publish cleans up what the killed one left and completes
    leftovers = [p.name for p in (root / "generations").iterdir() if p.name.startswith(".")] + \
                [p.name for p in root.glob(".verify-*")]
    assert leftovers, "the kill happened mid-way"
    result, proc2 = publish(root, "--dist", str(dist_v2), "--no-verify")
    assert "interrupted publish" in proc2.stderr and result["generation"] == 2
    assert not [p for p in (root / "generations").iterdir() if p.name.startswith(".")] and not list(root.glob(".verify-*"))
