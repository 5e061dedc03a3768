"""Forwarding to syslog and to an HTTP JSON collector (forward.py), against real sockets on 127.0.0.1."""
import json
import re
import socket
import time

import pytest
from endura_sensor import cli, config, daemon, forward

from tests.collector import Collector

RFC5424 = re.compile(r"<(\d+)>1 (\S+) (\S+) endura-sensor (\d+) (\S+) - (.*)")


# ------------------------------------------------------------------ configuration

def test_forwarding_is_off_by_default():
    cfg = config.parse("", "c")
    assert (cfg.syslog, cfg.collector_url, cfg.collector_token_file) == ("off", "", "")
    assert (cfg.collector_batch, cfg.collector_flush_ms, cfg.collector_timeout_ms, cfg.forward_queue_max) == (
        100, 1000, 5000, 10000)
    assert not forward.Forwarders.from_config(cfg)


def test_forwarding_settings_parse():
    cfg = config.parse('syslog = "udp://[2001:db8::1]:1514"\nsyslog_facility = "local3"\n'
                       'collector_url = "https://siem.example.com:8443/ingest?src=endura"\n'
                       'collector_token_file = "/etc/endura/collector.token"\ncollector_batch = 500\n'
                       'collector_flush_ms = 250\ncollector_timeout_ms = 2000\nforward_queue_max = 50_000\n', "c")
    assert cfg.syslog == "udp://[2001:db8::1]:1514" and cfg.syslog_facility == "local3"
    assert forward.parse_syslog_target(cfg.syslog) == ("udp", "2001:db8::1", 1514)
    assert forward.parse_collector_url(cfg.collector_url) == ("https", "siem.example.com", 8443, "/ingest?src=endura")
    assert (cfg.collector_batch, cfg.collector_flush_ms, cfg.collector_timeout_ms, cfg.forward_queue_max) == (
        500, 250, 2000, 50000)
    assert forward.parse_syslog_target("udp://logs.example.com") == ("udp", "logs.example.com", 514)
    assert forward.parse_syslog_target("local") == ("local", "", 0)
    assert forward.parse_collector_url("http://127.0.0.1:8080") == ("http", "127.0.0.1", 8080, "/")


@pytest.mark.parametrize("line, problem", [
    ('syslog = "on"', "syslog = 'on': expected \"off\", \"local\" or \"udp://host[:port]\""),
    ('syslog = "tcp://h:514"', "syslog = 'tcp://h:514': expected \"off\", \"local\" or \"udp://host[:port]\""),
    ('syslog = "udp://h:0"', "syslog = 'udp://h:0': port must be from 1 to 65535, not '0'"),
    ('syslog = "udp://h:70000"', "port must be from 1 to 65535, not '70000'"),
    ('syslog = "udp://"', "syslog = 'udp://': expected udp://host[:port]"),
    ('syslog = "udp://bad_host"', "invalid host 'bad_host'"),
    ('syslog = "udp://[::zz]"', "invalid IPv6 address '::zz'"),
    ('syslog = "udp://h/x"', "expected udp://host[:port]"),
    ('syslog = true', "syslog must be a string, not True"),
    ('syslog_facility = "local8"', "syslog_facility = 'local8' is not one of 'kern', 'user'"),
    ('collector_url = "ftp://h/x"', "collector_url = 'ftp://h/x': must start with http:// or https:// "
                                    "(\"\" turns it off)"),
    ('collector_url = "127.0.0.1:8080/events"', "must start with http:// or https://"),
    ('collector_url = "http://user:pw@h/x"', "credentials in the URL are not allowed"),
    ('collector_url = "http://h:99999/x"', "port must be from 1 to 65535, not '99999'"),
    ('collector_url = "http:///events"', "invalid host ''"),
    ('collector_url = "http://h/x#frag"', "must not have a #fragment"),
    ('collector_token_file = "token"', "collector_token_file must be an absolute path or \"\", not 'token'"),
    ("collector_batch = 0", "collector_batch must be from 1 to 10000, not 0"),
    ("collector_flush_ms = 5", "collector_flush_ms must be from 10 to 60000, not 5"),
    ("collector_timeout_ms = 100000", "collector_timeout_ms must be from 100 to 60000, not 100000"),
    ("forward_queue_max = 0", "forward_queue_max must be from 1 to 1000000, not 0"),
    ('forward_queue_max = "10"', "forward_queue_max must be an integer, not '10'"),
])
def test_forwarding_settings_are_validated_with_file_and_line(line, problem):
    with pytest.raises(config.ConfigError) as info:
        config.parse(f"# forwarding\n{line}\n", "/etc/endura/sensor.conf")
    (p,) = info.value.problems
    assert p.startswith("/etc/endura/sensor.conf:2: ") and problem in p, p


def test_the_packaged_config_is_valid_and_forwards_nothing():
    from pathlib import Path
    packaged = Path(__file__).resolve().parents[3] / "sensor" / "packaging" / "sensor.conf"
    text = packaged.read_text()
    cfg = config.parse(text, str(packaged))
    assert cfg.syslog == "off" and cfg.collector_url == ""
    for key in ("syslog", "syslog_facility", "collector_url", "collector_token_file", "collector_batch",
                "collector_flush_ms", "collector_timeout_ms", "forward_queue_max"):
        assert f"\n# {key} = " in text, key  # documented as a commented default
    uncommented = "\n".join(line[2:] for line in text.splitlines() if re.match(r"# [a-z_]+ = ", line))
    assert config.parse(uncommented, "defaults") == config.Config(path="defaults")  # the comments are the defaults


# ------------------------------------------------------------------ syslog

def test_severity_follows_what_happened():
    assert forward.severity({"type": "exec_denied", "action": ["killed"]}) == 4
    assert forward.severity({"type": "exec_denied", "action": ["blocked", "killed"]}) == 4
    assert forward.severity({"type": "exec_denied", "action": ["audited"]}) == 5
    assert forward.severity({"type": "events_dropped"}) == 3
    assert forward.severity({"type": "started"}) == 6


def test_rfc5424_over_udp(monkeypatch):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    try:
        dest = forward.SyslogDestination(f"udp://127.0.0.1:{receiver.getsockname()[1]}", "local3").start()
        record = {"type": "exec_denied", "action": ["killed"], "filename": "/usr/bin/nc", "pid": 7}
        dest.submit(record)
        dest.submit({"type": "started", "tier": "tracepoint"})
        first, second = receiver.recv(65535).decode(), receiver.recv(65535).decode()
        assert dest.close() == 0
    finally:
        receiver.close()
    pri, stamp, host, pid, msgid, msg = RFC5424.fullmatch(first).groups()
    assert int(pri) == 19 * 8 + 4 and msgid == "exec_denied" and json.loads(msg) == record
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp) and host and int(pid) > 0
    assert RFC5424.fullmatch(second).group(1) == str(19 * 8 + 6)
    assert dest.stats() == {"target": dest.target, "sent": 2, "dropped": 0, "dropped_by_reason": {}, "queued": 0}


def test_local_socket_gets_the_syslog3_form(tmp_path):
    path = str(tmp_path / "log")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(5)
    try:
        dest = forward.SyslogDestination("local", "auth", local_socket=path).start()
        dest.submit({"type": "exec_denied", "action": ["audited"]})
        message = receiver.recv(65535).decode()
        dest.close()
    finally:
        receiver.close()
    match = re.fullmatch(r"<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d endura-sensor\[(\d+)\]: (.*)", message)
    assert match and int(match.group(1)) == 4 * 8 + 5 and json.loads(match.group(3))["type"] == "exec_denied"


def test_a_missing_local_socket_counts_drops(tmp_path):
    dest = forward.SyslogDestination("local", local_socket=str(tmp_path / "nothing")).start()
    for i in range(3):
        dest.submit({"type": "exec_denied", "i": i})
    dest.submit({"type": "forward_dropped"})  # a report about drops: its own loss is not counted
    deadline = time.monotonic() + 5
    while dest.dropped_total < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    dest.close(0.1)
    stats = dest.stats()
    assert stats["sent"] == 0 and stats["dropped"] == 3 and "nothing" in stats["last_error"]


# ------------------------------------------------------------------ the HTTP collector (tests/collector.py)

@pytest.fixture
def collector():
    servers = []

    def _make(*args, **kwargs):
        servers.append(Collector(*args, **kwargs))
        return servers[-1]

    yield _make
    for server in servers:
        server.close()


def wait(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_batches_by_count_and_by_time_with_a_bearer_token(collector, tmp_path):
    server = collector()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    dest = forward.CollectorDestination(server.url, str(token), batch=3, flush_ms=300).start()
    for i in range(4):
        dest.submit({"type": "exec_denied", "i": i})
    wait(lambda: len(server.batches) == 1)
    assert [r["i"] for r in server.batches[0]] == [0, 1, 2]  # full batch: sent at once
    started = time.monotonic()
    wait(lambda: len(server.batches) == 2)
    assert 0.1 < time.monotonic() - started < 2  # the 4th waited for the flush interval
    assert [r["i"] for r in server.batches[1]] == [3]
    assert server.headers[0]["Authorization"] == "Bearer s3cret"
    assert server.headers[0]["Content-Type"] == "application/json"
    assert all(r["host"] == socket.gethostname() for r in server.records())
    token.write_text("rotated")
    dest.submit({"type": "stopped"})
    wait(lambda: len(server.batches) == 3)
    assert server.headers[2]["Authorization"] == "Bearer rotated"  # re-read when the file changes
    assert dest.close() == 0
    assert dest.stats()["sent"] == 5 and dest.stats()["batches"] == 3 and dest.dropped_total == 0


def test_server_errors_are_retried_and_client_errors_drop_the_batch(collector):
    server = collector(statuses=[503, 500])
    dest = forward.CollectorDestination(server.url, batch=10, flush_ms=10).start()
    dest.submit({"type": "a"})
    wait(lambda: server.batches)  # after two failures and backoff
    assert server.records()[0]["type"] == "a" and dest.dropped_total == 0
    assert "HTTP 500" in dest.stats()["last_error"]
    server.statuses = [401]
    dest.submit({"type": "b"})
    wait(lambda: dest.dropped_total == 1)
    assert dest.stats()["dropped_by_reason"] == {"rejected by the collector": 1}
    dest.submit({"type": "c"})
    wait(lambda: len(server.batches) == 2)
    dest.close()
    assert [r["type"] for r in server.records()] == ["a", "c"]


def test_a_dead_collector_never_blocks_and_every_record_is_sent_or_counted():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: connection refused
    dest = forward.CollectorDestination(f"http://127.0.0.1:{port}/events", batch=2, flush_ms=10,
                                        queue_max=5).start()
    started = time.monotonic()
    for i in range(100):
        dest.submit({"type": "exec_denied", "i": i})
    assert time.monotonic() - started < 0.5  # submit only appends to the queue
    wait(lambda: dest.stats()["dropped_by_reason"].get("queue full", 0) >= 90)
    left = dest.close(0.2)
    stats = dest.stats()
    assert stats["sent"] == 0 and stats["dropped"] == 100 and left <= 5
    assert set(stats["dropped_by_reason"]) <= {"queue full", "not sent at exit"}
    assert "Connection refused" in stats["last_error"]


def test_a_slow_collector_times_out_and_the_queue_bounds_memory(collector):
    server = collector(delay=1.0)
    dest = forward.CollectorDestination(server.url, batch=1, flush_ms=10, timeout_ms=200, queue_max=3).start()
    started = time.monotonic()
    for i in range(20):
        dest.submit({"type": "exec_denied", "i": i})
    assert time.monotonic() - started < 0.5
    wait(lambda: "timed out" in dest.stats().get("last_error", ""))
    dest.close(0.1)
    assert dest.stats()["dropped"] + dest.stats()["sent"] == 20


# ------------------------------------------------------------------ the sensor and the CLI

def test_the_sensor_reports_forward_drops_in_a_record_and_the_status(tmp_path, capsys):
    sensor = daemon.Sensor(config.Config(), policy_dir=tmp_path, bpf_dir=tmp_path, log_dir=tmp_path)
    dest = forward.SyslogDestination("local", local_socket=str(tmp_path / "none"), queue_max=2).start()
    sensor.forwarders = forward.Forwarders([dest])
    for i in range(4):
        sensor.emit({"type": "exec_denied", "i": i})
    wait(lambda: dest.dropped_total == 4)
    capsys.readouterr()
    sensor.check_forward_drops()
    out, err = capsys.readouterr()
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["type"] == "forward_dropped" and record["destination"] == "syslog"
    assert record["total"] == record["new"] == 4 and sum(record["by_reason"].values()) == 4
    assert "4 record(s) not forwarded to syslog local (4 in total)" in err
    sensor.check_forward_drops()
    assert capsys.readouterr().out == ""  # reported once
    dest.close(0.1)


def test_status_text_shows_forwarding(tmp_path, capsys, monkeypatch):
    status = {"pid": 1, "started": "t", "tier": "tracepoint", "programs": ["p"], "enforcement": "enforce",
              "terminate_process": True, "rules": 1, "policy_files": ["a.toml"], "policy_dir": "/d",
              "last_reload": {}, "events": {}, "events_dropped": 0, "forward_dropped": 3,
              "forwarding": {"collector": {"target": "http://c/e", "sent": 5, "dropped": 3, "queued": 0, "batches": 2,
                                           "dropped_by_reason": {"queue full": 3}, "last_error": "refused"}}}
    monkeypatch.setattr(daemon, "read_status", lambda _: status)
    (tmp_path / "none.conf").write_text("")
    assert cli.main(["status", "--config", str(tmp_path / "none.conf"), "--log-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("forwarding:  collector http://c/e: 5 sent, 3 dropped (forward_dropped), 0 queued [3 queue full]; "
            "last error: refused") in out
    status["forwarding"] = {}
    assert cli.main(["status", "--config", str(tmp_path / "none.conf"), "--log-dir", str(tmp_path)]) == 0
    assert "forwarding:  off" in capsys.readouterr().out


def test_check_config_shows_forwarding_and_warns_about_the_token_file(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    token = tmp_path / "token"
    conf.write_text(f'policy_dir = "{tmp_path}/none"\nsyslog = "udp://127.0.0.1"\n'
                    f'collector_url = "http://127.0.0.1:8080/events"\ncollector_token_file = "{token}"\n')
    assert cli.main(["check-config", "--config", str(conf)]) == 0  # valid: a missing token is a warning
    out, err = capsys.readouterr()
    assert "forwarding to syslog udp://127.0.0.1 (daemon) and collector http://127.0.0.1:8080/events" in out
    assert f"warning: collector_token_file {token}: cannot read" in err
    token.write_text("t")
    token.chmod(0o644)
    assert cli.main(["check-config", "--config", str(conf)]) == 0
    assert "chmod 600" in capsys.readouterr().err
    token.chmod(0o600)
    assert cli.main(["check-config", "--config", str(conf)]) == 0
    assert "warning: collector" not in capsys.readouterr().err
    conf.write_text('collector_url = "http://x:1:2/"\n')
    assert cli.main(["check-config", "--config", str(conf)]) == 1
    assert f"{conf}:1: collector_url = 'http://x:1:2/': port must be from 1 to 65535" in capsys.readouterr().err
