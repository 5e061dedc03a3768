"""`endura-sensor check` and `run` for real on this host against the built objects.

Measured on the development machines: LSM and fentry programs fail to load with EPERM, the
tracepoint tier loads, and a denied binary is SIGKILLed by it. Needs root and kernel BTF.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "sensor")]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="loading BPF needs root and a kernel with BTF")


@pytest.fixture(scope="module")
def bpf_dir():
    from endura_sensor import host_arch

    from bpf.build import build

    arch = host_arch()
    return build((arch,))[arch][0].parent


@pytest.fixture
def env(bpf_dir):
    return dict(os.environ, PYTHONPATH=str(REPO / "sensor"), ENDURA_BPF_DIR=str(bpf_dir))


def test_check_json_reports_the_tracepoint_tier(env):
    proc = subprocess.run([sys.executable, "-m", "endura_sensor", "check", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    tiers = {t["tier"]: t for t in report["tiers"]}
    assert list(tiers) == ["lsm", "fentry", "tracepoint"]
    assert tiers["tracepoint"]["result"] == "ok" and tiers["tracepoint"]["usable"] is True
    assert tiers["tracepoint"]["canary"] == "killed"  # proven: a denied exec was SIGKILLed
    assert tiers["lsm"]["usable"] is False, "the LSM tier must not be claimed usable on this host"
    assert tiers["lsm"]["result"] == "EPERM" and tiers["fentry"]["result"] == "EPERM"
    assert tiers["lsm"]["fix"] and tiers["fentry"]["fix"]
    assert report["tier"] == "tracepoint" and report["exit_code"] == 10 and proc.returncode == 10
    assert report["btf"] is True and report["lsm_list"] and report["kernel"] == os.uname().release


def test_check_text_names_the_tier_and_the_fix(env):
    proc = subprocess.run([sys.executable, "-m", "endura_sensor", "check", "--no-canary"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10
    assert "would use tier tracepoint" in proc.stdout and "fix:" in proc.stdout


def _start_sensor(env, config, *deny):
    log_dir, policy_dir = config.parent / "log", config.parent / "no-policies"
    proc = subprocess.Popen([sys.executable, "-m", "endura_sensor", "run", "--config", str(config),
                             "--log-dir", str(log_dir), "--policy-dir", str(policy_dir), "--pin-dir", "",
                             *[a for d in deny for a in ("--deny", str(d))]],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = json.loads(proc.stdout.readline())
    assert started["type"] == "started", proc.stderr.read()
    return proc, started


def _stop(proc):
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_run_kills_a_denied_binary_and_reports_it(env, tmp_path):
    denied, allowed = tmp_path / "denied-true", tmp_path / "allowed-true"
    for path in (denied, allowed):
        shutil.copy(shutil.which("true"), path)
    config = tmp_path / "sensor.conf"
    config.write_text('enforcement = "enforce"\nterminate_process = true\n')
    proc, started = _start_sensor(env, config, denied)
    try:
        assert started["tier"] == "tracepoint" and started["rules"] == [str(denied)]
        assert subprocess.run([str(denied)], timeout=10).returncode == -9
        assert subprocess.run([str(allowed)], timeout=10).returncode == 0
        time.sleep(0.5)
    finally:
        records = _stop(proc)
    (event,) = [r for r in records if r["type"] == "exec_denied"]
    assert event["action"] == ["killed"] and event["tier"] == "tracepoint" and event["rule_id"] == 1
    assert event["filename"] == str(denied) and event["ino"] == os.stat(denied).st_ino
    assert event["uid"] == 0 and event["kill_result"] == 0
    assert not [r for r in records if r["type"] == "events_dropped"]


def test_audit_mode_never_kills_but_reports(env, tmp_path):
    denied = tmp_path / "denied-true"
    shutil.copy(shutil.which("true"), denied)
    config = tmp_path / "sensor.conf"
    config.write_text('enforcement = "audit"\nterminate_process = true\n')
    proc, _ = _start_sensor(env, config, denied)
    try:
        assert subprocess.run([str(denied)], timeout=10).returncode == 0
        time.sleep(0.5)
    finally:
        records = _stop(proc)
    (event,) = [r for r in records if r["type"] == "exec_denied"]
    assert event["action"] == ["audited"]
