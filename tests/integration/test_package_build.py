"""The package build itself: reproducible, refuses bad input with one clear line, leaves no
half-written artifact, and ships a hardened systemd unit."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.pkgtools import REPO, build_dist, new_secret_key
from toolbox.files import sha256_file
from toolbox.run import run
from toolbox.tools import require


def _new_key(tmp_path: Path, *, batch: str = "", quick: tuple[str, ...] = ()) -> tuple[Path, str]:
    """A fresh GNUPGHOME with one secret key (from --gen-key parameters or --quick-gen-key args)."""
    home = tmp_path / "gnupg"
    uid, algo, _, expire = quick if quick else ("", "", "", "")
    return home, new_secret_key(home, uid, algo, expire, batch=batch)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())}


def test_same_commit_builds_byte_identical_artifacts(dist_v1, tmp_path):
    again, _ = build_dist(tmp_path, "1.0.0")
    first, second = _digests(dist_v1), _digests(again)
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, f"not reproducible: {differing}"
    # 10 artifacts + 10 SBOMs + 4 detached .sig + 2 public keys + manifest + SHA256SUMS(.asc)
    assert len(first) == 29


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--format", "deb,msi"], {}, "unknown format msi; choose from deb,rpm,apk,arch,tgz"),
        (["--arch", "riscv64"], {}, "unknown arch riscv64"),
        (["--target", "debian-14"], {}, "debian-14"),
        ([], {"ENDURA_VERSION": "1.2"}, "1.2"),
        ([], {"ENDURA_VERSION": "1.2.3-preview"}, "1.2.3-preview"),
        ([], {"ENDURA_SIGNING_KEY": "0123456789ABCDEF0123456789ABCDEF01234567"}, "not found in"),
        ([], {"ENDURA_SIGNING_KEY": "my-key"}, "is not a key fingerprint"),
    ],
)
def test_bad_input_gives_one_line_and_leaves_dist_untouched(tmp_path, args, env, expected):
    out = tmp_path / "dist"
    out.mkdir()
    (out / "keep-me").write_text("previous build")
    env = {"GNUPGHOME": str(tmp_path / "gnupg"), **env}
    (tmp_path / "gnupg").mkdir(mode=0o700)
    version = env.pop("ENDURA_VERSION", "1.0.0")
    _, proc = build_dist(out, version, "--format", "tgz", "--arch", "amd64", *args, env=env, check=False)
    line = _one_line_error(proc)
    assert expected in line, line
    assert _leftovers(out) == ["keep-me"]


def test_expired_release_key_is_refused(tmp_path):
    params = ("%no-protection\nKey-Type: RSA\nKey-Length: 3072\nKey-Usage: sign\nName-Real: Expired Test\n"
              "Creation-Date: 20200101T000000\nExpire-Date: seconds=86400\n%commit\n")
    home, fpr = _new_key(tmp_path, batch=params)
    out = tmp_path / "dist"
    _, proc = build_dist(out, "1.0.0", "--format", "tgz", "--arch", "amd64",
                         env={"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": fpr}, check=False)
    line = _one_line_error(proc)
    assert f"signing key {fpr} expired on 2020-01-02" in line and "gpg --quick-set-expire" in line
    assert _leftovers(out) == []


def test_weak_release_key_is_refused(tmp_path):
    home, fpr = _new_key(tmp_path, quick=("Weak Test <weak@localhost>", "rsa2048", "sign", "1y"))
    _, proc = build_dist(tmp_path / "dist", "1.0.0", "--format", "tgz", "--arch", "amd64",
                         env={"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": fpr}, check=False)
    assert "use RSA >= 3072 or Ed25519" in _one_line_error(proc)


def test_release_key_with_apk_requires_a_release_apk_key(tmp_path):
    home, fpr = _new_key(tmp_path, quick=("Release Test <release@localhost>", "ed25519", "sign", "1y"))
    # the key is younger than the fixed test epoch: sign at "now" (older commits are refused, see below)
    env = {"GNUPGHOME": str(home), "ENDURA_SIGNING_KEY": fpr, "SOURCE_DATE_EPOCH": str(int(time.time()))}
    _, young = build_dist(tmp_path / "d0", "1.0.0", "--format", "tgz", "--arch", "amd64",
                          env={**env, "SOURCE_DATE_EPOCH": "1600000000"}, check=False)
    assert "is older than signing key" in _one_line_error(young)
    _, proc = build_dist(tmp_path / "d1", "1.0.0", "--format", "apk", "--arch", "amd64", env=env, check=False)
    assert "ENDURA_APK_SIGNING_KEY is not set" in _one_line_error(proc)
    # the same Ed25519 release key signs a tarball fine, with SHA-256
    dist, _ = build_dist(tmp_path / "d2", "1.0.0", "--format", "tgz", "--arch", "amd64", env=env)
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["signing_key"] == {**manifest["signing_key"], "fingerprint": fpr, "development": False}


def test_missing_bpf_object_fails_cleanly(tmp_path):
    """A BPF object missing from the build output: one line naming it and the fix; nothing in dist."""
    from release import stage

    with pytest.raises(Exception) as info:
        stage.stage("amd64", "1.0.0", [Path("/nonexistent/sensor_tp.bpf.o")], tmp_path / "root", 0)
    assert "sensor_lsm.bpf.o, sensor_fentry.bpf.o missing for amd64" in str(info.value)
    assert "nox -s bpf" in str(info.value)


def test_nfpm_failure_leaves_no_partial_directory(tmp_path):
    """nfpm is made to fail (a PATH entry whose nfpm exits 1): no hidden partial dir survives."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nfpm").write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'GitVersion: 0'; exit 0; }\necho 'nfpm: boom' >&2\nexit 1\n")
    (fake / "nfpm").chmod(0o755)
    out = tmp_path / "dist"
    _, proc = build_dist(out, "1.0.0", "--format", "deb", "--arch", "amd64",
                         env={"PATH": f"{fake}:{os.environ['PATH']}"}, check=False)
    line = _one_line_error(proc)
    assert "nfpm" in line and "failed with exit code 1" in line
    assert _leftovers(out) == []


def test_systemd_unit_is_hardened():
    require("systemd-analyze")
    unit = REPO / "sensor" / "packaging" / "endura-sensor.service"
    proc = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)], check=False)
    last = [line for line in proc.stdout.splitlines() if "Overall exposure level" in line]
    assert last, proc.stdout[-2000:] + proc.stderr[-2000:]
    score = float(last[0].split("level for")[1].split(":")[1].split()[0])
    # Root with CAP_BPF/CAP_SYS_ADMIN is required to load LSM programs; all else is taken away.
    assert score <= 5.0, last[0]
    verify = run(["systemd-analyze", "verify", "--man=no", str(unit)], check=False)
    assert "Unknown key" not in verify.stderr and "Invalid" not in verify.stderr, verify.stderr
