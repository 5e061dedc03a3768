"""Forwarding for real on this host: a denied exec (tracepoint tier: SIGKILL) reaches a UDP syslog receiver
and an HTTP JSON collector on 127.0.0.1; a dead or slow collector costs counted drops, never enforcement.

Uses the `endura-sensor run` driver of test_sensor_policy.py. Needs root and kernel BTF.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.collector import Collector
from tests.integration.test_sensor_policy import KILLED, TRUE, bpf_dir, copy_true, rule, run, start  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="loading BPF needs root and a kernel with BTF")
RFC5424 = re.compile(r"<(\d+)>1 (\S+) (\S+) endura-sensor (\d+) (\S+) - (.*)", re.S)


@pytest.fixture
def collector():
    servers = []

    def _make(**kwargs):
        servers.append(Collector(**kwargs))
        return servers[-1]

    yield _make
    for server in servers:
        server.close()


@pytest.fixture
def syslog_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def status(sensor):
    proc = subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--json", "--log-dir",
                           str(sensor.log_dir)], env=sensor.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_denied_exec_reaches_syslog_and_the_collector(start, tmp_path, collector, syslog_receiver):
    server = collector()
    token = tmp_path / "collector.token"
    token.write_text("t0ken\n")
    token.chmod(0o600)
    denied, allowed = copy_true(tmp_path / "bin" / "denied"), copy_true(tmp_path / "bin" / "allowed")
    sensor = start(rule(name="deny-it", type="exec", path=str(denied), action="kill"),
                   conf=f'syslog = "udp://127.0.0.1:{syslog_receiver.getsockname()[1]}"\n'
                        'syslog_facility = "local3"\n'
                        f'collector_url = "{server.url}"\ncollector_token_file = "{token}"\n'
                        "collector_batch = 10\ncollector_flush_ms = 200\n")
    assert sensor.started["forwarding"] == {"syslog": f"udp://127.0.0.1:{syslog_receiver.getsockname()[1]}",
                                            "collector": server.url}
    assert run(denied) == KILLED and run(allowed) == 0
    event = sensor.wait_for(lambda r: r["type"] == "exec_denied")
    # the collector: the same record as the local log, plus the host, with the bearer token
    forwarded = wait(lambda: [r for r in server.records() if r["type"] == "exec_denied"])
    assert len(forwarded) == 1 and forwarded[0] == dict(event, host=socket.gethostname())
    assert forwarded[0]["rule"] == "deny-it" and forwarded[0]["filename"] == str(denied)
    assert forwarded[0]["action"] == ["killed"]
    assert set(server.auth) == {"Bearer t0ken"}
    assert [r["type"] for r in server.records()][0] == "started"
    # syslog: RFC 5424, local3.warning for a kill, the record as JSON
    messages = []
    while not any(m[4] == "exec_denied" for m in messages):
        messages.append(RFC5424.fullmatch(syslog_receiver.recv(65535).decode()).groups())
    pri, stamp, host, pid, msgid, msg = messages[-1]
    assert int(pri) == 19 * 8 + 4 and int(pid) == sensor.proc.pid and json.loads(msg) == event
    assert messages[0][4] == "started" and int(messages[0][0]) == 19 * 8 + 6
    current = wait(lambda: (lambda s: s if s["forwarding"]["collector"]["sent"] >= 2 else None)(status(sensor)))
    assert current["forward_dropped"] == 0 and current["forwarding"]["syslog"]["sent"] >= 2
    assert current["forwarding"]["collector"]["dropped"] == 0
    records = sensor.stop()
    assert records[-1]["type"] == "stopped" and records[-1]["forward_dropped"] == {"syslog": 0, "collector": 0}
    assert "forward_dropped" not in [r["type"] for r in records]
    wait(lambda: server.records()[-1]["type"] == "stopped", 5)  # flushed at exit
    assert [r["type"] for r in server.records()] == [r["type"] for r in sensor.logged()]


def test_a_dead_collector_costs_counted_drops_not_enforcement(start, tmp_path, collector):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/events"
    probe.close()  # nothing listens: connection refused
    denied = copy_true(tmp_path / "denied")
    sensor = start(rule(name="deny-it", type="exec", path=str(denied), action="kill"),
                   conf=f'collector_url = "{dead_url}"\ncollector_batch = 2\ncollector_flush_ms = 10\n'
                        "forward_queue_max = 3\n")
    kills = 12
    started = time.monotonic()
    assert [run(denied) for _ in range(kills)] == [KILLED] * kills  # enforcement: unaffected
    assert run(TRUE) == 0
    assert time.monotonic() - started < 10
    sensor.wait_for(lambda r: len(sensor.events("exec_denied")) == kills)  # the local log: complete
    # `started` + the events, minus at most what memory holds: 3 queued + a batch of 2 being retried
    held = 3 + 2
    dropped = sensor.wait_for(lambda r: r["type"] == "forward_dropped" and r["total"] >= 1 + kills - held, 5)
    assert dropped["destination"] == "collector" and dropped["target"] == dead_url
    assert dropped["by_reason"] == {"queue full": dropped["total"]} and "Connection refused" in dropped["last_error"]
    current = status(sensor)
    assert current["forward_dropped"] >= dropped["total"] and current["forwarding"]["collector"]["sent"] == 0
    assert current["forwarding"]["collector"]["dropped"] >= 1 + kills - held
    text = subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--log-dir", str(sensor.log_dir)],
                          env=sensor.env, capture_output=True, text=True, timeout=30).stdout
    assert f"forwarding:  collector {dead_url}: 0 sent" in text and "Connection refused" in text
    records = sensor.stop()
    stopped = records[-1]
    assert stopped["type"] == "stopped" and stopped["forward_dropped"]["collector"] >= kills
    # every record other than the drop reports themselves was counted as dropped before `stopped`
    counted = [r for r in records[:-1] if r["type"] != "forward_dropped"]
    assert stopped["forward_dropped"]["collector"] == len(counted)
    assert "record(s) not forwarded to collector" in sensor.stderr
    logged = [r["type"] for r in sensor.logged()]
    assert "forward_dropped" in logged and logged[-1] == "stopped"


def test_a_slow_collector_never_delays_the_local_log(start, tmp_path, collector):
    server = collector(delay=3.0)
    denied = copy_true(tmp_path / "denied")
    sensor = start(rule(type="exec", path=str(denied)),
                   conf=f'collector_url = "{server.url}"\ncollector_batch = 1\ncollector_flush_ms = 10\n'
                        "collector_timeout_ms = 1000\nforward_queue_max = 2\n")
    for i in range(5):
        before = time.monotonic()
        assert run(denied) == KILLED
        sensor.wait_for(lambda r, n=i: len(sensor.events("exec_denied")) == n + 1, 5)
        assert time.monotonic() - before < 1.5  # the event reached stdout/events.log while the collector hangs
    dropped = sensor.wait_for(lambda r: r["type"] == "forward_dropped", 5)
    assert dropped["total"] >= 1
    sensor.stop()
