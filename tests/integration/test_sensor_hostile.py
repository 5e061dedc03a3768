"""Hostile or odd policy files and quiet downgrades, against a real running sensor (tracepoint tier: SIGKILL).

What is dropped into the policy directory of a running sensor (a FIFO, a symlink to /dev/zero, a
dangling symlink, a policy file that downgrades enforcement) must never stop it: enforcement goes on,
events are still logged, the problem is reported (stderr, a record, `status`), the last good policy
stays; and a restart on the same directory judges it the same way. Needs root and kernel BTF.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.test_sensor_policy import KILLED, REPO, bpf_dir, copy_true, rule, run, start  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="loading BPF needs root and a kernel with BTF")


def status(sensor):
    proc = subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--config", str(sensor.dir / "sensor.conf"),
                           "--log-dir", str(sensor.log_dir), *(["--json"])], env=sensor.env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def status_text(sensor):
    return subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--config", str(sensor.dir / "sensor.conf"),
                           "--log-dir", str(sensor.log_dir)], env=sensor.env, capture_output=True, text=True,
                          timeout=30).stdout


def wait_status(sensor, predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        current = status(sensor)
        if predicate(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def start_refused(sensor, bpf_dir):  # noqa: F811
    """A second `run` on the same configuration (while the first still enforces): it must refuse to start."""
    proc = subprocess.run(
        [sys.executable, "-m", "endura_sensor", "run", "--config", str(sensor.dir / "sensor.conf"),
         "--policy-dir", str(sensor.policies), "--log-dir", str(sensor.dir / "log2"), "--tier", "tracepoint",
         "--pin-dir", "", "--duration", "5"], env=sensor.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    return proc.stderr


def check_config(sensor):
    return subprocess.run([sys.executable, "-m", "endura_sensor", "check-config", "--config",
                           str(sensor.dir / "sensor.conf"), "--policy-dir", str(sensor.policies)],
                          env=sensor.env, capture_output=True, text=True, timeout=30)


def test_a_fifo_or_a_device_dropped_into_the_policy_dir_is_rejected_and_enforcement_and_events_go_on(start, tmp_path):
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start(rule(name="denied", type="exec", path=str(denied), action="kill"))
    fifo = sensor.policies / "60-fifo.toml"
    os.mkfifo(fifo)
    rejected = sensor.wait_for(lambda r: r["type"] == "policy_rejected")
    assert rejected["problems"] == [f"{fifo}: is a FIFO (named pipe), not a regular file; replace it with a "
                                    "regular file"]
    assert rejected["kept_rules"] == 1
    # the event loop is not blocked: a denied exec is killed and its event arrives and is logged
    assert run(denied) == KILLED
    event = sensor.wait_for(lambda r: r["type"] == "exec_denied", 5)
    assert event["rule"] == "denied"
    current = wait_status(sensor, lambda s: s["events"].get("exec_denied") == 1)
    assert current["last_reload"]["result"] == "rejected" and current["last_reload"]["problems"] == rejected["problems"]
    assert current["rules"] == 1
    assert "is a FIFO (named pipe)" in status_text(sensor) and "the last good policy is kept" in status_text(sensor)
    # a symlink to /dev/zero: rejected too, the sensor does not run out of memory
    zero = sensor.policies / "70-zero.toml"
    zero.symlink_to("/dev/zero")
    second = sensor.wait_for(lambda r: len(sensor.events("policy_rejected")) == 2)
    assert second["problems"][1] == (f"{zero}: is a symlink to /dev/zero, which is a character device, not a "
                                     "regular file; point it at a regular file or replace it with one")
    assert run(denied) == KILLED
    sensor.wait_for(lambda r: len(sensor.events("exec_denied")) == 2, 5)
    # both removed: the policy loads again
    fifo.unlink()
    zero.unlink()
    sensor.wait_for(lambda r: r["type"] == "policy_loaded")
    sensor.stop()
    assert sensor.proc.returncode == 0
    assert "policy rejected: " + str(fifo) in sensor.stderr
    logged = [r["type"] for r in sensor.logged()]
    assert logged.count("policy_rejected") == 2 and logged.count("exec_denied") == 2


def test_a_dangling_symlink_is_rejected_while_running_and_refused_at_start_alike(start, tmp_path, bpf_dir):  # noqa: F811
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start(rule(name="denied", type="exec", path=str(denied), action="kill"))
    link = sensor.policies / "60-managed.toml"
    link.symlink_to(tmp_path / "config-management" / "gone.toml")
    problem = (f"{link}: is a dangling symlink (its target {tmp_path}/config-management/gone.toml does not exist); "
               "remove it or create the target")
    rejected = sensor.wait_for(lambda r: r["type"] == "policy_rejected")
    assert rejected["problems"] == [problem] and rejected["kept_rules"] == 1
    assert run(denied) == KILLED
    assert wait_status(sensor, lambda s: s["last_reload"].get("result") == "rejected")["last_reload"]["problems"] == [
        problem]
    # what a restart would do: check-config and a start refuse with the same line
    proc = check_config(sensor)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [problem]
    stderr = start_refused(sensor, bpf_dir)
    assert problem in stderr.splitlines() and "refusing to start" in stderr
    # a loop instead: noticed too (the entry changed)
    link.unlink()
    link.symlink_to(link.name)
    loop = sensor.wait_for(lambda r: len(sensor.events("policy_rejected")) == 2)
    assert loop["problems"] == [f"{link}: is a symlink loop (too many levels of symbolic links); remove it or point "
                                "it at a regular file"]
    # the target appears (a regular file): followed, loaded
    link.unlink()
    (tmp_path / "config-management").mkdir()
    (tmp_path / "config-management" / "gone.toml").write_text(rule(name="managed", type="connect", port=9))
    link.symlink_to(tmp_path / "config-management" / "gone.toml")
    loaded = sensor.wait_for(lambda r: r["type"] == "policy_loaded")
    assert loaded["rules"] == 2 and loaded["files"][-1] == str(link)
    assert run(denied) == KILLED
    sensor.stop()


def test_a_downgrade_is_loud_at_start_and_at_the_reload_that_introduces_it(start, tmp_path):
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start(rule(name="denied", type="exec", path=str(denied)), conf='enforcement = "enforce"\n')
    assert run(denied) == KILLED  # block on the tracepoint tier: killed (terminate_process = true)
    sensor.write("00-mode.toml", "# dropped in\nterminate_process = false\n")
    record = sensor.wait_for(lambda r: r["type"] == "enforcement_downgraded")
    assert {k: record[k] for k in ("setting", "value", "source", "sensor_conf", "sensor_conf_path", "reason")} == {
        "setting": "terminate_process", "value": False, "source": f"{sensor.policies}/00-mode.toml:2",
        "sensor_conf": True, "sensor_conf_path": str(sensor.dir / "sensor.conf"), "reason": "policy files changed"}
    assert run(denied) == 0  # what the downgrade does on this tier: the block rule only reports
    current = wait_status(sensor, lambda s: s["downgrades"])
    assert [(d["setting"], d["value"], d["source"]) for d in current["downgrades"]] == [
        ("terminate_process", False, f"{sensor.policies}/00-mode.toml:2")]
    assert f"downgraded:  terminate_process = false at {sensor.policies}/00-mode.toml:2" in status_text(sensor)
    # the same policy again (SIGHUP): no new record; another downgrade: one more
    sensor.proc.send_signal(signal.SIGHUP)
    sensor.wait_for(lambda r: r["type"] == "policy_loaded" and r["reason"] == "SIGHUP")
    assert len(sensor.events("enforcement_downgraded")) == 1
    sensor.write("00-mode.toml", 'terminate_process = false\nenforcement = "audit"\n')
    sensor.wait_for(lambda r: len(sensor.events("enforcement_downgraded")) == 3)
    assert [(r["setting"], r["source"].rsplit(":", 1)[1]) for r in sensor.events("enforcement_downgraded")] == [
        ("terminate_process", "2"), ("enforcement", "2"), ("terminate_process", "1")]  # moved to line 1: reported
    # removed: enforcing again, status clean
    (sensor.policies / "00-mode.toml").unlink()
    sensor.wait_for(lambda r: r["type"] == "policy_loaded" and r["enforcement"] == "enforce")
    assert wait_status(sensor, lambda s: not s["downgrades"])["downgrades"] == []
    assert run(denied) == KILLED
    sensor.stop()
    assert f"warning: {sensor.policies}/00-mode.toml:2: terminate_process = false overrides" in sensor.stderr
    assert [r["type"] for r in sensor.logged()].count("enforcement_downgraded") == 3


def test_a_downgrade_present_at_start_is_reported_at_start(start, tmp_path):
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start('enforcement = "audit"\n' + rule(name="denied", type="exec", path=str(denied), action="kill"))
    record = sensor.wait_for(lambda r: r["type"] == "enforcement_downgraded")
    assert (record["setting"], record["value"], record["reason"]) == ("enforcement", "audit", "start")
    assert record["source"] == f"{sensor.policies}/50-test.toml:1"
    assert sensor.started["enforcement"] == "audit"
    assert run(denied) == 0
    sensor.stop()
    assert [r["type"] for r in sensor.logged()][:2] == ["started", "enforcement_downgraded"]


def test_a_forbidden_downgrade_is_rejected_and_enforcement_goes_on(start, tmp_path, bpf_dir):  # noqa: F811
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start(rule(name="denied", type="exec", path=str(denied)), conf="policy_may_downgrade = false\n")
    sensor.write("00-mode.toml", 'enforcement = "audit"\n')
    rejected = sensor.wait_for(lambda r: r["type"] == "policy_rejected")
    conf = sensor.dir / "sensor.conf"
    problem = (f'{sensor.policies}/00-mode.toml:1: enforcement = "audit" would override enforcement = "enforce" of '
               f"{conf}, and policy_may_downgrade = false there forbids it; remove the line (or change enforcement "
               f"in {conf})")
    assert rejected["problems"] == [problem]
    assert run(denied) == KILLED  # still enforcing
    sensor.wait_for(lambda r: r["type"] == "exec_denied", 5)
    assert status(sensor)["enforcement"] == "enforce" and not sensor.events("enforcement_downgraded")
    proc = check_config(sensor)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [problem]
    stderr = start_refused(sensor, bpf_dir)
    assert problem in stderr.splitlines()
    sensor.stop()
