"""Benchmark: the sensor's CPU per event during a real flood, and the per-event Python work.

    python3 benchmarks/event_path.py [--opens 100000] [--runs 3] [--micro 20000] [--json] [--sensor DIR]

--sensor DIR measures another checkout's sensor (e.g. `git worktree add /tmp/before <commit>` and
`--sensor /tmp/before/sensor`), with this checkout's BPF objects and C loop.

Flood (needs root, kernel BTF and a C compiler; tracepoint tier): a real sensor with one `audit`
file rule; a C loop opens the protected file for writing --opens times (audit rules never kill). The sensor's
CPU (utime + stime of /proc/<pid>/stat) is read before the loop and after the sensor has handled
every event (`status`: events in full + summarized + dropped == produced). Figures: CPU seconds per
10,000 events the sensor handled (read from the ring buffer; dropped ones cost the sensor nothing),
with flood control off (flood_burst = 0: every event logged in full) and on (the defaults).
The minimum over --runs is reported (the least disturbed by other load on this 2-core machine).

Micro (no root needed): the Python work for one event record, stage by stage, on synthetic records:
a ctypes callback entered from C (libc qsort calling a CFUNCTYPE comparator: the price of one
ring-buffer callback), decoding, the record dict, JSON, the log write, and the whole
`Sensor.on_records` path with flood control off and on. Prints a table; --json prints JSON too.
"""
from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SENSOR = Path(os.environ.get("ENDURA_BENCH_SENSOR", REPO / "sensor"))  # set by --sensor (re-exec)
sys.path[:0] = [str(REPO), str(SENSOR)]

OPEN_LOOP = r"""#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int c, char **v) { int n = atoi(v[2]); for (int i = 0; i < n; i++) { int fd = open(v[1], O_WRONLY);
  if (fd < 0) return 1; close(fd); } return 0; }
"""


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compile_loop(work: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise SystemExit("needs a C compiler: apt-get install gcc")
    (work / "open_loop.c").write_text(OPEN_LOOP)
    subprocess.run([cc, "-O2", "-o", str(work / "open_loop"), str(work / "open_loop.c")], check=True)
    return work / "open_loop"


def read_status(log_dir: Path) -> dict:
    try:
        return json.loads((log_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def handled(status: dict) -> tuple:
    """(in full, summarized, dropped) file_open_denied events so far, from status.json."""
    full = status.get("events_in_full", status.get("events", {}))
    if isinstance(full, dict):  # before flood control: `events` counted every event delivered
        full = full.get("file_open_denied", 0)
    return full, status.get("events_summarized", 0), status.get("events_dropped", 0)


def flood_once(bpf_dir: Path, loop: Path, work: Path, opens: int, conf: str) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=work))
    protected = run_dir / "protected"
    protected.write_text("x")
    (run_dir / "policies").mkdir()
    (run_dir / "policies" / "bench.toml").write_text(
        f'[[rule]]\nname = "bench"\ntype = "file"\npath = "{protected}"\naction = "audit"\n')
    (run_dir / "sensor.conf").write_text(conf)
    log_dir = run_dir / "log"
    env = dict(os.environ, PYTHONPATH=str(SENSOR), ENDURA_BPF_DIR=str(bpf_dir))
    proc = subprocess.Popen([sys.executable, "-m", "endura_sensor", "run", "--config", str(run_dir / "sensor.conf"),
                             "--policy-dir", str(run_dir / "policies"), "--log-dir", str(log_dir),
                             "--tier", "tracepoint", "--pin-dir", ""],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not read_status(log_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not read_status(log_dir):
            raise SystemExit(f"the sensor did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
        time.sleep(0.3)
        cpu0 = proc_cpu_seconds(proc.pid)
        wall0 = time.monotonic()
        subprocess.run([str(loop), str(protected), str(opens)], check=True, timeout=300)
        loop_wall = time.monotonic() - wall0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            full, summarized, dropped = handled(read_status(log_dir))
            if full + summarized + dropped >= opens:
                break
            time.sleep(0.05)
        cpu1 = proc_cpu_seconds(proc.pid)
        wall = time.monotonic() - wall0
        full, summarized, dropped = handled(read_status(log_dir))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    sizes = sum(p.stat().st_size for p in log_dir.glob("events.log*"))
    shutil.rmtree(run_dir, ignore_errors=True)
    read = full + summarized
    return {"produced": opens, "in_full": full, "summarized": summarized, "dropped": dropped,
            "complete": full + summarized + dropped == opens, "loop_s": round(loop_wall, 3),
            "sensor_cpu_s": round(cpu1 - cpu0, 3), "wall_s": round(wall, 3), "log_bytes": sizes,
            "cpu_s_per_10k_read": round((cpu1 - cpu0) * 10000 / read, 4) if read else None}


def flood(opens: int, runs: int) -> dict:
    from endura_sensor import host_arch

    from bpf.build import build

    arch = host_arch()
    bpf_dir = build((arch,))[arch][0].parent
    results = {}
    with tempfile.TemporaryDirectory(prefix="endura-bench-") as tmp:
        work = Path(tmp)
        loop = compile_loop(work)
        from endura_sensor import config as config_mod

        configs = (("flood control off", "flood_burst = 0\n"), ("flood control on (defaults)", ""))
        if "flood_burst" not in config_mod.KEYS:
            configs = (("no flood control (every event in full)", ""),)
        for name, conf in configs:
            tries = [flood_once(bpf_dir, loop, work, opens, conf) for _ in range(runs)]
            results[name] = min((t for t in tries if t["cpu_s_per_10k_read"] is not None),
                                key=lambda t: t["cpu_s_per_10k_read"], default=tries[0])
            results[name]["runs"] = [t["cpu_s_per_10k_read"] for t in tries]
    return results


# ------------------------------------------------------------------ micro-benchmark

def synthetic_records(n: int) -> list:
    from endura_sensor import events

    fmt_values = []
    for i in range(n):
        fmt_values.append(events.EVENT.pack(
            events.EVENT_FILE_OPEN_DENIED, events.ACTION_AUDITED, events.TIER_TRACEPOINT, 1,
            1_000_000_000 + i * 1000, 1, 4000 + i % 7, 4000 + i % 7, 1, 0, 0, 0, 2049, 123456,
            b"open_loop", b"protected", b"\0" * 16, 0, 0, 1))
    return fmt_values


def per_event_us(fn, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best * 1e6 / n, 3)


def micro(n: int) -> dict:
    from endura_sensor import config as config_mod
    from endura_sensor import daemon, eventlog, events, policy

    raws = synthetic_records(n)
    out = {}
    # one ctypes callback entered from C: qsort calls the comparator about n*log2(n) times
    libc = ctypes.CDLL(None)
    cmp_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    calls = [0]

    def _cmp(a, b):
        calls[0] += 1
        return 0

    cmp = cmp_type(_cmp)
    arr = (ctypes.c_int * n)()
    libc.qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, cmp_type]
    start = time.perf_counter()
    libc.qsort(arr, n, ctypes.sizeof(ctypes.c_int), cmp)
    out["ctypes callback from C (one call)"] = round((time.perf_counter() - start) * 1e6 / max(1, calls[0]), 3)
    buf = ctypes.create_string_buffer(raws[0])
    addr = ctypes.addressof(buf)
    out["ctypes.string_at (copy one record)"] = per_event_us(
        lambda: [ctypes.string_at(addr, len(raws[0])) for _ in range(n)], n)
    if hasattr(events, "to_record"):
        out["decode (fast path: unpack + to_record)"] = per_event_us(
            lambda: [events.to_record(events.unpack(r)) for r in raws], n)
    out["decode (one by one: decode + to_dict)"] = per_event_us(lambda: [events.decode(r).to_dict() for r in raws], n)
    sample = events.decode(raws[0]).to_dict()
    sample.update(rule="bench", rule_source="/etc/endura/policies/bench.toml:1", time="2026-01-01T00:00:00.000000Z")
    out["json.dumps (default)"] = per_event_us(lambda: [json.dumps(sample) for _ in range(n)], n)
    compact = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    out["json encoder (compact, no circular check)"] = per_event_us(lambda: [compact(sample) for _ in range(n)], n)
    with tempfile.TemporaryDirectory(prefix="endura-micro-") as tmp:
        log = eventlog.EventLog(Path(tmp), 1 << 40, 1)
        out["EventLog.write (one record)"] = per_event_us(lambda: [log.write(sample) for _ in range(n)], n)
        log.close()
        for name, conf in (("flood control off", "flood_burst = 0\n"), ("flood control on", "")):
            if "flood_burst" not in config_mod.KEYS:  # a sensor from before flood control
                if conf:
                    continue
                name = "no flood control"
            cfg = config_mod.parse(conf)
            log_dir = Path(tmp) / name.replace(" ", "-")
            sensor = daemon.Sensor(cfg, policy_dir=Path(tmp), bpf_dir=Path(tmp), log_dir=log_dir)
            sensor.events = eventlog.EventLog(log_dir, 1 << 40, 1)
            if hasattr(sensor, "flood_control"):
                sensor.flood = sensor.flood_control(cfg)  # as start() does
            rule = policy.Rule(name="bench", type="file", action="audit", source="bench.toml:1", path="/tmp/protected")

            class FakeEnforcer:
                rule_by_id = {1: rule}

            sensor.enforcer = FakeEnforcer()  # type: ignore[assignment]
            stdout, sys.stdout = sys.stdout, io.StringIO()
            try:
                if hasattr(sensor, "on_records"):
                    fn = lambda s=sensor: (s.on_records(raws), s.flush())  # noqa: E731
                else:
                    fn = lambda s=sensor: [s.on_event(events.decode(r)) for r in raws]  # noqa: E731
                out[f"whole path per event, {name}"] = per_event_us(fn, n)
            finally:
                sys.stdout = stdout
            sensor.enforcer = None
            sensor.events.close()
    return out


def table(rows, headers) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opens", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--micro", type=int, default=20_000, help="synthetic records for the micro-benchmark")
    parser.add_argument("--no-flood", action="store_true", help="only the micro-benchmark (no root needed)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sensor", type=Path, help="the sensor source tree to measure (default: this checkout's)")
    args = parser.parse_args(argv)
    if args.sensor and args.sensor.resolve() != SENSOR.resolve():
        env = dict(os.environ, ENDURA_BENCH_SENSOR=str(args.sensor.resolve()))
        return subprocess.run([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                              env=env).returncode
    result = {"micro_us_per_event": micro(args.micro)}
    print(table(list(result["micro_us_per_event"].items()), ["per-event Python work", "µs/event"]))
    if not args.no_flood:
        if os.geteuid() != 0:
            raise SystemExit("the flood benchmark loads BPF: run as root (or pass --no-flood)")
        result["flood"] = flood(args.opens, args.runs)
        rows = [[name, r["produced"], r["in_full"], r["summarized"], r["dropped"], r["complete"], r["sensor_cpu_s"],
                 r["cpu_s_per_10k_read"], r["log_bytes"]] for name, r in result["flood"].items()]
        print()
        print(table(rows, ["real flood (open loop)", "produced", "in full", "summarized", "dropped", "complete",
                           "CPU s", "CPU s/10k read", "log bytes"]))
    out = REPO / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "event_path.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
