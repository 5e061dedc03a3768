"""`endura-sensor run` with policy files, for real on this host (tracepoint tier: SIGKILL from the kernel).

Each test starts the sensor on a private policy directory and log directory, provokes the
operation with real processes, and checks both what happened to the process and what was logged.
Needs root and kernel BTF (like test_sensor_check.py).
"""
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "sensor")]
from endura_sensor import events  # noqa: E402
from endura_sensor.enforce import TIER_BY_NAME, kernel_has_btf_type  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="loading BPF needs root and a kernel with BTF")
TRUE = shutil.which("true")
KILLED = -signal.SIGKILL
#: the program that sees interpreters read exec-denied files, attached with any exec rule
INTERP = ["endura_tp_sys_exit_interp"]
#: the tracepoint tier's ext4 programs (file rules), where this kernel has ext4
EXT4 = [p.name for p in TIER_BY_NAME["tracepoint"].programs
        if p.target.startswith("btf_trace_") and kernel_has_btf_type(p.target)]


@pytest.fixture(scope="module")
def bpf_dir():
    from endura_sensor import host_arch

    from bpf.build import build

    arch = host_arch()
    return build((arch,))[arch][0].parent


class Sensor:
    """A running `endura-sensor run`; its stdout records are collected by a thread."""

    def __init__(self, bpf_dir, tmp_path, policy_text=None, conf="", extra=(), pin_dir="", cgroup=None,
                 command=("-m", "endura_sensor")):
        self.dir = tmp_path
        self.policies = tmp_path / "policies"
        self.policies.mkdir(exist_ok=True)
        if policy_text is not None:
            self.write("50-test.toml", policy_text)
        self.log_dir = tmp_path / "log"
        config = tmp_path / "sensor.conf"
        config.write_text(conf)
        self.env = env = dict(os.environ, PYTHONPATH=str(REPO / "sensor"), ENDURA_BPF_DIR=str(bpf_dir))
        # in a cgroup: placed there by this process, standing in for the service manager (systemd: PID 1; a
        # process that joins the cgroup by itself is an intruder, not exempt), then the sensor is exec'd (its
        # first bpf() call is already in the cgroup)
        prefix = []
        if cgroup:
            prefix = ["sh", "-c", 'read go && exec "$@" </dev/null', "sh"]  # waits for the line on stdin
            env["ENDURA_SERVICE_MANAGER_PID"] = str(os.getpid())
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, *command, "run", "--config", str(config), "--policy-dir", str(self.policies),
             "--log-dir", str(self.log_dir), "--tier", "tracepoint", "--reload-interval", "0.2",
             "--pin-dir", str(pin_dir), *extra],
            env=env, stdin=subprocess.PIPE if cgroup else None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        if cgroup:
            (Path(cgroup) / "cgroup.procs").write_text(str(self.proc.pid))
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
        self.records, self._queue = [], queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started = self.wait_for(lambda r: r["type"] == "started", 30)

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(json.loads(line))
        self._queue.put(None)

    def write(self, name, text):
        tmp = self.policies / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.policies / name)  # atomic, like a package manager or an editor's save

    def wait_for(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        for record in self.records:
            if predicate(record):
                return record
        while time.monotonic() < deadline:
            try:
                record = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if record is None:
                raise AssertionError(f"the sensor exited ({self.proc.wait()}): {self.proc.stderr.read()}")
            self.records.append(record)
            if predicate(record):
                return record
        raise AssertionError(f"no matching record within {timeout}s; got {self.records}")

    def events(self, type_):
        return [r for r in self.records if r["type"] == type_]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        while not self._queue.empty():
            record = self._queue.get()
            if record is not None:
                self.records.append(record)
        self.stderr = self.proc.stderr.read()
        assert self.proc.returncode == 0, self.stderr
        return self.records

    def logged(self):
        return [json.loads(line) for line in (self.log_dir / "events.log").read_text().splitlines()]


@pytest.fixture
def start(bpf_dir, tmp_path):
    sensors = []

    def _start(*args, **kwargs):
        sensors.append(Sensor(bpf_dir, tmp_path, *args, **kwargs))
        return sensors[-1]

    yield _start
    for sensor in sensors:
        if sensor.proc.poll() is None:
            sensor.proc.kill()
            sensor.proc.wait()


def copy_true(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(TRUE, path)
    return path


def run(*argv):
    return subprocess.run([str(a) for a in argv], timeout=30, capture_output=True).returncode


def rule(**keys):
    return "[[rule]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


# ---------------------------------------------------------------- exec

def test_exec_rules_by_path_dir_and_hash_kill_and_allowed_programs_run(start, tmp_path):
    by_path = copy_true(tmp_path / "bin" / "denied-by-path")
    by_dir = copy_true(tmp_path / "quarantine" / "deep" / "er" / "tool")
    allowed = copy_true(tmp_path / "bin" / "allowed")
    hashed = tmp_path / "hashed" / "renamed-echo"
    hashed.parent.mkdir()
    shutil.copy(shutil.which("echo"), hashed)
    digest = hashlib.sha256(hashed.read_bytes()).hexdigest()
    link = tmp_path / "link-to-denied"
    link.symlink_to(by_path)
    sensor = start(rule(name="by-path", type="exec", path=str(by_path), action="kill")
                   + rule(name="by-dir", type="exec", dir=str(tmp_path / "quarantine"))
                   + rule(name="by-hash", type="exec", sha256=digest, search=[str(hashed.parent)]))
    assert sensor.started["tier"] == "tracepoint" and sensor.started["policy_rules"] == 3
    assert sensor.started["entries"]["exec"] == 3 and sensor.started["warnings"] == []
    # an exec-only policy: the exec program, and a sys_exit one for interpreters reading a denied file
    assert sensor.started["programs"] == ["endura_tp_exec", *INTERP]
    assert sensor.started["start_to_enforcing_ms"] < 3000
    assert run(by_path) == KILLED
    assert run(link) == KILLED  # the kernel sees the inode, not the name
    assert run(by_dir) == KILLED
    assert run(hashed, "hi") == KILLED
    assert run(allowed) == 0 and run(TRUE) == 0
    sensor.wait_for(lambda r: r.get("filename") == str(hashed))
    records = sensor.stop()
    events = [r for r in records if r["type"] == "exec_denied"]
    assert [(e["rule"], e["filename"], e["action"]) for e in events] == [
        ("by-path", str(by_path), ["killed"]), ("by-path", str(link), ["killed"]),
        ("by-dir", str(by_dir), ["killed"]), ("by-hash", str(hashed), ["killed"])]
    assert all(e["tier"] == "tracepoint" and e["time"].endswith("Z") and e["rule_source"] for e in events)
    logged = sensor.logged()
    assert [r["type"] for r in logged] == ["started", *["exec_denied"] * 4, "stopped"]
    assert logged[1]["rule_source"] == f"{sensor.policies}/50-test.toml:1"


def test_audit_rule_and_audit_mode_only_log(start, tmp_path):
    audited = copy_true(tmp_path / "audited")
    killed = copy_true(tmp_path / "killed")
    sensor = start(rule(name="watch", type="exec", path=str(audited), action="audit")
                   + rule(name="deny", type="exec", path=str(killed), action="kill"))
    assert run(audited) == 0
    assert run(killed) == KILLED
    sensor.wait_for(lambda r: r.get("rule") == "deny")
    assert [e["action"] for e in sensor.events("exec_denied")] == [["audited"], ["killed"]]
    # global audit mode (here set in a policy file): not even `kill` rules kill
    sensor.write("00-mode.toml", 'enforcement = "audit"\n')
    loaded = sensor.wait_for(lambda r: r["type"] == "policy_loaded")
    assert loaded["enforcement"] == "audit"
    assert run(killed) == 0 and run(audited) == 0
    sensor.wait_for(lambda r: len(sensor.events("exec_denied")) == 4, 5)
    assert [e["action"] for e in sensor.events("exec_denied")[2:]] == [["audited"], ["audited"]]
    sensor.stop()


def test_terminate_process_false_reports_block_rules_and_still_kills_kill_rules(start, tmp_path):
    block, kill = copy_true(tmp_path / "block"), copy_true(tmp_path / "kill")
    sensor = start("terminate_process = false\n" + rule(type="exec", path=str(block))
                   + rule(type="exec", path=str(kill), action="kill"))
    assert sensor.started["terminate_process"] is False
    assert run(block) == 0  # the tracepoint tier cannot refuse, and may not kill
    assert run(kill) == KILLED
    sensor.wait_for(lambda r: len(sensor.events("exec_denied")) == 2)
    assert [e["action"] for e in sensor.events("exec_denied")] == [["audited"], ["killed"]]
    sensor.stop()
    assert "can only kill and terminate_process = false" in sensor.stderr


# ---------------------------------------------------------------- files

def test_file_rule_kills_writers_and_lets_readers_read(start, tmp_path):
    protected = tmp_path / "etc" / "protected.conf"
    protected.parent.mkdir()
    protected.write_text("original\n")
    secret = tmp_path / "secrets" / "deep" / "key"
    secret.parent.mkdir(parents=True)
    secret.write_text("k\n")
    other = tmp_path / "etc" / "other.conf"
    sensor = start(rule(name="protect", type="file", path=str(protected))
                   + rule(name="secrets", type="file", dir=str(tmp_path / "secrets"), access="read-write"))
    assert sensor.started["programs"] == ["endura_tp_exec", "endura_tp_sys_exit", "endura_tp_sys_enter", *EXT4]
    writer = [sys.executable, "-c", f"open({str(protected)!r}, 'a').write('tampered\\n')"]
    assert run(*writer) == KILLED
    assert run(sys.executable, "-c", f"open({str(protected)!r}, 'w')") == KILLED  # O_TRUNC: see README
    assert run("sh", "-c", f"echo x >> {protected}") == KILLED
    assert run("cat", protected) == 0  # reading is allowed by an access = "write" rule
    assert run("cat", secret) == KILLED  # read-write: reading is denied too, in any subdirectory
    assert run(sys.executable, "-c", f"open({str(other)!r}, 'w').write('fine')") == 0
    sensor.wait_for(lambda r: r.get("rule") == "secrets")
    records = sensor.stop()
    events = [r for r in records if r["type"] == "file_open_denied"]
    assert [(e["rule"], e["access"], e["filename"]) for e in events] == [
        ("protect", ["write"], "protected.conf"), ("protect", ["write"], "protected.conf"),
        ("protect", ["write"], "protected.conf"), ("secrets", ["read"], "key")]
    assert all(e["action"] == ["killed"] and e["ino"] == protected.stat().st_ino for e in events[:3])
    assert events[0]["path"] == str(protected) and events[3]["path"] == f"{tmp_path}/secrets/.../key"
    assert "tampered" not in protected.read_text()


# ---------------------------------------------------------------- connect

def _listener(family=socket.AF_INET, host="127.0.0.1"):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(16)
    return server, server.getsockname()[1]


def _connect(host, port, family="AF_INET"):
    code = (f"import socket; s = socket.socket(socket.{family}); s.settimeout(5); s.connect(({host!r}, {port})); "
            "s.sendall(b'data')")
    return run(sys.executable, "-c", code)


def test_connect_rules_kill_by_address_port_and_cidr(start):
    server, denied_port = _listener()
    server2, open_port = _listener()
    server6, v6_port = _listener(socket.AF_INET6, "::1")
    try:
        sensor = start(rule(name="port", type="connect", address="127.0.0.1", port=denied_port)
                       + rule(name="v6-net", type="connect", address="::1/128", action="kill")
                       + rule(name="cidr", type="connect", address="127.0.0.128/25"))
        assert sensor.started["entries"]["net"] == 3
        assert sensor.started["programs"] == ["endura_tp_exec", "endura_tp_sys_enter"]
        assert _connect("127.0.0.1", denied_port) == KILLED
        assert _connect("127.0.0.1", open_port) == 0
        assert _connect("::1", v6_port, "AF_INET6") == KILLED
        assert _connect("127.0.0.200", open_port) == KILLED  # in 127.0.0.128/25, any port
        sensor.wait_for(lambda r: r.get("rule") == "cidr")
        records = sensor.stop()
    finally:
        server.close(), server2.close(), server6.close()
    events = [r for r in records if r["type"] == "connect_denied"]
    assert [(e["rule"], e["addr"], e["port"], e["family"]) for e in events] == [
        ("port", "127.0.0.1", denied_port, 2), ("v6-net", "::1", v6_port, 10), ("cidr", "127.0.0.200", open_port, 2)]
    assert all(e["action"] == ["killed"] for e in events)


# ---------------------------------------------------------------- tamper protection

FINIT_MODULE = {"x86_64": 313, "aarch64": 273}[os.uname().machine]
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}[os.uname().machine]


def _syscall(nr, *args):
    code = (f"import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
            f"print(libc.syscall({nr}, {', '.join(map(str, args))}))")
    return run(sys.executable, "-c", code)


def test_module_loading_and_foreign_bpf_are_killed_but_the_sensor_keeps_working(start, tmp_path):
    sensor = start(rule(name="modules", type="module_load") + rule(name="bpf", type="bpf"))
    assert _syscall(FINIT_MODULE, -1, "b''", 0) == KILLED  # a bad fd: nothing would load anyway
    # BPF_PROG_GET_NEXT_ID (11) with a NULL attr: harmless, but it is a bpf() call by another process
    assert _syscall(BPF_SYSCALL, 11, 0, 0) == KILLED
    sensor.wait_for(lambda r: r["type"] == "bpf_denied")
    # the sensor itself keeps calling bpf() (map updates on reload, drop counters): not killed
    sensor.write("60-more.toml", rule(type="connect", port=9))
    assert sensor.wait_for(lambda r: r["type"] == "policy_loaded")["entries"]["net"] == 1
    assert sensor.proc.poll() is None
    records = sensor.stop()
    (mod,) = [r for r in records if r["type"] == "module_load_denied"]
    (bpf,) = [r for r in records if r["type"] == "bpf_denied"]
    assert mod["how"] == "finit_module" and mod["action"] == ["killed"] and mod["rule"] == "modules"
    assert bpf["bpf_cmd"] == 11 and bpf["action"] == ["killed"] and bpf["pid"] != sensor.proc.pid


# ---------------------------------------------------------------- reload

def test_reload_keeps_enforcing_throughout_and_keeps_the_last_good_policy(start, tmp_path):
    target = copy_true(tmp_path / "bin" / "target")
    sensor = start(rule(name="target", type="exec", path=str(target)))
    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            results.append(run(target))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        policies = [
            rule(name="target-dir", type="exec", dir=str(target.parent)),  # another map key for the same binary
            rule(name="target", type="exec", path=str(target)) + rule(type="connect", port=9),
            rule(name="target-dir", type="exec", dir=str(target.parent), action="kill"),
            rule(name="target", type="exec", path=str(target)),
        ]
        for i, text in enumerate(policies * 2):
            sensor.write("50-test.toml", text)
            sensor.wait_for(lambda r, n=i: len(sensor.events("policy_loaded")) == n + 1)
        # an invalid policy: rejected, logged, the last good one stays
        sensor.write("50-test.toml", rule(type="exec", path="relative/path"))
        rejected = sensor.wait_for(lambda r: r["type"] == "policy_rejected")
        assert rejected["problems"] == [f"{sensor.policies}/50-test.toml:3: path 'relative/path' must be an absolute "
                                        "path (start with /)"]
        assert rejected["kept_rules"] == 1
        # SIGHUP reloads too (still the invalid file: rejected again)
        sensor.proc.send_signal(signal.SIGHUP)
        sensor.wait_for(lambda r: len(sensor.events("policy_rejected")) == 2 and r.get("reason") == "SIGHUP")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert len(results) > 50 and set(results) == {KILLED}, results
    # a valid policy without the rule: now it runs (the reloads really changed the kernel maps)
    sensor.write("50-test.toml", rule(type="connect", port=9))
    sensor.wait_for(lambda r: len(sensor.events("policy_loaded")) == 9)
    assert run(target) == 0
    sensor.stop()
    assert "policy rejected:" in sensor.stderr and "keeping the last good policy (1 rules from 50-test.toml)" in sensor.stderr
    assert [r["type"] for r in sensor.logged()].count("policy_rejected") == 2


def test_sighup_applies_a_changed_policy(start, tmp_path):
    a, b = copy_true(tmp_path / "a"), copy_true(tmp_path / "b")
    sensor = start(rule(type="exec", path=str(a)), extra=("--reload-interval", "3600"))
    sensor.write("50-test.toml", rule(type="exec", path=str(b)))
    time.sleep(0.3)
    assert run(a) == KILLED  # not reloaded yet: no polling within the hour
    sensor.proc.send_signal(signal.SIGHUP)
    loaded = sensor.wait_for(lambda r: r["type"] == "policy_loaded")
    assert loaded["reason"] == "SIGHUP" and loaded["changed"] == 4  # a and b: the inode and the name entry each
    assert run(a) == 0 and run(b) == KILLED
    sensor.stop()


def test_a_deny_target_that_appears_later_is_picked_up(start, tmp_path):
    later = tmp_path / "later"
    sensor = start(rule(name="later", type="exec", path=str(later)), extra=("--resolve-interval", "0.5"))
    # no file yet: the rule holds the name in its directory, not an inode
    assert sensor.started["entries"]["exec"] == 0 and sensor.started["entries"]["exec_names"] == 1
    assert not sensor.started["warnings"]
    copy_true(later)
    assert run(later) == KILLED  # at once, by its name: before the sensor has resolved the path again
    sensor.wait_for(lambda r: r["type"] == "policy_loaded" and r["reason"] == "files changed", 5)
    assert run(later) == KILLED
    sensor.stop()


# ---------------------------------------------------------------- events: flood, drops, rotation

def test_event_flood_counts_every_dropped_event_and_rotates_the_log(start, tmp_path):
    watched = tmp_path / "watched"
    watched.write_text("")
    sensor = start(rule(name="flood", type="file", path=str(watched), action="audit"),
                   conf="log_max_bytes = 65536\nlog_keep = 3\nflood_burst = 0\n")  # every event in full
    opens = 20000
    sensor.proc.send_signal(signal.SIGSTOP)  # the ring buffer (256 KiB, ~700 events) fills up
    try:
        code = f"import os\nfor _ in range({opens}):\n    os.close(os.open({str(watched)!r}, os.O_WRONLY))"
        assert run(sys.executable, "-c", code) == 0  # audit: never killed
    finally:
        sensor.proc.send_signal(signal.SIGCONT)
    dropped = sensor.wait_for(lambda r: r["type"] == "events_dropped")
    sensor.wait_for(lambda r: r["type"] == "file_open_denied")
    time.sleep(0.5)
    status = subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--json", "--log-dir",
                             str(sensor.log_dir)], env=sensor.env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    status = json.loads(status.stdout)
    assert status["pid"] == sensor.proc.pid and status["events_dropped"] == dropped["total"]
    assert status["tier"] == "tracepoint" and status["rules"] == 1 and status["events"]["file_open_denied"] > 0
    records = sensor.stop()
    received = len([r for r in records if r["type"] == "file_open_denied"])
    assert dropped["total"] == dropped["new"] > opens / 2
    assert received + dropped["total"] == opens  # every event is either delivered or counted
    assert records[-1] == {"type": "stopped", "events_dropped": dropped["total"], "still_enforcing": [],
                          "handoff": False, "events_in_full": received, "events_summarized": 0}
    assert "event(s) dropped: the ring buffer was full" in sensor.stderr
    rotated = sorted(p.name for p in sensor.log_dir.iterdir())  # status.json is removed at exit
    assert rotated == ["events.log", "events.log.1", "events.log.2", "events.log.3"]
    assert all(p.stat().st_size <= 65536 for p in sensor.log_dir.iterdir())
    assert sensor.logged()[-1]["type"] == "stopped"
    status = subprocess.run([sys.executable, "-m", "endura_sensor", "status", "--log-dir", str(sensor.log_dir)],
                            env=sensor.env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 3 and "not running" in status.stderr


def test_programs_follow_the_rule_kinds_across_reloads(start, tmp_path):
    protected = tmp_path / "protected"
    protected.write_text("")
    sensor = start(rule(type="exec", path=TRUE, action="audit"))
    assert sensor.started["programs"] == ["endura_tp_exec", *INTERP]
    sensor.write("50-test.toml", rule(type="file", path=str(protected)) + rule(type="bpf", action="audit"))
    loaded = sensor.wait_for(lambda r: r["type"] == "policy_loaded")
    assert loaded["programs"] == ["endura_tp_exec", "endura_tp_sys_exit", "endura_tp_sys_enter", *EXT4]
    assert run("sh", "-c", f"echo x > {protected}") == KILLED
    sensor.write("50-test.toml", rule(type="connect", port=9))
    loaded = sensor.wait_for(lambda r: len(sensor.events("policy_loaded")) == 2)
    assert loaded["programs"] == ["endura_tp_exec", "endura_tp_sys_enter"]
    assert run("sh", "-c", f"echo x > {protected}") == 0
    sensor.stop()


# ---------------------------------------------------------------- pinning: what stays enforced while it restarts

@pytest.fixture
def bpffs(tmp_path):
    mount = tmp_path / "bpffs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_crashed_sensor_keeps_enforcing_until_the_next_one_takes_over(start, tmp_path, bpffs):
    denied = copy_true(tmp_path / "denied")
    pins = bpffs / "endura"
    sensor = start(rule(type="exec", path=str(denied)), pin_dir=pins)
    sensor.proc.kill()  # SIGKILL: no cleanup at all
    sensor.proc.wait()
    assert sensor.started["pinned"] == [f"{pins}/{p}-{sensor.proc.pid}" for p in ("endura_tp_exec", *INTERP)]
    assert run(denied) == KILLED  # the pinned program and its maps still enforce the last policy
    second = start(rule(type="exec", path=str(denied)), pin_dir=pins)
    # the program, and the maps pinned for the successor: config (no bpf rule: no bpf guard), events, drops
    markers = sorted(("endura_config", f"endura_drops_v{events.ABI_VERSION}", f"endura_ring_v{events.ABI_VERSION}",
                      "endura_tp_exec", *INTERP))
    assert second.started["replaced_pins"] == [f"{m}-{sensor.proc.pid}" for m in markers]
    assert sorted(p.name for p in pins.iterdir()) == [f"{m}-{second.proc.pid}" for m in markers]
    assert run(denied) == KILLED
    records = second.stop()  # a clean stop without fail_closed: detached, nothing enforced
    assert records[-1]["still_enforcing"] == [] and list(pins.iterdir()) == []
    assert run(denied) == 0


def test_fail_closed_keeps_enforcing_after_a_clean_stop(start, tmp_path, bpffs):
    denied = copy_true(tmp_path / "denied")
    pins = bpffs / "endura"
    sensor = start(rule(type="exec", path=str(denied)), conf="fail_closed = true\n", pin_dir=pins)
    records = sensor.stop()
    assert records[-1]["still_enforcing"] == [f"{pins}/{p}-{sensor.proc.pid}" for p in ("endura_tp_exec", *INTERP)]
    assert "the programs stay attached and enforce the last policy" in sensor.stderr
    assert run(denied) == KILLED
    for pin in pins.iterdir():  # what the README tells operators to do
        pin.unlink()
    assert run(denied) == 0


def test_a_pin_dir_outside_a_bpf_filesystem_is_reported_not_ignored(start, tmp_path):
    sensor = start(rule(type="exec", path=TRUE, action="audit"), pin_dir=tmp_path / "not-bpffs")
    assert sensor.started["pinned"] == []
    (warning,) = sensor.started["warnings"]
    assert warning.startswith(f"cannot pin in {tmp_path}/not-bpffs") and "enforcement stops if the sensor dies" in warning
    sensor.stop()


def _bpf_call_is_killed():
    return _syscall(BPF_SYSCALL, 11, 0, 0) == KILLED


def test_a_restart_after_a_crash_with_a_bpf_rule_is_not_killed_by_its_predecessor(start, tmp_path, bpffs):
    """The dead sensor's pinned programs deny bpf() to everyone but its own pid. Outside a cgroup of its
    own, the new sensor detaches them before loading (a logged gap) instead of being killed."""
    pins = bpffs / "endura"
    first = start(rule(type="bpf"), pin_dir=pins)
    assert first.started["cgroup_exempt_from_bpf_rules"] is False
    first.proc.kill()
    first.proc.wait()
    assert _bpf_call_is_killed()  # still enforced by the orphaned programs
    second = start(rule(type="bpf"), pin_dir=pins)
    assert second.started["replaced_pins"] == [f"{name}-{first.proc.pid}" for name in (
        "endura_config", f"endura_drops_v{events.ABI_VERSION}", "endura_guard_bpf", f"endura_ring_v{events.ABI_VERSION}", "endura_tp_exec",
        "endura_tp_sys_enter")]
    assert _bpf_call_is_killed()
    second.stop()
    assert "removed the programs an earlier sensor left pinned" in second.stderr


@pytest.fixture
def service_cgroup():
    """A cgroup v2 directory named like the service's (endura-...), as systemd or OpenRC would give it."""
    mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    root = next(f[4] for f in mounts if f[f.index("-") + 1] == "cgroup2")
    path = Path(root) / f"endura-test-{os.getpid()}"
    path.mkdir()
    yield path
    for _ in range(50):
        try:
            path.rmdir()
            break
        except OSError:
            time.sleep(0.1)


def test_in_its_own_cgroup_a_restarted_sensor_takes_over_without_a_gap(start, tmp_path, bpffs, service_cgroup):
    pins = bpffs / "endura"
    denied = copy_true(tmp_path / "denied")
    policy = rule(type="bpf") + rule(type="exec", path=str(denied))
    first = start(policy, pin_dir=pins, cgroup=service_cgroup)
    assert first.started["cgroup_exempt_from_bpf_rules"] is True
    assert first.started["cgroup"].endswith(service_cgroup.name)
    first.proc.kill()
    first.proc.wait()
    second = start(policy, pin_dir=pins, cgroup=service_cgroup)  # exempt by cgroup: not killed while loading
    assert sorted(second.started["replaced_pins"]) == sorted(
        f"{name}-{first.proc.pid}" for name in ("endura_config", f"endura_drops_v{events.ABI_VERSION}", "endura_guard_bpf",
                                                f"endura_members_v{events.ABI_VERSION}", "endura_tp_cgroup_attach",
                                                "endura_tp_task_newtask", "endura_tp_member_exit",
                                                f"endura_ring_v{events.ABI_VERSION}", "endura_tp_exec", "endura_tp_sys_enter",
                                                *INTERP))
    assert run(denied) == KILLED and _bpf_call_is_killed()  # everyone else is still denied
    second.stop()
    assert "removed the programs an earlier sensor left pinned" not in second.stderr
