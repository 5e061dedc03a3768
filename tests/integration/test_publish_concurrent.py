"""Atomic switches under load: real apt and dnf clients poll the served `current` in a loop while the
publisher switches generations back and forth 50 times (publish 1.0.1 / roll back to 1.0.0, with
pruning to 5 generations as it goes): no client error. (About 2 minutes on 2 shared cores.)"""
from __future__ import annotations

import threading
import time

import pytest

from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import verify
from tests.integration.test_publish import _stop_gpg_agents, apt_client, publish  # noqa: F401 (autouse fixture)
from toolbox.run import run

pytestmark = pytest.mark.slow

SWITCHES = 50


def test_clients_polling_during_publishes_see_no_errors(tmp_path, dist_v1, dist_v2, debian_root):
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    rpm_root = tmp_path / "rpm-root"
    rpmrepo.prepare_rpm_root(rpm_root)
    stop = threading.Event()
    errors: list[str] = []
    cycles = {"apt": 0, "dnf": 0}

    def loop(name, steps):
        while not stop.is_set():
            for step in steps:
                proc = step()
                if proc.returncode != 0:
                    errors.append(f"{name}: {proc.args}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
            cycles[name] += 1

    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        conf = rpmrepo.dnf_config(tmp_path / "dnf", (root / "current/rpm/endura-latest.repo").read_text(), url)
        apt_steps = [lambda: debrepo.apt_get(client, "update", check=False),
                     lambda: debrepo.chroot(client, "sh", "-c", "cd /tmp && apt-get -q -y download endura-sensor", check=False)]
        dnf_steps = [lambda: run(rpmrepo.dnf_argv(conf, rpm_root, "--refresh", "--downloadonly", "install", "endura-sensor"),
                                 check=False, timeout=300)]
        threads = [threading.Thread(target=loop, args=("apt", apt_steps)), threading.Thread(target=loop, args=("dnf", dnf_steps))]
        for t in threads:
            t.start()
        started = time.monotonic()
        try:
            for i in range(SWITCHES):
                if i % 2 == 0:
                    publish(root, "--dist", str(dist_v2), "--no-verify")
                else:
                    publish(root, "--rollback", "--no-verify")
        finally:
            elapsed = time.monotonic() - started
            time.sleep(1)
            stop.set()
            for t in threads:
                t.join(timeout=300)
    assert not errors, "\n\n".join(errors[:3])
    assert cycles["apt"] >= 5 and cycles["dnf"] >= 5, cycles
    print(f"{SWITCHES} switches in {elapsed:.1f}s; apt cycles {cycles['apt']}, dnf cycles {cycles['dnf']}, 0 client errors")


def test_clients_holding_the_previous_index_still_download_after_a_switch(tmp_path, dist_v1, dist_v2, debian_root):
    """apt and dnf update against generation 2 (1.0.1), then the repository switches (a rollback drops
    1.0.1 from the indexes), then they install from their cached indexes without updating: the files
    those indexes name are still served, and so are the by-hash indexes of the InRelease they hold."""
    import re
    import urllib.request


    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    publish(root, "--dist", str(dist_v2), "--no-verify")
    rpm_root = tmp_path / "rpm-root"
    rpmrepo.prepare_rpm_root(rpm_root)
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        conf = rpmrepo.dnf_config(tmp_path / "dnf", (root / "current/rpm/endura-latest.repo").read_text(), url)
        run(rpmrepo.dnf_argv(conf, rpm_root, "makecache"), timeout=300)
        held = (root / "current/apt/dists/latest/InRelease").read_text()

        publish(root, "--rollback", "--no-verify")
        assert "1.0.1" not in (root / "current/apt/dists/latest/main/binary-amd64/Packages").read_text()

        debrepo.apt_get(client, "install", "--no-install-recommends", "endura-sensor")
        assert debrepo.chroot(client, "endura-sensor", "--version").stdout.strip() == "endura-sensor 1.0.1"
        run(rpmrepo.dnf_argv(conf, rpm_root, "--setopt=tsflags=noscripts", "install", "endura-sensor"), timeout=300)
        assert run(["rpm", "--root", str(rpm_root), "-q", "endura-sensor"]).stdout.startswith("endura-sensor-1.0.1-1")
        for digest, _size, rel in debrepo.release_checksums(held, "SHA256"):
            by_hash = f"{url}/apt/dists/latest/{rel.rsplit('/', 1)[0]}/by-hash/SHA256/{digest}"
            with urllib.request.urlopen(by_hash) as resp:
                assert resp.status == 200
        repomd = (root / "generations/000002/rpm/latest/x86_64/repodata/repomd.xml").read_text()
        for href in re.findall(r'<location href="([^"]+)"', repomd):
            with urllib.request.urlopen(f"{url}/rpm/latest/x86_64/{href}") as resp:
                assert resp.status == 200
