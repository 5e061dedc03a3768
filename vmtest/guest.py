"""The driver inside the kernel test VM (stdlib only, Python >= 3.9: it runs on the guest's python3).

Reads /vmtest/plan.json and the boot name from the kernel command line (`endura_vmtest=<boot>`),
then runs `endura-sensor check --json` and each scenario of that boot, and writes one JSON object
per line to /dev/ttyS1: {"type": "hello"}, {"type": "check"}, {"type": "scenario"}..., {"type": "done"}.
It records what happened (exit codes, probe outcomes, events); the host judges it (vmtest.results).

Each sensor scenario runs `endura-sensor run` with a real policy file (exec, file and connect rules)
in its own policy_dir, then probes: exec of a denied and an allowed copy of `true`; opening the
protected file for write (and whether its content changed) and for read; connecting to a denied and
an allowed port on 127.0.0.1, where the driver itself listens.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

PLAN = "/vmtest/plan.json"
RESULTS_TTY = "/dev/ttyS1"
DENIED = "/opt/endura-vmtest/denied"
ALLOWED = "/opt/endura-vmtest/allowed"
PROTECTED = "/opt/endura-vmtest/protected"  # a file rule denies opening it for write
PROTECTED_CONTENT = b"endura vmtest: the original content\n"
DENIED_PORT = 40444  # a connect rule denies 127.0.0.1:DENIED_PORT
ALLOWED_PORT = 40445
PROTDIR = "/opt/endura-vmtest/protdir"  # a dir rule denies writing below it
PROTDIR_FILES = ("kept", "sub")  # a file and an empty directory in it
PREPARED = "/opt/endura-vmtest/prepared"  # an unprotected file an attacker moves or links in
LDSO = "/lib64/ld-linux-x86-64.so.2"
SENSOR = "endura-sensor"
START_TIMEOUT = 60.0
PROBE_TIMEOUT = 20.0


def boot_name(cmdline: str) -> str:
    for word in cmdline.split():
        if word.startswith("endura_vmtest="):
            return word.split("=", 1)[1]
    return ""


def probe(path: str) -> str:
    """Exec `path` once: 'exit:N', 'killed' (SIGKILL), 'signal:N', 'eperm', 'eacces' or 'error:...'."""
    try:
        proc = subprocess.run([path], timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except PermissionError as exc:
        return {1: "eperm", 13: "eacces"}.get(exc.errno, "error:" + str(exc))
    except (OSError, subprocess.SubprocessError) as exc:
        return "error:" + str(exc)
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    if proc.returncode < 0:
        return "signal:%d" % -proc.returncode
    return "exit:%d" % proc.returncode


def forked(action) -> str:
    """Run `action` in a forked child (no exec: cheap under TCG): 'ok', 'killed' (SIGKILL), 'signal:N',
    'eperm', 'eacces', 'errno:NAME' or 'exit:N'."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the driver
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # a handler inherited from the parent must not mask a probe's end
        code = 0
        try:
            action()
        except OSError as exc:
            code = 100 + exc.errno if exc.errno and exc.errno < 150 else 99
        except BaseException:
            code = 98
        os._exit(code)
    deadline = time.monotonic() + PROBE_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "error:timeout"
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "killed" if sig == signal.SIGKILL else "signal:%d" % sig
    code = os.WEXITSTATUS(status)
    if code == 0:
        return "ok"
    if 100 < code < 250:
        return {errno.EPERM: "eperm", errno.EACCES: "eacces"}.get(code - 100, "errno:" + errno.errorcode.get(
            code - 100, str(code - 100)))
    return "exit:%d" % code


def write_protected() -> None:
    fd = os.open(PROTECTED, os.O_WRONLY)  # no O_TRUNC: a kill-only tier must leave the content as it was
    try:
        os.write(fd, b"TAMPERED")
    finally:
        os.close(fd)


def read_protected() -> None:
    with open(PROTECTED, "rb") as fh:
        if fh.read() != PROTECTED_CONTENT:
            raise OSError(errno.EIO, "unexpected content")


def connect_to(port: int):
    def action() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return action


def listen(port: int) -> socket.socket:
    """A listener the probes connect to (the backlog completes the handshake; nobody needs to accept)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    return sock


def reset_protected() -> None:
    with open(PROTECTED, "wb") as fh:
        fh.write(PROTECTED_CONTENT)


def probes() -> dict:
    """Every probe once; the protected file is restored by the next scenario's reset_protected()."""
    out = {"exec_denied": probe(DENIED), "exec_allowed": probe(ALLOWED),
           "file_read": forked(read_protected), "file_write": forked(write_protected)}
    with open(PROTECTED, "rb") as fh:
        out["file_unchanged"] = fh.read() == PROTECTED_CONTENT
    out["connect_denied"] = forked(connect_to(DENIED_PORT))
    out["connect_allowed"] = forked(connect_to(ALLOWED_PORT))
    return out


# ---------------------------------------------------------------- effects (scenarios with "effects")
# Every other way to the effect of a denied operation than the direct one: each must be refused (EPERM
# where terminate_process = false) with a file_op_denied / exec_denied (how mmap) / connect_denied (how
# sendmsg) event, and leave the protected file's content and the protected directory's listing as they were.


def reset_effects() -> None:
    """The protected directory with its entries, and the prepared file (outside any rule)."""
    shutil.rmtree(PROTDIR, ignore_errors=True)
    for leftover in (PREPARED + ".moved", PREPARED + ".link"):  # what a probe that was not refused left
        if os.path.lexists(leftover):
            os.unlink(leftover)
    os.makedirs(os.path.join(PROTDIR, "sub"))
    with open(os.path.join(PROTDIR, "kept"), "wb") as fh:
        fh.write(PROTECTED_CONTENT)
    with open(PREPARED, "wb") as fh:
        fh.write(b"endura vmtest: an attacker's file\n")


def _create_in_protdir() -> None:
    os.close(os.open(os.path.join(PROTDIR, "new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def _sendto(port: int):
    def action() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"endura vmtest", ("127.0.0.1", port))
    return action


def ldso(path: str) -> str:
    """`ld.so path`: 'eperm' when ld.so could not map it (EPERM), else as probe() (+ ld.so's message)."""
    try:
        proc = subprocess.run([LDSO, path], timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.SubprocessError) as exc:
        return "error:" + str(exc)
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    # ld.so names the errno only sometimes; "failed to map segment" is its mmap() refused (the event says why)
    if proc.returncode != 0 and (b"Operation not permitted" in proc.stderr or b"failed to map segment" in proc.stderr):
        return "eperm"
    message = proc.stderr.decode(errors="replace").strip().splitlines()
    return "exit:%d" % proc.returncode + (": " + message[-1][:200] if message else "")


def effect_actions(early_fd: int) -> list:
    """(probe name, action run in a forked child); early_fd: PROTECTED opened for write before the sensor."""
    new = os.path.join(PROTDIR, "new")
    return [
        ("rename_over", lambda: os.rename(PREPARED, PROTECTED)),
        ("rename_away", lambda: os.rename(PROTECTED, PREPARED + ".moved")),
        ("rename_into", lambda: os.rename(PREPARED, new)),
        ("link_into", lambda: os.link(PREPARED, new)),
        ("link_from", lambda: os.link(PROTECTED, PREPARED + ".link")),
        ("unlink", lambda: os.unlink(PROTECTED)),
        ("unlink_below", lambda: os.unlink(os.path.join(PROTDIR, "kept"))),
        ("rmdir_below", lambda: os.rmdir(os.path.join(PROTDIR, "sub"))),
        ("truncate", lambda: os.truncate(PROTECTED, 0)),
        ("open_trunc", lambda: os.close(os.open(PROTECTED, os.O_WRONLY | os.O_TRUNC))),  # file_open refuses first
        ("ftruncate_early_fd", lambda: os.ftruncate(early_fd, 0)),
        ("write_early_fd", lambda: os.pwrite(early_fd, b"TAMPERED", 0)),
        ("create", _create_in_protdir),
        ("mkdir", lambda: os.mkdir(new)),
        ("symlink", lambda: os.symlink(PREPARED, new)),
    ]


def effect_probes(early_fd: int) -> dict:
    out = {name: forked(action) for name, action in effect_actions(early_fd)}
    out["ldso"] = ldso(DENIED)
    out["sendto"] = forked(_sendto(DENIED_PORT))  # last: the driver waits for its event
    out["sendto_allowed"] = forked(_sendto(ALLOWED_PORT))
    out["ldso_allowed"] = ldso(ALLOWED)
    try:
        with open(PROTECTED, "rb") as fh:
            out["protected_unchanged"] = fh.read() == PROTECTED_CONTENT
    except OSError as exc:  # moved or removed: the next scenario's reset_protected() puts it back
        out["protected_unchanged"] = "error:" + str(exc)
    out["protdir_listing"] = sorted(os.listdir(PROTDIR))
    out["prepared_exists"] = os.path.exists(PREPARED)
    return out


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


POLICY_DIRS = "/etc/endura/vmtest-policies"  # one policy_dir per scenario below it
#: the test policy, in the format of sensor/README.md ("Policy files"); action block: -EPERM on the LSM
#: tier, SIGKILL on the others (terminate_process decides, from the scenario)
POLICY = """# vmtest: one rule of each type the guest probes
[[rule]]
name = "vmtest-exec"
type = "exec"
path = "%(denied)s"
action = "block"

[[rule]]
name = "vmtest-file"
type = "file"
path = "%(protected)s"
access = "write"
action = "block"

[[rule]]
name = "vmtest-dir"
type = "file"
dir = "%(protdir)s"
access = "write"
action = "block"

[[rule]]
name = "vmtest-connect"
type = "connect"
address = "127.0.0.1"
port = %(port)d
action = "block"
""" % {"denied": DENIED, "protected": PROTECTED, "protdir": PROTDIR, "port": DENIED_PORT}


def write_config(path: str, policy_dir: str, enforcement: str, terminate: bool) -> None:
    """sensor.conf for one scenario, and its policy_dir holding the test policy."""
    os.makedirs(policy_dir, exist_ok=True)
    with open(os.path.join(policy_dir, "vmtest.toml"), "w") as fh:
        fh.write(POLICY)
    with open(path, "w") as fh:
        fh.write('mode = "standalone"\nenforcement = "%s"\nterminate_process = %s\npolicy_dir = "%s"\n'
                 % (enforcement, "true" if terminate else "false", policy_dir))


BPF_DIR = "/usr/lib/endura-sensor/bpf"  # the package's objects
VERIFIER_OBJECTS = ("sensor_lsm.bpf.o", "sensor_fentry.bpf.o")  # they load only in a VM (the tracepoint one on any host)


def verifier_stats(path: str) -> dict:
    """{program: instructions the verifier processed} for one object (log level 4: statistics only), as
    tests/integration/test_bpf_build.py measures the tracepoint tier; programs whose kernel function is
    missing from the BTF (as the sensor decides) are not loaded: {program: "missing"}; {"error": ...}."""
    import ctypes
    import re

    lib = ctypes.CDLL("libbpf.so.1")
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (("bpf_object__open_file", vp, [cp, vp]), ("bpf_object__next_program", vp, [vp, vp]),
                            ("bpf_program__name", cp, [vp]), ("bpf_program__section_name", cp, [vp]),
                            ("bpf_program__set_autoload", ctypes.c_int, [vp, ctypes.c_bool]),
                            ("bpf_program__set_log_level", ctypes.c_int, [vp, ctypes.c_uint32]),
                            ("bpf_program__set_log_buf", ctypes.c_int, [vp, cp, ctypes.c_size_t]),
                            ("bpf_object__load", ctypes.c_int, [vp]), ("bpf_object__close", None, [vp])):
        getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
    with open("/sys/kernel/btf/vmlinux", "rb") as fh:
        btf = fh.read()
    obj = lib.bpf_object__open_file(path.encode(), None)
    if not obj:
        return {"error": "cannot open " + path}
    out, buffers, prog = {}, {}, None
    try:
        while True:
            prog = lib.bpf_object__next_program(obj, prog)
            if not prog:
                break
            name = lib.bpf_program__name(prog).decode()
            kind, _, target = lib.bpf_program__section_name(prog).decode().partition("/")
            target = "bpf_lsm_" + target if kind == "lsm" else target
            if kind in ("lsm", "fmod_ret", "fentry") and b"\0" + target.encode() + b"\0" not in btf:
                lib.bpf_program__set_autoload(prog, False)
                out[name] = "missing"
                continue
            buffers[name] = buf = ctypes.create_string_buffer(1 << 16)
            lib.bpf_program__set_log_level(prog, 4)
            lib.bpf_program__set_log_buf(prog, buf, len(buf))
        rc = lib.bpf_object__load(obj)
        if rc != 0:  # the first program without statistics failed: load it alone with the full log
            failed = next((n for n, b in buffers.items() if b"processed" not in b.value), "")
            return {"error": "loading %s failed (%d) at %s: %s" % (path, rc, failed, verifier_log(lib, path, failed))}
        for name, buf in buffers.items():
            found = re.search(r"processed (\d+) insns", buf.value.decode(errors="replace"))
            out[name] = int(found.group(1)) if found else "no statistics"
        return out
    finally:
        lib.bpf_object__close(obj)


def verifier_log(lib, path: str, program: str, lines: int = 12) -> str:
    """The end of the verifier's log (level 1) for `program` of the object at path, loaded alone."""
    import ctypes

    obj = lib.bpf_object__open_file(path.encode(), None)
    prog, buf = None, ctypes.create_string_buffer(16 << 20)
    try:
        while True:
            prog = lib.bpf_object__next_program(obj, prog)
            if not prog:
                break
            if lib.bpf_program__name(prog).decode() == program:
                lib.bpf_program__set_log_level(prog, 1)
                lib.bpf_program__set_log_buf(prog, buf, len(buf))
            else:
                lib.bpf_program__set_autoload(prog, False)
        lib.bpf_object__load(obj)
        return " | ".join(buf.value.decode(errors="replace").strip().splitlines()[-lines:])
    finally:
        lib.bpf_object__close(obj)


def run_check(spec: dict) -> dict:
    start = time.monotonic()
    argv = [SENSOR, "check", "--json"] + ([] if spec.get("canary", True) else ["--no-canary"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    result = {"type": "check", "exit_code": proc.returncode, "report": report, "stderr": tail(proc.stderr),
              "canary": spec.get("canary", True), "seconds": round(time.monotonic() - start, 2)}
    if spec.get("verifier_stats"):
        start = time.monotonic()
        stats = {}
        for name in VERIFIER_OBJECTS:
            try:
                stats[name] = verifier_stats(os.path.join(BPF_DIR, name))
            except Exception as exc:  # reported, judged by the host
                stats[name] = {"error": "%s: %s" % (type(exc).__name__, exc)}
        result["verifier_stats"] = stats
        result["verifier_seconds"] = round(time.monotonic() - start, 2)
    return result


#: the events the probes should cause (one per rule); the driver waits for them, the host judges them
EVENT_TYPES = ("exec_denied", "file_open_denied", "connect_denied")
EVENT_WAIT = 3.0


def wait_for_events(out_path: str, timeout: float, effects: bool = False) -> None:
    """Until the sensor wrote an event of each of EVENT_TYPES (it polls its ring buffer every 100 ms),
    at most `timeout` seconds: under load a fixed pause is either too short or wasted. With effects: also
    the sendto probe's event, the last one they cause (the ring buffer keeps the order)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_json_lines(out_path)
        if set(EVENT_TYPES) <= {e.get("type") for e in events} and (
                not effects or any(e.get("how") == "sendmsg" for e in events)):
            return
        time.sleep(0.05)


def read_json_lines(path: str) -> list:
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def run_scenario(spec: dict) -> dict:
    start = time.monotonic()
    result = {"type": "scenario", "name": spec["name"], "tier_requested": spec["tier"],
              "enforcement": spec["enforcement"], "terminate": spec["terminate"]}
    reset_protected()
    early_fd = -1
    if spec.get("effects"):
        reset_effects()
        early_fd = os.open(PROTECTED, os.O_WRONLY)  # before the sensor starts: file_open never sees it
    if spec["tier"] is None:  # no sensor running
        result["probes"] = probes()
        result["seconds"] = round(time.monotonic() - start, 2)
        return result
    conf = "/etc/endura/vmtest-%s.conf" % spec["name"]
    result["policy_dir"] = os.path.join(POLICY_DIRS, spec["name"])
    write_config(conf, result["policy_dir"], spec["enforcement"], spec["terminate"])
    out_path, err_path = "/tmp/sensor-%s.out" % spec["name"], "/tmp/sensor-%s.err" % spec["name"]
    with open(out_path, "w") as out, open(err_path, "w") as err:
        sensor = subprocess.Popen([SENSOR, "run", "--config", conf, "--tier", spec["tier"]],
                                  stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    started = None
    deadline = time.monotonic() + START_TIMEOUT
    while started is None and time.monotonic() < deadline and sensor.poll() is None:
        with open(out_path) as fh:
            for line in fh:
                if line.startswith("{") and '"started"' in line:
                    started = json.loads(line)
                    break
        if started is None:
            time.sleep(0.05)
    result["start_seconds"] = round(time.monotonic() - start, 2)
    if started is not None:
        result["started"] = started
        result["probes"] = probes()
        if early_fd >= 0:
            effects_start = time.monotonic()
            result["effects"] = effect_probes(early_fd)
            result["effects_seconds"] = round(time.monotonic() - effects_start, 2)
        wait_for_events(out_path, EVENT_WAIT, effects=early_fd >= 0)
    if sensor.poll() is None:
        sensor.send_signal(signal.SIGTERM)
        try:
            sensor.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sensor.kill()
            sensor.wait()
            result["stop"] = "did not stop within 20s of SIGTERM; killed"
    if early_fd >= 0:
        os.close(early_fd)
    result["exit_code"] = sensor.returncode
    events = read_json_lines(out_path)
    result["events"] = [e for e in events if e.get("type") != "started"]
    with open(err_path) as fh:
        result["stderr"] = tail(fh.read())
    if started is None:
        result["error"] = "the sensor did not report 'started' within %gs" % START_TIMEOUT
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def uptime() -> float:
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0])


def main() -> int:
    tty = open(RESULTS_TTY, "w")

    def emit(obj: dict) -> None:
        obj["uptime"] = uptime()
        tty.write(json.dumps(obj, sort_keys=True) + "\n")
        tty.flush()

    with open("/proc/cmdline") as fh:
        cmdline = fh.read()
    boot = boot_name(cmdline)
    emit({"type": "hello", "boot": boot, "kernel": os.uname().release, "python": sys.version.split()[0]})
    if boot == "probe":  # the KVM probe only needs to reach this point
        emit({"type": "done"})
        return 0
    with open(PLAN) as fh:
        plan = json.load(fh)
    if boot not in plan["boots"]:
        emit({"type": "error", "message": "unknown boot %r (plan has %s)" % (boot, ", ".join(plan["boots"]))})
        return 1
    os.makedirs(os.path.dirname(DENIED), exist_ok=True)
    true = shutil.which("true") or "/bin/true"
    for path in (DENIED, ALLOWED):
        shutil.copy(true, path)
        os.chmod(path, 0o755)
    reset_protected()
    try:  # /init brought lo up; kept open until the end
        listeners = [listen(port) for port in (DENIED_PORT, ALLOWED_PORT)]  # noqa: F841
    except OSError as exc:  # the connect probes then fail, and the host says why
        emit({"type": "error", "message": "cannot listen on 127.0.0.1: %s (is lo up?)" % exc})
    # the launcher runs python -B: precompile the package once here instead of in every sensor process
    import compileall

    compileall.compile_dir("/usr/lib/endura-sensor", quiet=2)
    for spec in plan["boots"][boot]:
        try:
            emit(run_check(spec) if spec["name"] == "check" else run_scenario(spec))
        except Exception as exc:  # report and go on with the next scenario
            emit({"type": "scenario", "name": spec["name"], "error": "%s: %s" % (type(exc).__name__, exc)})
    emit({"type": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
