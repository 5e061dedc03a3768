"""No window in enforcement across restarts, crashes and reloads (tracepoint tier, real kills on this host).

A loop (denied_loop.py) tries a denied operation of every rule type (exec, open for write, connect,
bpf(), init_module()) in forked children as fast as it can, while the sensor is restarted the way the
service does it: SIGTERM with --handoff, `endura-sensor release --unless-restarting` (the unit's
ExecStopPost=) deciding to keep the programs, the service cgroup removed and re-created with the same
name (as systemd does on every restart: a new cgroup id), the next sensor started in it. A child that
is not killed is a window. Controls: the same loop counts windows when the sensor stops without
--handoff, so it can see one.
"""
import json
import os
import subprocess
import sys
import time

from .test_sensor_policy import INTERP, KILLED, REPO, bpf_dir, bpffs, copy_true, events, rule, run, service_cgroup, start  # noqa: F401

LOOP = REPO / "vmtest" / "denied_loop.py"  # also copied into the upgrade VM
DENIED_PORT = 40471
CONTENT = b"protected: the original content\n"


def _policy(denied, protected):
    return (rule(name="exec", type="exec", path=str(denied), action="kill")
            + rule(name="file", type="file", path=str(protected), action="kill")
            + rule(name="net", type="connect", address="127.0.0.1", port=DENIED_PORT, action="kill")
            + rule(name="bpf", type="bpf", action="kill")
            + rule(name="modules", type="module_load", action="kill"))


class Loop:
    def __init__(self, tmp_path, denied, protected):
        self.stop_file = tmp_path / "loop.stop"
        self.proc = subprocess.Popen([sys.executable, str(LOOP), str(self.stop_file), str(denied), str(protected),
                                      str(DENIED_PORT)], stdout=subprocess.PIPE, text=True)

    def finish(self):
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out)


def _release(sensor, pins, *extra, **env):
    return subprocess.run([sys.executable, "-m", "endura_sensor", "release", "--config", str(sensor.dir / "sensor.conf"),
                           "--pin-dir", str(pins), "--log-dir", str(sensor.log_dir), *extra],
                          env={**sensor.env, **env}, capture_output=True, text=True, timeout=60)


def _recreate(cgroup):
    """What systemd does between the stop and the start of a restart: a new cgroup of the same name."""
    for _ in range(100):
        try:
            cgroup.rmdir()
            break
        except OSError:
            time.sleep(0.05)
    cgroup.mkdir()


def _setup(tmp_path):
    denied = copy_true(tmp_path / "bin" / "denied")
    protected = tmp_path / "protected"
    protected.write_bytes(CONTENT)
    return denied, protected


def test_restarts_crashes_and_reloads_open_no_window(start, tmp_path, bpffs, service_cgroup):
    denied, protected = _setup(tmp_path)
    pins = bpffs / "endura"
    policy = _policy(denied, protected)
    sensor = start(policy, pin_dir=pins, cgroup=service_cgroup, extra=("--handoff",))
    old_id = os.stat(service_cgroup).st_ino
    loop = Loop(tmp_path, denied, protected)
    time.sleep(0.5)
    try:
        for _ in range(5):  # systemctl restart: SIGTERM, ExecStopPost, a new cgroup, start
            records = sensor.stop()
            assert records[-1]["handoff"] is True and records[-1]["still_enforcing"]
            decided = _release(sensor, pins, "--unless-restarting", RC_CMD="restart")
            assert decided.returncode == 0 and "the service is restarting" in decided.stderr
            _recreate(service_cgroup)
            sensor = start(policy, pin_dir=pins, cgroup=service_cgroup, extra=("--handoff",))
            assert sensor.started["replaced_pins"], "the successor took over the pinned programs"
        assert os.stat(service_cgroup).st_ino != old_id  # the successor ran in a new cgroup (exempt by name)
        sensor.proc.kill()  # a crash: Restart=on-failure starts the next one in the same cgroup
        sensor.proc.wait()
        decided = _release(sensor, pins, "--unless-restarting", SERVICE_RESULT="signal")
        assert "ended with 'signal'" in decided.stderr
        sensor = start(policy, pin_dir=pins, cgroup=service_cgroup, extra=("--handoff",))
        sensor.write("60-more.toml", rule(name="more", type="exec", path=str(tmp_path / "absent")))  # a reload
        sensor.wait_for(lambda r: r["type"] == "policy_loaded")
        sensor.proc.send_signal(1)  # SIGHUP: a reload of the same policy
        time.sleep(1.0)
    finally:
        result = loop.finish()
        print("denied loop:", json.dumps(result))
    ops = result["ops"]
    assert all(o["attempts"] >= 10 for o in ops.values()), ops
    assert {name: o["windows"] for name, o in ops.items()} == {name: 0 for name in ops}, result
    assert protected.read_bytes() == CONTENT
    # a real stop: ExecStopPost's release detaches everything
    records = sensor.stop()
    decided = _release(sensor, pins, "--unless-restarting", SERVICE_RESULT="success")
    assert "the service was stopped: detached" in decided.stderr, decided.stderr
    assert list(pins.iterdir()) == []
    assert run(denied) == 0
    released = [json.loads(line) for line in (sensor.log_dir / "events.log").read_text().splitlines()][-1]
    assert released["type"] == "released" and released["reason"] == "the service was stopped"


def test_control_without_handoff_the_same_loop_sees_the_window(start, tmp_path, bpffs, service_cgroup):
    denied, protected = _setup(tmp_path)
    pins = bpffs / "endura"
    policy = _policy(denied, protected)
    sensor = start(policy, pin_dir=pins, cgroup=service_cgroup)
    loop = Loop(tmp_path, denied, protected)
    time.sleep(0.5)
    try:
        for _ in range(2):
            sensor.stop()  # no --handoff, fail_closed = false: the programs are detached
            time.sleep(0.3)  # the time a restart takes to load its programs
            sensor = start(policy, pin_dir=pins, cgroup=service_cgroup)
    finally:
        result = loop.finish()
        print("denied loop:", json.dumps(result))
        sensor.stop()
    assert sum(o["windows"] for o in result["ops"].values()) > 0, result


def test_a_takeover_outside_the_service_cgroup_opens_no_window_without_a_bpf_rule(start, tmp_path, bpffs):
    """SIGKILL + start by hand (not in a cgroup of its own) with a connect rule: 2,214 of 23,264 denied
    executions ran before (the new sensor detached the old programs whenever one could hold a bpf rule)."""
    denied, protected = _setup(tmp_path)
    pins = bpffs / "endura"
    policy = (rule(name="exec", type="exec", path=str(denied), action="kill")
              + rule(name="net", type="connect", address="127.0.0.1", port=DENIED_PORT, action="kill"))
    sensor = start(policy, pin_dir=pins)
    assert sorted(p.name.rsplit("-", 1)[0] for p in pins.iterdir()) == sorted([
        "endura_config", f"endura_drops_v{events.ABI_VERSION}", f"endura_ring_v{events.ABI_VERSION}", "endura_tp_exec",
        "endura_tp_sys_enter", *INTERP])  # no bpf guard: no bpf rule enforced
    stop_file = tmp_path / "loop.stop"
    loop = subprocess.Popen([sys.executable, str(LOOP), str(stop_file), str(denied), str(protected), str(DENIED_PORT)],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    try:
        for _ in range(3):
            sensor.proc.kill()
            sensor.proc.wait()
            sensor = start(policy, pin_dir=pins)
            assert len(sensor.started["replaced_pins"]) == 5 + len(INTERP)
    finally:
        stop_file.touch()
        result = json.loads(loop.communicate(timeout=60)[0])
        sensor.stop()
    assert result["ops"]["exec"]["windows"] == 0 and result["ops"]["connect"]["windows"] == 0, result
    assert result["ops"]["exec"]["attempts"] >= 10
    assert "removed the programs an earlier sensor left pinned" not in sensor.stderr


def test_release_keeps_the_programs_after_a_crash_or_with_fail_closed_and_detaches_after_a_stop(
        start, tmp_path, bpffs):
    denied = copy_true(tmp_path / "denied")
    pins = bpffs / "endura"
    sensor = start(rule(type="exec", path=str(denied)), pin_dir=pins, extra=("--handoff",))
    sensor.stop()
    assert run(denied) == KILLED  # handed off: still enforced
    kept = _release(sensor, pins, "--unless-restarting", SERVICE_RESULT="core-dump")
    assert kept.returncode == 0 and "ended with 'core-dump'" in kept.stderr and run(denied) == KILLED
    (sensor.dir / "sensor.conf").write_text("fail_closed = true\n")
    kept = _release(sensor, pins, "--unless-restarting", SERVICE_RESULT="success")
    assert "fail_closed = true" in kept.stderr and run(denied) == KILLED
    (sensor.dir / "sensor.conf").write_text("")
    released = _release(sensor, pins, "--unless-restarting", SERVICE_RESULT="success")
    assert f"the service was stopped: detached {4 + len(INTERP)} pinned object(s)" in released.stderr, released.stderr
    assert run(denied) == 0
    logged = [json.loads(line)["type"] for line in (sensor.log_dir / "events.log").read_text().splitlines()]
    assert logged[-3:] == ["handed_off", "handed_off", "released"]


def test_what_happens_while_no_sensor_runs_is_reported_by_the_next_one(start, tmp_path, bpffs):
    """The events the pinned programs write between a handoff and the takeover reach the successor's log,
    with the predecessor's rule names, and nothing else is counted as lost."""
    denied = copy_true(tmp_path / "denied")
    pins = bpffs / "endura"
    policy = rule(name="no-denied", type="exec", path=str(denied), action="kill")
    first = start(policy, pin_dir=pins, extra=("--handoff",))
    first.stop()
    assert [run(denied) for _ in range(7)] == [KILLED] * 7  # killed by the orphaned programs: nobody logs it yet
    second = start(policy, pin_dir=pins, extra=("--handoff",))
    handed = second.wait_for(lambda r: r["type"] == "events_handed_over")
    assert handed == {"type": "events_handed_over", "from_pid": first.proc.pid, "events": 7,
                      "dropped_while_no_sensor_read": 0}
    records = second.stop()
    from_first = [r for r in records if r.get("from_predecessor") == first.proc.pid]
    assert len(from_first) == 7 and all(r["type"] == "exec_denied" and r["rule"] == "no-denied"
                                        and r["action"] == ["killed"] for r in from_first)
    assert not (second.log_dir / f".rules-{first.proc.pid}.json").exists()
