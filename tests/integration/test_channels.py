"""Release channels end to end: three real builds go latest -> testing -> stable through `channels.promote`,
gated by signed evidence records, verified by the promoter with apt and dnf before each switch; afterwards
apt and dnf clients pointed at each channel see that channel's version, the files have one sha256 in
every channel, and every refusal (missing or tampered evidence, skip, downgrade, pre-release to stable,
soak, a concurrent promotion, an edited log) is one clear line and changes nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from channels import evidence, records
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from release.version import Version, format_version
from repo import layout, verify
from repo.generations import RepoRoot
from tests.integration.pkgtools import build_dist, run_module
from tests.integration.test_publish import BASE_URL, REPO, _stop_gpg_agents, madison, publish, snapshot  # noqa: F401
from toolbox.files import sha256_file
from toolbox.run import run

pytestmark = pytest.mark.slow

SOAK = 60  # seconds, from the test policy below (the shipped policy says 7d)
V1, V2, V3 = "1.0.0", "1.0.1", "1.1.0-rc.1"


class Channels:
    """One repository root, its evidence store and its policy; each method runs the real command."""

    def __init__(self, root: Path, evidence_dir: Path, policy: Path, junit: Path) -> None:
        self.root, self.evidence_dir, self.policy, self.junit = root, evidence_dir, policy, junit
        self.env = {"ENDURA_EVIDENCE_DIR": str(evidence_dir), "ENDURA_ACTOR": "Release Tester <rt@example.test>"}

    def promote(self, *args: str, check: bool = True) -> tuple[dict | None, subprocess.CompletedProcess]:
        proc = run_module("channels.promote", *args, "--repo-root", str(self.root), "--policy", str(self.policy),
                          env=self.env, check=check)
        return (json.loads(proc.stdout) if proc.returncode == 0 else None), proc

    def refused(self, *args: str, says: str) -> str:
        """The promotion fails with one `error:` line containing `says`, and the served tree is untouched."""
        before, link = snapshot(self.root / "current"), os.readlink(self.root / "current")
        generations = sorted(os.listdir(self.root / "generations"))
        _, proc = self.promote(*args, check=False)
        assert proc.returncode != 0, proc.stdout
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and says in last, proc.stderr[-3000:]
        assert os.readlink(self.root / "current") == link
        assert sorted(os.listdir(self.root / "generations")) == generations
        assert snapshot(self.root / "current") == before
        return last

    def record(self, kind: str, dist: Path) -> Path:
        return Path(run_module("channels.evidence", "record", kind, "--dist", str(dist), "--junit", str(self.junit),
                               env=self.env).stdout.strip())

    def approve(self, version: str) -> Path:
        return Path(run_module("channels.approve", version, "--reason", "ran the fleet canary for a day",
                               "--repo-root", str(self.root), env=self.env).stdout.strip())

    def status(self) -> dict:
        return json.loads(run_module("channels", "--json", "--repo-root", str(self.root), "--policy", str(self.policy),
                                     env=self.env).stdout)

    def copy(self, dest: Path) -> Channels:
        shutil.copytree(self.root, dest / "repo", symlinks=True)
        shutil.copytree(self.evidence_dir, dest / "evidence")
        return Channels(dest / "repo", dest / "evidence", self.policy, self.junit)


@pytest.fixture(scope="module")
def dist_v3(tmp_path_factory) -> Path:
    path, _ = build_dist(tmp_path_factory.mktemp("dist-v3"), V3, "--format", "deb,rpm,tgz", "--arch", "amd64")
    return path


@pytest.fixture(scope="module")
def flow(tmp_path_factory, dist_v1, dist_v2, dist_v3) -> Channels:
    """The whole story, asserted as it goes; the tests below look at the result (and must not modify it)."""
    tmp = tmp_path_factory.mktemp("channels")
    policy = tmp / "policy.toml"
    policy.write_text(f'[testing]\nevidence = ["sensor-tests", "e2e-tests"]\n[stable]\nsoak = "{SOAK}s"\napproval = true\n')
    junit = tmp / "junit.xml"
    junit.write_text('<testsuites><testsuite name="t" tests="12" failures="0" errors="0" skipped="0"/></testsuites>\n')
    ch = Channels(tmp / "repo", tmp / "evidence", policy, junit)

    publish(ch.root, "--dist", str(dist_v1))
    assert ch.status()["channels"]["testing"]["version"] is None
    ch.refused("testing", says=f"cannot promote {V1} to testing: no sensor-tests evidence for {V1} in ")
    assert "no e2e-tests evidence" in ch.refused("testing", V1, says="(run 'nox -s vmtest")

    ch.record("sensor-tests", dist_v1)
    ch.refused("testing", says="no e2e-tests evidence")
    ch.record("e2e-tests", dist_v1)
    result, _ = ch.promote("testing")
    assert result["version"] == V1 and result["from"] is None and result["action"] == "promote"
    assert result["verified"]["deb"] == f"endura-sensor {V1}" and result["verified"]["rpm"]["dnf"].startswith(f"{V1}-1.")
    entered_v1 = time.time()

    ch.refused("stable", V1, says=f"stable needs {SOAK // 60}m of soak")
    assert "no approval evidence for 1.0.0" in ch.refused("stable", V1, says="cannot promote 1.0.0 to stable")
    ch.approve(V1)

    publish(ch.root, "--dist", str(dist_v2), "--no-verify")
    ch.refused("stable", V2, says=f"{V2} is not in testing; a version cannot skip a channel")
    ch.record("sensor-tests", dist_v2)
    ch.record("e2e-tests", dist_v2)
    result, _ = ch.promote("testing")  # the newest eligible: 1.0.1
    assert (result["version"], result["from"]) == (V2, V1)
    assert result["verified"]["deb"] == f"endura-sensor {V2}"
    ch.refused("stable", V2, says=f"{V2} has been in testing for")

    time.sleep(max(0.0, entered_v1 + SOAK + 1 - time.time()))
    result, _ = ch.promote("stable")  # 1.0.1 is not eligible (soak, approval): the newest eligible is 1.0.0
    assert (result["version"], result["from"]) == (V1, None)
    assert result["verified"]["deb"] == f"endura-sensor {V1}"

    publish(ch.root, "--dist", str(dist_v3), "--no-verify")
    ch.record("sensor-tests", dist_v3)
    ch.record("e2e-tests", dist_v3)
    result, _ = ch.promote("testing", V3)
    assert result["verified"]["deb"] == f"endura-sensor {V3}"
    assert result["verified"]["rpm"]["dnf"].startswith(format_version(Version.parse(V3), "rpm") + "-1.")
    ch.refused("testing", V2, says=f"testing holds {V3}, newer than {V2}; channels only move forward")
    ch.refused("stable", V3, says=f"{V3} is a pre-release; only a release (vX.Y.Z) reaches stable")
    ch.refused("testing", V2, "--rollback", says="--rollback needs --reason")
    result, _ = ch.promote("testing", V2, "--rollback", "--reason", "rc.1 breaks the RHEL 8 canary")
    assert (result["action"], result["version"], result["from"]) == ("rollback", V2, V3)
    result, proc = ch.promote("testing", V2)
    assert result["action"] == "none" and "already holds 1.0.1" in proc.stderr
    return ch


# --- what the flow left ---------------------------------------------------------------------------------------


def test_the_signed_state_and_append_only_log_record_every_move(flow):
    cur = flow.root / "current"
    recs = records.verify_tree(cur)  # signatures, hash chain, log digest, cited evidence signatures
    moves = [(e["action"], e["channel"], e["version"], e["from"]) for e in recs.entries]
    assert moves == [("promote", "testing", V1, None), ("promote", "testing", V2, V1), ("promote", "stable", V1, None),
                     ("promote", "testing", V3, V2), ("rollback", "testing", V2, V3)]
    assert {e["who"] for e in recs.entries} == {"Release Tester <rt@example.test>"}
    assert recs.entries[-1]["reason"] == "rc.1 breaks the RHEL 8 canary" and recs.entries[-1]["evidence"] == []
    assert [x["kind"] for x in recs.entries[0]["evidence"]] == ["sensor-tests", "e2e-tests"]
    assert [x["kind"] for x in recs.entries[2]["evidence"]] == ["approval"]
    for e in recs.entries:
        for cited in e["evidence"]:
            assert sha256_file(cur / records.EVIDENCE / cited["record"]) == cited["sha256"]
    assert recs.state["channels"]["testing"]["version"] == V2 and recs.state["channels"]["stable"]["version"] == V1
    # every generation's log begins with the previous generation's log
    logs = [(g / records.LOG).read_bytes() for g in sorted((flow.root / "generations").iterdir()) if (g / records.LOG).exists()]
    assert all(b.startswith(a) for a, b in zip(logs, logs[1:]))
    status = flow.status()
    assert {c: s["version"] for c, s in status["channels"].items()} == {"latest": V3, "testing": V2, "stable": V1}
    assert {(e["channel"], e["version"], e["eligible"]) for e in status["eligible"]} >= {("testing", V3, True)}


def test_the_same_bytes_in_every_channel(flow):
    cur = flow.root / "current"
    state = json.loads((cur / layout.GENERATION_FILE).read_text())["channels"]
    latest = {e["file"]: e for e in state["latest"]}
    for channel in ("testing", "stable"):
        for entry in state[channel]:
            assert entry == latest[entry["file"]]  # the manifest entry, sha256 included, is the one published
            for rel, latest_rel in zip(layout.artifact_paths(channel, entry), layout.artifact_paths("latest", entry)):
                assert sha256_file(cur / rel) == sha256_file(cur / latest_rel)
                assert (cur / rel).stat().st_ino == (cur / latest_rel).stat().st_ino  # hardlinks: not even copied
            assert sha256_file(cur / layout.artifact_paths(channel, entry)[0]) == entry["sha256"]
    recs = records.read(cur)
    assert recs.channel("stable")["artifacts"] == {  # by the build's file name (apk publishes under another)
        name: sha256_file(cur / p) for e in state["stable"] if e["version"] == V1
        for name, p in layout.artifact_files("stable", e)}


@pytest.mark.parametrize("channel, versions", [("latest", [V1, V2, V3]), ("testing", [V1, V2]), ("stable", [V1])])
def test_apt_and_dnf_clients_see_each_channels_version(flow, channel, versions, debian_root, tmp_path):
    cur = flow.root / "current"
    deb = [format_version(Version.parse(v), "deb") + "-1" for v in versions]
    rpm = format_version(Version.parse(versions[-1]), "rpm")
    with verify.serve(cur) as url:
        debrepo.configure_apt(debian_root, (cur / "apt" / f"endura-{channel}.sources").read_text(), cur / layout.KEY_FILE, url)
        debrepo.apt_get(debian_root, "update")
        assert madison(debian_root) == sorted(deb)
        debrepo.apt_get(debian_root, "install", "--no-install-recommends", "endura-sensor")
        assert debrepo.chroot(debian_root, "endura-sensor", "--version").stdout.strip() == f"endura-sensor {versions[-1]}"
        conf = rpmrepo.dnf_config(tmp_path / "dnf", (cur / "rpm" / f"endura-{channel}.repo").read_text(), url)
        out = run(rpmrepo.dnf_argv(conf, tmp_path / "rpmroot", "repoquery", "--qf", "%{version}",
                                         "endura-sensor"), timeout=600).stdout
    assert out.split()[-1] == rpm and sorted(set(out.split())) == sorted({format_version(Version.parse(v), "rpm")
                                                                          for v in versions})


# --- refusals on copies ---------------------------------------------------------------------------------------


def test_tampered_or_foreign_evidence_is_refused(flow, tmp_path, dist_v3):
    ch = flow.copy(tmp_path)
    for rec in evidence.load_records(V3, ch.evidence_dir):
        if rec.kind == "sensor-tests":
            rec.path.write_text(rec.path.read_text().replace('"tests": 12', '"tests": 13'))
    line = ch.refused("testing", V3, says="no valid sensor-tests evidence for 1.1.0-rc.1")
    assert "fails its signature check" in line
    # validly signed, but for other bytes of the same version
    manifest = json.loads((dist_v3 / "manifest.json").read_text())
    manifest["artifacts"] = [{**a, "sha256": "0" * 64} for a in manifest["artifacts"]]
    for rec in evidence.load_records(V3, ch.evidence_dir):
        if rec.kind == "sensor-tests":
            rec.path.unlink()
    from release.signing import resolve_key

    evidence.write_record(evidence.make_record("sensor-tests", manifest, now=int(time.time()), who="x",
                                               junit={"tests": 1, "failures": 0, "errors": 0, "skipped": 0}),
                          ch.evidence_dir, resolve_key())
    ch.refused("testing", V3, says="the repository holds")


def test_an_edited_promotion_log_stops_every_promotion(flow, tmp_path):
    ch = flow.copy(tmp_path)
    log_file = ch.root / "current" / records.LOG
    log_file.write_bytes(log_file.read_bytes().replace(b'"who":"Release Tester', b'"who":"Someone Else'))
    ch.refused("testing", V3, says="promotions.jsonl fails its signature check")
    proc = run_module("channels", "--repo-root", str(ch.root), env=ch.env, check=False)
    assert proc.returncode != 0 and "fails its signature check" in proc.stderr
    generations = sorted(os.listdir(ch.root / "generations"))
    _, proc = publish(ch.root, "--refresh", "--no-verify", check=False)  # a publish carries the records: refused too
    assert proc.returncode != 0 and "promotions.jsonl fails its signature check" in proc.stderr.strip().splitlines()[-1]
    assert sorted(os.listdir(ch.root / "generations")) == generations


def test_concurrent_promotions_are_serialized(flow, tmp_path):
    ch = flow.copy(tmp_path)
    with RepoRoot(ch.root).lock():
        line = ch.refused("testing", V3, "--no-verify", says="another publish or promotion (pid ")
        assert "--wait SECONDS" in line
    before = sorted(os.listdir(ch.root / "generations"))
    results: list = []

    def one():
        results.append(ch.promote("testing", V3, "--no-verify", "--wait", "300"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    actions = sorted(r[0]["action"] for r in results)
    assert actions == ["none", "promote"]  # one promoted, the other waited, then found nothing to do
    assert RepoRoot(ch.root).numbers()[-1] == int(before[-1]) + 1  # exactly one new generation
    recs = records.read(ch.root / "current")
    assert [e["version"] for e in recs.entries[-2:]] == [V2, V3] and recs.channel("testing")["version"] == V3


def test_a_repository_rollback_that_would_undo_a_promotion_is_refused(flow):
    before, link = snapshot(flow.root / "current"), os.readlink(flow.root / "current")
    result, proc = publish(flow.root, "--rollback", check=False)
    assert result is None and proc.returncode == 1
    assert "differs from the current one in channel(s) testing (a promotion came between)" in proc.stderr
    assert "--rollback --reason" in proc.stderr.strip().splitlines()[-1]
    assert os.readlink(flow.root / "current") == link and snapshot(flow.root / "current") == before
