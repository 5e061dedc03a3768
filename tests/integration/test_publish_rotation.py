"""Key rotation: with ENDURA_SIGNING_KEY_NEXT every metadata signature is made by both keys and the
published key file holds both, so apt and dnf clients that trust only the old key or only the new
key accept the repository (pacman's database stays signed by the primary key alone)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import layout, verify
from tests.integration.pkgtools import build_dist, new_secret_key
from tests.integration.test_publish import BASE_URL, REPO, _stop_gpg_agents, apt_client  # noqa: F401 (autouse fixture)
from toolbox.run import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory):
    home = tmp_path_factory.mktemp("rot-gnupg")
    fprs = [new_secret_key(home, f"Endura {who} Release <{who.lower()}@example.test>") for who in ("Old", "New")]
    yield home, fprs[0], fprs[1]
    run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def _export(home: Path, fpr: str, out: Path) -> Path:
    out.write_text(run(["gpg", "--homedir", str(home), "--batch", "--armor", "--export", fpr]).stdout)
    return out


def test_rotation_cosigns_metadata_for_clients_of_either_key(tmp_path, two_keys, debian_root, release_apk_env):
    home, old, new = two_keys
    env = {"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": old, **release_apk_env}
    dist, _ = build_dist(tmp_path / "dist", "3.0.0", "--format", "deb,rpm,arch,tgz", "--arch", "amd64",
                         env={**env, "SOURCE_DATE_EPOCH": str(int(time.time()))})
    root = tmp_path / "repo"
    proc = subprocess.run([sys.executable, "-m", "channels.publish", "--repo-root", str(root), "--base-url", BASE_URL,
                           "--dist", str(dist)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env, "ENDURA_SIGNING_KEY_NEXT": new})
    assert proc.returncode == 0, proc.stderr[-3000:]  # includes the publisher's own apt/dnf/pacman checks
    cur = root / "current"
    keys = run(["gpg", "--batch", "--with-colons", "--show-keys", str(cur / layout.KEY_FILE)]).stdout
    assert old in keys and new in keys
    keyring = tmp_path / "both.gpg"
    run(["gpg", "--batch", "--yes", "--dearmor", "--output", str(keyring), str(cur / layout.KEY_FILE)])
    for signed, sig in (("InRelease", None), ("Release", "Release.gpg")):
        args = [str(cur / "apt/dists/latest" / signed)] if sig is None else [str(cur / "apt/dists/latest" / sig),
                                                                            str(cur / "apt/dists/latest" / signed)]
        out = run(["gpgv", "--keyring", str(keyring), *args]).stderr
        assert out.count("Good signature") == 2, out

    for who, fpr in (("old", old), ("new", new)):
        gen = tmp_path / f"served-{who}"
        shutil.copytree(cur, gen)
        _export(home, fpr, gen / layout.KEY_FILE)  # a client that trusts only this key
        client_root = debian_root if who == "old" else _fresh_root(tmp_path / "root-new")
        rpm_root = tmp_path / f"rpm-{who}"
        rpmrepo.prepare_rpm_root(rpm_root)
        with verify.serve(gen) as url:
            client = apt_client(client_root, gen, url)
            debrepo.apt_get(client, "update")
            debrepo.apt_get(client, "install", "--no-install-recommends", "endura-sensor")
            assert debrepo.chroot(client, "endura-sensor", "--version").stdout.strip() == "endura-sensor 3.0.0"
            conf = rpmrepo.dnf_config(tmp_path / f"dnf-{who}", (gen / "rpm/endura-latest.repo").read_text(), url)
            run(rpmrepo.dnf_argv(conf, rpm_root, "makecache"), timeout=300)  # repomd.xml.asc checked with this key
            install = run(rpmrepo.dnf_argv(conf, rpm_root, "--setopt=tsflags=noscripts", "install", "endura-sensor"),
                          check=False, timeout=300)
        if who == "old":
            assert install.returncode == 0, install.stderr
        else:  # the packages are still signed by the old key: step 2 of the procedure rebuilds them
            assert install.returncode != 0
            assert "Import of key(s) didn't help, wrong key(s)?" in install.stdout + install.stderr


def _fresh_root(path: Path) -> Path:
    return debrepo.extract_debian_root(path)
