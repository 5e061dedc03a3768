"""The upgrade VM's driver (stdlib only): runs as a systemd oneshot unit inside a guest booted with systemd.

For each package format in /vmtest/upgrade-plan.json (deb, rpm, arch, tgz), with the format's own tool
and its own maintainer scripts (which call the real systemctl here):
install version 1, add a policy with a `kill` rule of every type, start endura-sensor.service, then
while vmtest/denied_loop.py tries denied operations of every type as fast as it can: upgrade in place
to version 2 (its scripts restart the service), `systemctl restart`, a crash (SIGKILL of the main
process; Restart=on-failure), `systemctl reload`. A denied operation that is not killed is a window.
Then `systemctl stop` (the denied program must run again: a real stop detaches) and remove the package.
One JSON line per format on /dev/ttyS1, then {"type": "done"}; the host judges (vmtest.upgrade).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

PLAN = "/vmtest/upgrade-plan.json"
RESULTS_TTY = "/dev/ttyS1"
LOOP = "/vmtest/denied_loop.py"
DENIED = "/opt/endura-upgrade/denied"
PROTECTED = "/opt/endura-upgrade/protected"
DENIED_PORT = 40471
UNIT = "endura-sensor.service"
PACMAN_CONF = "/etc/endura-upgrade-pacman.conf"
CURRENT: list = []


def sh(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def main_pid() -> int:
    out = sh("systemctl", "show", "-p", "MainPID", "--value", UNIT).stdout.strip()
    return int(out or 0)


def wait_running(previous_pid: int, timeout: float = 120) -> float:
    """Seconds until the service is active with a main pid other than previous_pid and has said READY."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pid = main_pid()
        active = sh("systemctl", "is-active", UNIT).stdout.strip()
        if active == "active" and pid and pid != previous_pid:
            return time.monotonic() - start
        time.sleep(0.2)
    raise RuntimeError(f"{UNIT} did not become active with a new main pid (not {previous_pid}) within {timeout}s: "
                       + sh("systemctl", "show", "-p", "ActiveState,SubState,MainPID,Result", UNIT).stdout)


def arch_shell(action):
    """Run pacman as on Arch Linux, where /bin/sh is bash: Debian's pacman runs install scriptlets with
    /bin/sh (dash here), which cannot read the `function name() {` of a .INSTALL file."""
    os.rename("/bin/sh", "/bin/sh.dash")
    os.symlink("bash", "/bin/sh")
    try:
        return action()
    finally:
        os.unlink("/bin/sh")
        os.rename("/bin/sh.dash", "/bin/sh")


def install(family: str, path: str, upgrade: bool) -> subprocess.CompletedProcess:
    if family == "deb":
        return sh("dpkg", "-i", path)
    if family == "rpm":  # Debian's rpm with its own database: the guest's python3/libbpf are dpkg's
        return sh("rpm", "-U" if upgrade else "-i", "--nodeps", path)
    if family == "arch":
        return arch_shell(lambda: sh("pacman", "--config", PACMAN_CONF, "-U", "--noconfirm", "--nodeps", "--nodeps",
                                     path))
    if family == "tgz":
        work = "/tmp/tgz-upgrade"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        sh("tar", "-xzf", path, "-C", work)
        (top,) = os.listdir(work)
        return sh("sh", f"{work}/{top}/install.sh")
    raise ValueError(family)


def remove(family: str) -> subprocess.CompletedProcess:
    if family == "deb":
        return sh("dpkg", "--purge", "endura-sensor")
    if family == "rpm":
        return sh("rpm", "-e", "--nodeps", "endura-sensor")
    if family == "arch":
        return arch_shell(lambda: sh("pacman", "--config", PACMAN_CONF, "-R", "--noconfirm", "--nodeps", "--nodeps",
                                     "endura-sensor"))
    work = "/tmp/tgz-upgrade"  # the tarball's own uninstall.sh (of the last version installed)
    (top,) = os.listdir(work)
    return sh("sh", f"{work}/{top}/uninstall.sh", "--purge")


def policy_text() -> str:
    rules = [dict(name="u-exec", type="exec", path=DENIED), dict(name="u-file", type="file", path=PROTECTED),
             dict(name="u-net", type="connect", address="127.0.0.1", port=DENIED_PORT),
             dict(name="u-bpf", type="bpf"), dict(name="u-modules", type="module_load")]
    return "".join("[[rule]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in r.items()) + 'action = "kill"\n'
                   for r in rules)


def run_format(fmt: dict) -> dict:
    family = fmt["family"]
    out: dict = {"type": "format", "family": family, "steps": {}}
    CURRENT[:] = [out]  # what main() reports with the error if a step raises
    steps = out["steps"]
    t = time.monotonic()
    proc = install(family, fmt["v1"], upgrade=False)
    steps["install_v1"] = {"rc": proc.returncode, "s": round(time.monotonic() - t, 2), "tail": proc.stdout[-400:] + proc.stderr[-400:]}
    os.makedirs("/etc/endura/policies", exist_ok=True)
    with open("/etc/endura/policies/50-upgrade.toml", "w") as fh:
        fh.write(policy_text())
    sh("systemctl", "daemon-reload")
    t = time.monotonic()
    proc = sh("systemctl", "start", UNIT)
    steps["start"] = {"rc": proc.returncode, "command_s": round(time.monotonic() - t, 2)}
    steps["start"]["s"] = round(steps["start"]["command_s"] + wait_running(0), 2)
    stop_file = f"/tmp/loop-{family}.stop"
    loop = subprocess.Popen([sys.executable, LOOP, stop_file, DENIED, PROTECTED, str(DENIED_PORT), "0.02"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    try:
        pid = main_pid()
        t = time.monotonic()
        proc = install(family, fmt["v2"], upgrade=True)
        steps["upgrade"] = {"rc": proc.returncode, "s": round(time.monotonic() - t, 2),
                            "tail": proc.stdout[-400:] + proc.stderr[-400:]}
        steps["upgrade"]["restarted_in_s"] = round(wait_running(pid), 2)
        for name, argv in (("restart", ("systemctl", "restart", UNIT)),
                           ("crash", ("systemctl", "kill", "--kill-who=main", "-s", "KILL", UNIT))):
            pid = main_pid()
            t = time.monotonic()
            proc = sh(*argv)
            command_s = time.monotonic() - t
            steps[name] = {"rc": proc.returncode, "command_s": round(command_s, 2),
                           "s": round(command_s + wait_running(pid), 2)}
        proc = sh("systemctl", "reload", UNIT)
        steps["reload"] = {"rc": proc.returncode}
        time.sleep(2)
    finally:
        open(stop_file, "w").close()
        try:
            out["loop"] = json.loads(loop.communicate(timeout=120)[0])
        except (ValueError, subprocess.SubprocessError) as exc:
            out["loop"] = {"error": str(exc)}
    out["version_running"] = sh("/usr/bin/endura-sensor", "--version").stdout.strip()
    proc = sh("systemctl", "stop", UNIT)
    steps["stop"] = {"rc": proc.returncode}
    after = subprocess.run([DENIED], capture_output=True)
    out["denied_after_stop"] = after.returncode  # 0: a real stop detached the programs
    out["pins_after_stop"] = sorted(os.listdir("/sys/fs/bpf/endura")) if os.path.isdir("/sys/fs/bpf/endura") else []
    out["journal"] = [line for line in sh("journalctl", "-u", UNIT, "--no-pager", "-o", "short-monotonic").stdout.splitlines()
                      if '"type":' not in line][-60:]  # not the events: the sensor's and systemd's own lines
    # init (systemd) sandboxes units with bpf() (PrivateDevices=: a device program): what it logged about it
    out["systemd_bpf_warnings"] = [line for line in sh("journalctl", "-b", "_PID=1", "-p", "warning", "--no-pager",
                                                        "-o", "cat").stdout.splitlines() if "bpf" in line.lower()]
    proc = remove(family)
    steps["remove"] = {"rc": proc.returncode, "tail": proc.stdout[-300:] + proc.stderr[-300:]}
    return out


def setup() -> None:
    os.makedirs(os.path.dirname(DENIED), exist_ok=True)
    shutil.copy("/usr/bin/true", DENIED)
    with open(PROTECTED, "w") as fh:
        fh.write("protected: the original content\n")
    os.makedirs("/var/lib/pacman", exist_ok=True)
    with open(PACMAN_CONF, "w") as fh:  # local files, no repositories: nothing is fetched
        fh.write("[options]\nRootDir = /\nDBPath = /var/lib/pacman/\nLocalFileSigLevel = Never\nSigLevel = Never\n")


def main() -> int:
    with open(RESULTS_TTY, "w", buffering=1) as tty:
        def emit(record: dict) -> None:
            tty.write(json.dumps(record) + "\n")
            tty.flush()

        emit({"type": "hello", "uptime": open("/proc/uptime").read().split()[0],
              "lsm": open("/sys/kernel/security/lsm").read().strip() if os.path.exists("/sys/kernel/security/lsm") else ""})
        plan = json.load(open(PLAN))
        setup()
        for fmt in plan["formats"]:
            try:
                emit(run_format(fmt))
            except Exception as exc:  # reported for this format; the next one still runs
                partial = CURRENT[0] if CURRENT and CURRENT[0]["family"] == fmt["family"] else {}
                emit({"type": "format", "family": fmt["family"], "steps": partial.get("steps", {}),
                      "error": f"{type(exc).__name__}: {exc}",
                      "journal": [line for line in sh("journalctl", "-u", UNIT, "--no-pager", "-o",
                                                      "short-monotonic").stdout.splitlines()
                                  if '"type":' not in line][-40:]})
                sh("systemctl", "stop", UNIT)
                remove(fmt["family"])
        emit({"type": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
