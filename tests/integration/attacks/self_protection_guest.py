"""Self-protection attacks on a running sensor, per tier, for a kernel test VM (LSM, fentry) or any host.

    python3 self_protection_guest.py [lsm fentry tracepoint] > results.jsonl

For each tier: a sensor process (the Enforcer API, with a `sensor` rule and an exec rule) runs pinned in
/sys/fs/bpf/endura-self, verifying the kernel state every 0.2 s; attackers (forked, neither init nor the
service manager) then try, one at a time: SIGSTOP, ptrace attach, opening /proc/<pid>/mem for writing,
unlinking and renaming a pin, deleting a rule map element by map id (frozen maps), and last SIGKILL.
Each attack prints {"tier", "attack", "outcome": eperm | killed | ok | <errno>, ...}; the sensor's events
and verification findings follow. The driver is the sensor's service manager ($ENDURA_SERVICE_MANAGER_PID):
it may stop it. Stdlib only; reusable by the evasion suite (issue #14).
"""
import ctypes
import errno
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve()
for lib in ("/usr/lib/endura-sensor", *(str(p / "sensor") for p in _HERE.parents)):
    if Path(lib, "endura_sensor").is_dir():
        sys.path.insert(0, lib)
        break
from endura_sensor import bpf_dir, enforce, events, libbpf, policy  # noqa: E402

PIN_DIR = Path(os.environ.get("ENDURA_SELF_PIN_DIR", "/sys/fs/bpf/endura-self"))
WORK = Path("/tmp/endura-self")
BPF_NR = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)


def out(record):
    print(json.dumps(record), flush=True)


def sensor(tier, events_path, ready_w):
    """The sensor: load, signal readiness, poll events and verify until SIGTERM."""
    rules = (policy.Rule("sensor", "block", "vm:1", "self"),
             policy.Rule("exec", "block", "vm:2", "deny-exec", path=str(WORK / "denied")))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    e = enforce.Enforcer(enforce.TIER_BY_NAME[tier], bpf_dir(), enforce=True, terminate=tier != "lsm",
                         policy=policy.Policy(rules=rules), pin_dir=PIN_DIR)
    os.write(ready_w, b"ready\n")
    with open(events_path, "w") as log:
        while not stop:
            e.poll(lambda ev: log.write(json.dumps({"type": ev.type, "op": ev.to_dict().get("op"),
                                                    "action": ev.action, "pid": ev.pid}) + "\n"), 100)
            problems, restored = e.verify()
            for problem in problems:
                log.write(json.dumps({"type": "tampered", "problem": problem, "restored": restored}) + "\n")
            log.flush()
            time.sleep(0.1)
    e.close()
    os._exit(0)


def attempt(action):
    """Run action() in a forked attacker: eperm, killed, ok or the errno name."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            action()
            code = 0
        except OSError as exc:
            code = exc.errno or 255
        os.write(w, str(code).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 16)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed"
    code = int(data or b"0")
    return "ok" if code == 0 else ("eperm" if code in (errno.EPERM, errno.EACCES) else errno.errorcode.get(code, str(code)))


def check(rc):
    if rc < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def delete_by_id(map_id):
    """bpf(BPF_MAP_GET_FD_BY_ID) then bpf(BPF_MAP_DELETE_ELEM) of its first key."""
    def action():
        attr = ctypes.create_string_buffer(128)
        attr[0:4] = map_id.to_bytes(4, "little")
        fd = libc.syscall(BPF_NR, 14, attr, 128)  # BPF_MAP_GET_FD_BY_ID
        check(fd)
        keys = libbpf.map_keys(fd, events.FILE_KEY.size)
        if not keys:
            raise OSError(errno.ENOENT, "empty")
        libbpf.map_delete(fd, keys[0])  # raises BpfError (an OSError? no: SensorError) on failure
    def wrapped():
        try:
            action()
        except libbpf.BpfError as exc:
            raise OSError(exc.errno, str(exc)) from None
    return wrapped


def map_ids(pid, name):
    ids = []
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        for line in fdinfo.read_text().splitlines():
            if line.startswith("map_id:"):
                ids.append(int(line.split()[1]))
    found = []
    for map_id in sorted(set(ids)):
        attr = ctypes.create_string_buffer(128)
        attr[0:4] = map_id.to_bytes(4, "little")
        fd = libc.syscall(BPF_NR, 14, attr, 128)
        if fd >= 0:
            if libbpf.obj_info(fd, 64)[24:40].split(b"\0")[0].decode() == name:
                found.append(map_id)
            os.close(fd)
    return found


def run_tier(tier):
    shutil.rmtree(PIN_DIR, ignore_errors=True)
    for pin in PIN_DIR.glob("*") if PIN_DIR.exists() else ():
        pin.unlink()
    shutil.copy(shutil.which("true"), WORK / "denied")  # before the sensor resolves its exec rule
    events_path = WORK / f"{tier}.events.jsonl"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            sensor(tier, events_path, w)
        except BaseException as exc:  # noqa: BLE001
            out({"tier": tier, "error": f"{type(exc).__name__}: {exc}"})
            os._exit(1)
    os.close(w)
    if not os.read(r, 16):
        out({"tier": tier, "error": "the sensor did not start"})
        os.waitpid(pid, 0)
        return
    os.close(r)
    result = lambda attack, outcome, **kw: out({"tier": tier, "attack": attack, "outcome": outcome, **kw})  # noqa: E731
    exec_ids = map_ids(pid, "endura_exec")  # by the driver: before any attack (bpf() is not refused here)
    outcome = attempt(lambda: os.kill(pid, signal.SIGSTOP))
    time.sleep(0.2)
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    os.kill(pid, signal.SIGCONT)
    result("sigstop", outcome, sensor_state=state)
    result("ptrace_attach", attempt(lambda: check(libc.ptrace(16, pid, None, None))))  # PTRACE_ATTACH
    time.sleep(0.1)
    os.kill(pid, signal.SIGCONT)
    result("proc_mem_write", attempt(lambda: os.close(os.open(f"/proc/{pid}/mem", os.O_WRONLY))))
    pins = sorted(PIN_DIR.glob("endura_*"))
    result("unlink_pin", attempt(lambda: os.unlink(pins[0])), pin=pins[0].name, still_there=pins[0].exists())
    time.sleep(0.5)  # the sensor's verification pins it again where the unlink went through
    result("rename_pin", attempt(lambda: os.rename(pins[1], PIN_DIR / "moved")), pin=pins[1].name)
    time.sleep(0.5)
    result("map_delete_by_id", attempt(delete_by_id(exec_ids[0])) if exec_ids else "no map found")
    result("exec_denied_still_enforced", attempt(lambda: os.execv(str(WORK / "denied"), ["denied"])))
    outcome = attempt(lambda: os.kill(pid, signal.SIGKILL))
    time.sleep(0.3)
    alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
    result("sigkill", outcome, sensor_alive=alive)
    if alive:
        os.kill(pid, signal.SIGTERM)  # the service manager: allowed
        os.waitpid(pid, 0)
    for line in events_path.read_text().splitlines() if events_path.exists() else ():
        out(dict(json.loads(line), tier=tier, record="sensor"))
    for pin in PIN_DIR.glob("*"):
        pin.unlink()


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["ENDURA_SERVICE_MANAGER_PID"] = str(os.getpid())
    for tier in sys.argv[1:] or ["lsm", "fentry", "tracepoint"]:
        try:
            run_tier(tier)
        except Exception as exc:  # noqa: BLE001 - report, go on with the next tier
            out({"tier": tier, "error": f"{type(exc).__name__}: {exc}"})
    out({"type": "done"})


if __name__ == "__main__":
    main()
