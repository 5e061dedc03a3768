"""Floods of real events, for real on this host (tracepoint tier): flood control keeps the first events
of a flood in full plus exact summaries, every event is counted (in full + summarized + dropped ==
produced), and enforcement goes on meanwhile. Needs root and kernel BTF (like test_sensor_policy.py).
"""
import json
import subprocess
import sys
import time

from tests.integration.test_sensor_policy import KILLED, bpf_dir, copy_true, rule, run, start  # noqa: F401

OPEN_LOOP = "import os, sys\nfor _ in range(int(sys.argv[2])):\n    os.close(os.open(sys.argv[1], os.O_WRONLY))\n"
EXEC_LOOP = ("import os, sys\nkilled = 0\nfor _ in range(int(sys.argv[2])):\n"
             "    pid = os.posix_spawn(sys.argv[1], [sys.argv[1]], {})\n"
             "    killed += os.waitpid(pid, 0)[1] == 9\nprint(killed)\n")


def status_of(sensor):
    proc = subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--json", "--log-dir", str(sensor.log_dir)],
                          env=sensor.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_counted(sensor, produced, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(sensor)
        total = status["events_in_full"] + status["events_summarized"] + status["events_dropped"]
        if total >= produced or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def logged(sensor):
    """Every record still in events.log*, oldest file first."""
    files = sorted(sensor.log_dir.glob("events.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    return [json.loads(line) for p in files for line in p.read_text().splitlines()]


def test_a_flood_of_100000_audited_opens_keeps_its_first_events_exact_counts_and_enforcement(start, tmp_path):
    protected = tmp_path / "protected"
    protected.write_text("")
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start(rule(name="watch", type="file", path=str(protected), action="audit")
                   + rule(name="deny", type="exec", path=str(denied), action="kill"))
    assert sensor.started["flood_control"] == {"burst": 100, "quiet_s": 10, "summary_max_s": 300}
    opens = 100_000
    loop = subprocess.Popen([sys.executable, "-c", OPEN_LOOP, str(protected), str(opens)])
    kills = []
    while loop.poll() is None:  # denied execs during the flood are still killed (the kernel decides)
        kills.append(run(denied))
    assert loop.wait() == 0  # audit rules never kill
    assert len(kills) >= 1 and set(kills) == {KILLED}, kills
    produced = opens + len(kills)
    status = wait_counted(sensor, produced)
    records = sensor.stop()
    stopped = records[-1]
    assert stopped["type"] == "stopped"
    print(f"\n{produced} produced ({len(kills)} killed execs): {stopped['events_in_full']} in full, "
          f"{stopped['events_summarized']} summarized, {stopped['events_dropped']} dropped")
    # every event is counted exactly once: logged in full, summarized, or dropped by the full ring buffer
    assert stopped["events_in_full"] + stopped["events_summarized"] + stopped["events_dropped"] == produced, stopped
    assert status["events_in_full"] + status["events_summarized"] + status["events_dropped"] == produced, status
    opened = [r for r in records if r["type"] == "file_open_denied"]
    summaries = [r for r in records if r["type"] == "events_summarized" and r["rule"] == "watch"]
    # the first events of the flood are in full: the loop's first 100 opens (the ring buffer was empty)
    assert len(opened) == 100 and {r["pid"] for r in opened} == {loop.pid}
    assert all(r["rule"] == "watch" and r["action"] == ["audited"] for r in opened)
    stamps = [r["timestamp_ns"] for r in opened]
    assert stamps == sorted(stamps)
    assert summaries and summaries[-1]["final"] is True and summaries[0]["first_event"] == opened[0]
    assert len(opened) + sum(s["count"] for s in summaries) + stopped["events_dropped"] >= opens
    assert summaries[-1]["burst_in_full"] + summaries[-1]["burst_summarized"] == len(opened) + sum(
        s["count"] for s in summaries)
    # a burst's closing summary may count nothing new (it only carries the burst's totals): no actions then
    assert all(s["event_type"] == "file_open_denied" and set(s["actions"]) == ({"audited"} if s["count"] else set())
               for s in summaries), [(s["event_type"], s["actions"], s["count"]) for s in summaries]
    assert summaries[0]["top_pid"][0]["pid"] == loop.pid and summaries[0]["first_time"] <= summaries[0]["last_time"]
    execs = [r for r in records if r["type"] == "exec_denied"]
    exec_summaries = [r for r in records if r["type"] == "events_summarized" and r["rule"] == "deny"]
    assert len(execs) + sum(s["count"] for s in exec_summaries) <= len(kills)
    # what was logged in full or summarized + what the kernel dropped == what the loops produced
    counted = len(opened) + len(execs) + sum(s["count"] for s in summaries + exec_summaries)
    assert counted + stopped["events_dropped"] == produced
    assert logged(sensor) == records  # events.log has what stdout had (no rotation at the default size)


def test_a_flood_of_killed_execs_is_summarized_with_its_actions(start, tmp_path):
    denied = copy_true(tmp_path / "bin" / "denied")
    sensor = start(rule(name="deny", type="exec", path=str(denied), action="kill"),
                   conf="flood_burst = 20\nflood_quiet_s = 1\n")
    execs = 1500
    proc = subprocess.run([sys.executable, "-c", EXEC_LOOP, str(denied), str(execs)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and int(proc.stdout) == execs  # every one killed
    wait_counted(sensor, execs)
    sensor.wait_for(lambda r: r["type"] == "events_summarized" and r["final"])  # quiet for flood_quiet_s = 1
    assert run(denied) == KILLED  # a new burst: logged in full again
    sensor.wait_for(lambda r: len(sensor.events("exec_denied")) == 21)
    records = sensor.stop()
    full = [r for r in records if r["type"] == "exec_denied"]
    summaries = [r for r in records if r["type"] == "events_summarized"]
    assert len(full) == 21 and all(r["action"] == ["killed"] and r["rule"] == "deny" for r in full)
    assert summaries[-1]["final"] is True and summaries[-1]["burst_in_full"] == 20
    assert records.index(summaries[-1]) < records.index(full[-1])
    assert all(set(s["actions"]) <= {"killed"} for s in summaries)
    assert len(full) - 1 + sum(s["count"] for s in summaries) + records[-1]["events_dropped"] == execs


def test_a_small_log_rotation_keeps_the_start_of_a_flood(start, tmp_path):
    protected = tmp_path / "protected"
    protected.write_text("")
    sensor = start(rule(name="watch", type="file", path=str(protected), action="audit"),
                   conf="log_max_bytes = 4096\nlog_keep = 1\nflood_quiet_s = 1\n")
    assert sensor.started["flood_control"]["burst"] == 2  # lowered to fit the rotation (logged on stderr)
    opens = 20_000
    loop = subprocess.run([sys.executable, "-c", OPEN_LOOP, str(protected), str(opens)], timeout=120)
    assert loop.returncode == 0
    wait_counted(sensor, opens)
    records = sensor.stop()
    first = next(r for r in records if r["type"] == "file_open_denied")
    kept = logged(sensor)
    assert sum(p.stat().st_size for p in sensor.log_dir.glob("events.log*")) <= 2 * 4096
    summaries = [r for r in kept if r["type"] == "events_summarized"]
    # the newest summary of the flood (still in the rotation) repeats the flood's first event
    assert summaries and summaries[-1]["first_event"] == first
    assert summaries[-1]["burst_in_full"] + summaries[-1]["burst_summarized"] + records[-1]["events_dropped"] == opens
    assert "flood_burst lowered from 100 to 2" in sensor.stderr
