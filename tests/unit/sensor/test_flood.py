"""Flood control (flood.py) and the daemon's event path (Sensor.on_records) on synthetic ring-buffer records."""
import json
from pathlib import Path

import pytest
from endura_sensor import config, daemon, eventlog, events, flood, policy

FILE, EXEC = events.EVENT_FILE_OPEN_DENIED, events.EVENT_EXEC_DENIED


def admit(control, now, key=(FILE, 1), pid=100, comm=b"cat", uid=0, ts=0, action=events.ACTION_AUDITED):
    return control.admit(key, now, ts, action, pid, uid, comm)


def test_the_first_events_of_a_burst_are_full_the_rest_counted():
    control = flood.FloodControl(burst=3, quiet_s=10, summary_max_s=300)
    decisions = [admit(control, 0.001 * i, ts=i) for i in range(10)]
    assert decisions == [True] * 3 + [False] * 7
    assert (control.in_full, control.summarized, control.floods) == (3, 7, 1)
    # another rule, or another event type, has a budget of its own
    assert admit(control, 0.02, key=(FILE, 2)) and admit(control, 0.02, key=(EXEC, 1))


def test_summaries_come_after_1s_then_at_doubling_intervals_and_only_with_new_events():
    control = flood.FloodControl(burst=1, quiet_s=1000, summary_max_s=8)
    times, written = [], 0
    for tick in range(400):  # 10 events a second for 40 s, summaries checked every 0.1 s as the loop does
        now = tick / 10
        admit(control, now, ts=tick)
        for _, fields in control.due(now):
            times.append(now)
            written += fields["count"]
    assert 1.1 <= times[0] <= 1.2  # the flood began with the second event (t = 0.1)
    gaps = [round(b - a) for a, b in zip(times, times[1:])]
    assert gaps[:4] == [2, 4, 8, 8] == [min(2 ** n, 8) for n in range(1, 5)]  # doubling up to summary_max_s
    left = control.finish()
    assert len(left) == 1 and left[0][1]["final"] is True
    assert written + left[0][1]["count"] + control.in_full == 400 == control.in_full + control.summarized


def test_a_burst_ends_after_quiet_s_with_a_final_summary_and_the_budget_comes_back():
    control = flood.FloodControl(burst=2, quiet_s=5, summary_max_s=300)
    for i in range(6):
        admit(control, 0.1 * i, pid=10 + i % 2, ts=1000 + i)
    assert control.due(0.6) == []  # the first summary is due 1 s after the flood began
    assert control.due(4.0)[0][1]["count"] == 4
    assert control.due(5.0) == []  # nothing new: no record
    (key, final), = control.due(5.6)  # 5 s after the last event: the burst is over
    assert key == (FILE, 1) and final["final"] is True and final["count"] == 0
    assert final["burst_in_full"] == 2 and final["burst_summarized"] == 4
    assert control.bursts == {}
    assert [admit(control, 6.0 + i) for i in range(3)] == [True, True, False]  # a new burst: full again


def test_a_summary_has_times_actions_and_the_top_values():
    control = flood.FloodControl(burst=1, quiet_s=10, summary_max_s=300)
    admit(control, 0, ts=1)
    for i in range(30):
        admit(control, 0.01 * i, pid=1000 + i % 3, comm=b"loop\0junk" if i % 3 else b"sh", uid=i % 2,
              ts=100 + i, action=events.ACTION_KILLED if i < 10 else events.ACTION_AUDITED)
    (_, fields), = control.due(1.5)
    assert fields["count"] == 30 and (fields["first_ns"], fields["last_ns"]) == (100, 129)
    assert fields["actions"] == {events.ACTION_KILLED: 10, events.ACTION_AUDITED: 20}
    assert fields["top_comm"] == [{"comm": "loop", "count": 20}, {"comm": "sh", "count": 10}]
    assert fields["top_pid"] == [{"pid": 1000, "count": 10}, {"pid": 1001, "count": 10}, {"pid": 1002, "count": 10}]
    assert fields["top_uid"] == [{"uid": 0, "count": 15}, {"uid": 1, "count": 15}]
    assert "untracked" not in fields and fields["final"] is False


def test_a_fork_flood_is_bounded_in_memory_and_still_counted():
    control = flood.FloodControl(burst=1, quiet_s=10, summary_max_s=300)
    for pid in range(5001):
        admit(control, 0.0001 * pid, pid=pid)
    (_, fields), = control.due(2)
    assert fields["count"] == 5000 and fields["untracked"] == 5000 - flood.TRACKED
    assert len(fields["top_pid"]) == flood.TOP and sum(p["count"] for p in fields["top_pid"]) == flood.TOP


def test_effective_burst_keeps_a_flood_in_half_of_what_rotation_keeps():
    assert flood.effective_burst(100, 10 * 1024 * 1024, 5) == 100
    assert flood.effective_burst(0, 10 * 1024 * 1024, 5) == 0  # off
    assert flood.effective_burst(100, 16384, 1) == 8
    assert flood.effective_burst(100, 4096, 1) == 2
    assert flood.effective_burst(5, 4096, 100) == 5


# ------------------------------------------------------------------ the daemon's path, with a real event log


def raw(i, type_=FILE, rule_id=1, pid=4000, comm=b"open_loop", action=events.ACTION_AUDITED):
    return events.EVENT.pack(type_, action, events.TIER_TRACEPOINT, rule_id, 10**9 + i, 1, pid, pid, 1, 0, 0, 0,
                             2049, 77, comm, b"protected", b"\0" * 16, 0, 0, 1)


class FakeEnforcer:
    rule_by_id = {1: policy.Rule(type="file", action="audit", source="/etc/endura/policies/a.toml:3", name="watch",
                                 path="/srv/protected")}


@pytest.fixture
def make_sensor(tmp_path):
    def _make(conf="", log_max_bytes=None):
        cfg = config.parse(conf)
        sensor = daemon.Sensor(cfg, policy_dir=tmp_path, bpf_dir=tmp_path, log_dir=tmp_path / "log")
        sensor.events = eventlog.EventLog(sensor.log_dir, cfg.log_max_bytes, cfg.log_keep)
        sensor.flood = sensor.flood_control(cfg)
        sensor.enforcer = FakeEnforcer()
        return sensor

    return _make


def logged(log_dir: Path):
    files = sorted(log_dir.glob("events.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    return [json.loads(line) for p in files for line in p.read_text().splitlines()]


def test_on_records_logs_the_first_events_in_full_and_summarizes_the_rest_exactly(make_sensor, capsys):
    sensor = make_sensor("flood_burst = 5\n")
    produced = 10_000
    for start in range(0, produced, 1000):  # ten polls
        sensor.on_records([raw(i, pid=4000 + i % 3) for i in range(start, start + 1000)])
        sensor.write_summaries(sensor.flood.due(10**6))  # as if the burst was long over
    sensor.on_records([raw(0, type_=EXEC, action=events.ACTION_KILLED)])
    sensor.write_summaries(sensor.flood.finish())
    sensor.flush()
    records = logged(sensor.log_dir)
    full = [r for r in records if r["type"] == "file_open_denied"]
    summaries = [r for r in records if r["type"] == "events_summarized"]
    # each poll was a new burst here (the clock moved past quiet_s between them): 5 in full per poll
    assert len(full) == 50 and [r["timestamp_ns"] for r in full[:5]] == [10**9 + i for i in range(5)]
    assert full[0]["rule"] == "watch" and full[0]["path"] == "/srv/protected" and full[0]["action"] == ["audited"]
    assert len(full) + sum(s["count"] for s in summaries) == produced == sensor.counts["file_open_denied"]
    assert sensor.in_full + sensor.flood.summarized == produced + 1
    s = summaries[0]
    assert s["event_type"] == "file_open_denied" and s["rule"] == "watch" and s["count"] == 995
    assert s["rule_source"] == "/etc/endura/policies/a.toml:3" and s["actions"] == {"audited": 995}
    assert s["first_time"] <= s["last_time"] and s["top_comm"] == [{"comm": "open_loop", "count": 995}]
    assert [r["type"] for r in records][-1] == "exec_denied"  # a different key: not summarized
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == records  # stdout: the same


def test_with_flood_control_off_every_event_is_in_full(make_sensor):
    sensor = make_sensor("flood_burst = 0\n")
    assert sensor.flood is None
    sensor.on_records([raw(i) for i in range(300)])
    sensor.flush()
    assert len(logged(sensor.log_dir)) == 300 == sensor.in_full


def test_to_record_is_what_decode_to_dict_gives_for_every_event_type():
    base = list(events.EVENT.unpack(raw(0)))
    for type_ in (*events.EVENT_TYPES, 99):
        for detail in range(4):
            values = list(base)
            values[0], values[19] = type_, detail
            values[14] = b"b\xc3\xa9ash\0xx"
            values[16], values[18] = (b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1]), 2) if detail % 2 else \
                (bytes.fromhex("20010db8" + "00" * 11 + "01"), 10)
            data = events.EVENT.pack(*values)
            assert events.to_record(events.unpack(data)) == events.decode(data).to_dict()


@pytest.mark.parametrize("log_max_bytes, log_keep", [(10 * 1024 * 1024, 5), (16384, 1), (4096, 1)])
def test_a_long_flood_does_not_rotate_its_own_start_out(make_sensor, log_max_bytes, log_keep, monkeypatch):
    """6 hours of a flood of one rule (4 events per 0.5 s loop iteration, simulated clock): the first
    event is still in the kept log files at the end, with the default and with small logs."""
    clock = [0.0]
    monkeypatch.setattr(daemon.time, "monotonic", lambda: clock[0])
    sensor = make_sensor(f"log_max_bytes = {log_max_bytes}\nlog_keep = {log_keep}\n")
    sensor.on_records([raw(0)])
    produced = 1
    while clock[0] < 6 * 3600:
        clock[0] += 0.5
        sensor.on_records([raw(produced + i, pid=5000 + int(clock[0]) % 50) for i in range(4)])
        produced += 4
        sensor.write_summaries(sensor.flood.due(clock[0]))
    sensor.write_summaries(sensor.flood.finish())
    sensor.flush()
    records = logged(sensor.log_dir)
    events_ = [r for r in records if r["type"] == "file_open_denied"]
    summaries = [r for r in records if r["type"] == "events_summarized"]
    # the very first event of the flood: in full in the log, or (small logs) in the newest summary
    assert summaries[-1]["first_event"]["timestamp_ns"] == 10**9 and summaries[-1]["first_event"]["rule"] == "watch"
    if log_max_bytes * log_keep > 100_000:
        assert events_[0]["timestamp_ns"] == 10**9 and len(events_) == sensor.flood.burst
    assert summaries[-1]["burst_in_full"] + summaries[-1]["burst_summarized"] == produced  # every event counted
    if log_max_bytes * log_keep > 100_000:  # nothing rotated out: the records add up too
        assert len(events_) + sum(s["count"] for s in summaries) == produced
    assert len(summaries) <= 12 + 6 * 3600 / 300 + 1  # 1, 2, 4 ... 256 s, then every 300 s
