"""Kernel test VMs for real: Debian 12's 6.1 and Debian 13's 6.12 kernels, each booted with BPF LSM
active and with an lsm= list lacking bpf, with the just-built .deb installed in the guest.

The sensor runs from a policy file in a policy_dir (exec, file and connect rules; no --deny). Proves:
LSM on -> a denied exec, opening the protected file for write and a connect to the denied loopback
port fail with EPERM (the file unchanged), while the allowed binary, reading the file and the allowed
port work; LSM off -> `check` says so and the fentry tier (fmod_ret on security_*) refuses each with EPERM
too; both blocking tiers also refuse the same effects reached another way (rename, link, unlink, truncate,
create, writes through an fd opened before the sensor, ld.so, UDP sendto); a forced tracepoint
tier kills; audit only logs; after the sensor stops nothing is blocked. Also the bad-input paths:
unknown target, kernel not obtainable here, missing package, corrupt cached kernel, a panicking and
a hanging guest.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from channels import evidence
from distros import load_catalog
from tests.integration.pkgtools import REPO, build_dist
from toolbox.files import sha256_file
from toolbox.tools import require
from vmtest import cpio, kernels, plan, results, runner

#: every probe refused / killed / allowed (the guest's raw probe outcomes)
EPERM = {"exec_denied": "eperm", "exec_allowed": "exit:0", "file_write": "eperm", "file_unchanged": True,
         "file_read": "ok", "connect_denied": "eperm", "connect_allowed": "ok"}
KILLED = {**EPERM, "exec_denied": "killed", "file_write": "killed", "connect_denied": "killed"}
NOTHING_DENIED = {**EPERM, "exec_denied": "exit:0", "file_write": "ok", "file_unchanged": False,
                  "connect_denied": "ok"}


def vmtest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmtest", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=800, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def deb_dist(tmp_path_factory) -> Path:
    require("qemu-system-x86_64", "mmdebstrap", "dpkg-deb")
    path, _ = build_dist(tmp_path_factory.mktemp("vm-dist"), "1.0.0", "--format", "deb", "--arch", "amd64")
    return path


@pytest.fixture(scope="module")
def two_kernels(deb_dist, tmp_path_factory):
    """One run: debian-12 + debian-13 x (lsm-on, lsm-off), two VMs at a time."""
    work = tmp_path_factory.mktemp("vm-work")
    proc = vmtest("debian-12", "debian-13", "--dist", str(deb_dist), "-j", "2", "--work-dir", str(work),
                  env={"ENDURA_EVIDENCE_DIR": str(work / "evidence")})
    return proc, work


def test_a_passing_run_records_signed_e2e_evidence_for_the_deb_it_booted(two_kernels, deb_dist):
    proc, work = two_kernels
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = evidence.load_records("1.0.0", work / "evidence")
    deb = next(deb_dist.glob("*.deb"))
    assert record.kind == "e2e-tests" and record.data["tested"] == [deb.name]
    assert record.data["junit"] == {"tests": 50, "failures": 0, "errors": 0, "skipped": 0}
    assert record.data["targets"] == ["debian-12", "debian-13"]
    published = {deb.name: sha256_file(deb)}
    assert evidence.check_record(record, kind="e2e-tests", version="1.0.0", published=published,
                                 keyring=deb_dist / "signing-key.asc") is None
    assert "names endura-sensor_1.0.0_amd64.deb with sha256" in evidence.check_record(
        record, kind="e2e-tests", version="1.0.0", published={deb.name: "0" * 64}, keyring=deb_dist / "signing-key.asc")


def _results(work: Path, target: str, boot: str) -> dict[str, dict]:
    out = {}
    for line in (work / f"{target}.{boot}.results.jsonl").read_text().replace("\r", "").splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            out[obj.get("name", obj["type"])] = obj
    return out


def test_two_kernels_pass_every_scenario(two_kernels):
    proc, work = two_kernels
    assert proc.returncode == 0, proc.stderr[-6000:]
    junit = Path(proc.stdout.split()[0])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(2 * (14 + 11)), "0", "0")
    names = {tc.get("name") for tc in suite.iter("testcase")}
    assert {"check", "lsm/exec", "lsm/file", "lsm/connect", "lsm/effects", "fentry/file", "fentry/effects",
            "tracepoint/connect", "audit/file", "stopped/connect"} <= names
    summary = json.loads((work / "summary.json").read_text())
    assert {(s["target"], s["boot"], s["status"]) for s in summary} == {
        (t, b, "pass") for t in ("debian-12", "debian-13") for b in ("lsm-on", "lsm-off")}
    kernels_seen = {s["target"]: s["kernel"] for s in summary}
    assert kernels_seen["debian-12"].startswith("6.1.") and kernels_seen["debian-13"].startswith("6.12.")
    assert "target     kernel" in proc.stderr  # the summary table
    assert "lsm/file" in proc.stderr and "fentry/connect" in proc.stderr


def _events(obs: dict) -> dict[str, list]:
    """event type -> [(rule, action)] of one scenario's events from the exec, file and connect probes (the
    effect probes' events, which say how or which op, are checked by _effects_refused)."""
    out: dict[str, list] = {}
    for e in obs["events"]:
        if e["type"] not in ("stopped", "file_op_denied") and e.get("how") not in ("mmap", "sendmsg"):
            out.setdefault(e["type"], []).append((e.get("rule"), e.get("action")))
    return out


def _effects_refused(obs: dict, tier: str) -> None:
    """Every effect probe refused with EPERM and its event (op / how, rule, blocked by this tier); the protected
    file, the protected directory's listing and the prepared file as they were."""
    effects = obs["effects"]
    probes = (*results.EFFECT_EVENTS, *results.EFFECT_OUTCOME_ONLY)
    assert {p: effects[p] for p in probes} == {p: "eperm" for p in probes}
    assert (effects["protected_unchanged"], effects["protdir_listing"], effects["prepared_exists"]) == (
        True, results.PROTDIR_LISTING, True)
    assert (effects["sendto_allowed"], effects["ldso_allowed"]) == ("ok", "exit:0")
    seen = {(e["type"], e.get("op") or e.get("how"), e.get("rule"), e.get("tier"), tuple(e.get("action", [])))
            for e in obs["events"]}
    for event_type, _, value, rule in results.EFFECT_EVENTS.values():
        assert (event_type, value, rule, tier, ("blocked",)) in seen, (event_type, value, rule)


def _denied_events(action: str) -> dict[str, list]:
    return {"exec_denied": [("vmtest-exec", [action])], "file_open_denied": [("vmtest-file", [action])],
            "connect_denied": [("vmtest-connect", [action])]}


@pytest.mark.parametrize("target", ["debian-12", "debian-13"])
def test_lsm_on_denies_with_eperm(two_kernels, target):
    _, work = two_kernels
    r = _results(work, target, "lsm-on")
    assert r["check"]["exit_code"] == 0 and r["check"]["report"]["tier"] == "lsm"
    assert "bpf" in r["check"]["report"]["lsm_list"]
    assert r["check"]["canary"] is True
    assert {t["tier"]: t["canary"] for t in r["check"]["report"]["tiers"]} == {
        "lsm": "blocked", "fentry": "blocked", "tracepoint": "killed"}
    # the lsm and fentry objects on this kernel: every program loads, within the verifier budget
    assert not results.verifier_problems(r["check"]["verifier_stats"]), r["check"]["verifier_stats"]
    assert set(r["check"]["verifier_stats"]) == {"sensor_lsm.bpf.o", "sensor_fentry.bpf.o"}
    assert r["lsm"]["started"]["tier"] == "lsm"
    assert r["lsm"]["policy_dir"] == "/etc/endura/vmtest-policies/lsm"
    # exec, open for write and connect refused with EPERM; the file unchanged; read and the other port work
    assert r["lsm"]["probes"] == EPERM
    assert _events(r["lsm"]) == _denied_events("blocked")
    _effects_refused(r["lsm"], "lsm")
    assert r["tracepoint"]["started"]["tier"] == "tracepoint" and r["tracepoint"]["probes"] == KILLED
    assert _events(r["tracepoint"]) == _denied_events("killed")
    assert r["audit"]["probes"] == NOTHING_DENIED
    assert _events(r["audit"]) == _denied_events("audited")
    assert r["stopped"]["probes"] == NOTHING_DENIED
    assert r["hello"]["kernel"] in r["check"]["report"]["kernel"]
    connect = next(e for e in r["lsm"]["events"] if e["type"] == "connect_denied")
    assert (connect["addr"], connect["port"]) == ("127.0.0.1", results.DENIED_PORT)


@pytest.mark.parametrize("target", ["debian-12", "debian-13"])
def test_lsm_off_falls_back_to_fentry_and_still_refuses(two_kernels, target):
    _, work = two_kernels
    r = _results(work, target, "lsm-off")
    check = r["check"]
    assert check["exit_code"] == 10 and check["report"]["tier"] == "fentry"
    assert "bpf" not in check["report"]["lsm_list"]
    lsm_tier = next(t for t in check["report"]["tiers"] if t["tier"] == "lsm")
    assert not lsm_tier["usable"] and "lsm=" in lsm_tier["fix"]
    assert r["check"]["canary"] is False  # lsm-off runs check --no-canary (the lsm-on boot ran the canaries)
    assert r["fentry"]["started"]["tier"] == "fentry"
    # fmod_ret on security_*() without BPF LSM: each refused with EPERM (terminate_process = false), as on lsm
    assert r["fentry"]["probes"] == EPERM
    assert _events(r["fentry"]) == _denied_events("blocked")
    _effects_refused(r["fentry"], "fentry")
    assert r["tracepoint"]["started"]["tier"] == "tracepoint" and r["tracepoint"]["probes"] == KILLED
    assert _events(r["tracepoint"]) == _denied_events("killed")
    assert r["stopped"]["probes"] == NOTHING_DENIED


def test_boot_to_result_time_is_reported(two_kernels):
    _, work = two_kernels
    for s in json.loads((work / "summary.json").read_text()):
        # lsm-on on 6.12 under TCG: 32 s before the effect hooks, 73 s after on a loaded 2-core host (the
        # check's three tiers and every sensor start load and attach ~20 programs per blocking tier)
        assert 0 < s["boot_to_result_seconds"] < 150, s


# ---------------------------------------------------------------- bad input

def _one_error(proc: subprocess.CompletedProcess) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]


def test_unknown_target_names_close_matches(tmp_path):
    proc = vmtest("debian-21", "--work-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "unknown target 'debian-21'" in _one_error(proc)


def test_unobtainable_kernel_is_reported_not_available_here(tmp_path, deb_dist):
    proc = vmtest("rhel-9", "--dist", str(deb_dist), "--work-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rhel-9: not available here: kernel kernel-core" in proc.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("skipped") == "2" and suite.get("failures") == "0"
    assert not list(tmp_path.glob("*.console.log"))  # nothing booted


def test_missing_package_says_how_to_build_it(tmp_path):
    proc = vmtest("debian-12", "--dist", str(tmp_path / "empty"), "--work-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "nox -s package -- --format deb --arch amd64" in _one_error(proc)


def test_dry_run_boots_nothing(tmp_path, deb_dist):
    proc = vmtest("debian-12", "--dist", str(deb_dist), "--work-dir", str(tmp_path), "--dry-run", "--accel", "tcg")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "qemu-system-x86_64 -accel tcg -cpu max,-cx16" in proc.stderr and "(dry run)" in proc.stderr
    assert not list(tmp_path.glob("*.console.log"))


def test_corrupt_cached_kernel_is_detected_and_replaced(two_kernels):
    record_path = kernels.cache_root() / "kernels" / "debian-12-amd64.json"
    vmlinuz = Path(json.loads(record_path.read_text())["vmlinuz"])
    original = vmlinuz.read_bytes()
    try:
        vmlinuz.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(Exception, match="is corrupt"):
            kernels.verify_cached(kernels._load_record(record_path))
        target = load_catalog().target("debian-12")
        image = kernels.fetch("debian-12", target.kernel_package("amd64"), target.kernel_mirror("amd64"),
                              target.kernel.suite, "amd64")
        assert image.vmlinuz.read_bytes() == original  # extracted again from the verified .deb
    finally:
        if vmlinuz.read_bytes() != original:
            vmlinuz.write_bytes(original)


def test_a_guest_that_panics_is_reported_with_the_console(tmp_path, two_kernels):
    """An initramfs without /init: the kernel panics, panic=-1 + reboot=t + -no-reboot end qemu at once."""
    record = json.loads((kernels.cache_root() / "kernels" / "debian-12-amd64.json").read_text())
    empty = tmp_path / "empty.cpio"
    with open(empty, "wb") as fh:
        writer = cpio.Writer(fh)
        writer.directory("dev")
        writer.chardev("dev/console", 5, 1)
        writer.finish()
    spec = plan.VmSpec(Path(record["vmlinuz"]), empty, plan.kernel_cmdline(plan.BOOTS["lsm-on"], True),
                       tmp_path / "c.log", tmp_path / "r.jsonl")
    seconds, problem = runner.boot(spec, timeout=120)
    assert problem.startswith("panic: ") and "Kernel panic" in problem
    assert seconds < 60


def test_a_hanging_guest_is_stopped_at_the_timeout(tmp_path, deb_dist):
    proc = vmtest("debian-12", "--boot", "lsm-on", "--dist", str(deb_dist), "--work-dir", str(tmp_path),
                  "--timeout", "4", "--accel", "tcg")
    assert proc.returncode == 1
    assert "did not finish within 4s" in proc.stderr and "console tail" in proc.stderr
    assert "scenario(s) failed" in _one_error(proc)
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='check']/failure")
    assert failure is not None and "guest console" in failure.text
    assert ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='lsm/file']/failure") is not None
