"""Gapless restarts: a stopping sensor leaves its programs attached for its successor.

The service runs `endura-sensor run --handoff`: on SIGTERM it exits with its programs still pinned (they
keep enforcing the last policy, in the kernel, while no sensor runs), and the next sensor attaches its
own programs before it removes those (daemon.Sensor.start). Whether anything else should happen is
decided after the process is gone, by `endura-sensor release --unless-restarting` (the unit's
ExecStopPost=, OpenRC's stop_post()):

| why the sensor stopped | what stays attached |
|---|---|
| a restart (`systemctl restart`/`try-restart`, a package upgrade's restart, `rc-service ... restart`) | everything, until the new sensor takes over: no gap |
| a crash, a kill, an OOM kill (systemd's `$SERVICE_RESULT` is not `success`): `Restart=on-failure` follows | everything, until the restarted sensor takes over |
| `fail_closed = true` in sensor.conf | everything, until the next start or `endura-sensor release` |
| a real stop (`systemctl stop`, removal of the package, shutdown) | nothing: `release` detaches the programs |

A restart is recognised from systemd's job for the unit (the stop half of a restart job still shows the
job type `restart`) or from OpenRC's `RC_CMD=restart`.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

#: systemd job types that mean "the unit is about to run again"
RESTART_JOB_TYPES = frozenset({"restart", "try-restart", "reload-or-start", "start", "verify-active"})
UNIT = "endura-sensor.service"


@dataclass(frozen=True)
class Decision:
    release: bool
    reason: str


def restart_jobs(list_jobs_output: str, unit: str) -> List[str]:
    """The types of the jobs queued or running for `unit` in `systemctl list-jobs --no-legend --plain`
    output (columns: JOB UNIT TYPE STATE)."""
    types = []
    for line in list_jobs_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == unit:
            types.append(fields[2])
    return types


def decide(*, fail_closed: bool, service_result: Optional[str], job_types: Sequence[str],
           rc_cmd: Optional[str]) -> Decision:
    """Whether `release --unless-restarting` detaches what the stopped sensor left pinned."""
    if fail_closed:
        return Decision(False, "fail_closed = true: the programs stay attached until the next start or "
                               "'endura-sensor release'")
    if service_result and service_result != "success":
        return Decision(False, f"the sensor ended with '{service_result}': the programs stay attached until the "
                               "restarted sensor takes over (Restart=on-failure)")
    pending = [t for t in job_types if t in RESTART_JOB_TYPES]
    if pending:
        return Decision(False, f"the service is restarting (systemd job '{pending[0]}'): the programs stay "
                               "attached until the new sensor takes over")
    if rc_cmd == "restart":
        return Decision(False, "the service is restarting (OpenRC): the programs stay attached until the new "
                               "sensor takes over")
    return Decision(True, "the service was stopped")


def systemd_jobs(unit: str, runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> List[str]:
    """Job types systemd holds for the unit now ([] without systemd or when systemctl fails)."""
    if not Path("/run/systemd/system").is_dir():
        return []
    try:
        out = runner(["systemctl", "list-jobs", "--no-legend", "--plain", "--no-pager"], capture_output=True,
                     text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return restart_jobs(out.stdout or "", unit)


def pinned(pin_dir: Path) -> List[Path]:
    try:
        return sorted(p for p in Path(pin_dir).iterdir() if p.name.startswith("endura_"))
    except OSError:
        return []


def release(pin_dir: Path) -> List[str]:
    """Unlink every pinned endura_* object (the kernel detaches a link when its last reference goes)."""
    removed = []
    for path in pinned(pin_dir):
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
    return removed


def append_record(log_dir: Path, record: Dict) -> None:
    """One record at the end of events.log (no sensor runs now: nobody else writes it)."""
    try:
        with open(Path(log_dir) / "events.log", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass


def run_release(pin_dir: Optional[Path], log_dir: Path, *, unless_restarting: bool, fail_closed: bool,
                unit: str = UNIT, env: Mapping[str, str] = os.environ,
                jobs: Callable[[str], List[str]] = systemd_jobs) -> Decision:
    """The `release` command: decide, detach when decided, say so on stderr and in events.log."""
    if pin_dir is None:
        return Decision(False, "bpf_pin_dir is \"\": nothing is pinned, nothing to release")
    if unless_restarting:
        decision = decide(fail_closed=fail_closed, service_result=env.get("SERVICE_RESULT"),
                          job_types=jobs(unit), rc_cmd=env.get("RC_CMD"))
    else:
        decision = Decision(True, "released by hand")
    left = [p.name for p in pinned(pin_dir)]
    if decision.release:
        removed = release(pin_dir)
        for stale in Path(log_dir).glob(".rules-*.json"):  # what rule ids meant, for a successor: none comes
            try:
                stale.unlink()
            except OSError:
                pass
        if removed:
            append_record(log_dir, {"type": "released", "reason": decision.reason, "pins": removed,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        decision = Decision(True, f"{decision.reason}: detached {len(removed)} pinned object(s) in {pin_dir}"
                            if removed else f"{decision.reason}: nothing was pinned in {pin_dir}")
    elif left:
        append_record(log_dir, {"type": "handed_off", "reason": decision.reason, "pins": left,
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return decision
