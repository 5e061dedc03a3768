"""Publishing to a web host over rsync+ssh, against a real sshd on 127.0.0.1 started here, with a
release key (a development key is refused for any remote target): the host's tree is uploaded aside,
switched with one rename, hardlinked against the previous generation, and apt installs from it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from families.deb import repository as debrepo
from repo import verify
from tests.integration.pkgtools import build_dist, new_secret_key, run_module
from tests.integration.test_publish import BASE_URL, REPO, _stop_gpg_agents, apt_client, madison, snapshot  # noqa: F401
from toolbox.run import run
from toolbox.tools import require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release_env(tmp_path_factory, release_apk_env):
    """A throwaway RSA-3072 'release' key in its own GNUPGHOME, as ENDURA_SIGNING_KEY would name it."""
    home = tmp_path_factory.mktemp("rel-gnupg")
    fpr = new_secret_key(home, "Endura Test Release <release@example.test>", "rsa3072")
    yield {"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": fpr, **release_apk_env}
    run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.fixture(scope="module")
def release_dist(tmp_path_factory, release_env) -> Path:
    env = {**release_env, "SOURCE_DATE_EPOCH": str(int(time.time()))}  # after the key's creation
    path, _ = build_dist(tmp_path_factory.mktemp("rel-dist"), "2.0.0", "--format", "deb,rpm,arch,tgz", "--arch", "amd64",
                         env=env)
    return path


@pytest.fixture
def sshd(tmp_path):
    """sshd on 127.0.0.1 (key auth only, its own host key); yields (port, ssh options for the client)."""
    require("sshd", "ssh", "rsync")
    d = tmp_path / "sshd"
    d.mkdir()
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client")])
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host.pub').read_text()}")
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # the privilege separation directory
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    options = f"-i {d / 'client'} -o UserKnownHostsFile={d / 'known_hosts'} -o StrictHostKeyChecking=yes -o LogLevel=ERROR"
    try:
        for _ in range(100):
            if run(["ssh", "-p", str(port), *options.split(), "-o", "BatchMode=yes", "root@127.0.0.1", "true"],
                   check=False, timeout=30).returncode == 0:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        yield port, options
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _publish(mirror: Path, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "channels.publish", "--repo-root", str(mirror), "--base-url", BASE_URL, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return proc


def test_publish_to_a_remote_host_over_rsync_and_ssh(tmp_path, sshd, release_env, release_dist, debian_root):
    port, options = sshd
    host_root = tmp_path / "www" / "repo"
    target = f"ssh://root@127.0.0.1:{port}{host_root}"
    env = {**release_env, "ENDURA_PUBLISH_SSH_OPTIONS": options}
    mirror = tmp_path / "mirror"

    _publish(mirror, env, "--dist", str(release_dist), "--target", target)  # verified locally, then pushed
    assert os.readlink(host_root / "current") == "generations/000001"
    assert snapshot(host_root / "current") == snapshot(mirror / "current")
    with verify.serve(host_root / "current") as url:
        client = apt_client(debian_root, host_root / "current", url)
        debrepo.apt_get(client, "update")
        assert madison(client) == ["2.0.0-1"]
        debrepo.apt_get(client, "install", "--no-install-recommends", "endura-sensor")
    assert debrepo.chroot(client, "endura-sensor", "--version").stdout.strip() == "endura-sensor 2.0.0"

    _publish(mirror, env, "--refresh", "--target", target)
    assert os.readlink(host_root / "current") == "generations/000002"
    assert snapshot(host_root / "current") == snapshot(mirror / "current")
    deb = next((host_root / "current/apt/pool").rglob("*_2.0.0_amd64.deb"))
    assert deb.stat().st_nlink >= 2, "unchanged files are hardlinks of the previous generation on the host"
    assert not list((host_root / "generations").glob(".upload-*"))

    # the host was changed behind the mirror's back: refused before anything is built or uploaded
    os.symlink("generations/000001", host_root / ".tmp-link")
    os.replace(host_root / ".tmp-link", host_root / "current")
    refused = _publish(mirror, env, "--refresh", "--target", target, check=False)
    assert refused.returncode == 1
    assert "serves generation 1 but the local mirror's current is 2" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (mirror / "generations").iterdir()) == ["000001", "000002"]


def test_remote_target_refuses_the_development_key(tmp_path, dist_v1):
    proc = _publish(tmp_path / "mirror", {}, "--dist", str(dist_v1), "--target", "ssh://root@127.0.0.1:1/srv/r", check=False)
    assert proc.returncode == 1 and "with the DEVELOPMENT key" in proc.stderr


def test_promote_on_a_remote_host_moves_the_same_files_there(tmp_path, sshd, release_env, release_dist):
    port, options = sshd
    host_root = tmp_path / "www" / "repo"
    target = f"ssh://root@127.0.0.1:{port}{host_root}"
    env = {**release_env, "ENDURA_PUBLISH_SSH_OPTIONS": options, "ENDURA_EVIDENCE_DIR": str(tmp_path / "evidence")}
    mirror = tmp_path / "mirror"
    _publish(mirror, env, "--dist", str(release_dist), "--target", target)
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuite name="t" tests="3" failures="0" errors="0" skipped="0"/>')

    for kind in ("sensor-tests", "e2e-tests"):
        run_module("channels.evidence", "record", kind, "--dist", str(release_dist), "--junit", str(junit), env=env)
    run_module("channels.promote", "testing", "--repo-root", str(mirror), "--target", target, env=env)
    assert os.readlink(host_root / "current") == "generations/000002"
    assert snapshot(host_root / "current") == snapshot(mirror / "current")
    rpm = next((host_root / "current/rpm/testing").rglob("endura-sensor-2.0.0*.rpm"))
    assert rpm.stat().st_ino == next((host_root / "current/rpm/latest").rglob("endura-sensor-2.0.0*.rpm")).stat().st_ino
    assert '"version":"2.0.0"' in (host_root / "current/channels/promotions.jsonl").read_text()
    # the development key is refused for a remote promotion, before anything is read or built
    dev = {k: v for k, v in os.environ.items() if k not in ("ENDURA_SIGNING_KEY", "GNUPGHOME")}
    proc = subprocess.run([sys.executable, "-m", "channels.promote", "stable", "--repo-root", str(mirror), "--target",
                           target], cwd=REPO, capture_output=True, text=True, timeout=600, env=dev)
    assert proc.returncode == 1 and "with the DEVELOPMENT key" in proc.stderr
