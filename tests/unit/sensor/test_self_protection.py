"""Self-protection pieces that need no kernel: status health, the service manager's pid."""
import os
import time

from endura_sensor import cli, enforce


def _status(**extra):
    return {"pid": os.getpid(), "heartbeat": time.time(), "heartbeat_interval_s": 1.0, **extra}


def test_a_healthy_sensor_has_no_problems():
    assert cli.health(_status(), time.time()) == []


def test_tampering_is_reported_with_what_was_restored():
    tampered = {"count": 2, "last": "2026-12-02T12:00:00.000000Z", "reason": "periodic",
                "problems": ["pin /sys/fs/bpf/endura/endura_tp_exec-1 was removed or replaced"],
                "restored": ["pinned /sys/fs/bpf/endura/endura_tp_exec-1 again"]}
    (problem,) = cli.health(_status(tampered=tampered), time.time())
    assert problem.startswith("TAMPERED: 2 time(s), last at 2026-12-02T12:00:00.000000Z (periodic): pin ")
    assert problem.endswith("-- restored: pinned /sys/fs/bpf/endura/endura_tp_exec-1 again")


def test_a_stale_heartbeat_means_not_responding():
    (problem,) = cli.health(_status(heartbeat=time.time() - 60), time.time())
    assert problem.startswith("NOT RESPONDING: last heartbeat 60s ago")
    assert cli.health(_status(heartbeat=time.time() - 3), time.time()) == []  # within 5 heartbeats


def test_the_service_manager_is_init_unless_named():
    assert enforce.service_manager_pid({}) == 0
    assert enforce.service_manager_pid({"ENDURA_SERVICE_MANAGER_PID": "4242"}) == 4242
    assert enforce.service_manager_pid({"ENDURA_SERVICE_MANAGER_PID": "-1"}) == 0  # not a pid: init only
