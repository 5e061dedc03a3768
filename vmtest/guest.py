"""The driver inside the kernel test VM (stdlib only, Python >= 3.9: it runs on the guest's python3).

Reads /vmtest/plan.json and the boot name from the kernel command line (`endura_vmtest=<boot>`),
then runs `endura-sensor check --json` and each scenario of that boot, and writes one JSON object
per line to /dev/ttyS1: {"type": "hello"}, {"type": "check"}, {"type": "scenario"}..., {"type": "done"}.
It records what happened (exit codes, probe outcomes, events); the host judges it (vmtest.results).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

PLAN = "/vmtest/plan.json"
RESULTS_TTY = "/dev/ttyS1"
DENIED = "/opt/endura-vmtest/denied"
ALLOWED = "/opt/endura-vmtest/allowed"
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


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


POLICY_DIR = "/etc/endura/vmtest-policies"  # empty: only the --deny rule applies, not the packaged examples


def write_config(path: str, enforcement: str, terminate: bool) -> None:
    os.makedirs(POLICY_DIR, exist_ok=True)
    with open(path, "w") as fh:
        fh.write('mode = "standalone"\nenforcement = "%s"\nterminate_process = %s\npolicy_dir = "%s"\n'
                 % (enforcement, "true" if terminate else "false", POLICY_DIR))


def run_check() -> dict:
    start = time.monotonic()
    proc = subprocess.run([SENSOR, "check", "--json"], capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    return {"type": "check", "exit_code": proc.returncode, "report": report, "stderr": tail(proc.stderr),
            "seconds": round(time.monotonic() - start, 2)}


def run_scenario(spec: dict) -> dict:
    start = time.monotonic()
    result = {"type": "scenario", "name": spec["name"], "tier_requested": spec["tier"],
              "enforcement": spec["enforcement"], "terminate": spec["terminate"]}
    if spec["tier"] is None:  # no sensor running
        result["probes"] = {"denied": probe(DENIED), "allowed": probe(ALLOWED)}
        result["seconds"] = round(time.monotonic() - start, 2)
        return result
    conf = "/etc/endura/vmtest-%s.conf" % spec["name"]
    write_config(conf, spec["enforcement"], spec["terminate"])
    out_path, err_path = "/tmp/sensor-%s.out" % spec["name"], "/tmp/sensor-%s.err" % spec["name"]
    with open(out_path, "w") as out, open(err_path, "w") as err:
        sensor = subprocess.Popen([SENSOR, "run", "--config", conf, "--deny", DENIED, "--tier", spec["tier"]],
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
        result["probes"] = {"denied": probe(DENIED), "allowed": probe(ALLOWED)}
        time.sleep(0.3)  # let the ring buffer be polled
    if sensor.poll() is None:
        sensor.send_signal(signal.SIGTERM)
        try:
            sensor.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sensor.kill()
            sensor.wait()
            result["stop"] = "did not stop within 20s of SIGTERM; killed"
    result["exit_code"] = sensor.returncode
    events = []
    with open(out_path) as fh:
        for line in fh:
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
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
    # the launcher runs python -B: precompile the package once here instead of in every sensor process
    import compileall

    compileall.compile_dir("/usr/lib/endura-sensor", quiet=2)
    for spec in plan["boots"][boot]:
        try:
            emit(run_check() if spec["name"] == "check" else run_scenario(spec))
        except Exception as exc:  # report and go on with the next scenario
            emit({"type": "scenario", "name": spec["name"], "error": "%s: %s" % (type(exc).__name__, exc)})
    emit({"type": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
