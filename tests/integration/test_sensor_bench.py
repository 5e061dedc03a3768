"""Benchmark: the cost of the sensor enforcing a 1,000-rule policy on this host (tracepoint tier).

Two C loops (compiled here with cc): fork+exec of `true`, and open/close of a file. Each runs
alternately without and with the sensor, REPEATS times; the figure is the minimum CPU time (user +
system of the loop) per configuration, which is the least disturbed by other load on the machine.
Figures go to stdout and to build/bench/sensor.json; the assertions are loose sanity bounds
(the target is <= 1.03x, the spec's claim < 2 % CPU), the numbers are what the issue reports.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "sensor")]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="loading BPF needs root and a kernel with BTF")
REPEATS = 5
EXECS, OPENS = 500, 200_000
EXEC_LOOP = r"""#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) { int n = atoi(v[2]), st; for (int i = 0; i < n; i++) { pid_t p = fork();
  if (!p) { execl(v[1], v[1], (char *)0); _exit(127); } waitpid(p, &st, 0); if (st) return 1; } return 0; }
"""
OPEN_LOOP = r"""#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int c, char **v) { int n = atoi(v[2]); for (int i = 0; i < n; i++) { int fd = open(v[1], O_RDONLY);
  if (fd < 0) return 1; close(fd); } return 0; }
"""


def compile_loop(tmp_path, name, source):
    cc = shutil.which("cc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt-get install gcc or clang)"
    (tmp_path / f"{name}.c").write_text(source)
    subprocess.run([cc, "-O2", "-o", str(tmp_path / name), str(tmp_path / f"{name}.c")], check=True)
    return tmp_path / name


def cpu_seconds(argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(a) for a in argv], check=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def thousand_rules(tmp_path, kinds):
    """1,000 rules. mixed: 250 exec paths, 250 exec dirs, 250 protected files, 250 CIDRs (every map and
    program in use); exec: 500 exec paths and 500 exec dirs (no raw syscall tracepoint attached)."""
    nx = tmp_path / f"nx-{kinds}"
    nx.mkdir()
    rules = []
    for i in range(250 if kinds == "mixed" else 500):
        (nx / f"bin{i}").touch()
        (nx / f"dir{i}").mkdir()
        rules += [f'[[rule]]\ntype = "exec"\npath = "{nx}/bin{i}"\n', f'[[rule]]\ntype = "exec"\ndir = "{nx}/dir{i}"\n']
        if kinds == "mixed":
            (nx / f"file{i}").touch()
            rules += [f'[[rule]]\ntype = "file"\npath = "{nx}/file{i}"\n',
                      f'[[rule]]\ntype = "connect"\naddress = "10.{i}.0.0/16"\n']
    policies = tmp_path / f"policies-{kinds}"
    policies.mkdir()
    (policies / "bench.toml").write_text("".join(rules))
    return policies


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_benchmark_1000_rules(tmp_path):
    from endura_sensor import host_arch

    from bpf.build import build

    arch = host_arch()
    bpf_dir = build((arch,))[arch][0].parent
    exec_loop = compile_loop(tmp_path, "exec_loop", EXEC_LOOP)
    open_loop = compile_loop(tmp_path, "open_loop", OPEN_LOOP)
    target = tmp_path / "opened"
    target.write_text("x")
    policies = {kinds: thousand_rules(tmp_path, kinds) for kinds in ("mixed", "exec")}
    loops = {"exec": [exec_loop, shutil.which("true"), EXECS], "open": [open_loop, target, OPENS]}
    env = dict(os.environ, PYTHONPATH=str(REPO / "sensor"), ENDURA_BPF_DIR=str(bpf_dir))
    configs = (None, *policies)
    times = {(name, c): [] for name in loops for c in configs}
    starts, rss, sensor_cpu, programs = [], [], [], {}
    for _ in range(REPEATS):
        for name, argv in loops.items():
            times[(name, None)].append(cpu_seconds(argv))
        for kinds, directory in policies.items():
            proc = subprocess.Popen([sys.executable, "-m", "endura_sensor", "run", "--config", "/dev/null",
                                     "--policy-dir", str(directory), "--log-dir", str(tmp_path / "log"),
                                     "--tier", "tracepoint", "--pin-dir", ""], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            try:
                started = json.loads(proc.stdout.readline())
                assert started["type"] == "started" and started["policy_rules"] == 1000, proc.stderr.read()
                starts.append(started["start_to_enforcing_ms"])
                programs[kinds] = started["programs"]
                cpu0, wall0 = proc_cpu_seconds(proc.pid), time.monotonic()
                for name, argv in loops.items():
                    times[(name, kinds)].append(cpu_seconds(argv))
                sensor_cpu.append((proc_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0))
                rss.append(int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]) * 1024)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=30)
    best = {key: min(values) for key, values in times.items()}
    result = {"kernel": os.uname().release, "tier": "tracepoint", "repeats": REPEATS,
              "loops": {"exec": f"{EXECS} x fork+exec of true", "open": f"{OPENS} x open+close"},
              "cpu_s_without_sensor": {name: round(best[(name, None)], 3) for name in loops}}
    for kinds in policies:
        result[f"policy_{kinds}_1000"] = {
            "programs": programs[kinds],
            **{f"{name}_ratio": round(best[(name, kinds)] / best[(name, None)], 3) for name in loops}}
    result.update({"start_to_enforcing_ms": {"min": min(starts), "max": max(starts)},
                   "rss_mb": {"min": round(min(rss) / 2**20, 1), "max": round(max(rss) / 2**20, 1)},
                   "sensor_cpu_percent_during_loops": round(100 * max(sensor_cpu), 2)})
    out = REPO / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sensor.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + json.dumps(result, indent=1))
    assert programs["exec"] == ["endura_tp_exec", "endura_tp_sys_exit_interp"]  # interpreters reading denied files
    for kinds in policies:
        assert max(result[f"policy_{kinds}_1000"][f"{n}_ratio"] for n in loops) < 1.5, result
    assert max(rss) < 64 * 2**20 and max(starts) < 3000, result
