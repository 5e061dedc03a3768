"""Each of these makes the real client fail against a published repository served on loopback: a flipped
byte in a package, in Packages, in InRelease, in repomd.xml; a wrong key; an expired Valid-Until; a Date
in the future. And what apt 2.6 really does with an *older* InRelease served back (a replay): it keeps
the newer one it has ("Hit", exit 0) so the client is not rolled back, and fails once the replayed
file's Valid-Until has passed. Every case has an untampered control that succeeds in the same setup."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from families.arch import repository as pacrepo
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import layout, verify
from tests.integration.pkgtools import new_secret_key
from tests.integration.test_publish import _stop_gpg_agents, apt_client, madison, publish, published  # noqa: F401 (fixtures)
from toolbox import dates
from toolbox.run import run

pytestmark = pytest.mark.slow


def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


def _copy(repo_root: Path, tmp_path: Path) -> Path:
    """An independent copy of the current generation (hardlinks become files: tampering stays local)."""
    gen = tmp_path / "served"
    shutil.copytree(repo_root / "current", gen)
    return gen


def _other_key(tmp_path: Path) -> Path:
    home = tmp_path / "other-gnupg"
    new_secret_key(home, "Someone Else <other@example.test>", expire="1d")
    out = tmp_path / "other-key.asc"
    out.write_text(run(["gpg", "--homedir", str(home), "--batch", "--armor", "--export"]).stdout)
    run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)  # the agent gen-key started
    return out


# --- apt -------------------------------------------------------------------------------------------------


def _tamper_apt(gen: Path, case: str, tmp_path: Path) -> None:
    suite = gen / "apt/dists/latest"
    if case == "deb":
        _flip(next((gen / "apt/pool").rglob("*_1.0.1_amd64.deb")), -100)
    elif case == "packages":
        # every form apt could fetch it in: Packages, .gz, .xz and their by-hash copies
        for p in (suite / "main/binary-amd64").rglob("Packages*"):
            _flip(p)
        for p in (suite / "main/binary-amd64/by-hash").rglob("*"):
            if p.is_file():
                _flip(p)
    elif case == "inrelease":
        for name in ("InRelease", "Release"):
            text = (suite / name).read_text().replace("Suite: latest", "Suite: lateSt")
            (suite / name).write_text(text)
    elif case == "wrong-key":
        shutil.copyfile(_other_key(tmp_path), gen / layout.KEY_FILE)


@pytest.mark.parametrize("case,fails_at,message", [
    ("none", None, None),
    ("deb", "install", "Hash Sum mismatch"),
    ("packages", "update", "Hash Sum mismatch"),
    ("inrelease", "update", "BADSIG .* is not signed"),
    ("wrong-key", "update", "NO_PUBKEY .* is not signed"),
])
def test_apt_refuses_tampered_repository(published, debian_root, tmp_path, case, fails_at, message):  # noqa: F811
    gen = _copy(published, tmp_path)
    _tamper_apt(gen, case, tmp_path)
    with verify.serve(gen) as url:
        client = apt_client(debian_root, gen, url)
        update = debrepo.apt_get(client, "update", check=False)
        if fails_at == "update":
            assert update.returncode != 0, update.stdout
            assert re.search(message, update.stdout + update.stderr, re.S), update.stdout + update.stderr
            return
        assert update.returncode == 0, update.stdout + update.stderr
        install = debrepo.apt_get(client, "install", "--no-install-recommends", "endura-sensor", check=False)
    if fails_at == "install":
        assert install.returncode != 0
        assert message in install.stdout + install.stderr, install.stdout + install.stderr
        assert not (client / "usr/bin/endura-sensor").exists()
    else:
        assert install.returncode == 0, install.stderr
        assert debrepo.chroot(client, "endura-sensor", "--version").stdout.strip() == "endura-sensor 1.0.1"


def test_apt_refuses_an_expired_valid_until(tmp_path, dist_v1, debian_root):
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify", "--date", str(int(time.time()) - 8 * 86400))
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        update = debrepo.apt_get(client, "update", check=False)
    assert update.returncode != 0
    assert "is expired" in update.stdout + update.stderr, update.stdout + update.stderr


def test_apt_refuses_a_date_in_the_future(tmp_path, dist_v1, debian_root):
    """apt >= 2.1 (Check-Date) refuses a Release file dated after its clock: 'not valid yet'."""
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify", "--date", str(int(time.time()) + 3600))
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        update = debrepo.apt_get(client, "update", check=False)
    assert update.returncode != 0
    assert "not valid yet" in update.stdout + update.stderr, update.stdout + update.stderr


def test_apt_keeps_the_newer_inrelease_when_an_older_one_is_served_back(published, debian_root, tmp_path):  # noqa: F811
    """What apt 2.6 really does with a replayed older (still valid, correctly signed) InRelease: no error
    (exit 0, reported as 'Hit'), and the client keeps the newer index: it is not rolled back."""
    served = tmp_path / "served"
    served.symlink_to(published / "generations/000002")
    with verify.serve(served) as url:
        client = apt_client(debian_root, published / "generations/000002", url)
        debrepo.apt_get(client, "update")
        assert madison(client) == ["1.0.0-1", "1.0.1-1"]
        served.unlink()
        served.symlink_to(published / "generations/000001")
        replay = debrepo.apt_get(client, "update")
        assert "Hit:" in replay.stdout
        assert madison(client) == ["1.0.0-1", "1.0.1-1"], "the older index did not replace the newer one"


def test_apt_ignores_a_replayed_older_inrelease_even_when_it_expired(tmp_path, dist_v1, dist_v2, debian_root):
    """apt compares Dates before it checks the older file's Valid-Until: an expired replay is a 'Hit' too."""
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify", "--date", str(int(time.time()) - 8 * 86400))
    publish(root, "--dist", str(dist_v2), "--no-verify")
    served = tmp_path / "served"
    served.symlink_to(root / "generations/000002")
    with verify.serve(served) as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        served.unlink()
        served.symlink_to(root / "generations/000001")
        replay = debrepo.apt_get(client, "update")
    assert "Hit:" in replay.stdout
    assert madison(client) == ["1.0.0-1", "1.0.1-1"]


def test_apt_fails_when_the_repository_is_frozen_past_valid_until(tmp_path, dist_v1, debian_root):
    """A freeze (the same, once valid, InRelease served forever) is caught by Valid-Until: after it passes,
    the client's update fails instead of silently keeping stale indexes."""
    root = tmp_path / "repo"
    window = 4  # seconds
    publish(root, "--dist", str(dist_v1), "--no-verify", "--valid-days", str(window / 86400))
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        until = dates.parse_rfc2822(debrepo.release_fields((root / "current/apt/dists/latest/InRelease").read_text())["Valid-Until"])
        time.sleep(max(0, until - time.time()) + 1.5)
        frozen = debrepo.apt_get(client, "update", check=False)
    assert frozen.returncode != 0
    assert "is expired" in frozen.stdout + frozen.stderr, frozen.stdout + frozen.stderr


# --- dnf ----------------------------------------------------------------------------------------------------


def _tamper_rpm(gen: Path, case: str, tmp_path: Path) -> None:
    repodata = gen / "rpm/latest/x86_64/repodata"
    if case == "rpm":
        _flip(next((gen / "rpm/latest/x86_64/packages").glob("*-1.0.1-1.x86_64.rpm")), -100)
    elif case == "repomd-byte":
        _flip(repodata / "repomd.xml")
    elif case == "repomd-revision":
        # still well-formed XML with consistent checksums: only the signature can catch it
        text = (repodata / "repomd.xml").read_text()
        start = text.index("<revision>") + len("<revision>")
        (repodata / "repomd.xml").write_text(text[:start] + "1" + text[start:])
    elif case == "primary":
        # the primary.xml named by repomd.xml (repodata/ also keeps the previous generation's files)
        href = re.search(r'<location href="(repodata/[^"]*-primary\.xml[^"]*)"', (repodata / "repomd.xml").read_text()).group(1)
        _flip(repodata.parent / href)
    elif case == "wrong-key":
        shutil.copyfile(_other_key(tmp_path), gen / layout.KEY_FILE)


@pytest.mark.parametrize("case,message", [
    ("none", None),
    ("rpm", "endura-sensor-1.0.1-1.x86_64.rpm: Downloading successful, but checksum doesn't match"),
    ("repomd-byte", "repomd.xml GPG signature verification error: Bad GPG signature"),
    ("repomd-revision", "repomd.xml GPG signature verification error: Bad GPG signature"),
    ("primary", "checksum doesn't match"),
    ("wrong-key", "repomd.xml GPG signature verification error: Bad GPG signature"),
])
def test_dnf_refuses_tampered_repository(published, tmp_path, case, message):  # noqa: F811
    """dnf with the generated .repo (gpgcheck=1, repo_gpgcheck=1) into an empty installroot."""
    gen = _copy(published, tmp_path)
    _tamper_rpm(gen, case, tmp_path)
    root = tmp_path / "installroot"
    rpmrepo.prepare_rpm_root(root)
    with verify.serve(gen) as url:
        conf = rpmrepo.dnf_config(tmp_path / "dnf", (gen / "rpm/endura-latest.repo").read_text(), url)
        proc = run(rpmrepo.dnf_argv(conf, root, "--setopt=tsflags=noscripts", "install", "endura-sensor"),
                   check=False, timeout=600)
    installed = run(["rpm", "--root", str(root), "-q", "endura-sensor"], check=False)
    if case == "none":
        assert proc.returncode == 0, proc.stderr
        assert installed.stdout.startswith("endura-sensor-1.0.1-1")
    else:
        assert proc.returncode != 0, proc.stdout
        assert re.search(message, proc.stdout + proc.stderr), proc.stdout + proc.stderr
        assert installed.returncode != 0, "nothing was installed"


def test_rpm_k_fails_on_a_flipped_byte(published, tmp_path):  # noqa: F811
    from toolbox.errors import EnduraError

    rpms = sorted((published / "current/rpm/latest").glob("*/packages/*.rpm"))
    rpmrepo.rpm_check_signatures(rpms, published / "current" / layout.KEY_FILE)
    bad = tmp_path / rpms[0].name
    shutil.copyfile(rpms[0], bad)
    _flip(bad, -100)
    with pytest.raises(EnduraError, match="rpm -K failed"):
        rpmrepo.rpm_check_signatures([bad], published / "current" / layout.KEY_FILE)
    with pytest.raises(EnduraError, match="rpm -K failed"):
        rpmrepo.rpm_check_signatures(rpms[:1], _other_key(tmp_path))


# --- pacman -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case,step,message", [
    ("none", None, None),
    ("package", "-Sw", r"is corrupted \(invalid or corrupted package \(PGP signature\)\)"),
    ("db", "-Sy", r"failed to synchronize all databases \(invalid or corrupted database \(PGP signature\)\)"),
    ("wrong-key", "-Sy", r"key \"[0-9A-F]{40}\" is unknown"),
])
def test_pacman_refuses_tampered_repository(published, tmp_path, case, step, message):  # noqa: F811
    """pacman with the generated [endura] section, SigLevel Required, a keyring holding only our key."""
    gen = _copy(published, tmp_path)
    pac = gen / "arch/latest/x86_64"
    key = gen / layout.KEY_FILE
    if case == "package":
        _flip(next(pac.glob("endura-sensor-1.0.0-1-x86_64.pkg.tar.zst")), -100)
    elif case == "db":
        for name in ("endura.db", "endura.db.tar.gz"):
            _flip(pac / name, -10)
    elif case == "wrong-key":
        key = _other_key(tmp_path)
    with verify.serve(gen) as url:
        pacman = pacrepo.pacman_client(tmp_path / "pacman", (gen / "arch/endura-latest.pacman.conf").read_text(), url, key)
        sync = run([*pacman, "-Sy"], check=False, timeout=300)
        fetch = run([*pacman, "-Swdd", "endura-sensor"], check=False, timeout=300) if sync.returncode == 0 else None
    if case == "none":
        assert fetch is not None and fetch.returncode == 0, (sync.stderr, fetch and fetch.stderr)
        assert (tmp_path / "pacman/cache/endura-sensor-1.0.0-1-x86_64.pkg.tar.zst").is_file()
        return
    failed = sync if step == "-Sy" else fetch
    assert failed is not None and failed.returncode != 0, (sync.stdout, sync.stderr)
    assert re.search(message, failed.stdout + failed.stderr), failed.stdout + failed.stderr
