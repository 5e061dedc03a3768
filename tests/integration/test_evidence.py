"""Evidence records from the test sessions: only a passing run, only for the exact build, signed (gpg)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from channels import evidence
from release.version import source_commit
from tests.integration.pkgtools import REPO, run_module


def record(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return run_module("channels.evidence", "record", *args, env=env, check=check, timeout=300)


@pytest.fixture
def junit(tmp_path):
    def make(tests=3, failures=0, errors=0) -> Path:
        path = tmp_path / f"junit-{tests}-{failures}-{errors}.xml"
        path.write_text(f'<testsuites><testsuite name="a" tests="{tests}" failures="{failures}" errors="{errors}" '
                        f'skipped="0"/><testsuite name="b" tests="2" failures="0" errors="0" skipped="1"/></testsuites>')
        return path
    return make


def test_a_passing_run_is_signed_evidence_naming_the_builds_digests(tmp_path, dist_v2, junit):
    env = {"ENDURA_EVIDENCE_DIR": str(tmp_path / "ev"), "ENDURA_ACTOR": "CI <ci@example.test>"}
    path = Path(record("sensor-tests", "--dist", str(dist_v2), "--junit", str(junit()), env=env).stdout.strip())
    assert path.parent == tmp_path / "ev" / "1.0.1" and path.with_name(path.name + ".asc").is_file()
    data = json.loads(path.read_text())
    manifest = json.loads((dist_v2 / "manifest.json").read_text())
    assert data["artifacts"] == {a["file"]: a["sha256"] for a in manifest["artifacts"]}
    assert data["junit"] == {"tests": 5, "failures": 0, "errors": 0, "skipped": 1}
    assert data["who"] == "CI <ci@example.test>" and data["commit"] == manifest["source"]["commit"]
    (found,) = evidence.load_records("1.0.1", tmp_path / "ev")
    published = {a["file"]: a["sha256"] for a in manifest["artifacts"] if a["family"] == "deb"}
    assert evidence.check_record(found, kind="sensor-tests", version="1.0.1", published=published,
                                 keyring=dist_v2 / "signing-key.asc") is None
    assert "is for version 1.0.1, not 1.0.2" in evidence.check_record(
        found, kind="sensor-tests", version="1.0.2", published=published, keyring=dist_v2 / "signing-key.asc")


def test_a_failing_or_empty_run_is_not_evidence(tmp_path, dist_v2, junit):
    env = {"ENDURA_EVIDENCE_DIR": str(tmp_path / "ev")}
    proc = record("e2e-tests", "--dist", str(dist_v2), "--junit", str(junit(failures=1)), env=env, check=False)
    assert proc.returncode != 0 and "1 failure(s) and 0 error(s); a failing run is not e2e-tests evidence" in proc.stderr
    empty = tmp_path / "empty.xml"
    empty.write_text('<testsuite name="x" tests="0"/>')
    proc = record("e2e-tests", "--dist", str(dist_v2), "--junit", str(empty), env=env, check=False)
    assert proc.returncode != 0 and "records no tests" in proc.stderr
    assert not (tmp_path / "ev").exists() or not list((tmp_path / "ev").rglob("*.json"))


def test_for_head_records_only_for_a_build_of_the_checked_out_commit(tmp_path, dist_v2, junit):
    env = {"ENDURA_EVIDENCE_DIR": str(tmp_path / "ev")}
    proc = record("sensor-tests", "--for-head", "--dist-root", str(tmp_path / "nothing"), "--junit", str(junit()), env=env)
    assert "no sensor-tests evidence recorded" in proc.stderr and not (tmp_path / "ev").exists()
    proc = record("sensor-tests", "--for-head", "--dist-root", str(dist_v2.parent), "--junit", str(junit()), env=env)
    if source_commit(REPO)["dirty"]:
        # a development checkout with uncommitted changes: its test run vouches for no build
        assert "the checkout has uncommitted changes" in proc.stderr and not (tmp_path / "ev").exists()
    else:
        # a clean checkout (CI): dist_v2 was built from this very commit
        assert proc.stdout.strip().startswith(str(tmp_path / "ev" / "1.0.1"))
