import json
import socket
import time
from pathlib import Path

import pytest
from endura_sensor import config, eventlog
from endura_sensor.errors import SensorError


def test_event_log_appends_json_lines_and_rotates_keeping_n_files(tmp_path):
    log = eventlog.EventLog(tmp_path / "log", max_bytes=4096, keep=2)
    for i in range(200):
        log.write({"type": "exec_denied", "i": i, "pad": "x" * 40})
    log.close()
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert names == ["events.log", "events.log.1", "events.log.2"]
    assert all(p.stat().st_size <= 4096 for p in (tmp_path / "log").iterdir())
    current = [json.loads(line) for line in (tmp_path / "log" / "events.log").read_text().splitlines()]
    assert current[-1]["i"] == 199
    older = [json.loads(line) for line in (tmp_path / "log" / "events.log.1").read_text().splitlines()]
    assert older[-1]["i"] == current[0]["i"] - 1  # nothing lost between files


def test_event_log_continues_an_existing_file(tmp_path):
    (tmp_path / "events.log").write_text('{"type":"old"}\n')
    log = eventlog.EventLog(tmp_path, max_bytes=1 << 20, keep=1)
    log.write({"type": "new"})
    log.close()
    assert [json.loads(x)["type"] for x in (tmp_path / "events.log").read_text().splitlines()] == ["old", "new"]


def test_unwritable_log_dir_says_what_to_do(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SensorError, match="cannot write the event log .* set log_dir in sensor.conf"):
        eventlog.EventLog(tmp_path / "file" / "log")


def test_sd_notify_sends_ready_to_the_notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert eventlog.sd_notify("READY=1") is True
        assert server.recv(100) == b"READY=1"
    finally:
        server.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert eventlog.sd_notify("READY=1") is False


def test_clock_helpers():
    assert eventlog.iso_time(0.5) == "1970-01-01T00:00:00.500000Z"
    since = eventlog.seconds_since_exec()
    assert since is not None and 0 <= since < 3600 * 24 * 365
    assert eventlog.rss_bytes() > 1 << 20
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(eventlog.boot_to_wall_offset() + uptime - time.time()) < 5


@pytest.mark.parametrize("line, problem", [
    ("log_max_bytes = 100", "log_max_bytes must be from 4096 to 2^40, not 100"),
    ("log_keep = 0", "log_keep must be from 1 to 100, not 0"),
    ('log_keep = "5"', "log_keep must be an integer, not '5'"),
])
def test_log_settings_are_validated(line, problem):
    with pytest.raises(config.ConfigError) as info:
        config.parse(line + "\n", "c")
    assert info.value.problems == [f"c:1: {problem}"]


def test_log_settings_parse():
    cfg = config.parse("log_max_bytes = 1_048_576\nlog_keep = 3\n", "c")
    assert (cfg.log_max_bytes, cfg.log_keep) == (1048576, 3)
