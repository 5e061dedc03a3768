"""endura-sensor command line: --version, check, check-config, run."""
from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Sequence

from . import __version__, daemon, forward, handoff, probe
from . import bpf_dir as default_bpf_dir
from . import config as config_mod
from . import policy as policy_mod
from .enforce import TIERS
from .errors import SensorError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="endura-sensor", description="Endura Runtime Sensor (eBPF runtime security)")
    parser.add_argument("--version", action="version", version=f"endura-sensor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check", help="report what this host supports and which tier would be used",
                           description=probe.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--json", action="store_true", help="print one JSON object (for machines)")
    check.add_argument("--no-canary", action="store_true", help="load and attach only; do not exec a canary")
    check.add_argument("--bpf-dir", type=Path, help=f"directory of the .bpf.o files (default: {default_bpf_dir()})")

    cc = sub.add_parser("check-config", help="validate the configuration file",
                        description=config_mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cc.add_argument("--config", type=Path, default=config_mod.DEFAULT_PATH, help="default: %(default)s")
    cc.add_argument("--policy-dir", type=Path, help="also validate this policy directory (default: policy_dir "
                    "from the config, when it exists)")

    run = sub.add_parser("run", help="enforce the policy; events as JSON lines on stdout and in <log_dir>/events.log",
                         description=daemon.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", type=Path, default=config_mod.DEFAULT_PATH, help="default: %(default)s")
    run.add_argument("--policy-dir", type=Path, help="policy directory (default: policy_dir from the config)")
    run.add_argument("--log-dir", type=Path, help="event log directory (default: log_dir from the config)")
    run.add_argument("--deny", action="append", default=[], metavar="PATH",
                     help="also deny executing this file (by device and inode; repeatable)")
    run.add_argument("--tier", choices=["auto"] + [t.name for t in TIERS], default="auto")
    run.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")
    run.add_argument("--reload-interval", type=float, default=1.0, help="seconds between policy_dir checks")
    run.add_argument("--resolve-interval", type=float, default=5.0,
                     help="seconds between re-resolving rule paths and hashes (replaced or new files)")
    run.add_argument("--bpf-dir", type=Path, help="directory of the .bpf.o files")
    run.add_argument("--pin-dir", type=Path, help="BPF filesystem directory for the pinned programs "
                     "(default: bpf_pin_dir from the config; '' = do not pin)")

    run.add_argument("--handoff", action="store_true",
                     help="on SIGTERM/SIGINT leave the programs attached (pinned) for the next sensor to take over; "
                     "'endura-sensor release --unless-restarting' (the service's stop hook) detaches them when "
                     "the service really stops")

    rel = sub.add_parser("release", help="detach the programs a stopped sensor left pinned (fail_closed, --handoff, "
                         "a crash)", description=handoff.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rel.add_argument("--config", type=Path, default=config_mod.DEFAULT_PATH, help="default: %(default)s")
    rel.add_argument("--pin-dir", type=Path, help="default: bpf_pin_dir from the config")
    rel.add_argument("--log-dir", type=Path, help="default: log_dir from the config")
    rel.add_argument("--unless-restarting", action="store_true",
                     help="keep them when the service is restarting, crashed, or fail_closed = true (the service's "
                     "ExecStopPost=/stop_post hook)")
    rel.add_argument("--unit", default=handoff.UNIT, help="the systemd unit whose jobs tell a restart (default: %(default)s)")

    status = sub.add_parser("status", help="the running sensor: tier, policy, event counts, dropped events "
                            "(exit 0 running, 3 not running, 4 running but tampered with or not responding)")
    status.add_argument("--config", type=Path, default=config_mod.DEFAULT_PATH, help="default: %(default)s")
    status.add_argument("--log-dir", type=Path, help="default: log_dir from the config")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--verify", action="store_true", help="have the sensor compare the kernel state with its "
                        "policy now (SIGUSR1) and wait for the result")
    return parser


def cmd_check(ns: argparse.Namespace) -> int:
    report = probe.check(bpf_dir=ns.bpf_dir, canary=not ns.no_canary)
    if ns.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(probe.format_text(report))
    return report.exit_code


def cmd_check_config(ns: argparse.Namespace) -> int:
    try:
        cfg = config_mod.load(ns.config)
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"{ns.config}: ok (mode {cfg.mode}, enforcement {cfg.enforcement}, "
          f"terminate_process {str(cfg.terminate_process).lower()}{_forwarding_summary(cfg)})")
    for warning in _token_file_warnings(cfg):  # the sensor starts anyway: enforcement never waits for forwarding
        print(f"warning: {warning}", file=sys.stderr)
    directory = ns.policy_dir or Path(cfg.policy_dir)
    if ns.policy_dir is None and (not directory.is_dir() or not policy_mod.policy_files(directory)):
        print(f"endura-sensor: note: no policy files in {directory}: 'endura-sensor run' will refuse to start "
              "until one is added", file=sys.stderr)
        return 0
    try:
        pol = policy_mod.load_dir(directory)
    except policy_mod.PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    try:
        downgrades = policy_mod.check_downgrades(pol, cfg)
    except policy_mod.PolicyError as exc:  # policy_may_downgrade = false
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    for downgrade in downgrades:  # allowed (the default), but never quietly
        print(f"warning: {downgrade.warning()}", file=sys.stderr)
    for warning in policy_mod.resolve(pol).warnings:  # valid, but inactive until the file exists
        print(f"warning: {warning}", file=sys.stderr)
    counts = ", ".join(f"{n} {t}" for t, n in sorted(pol.summary().items()))
    print(f"{directory}: ok ({len(pol.rules)} rules: {counts}; from {', '.join(Path(f).name for f in pol.files)})")
    return 0


def _forwarding_summary(cfg: config_mod.Config) -> str:
    parts = ([f"syslog {cfg.syslog} ({cfg.syslog_facility})"] if cfg.syslog != "off" else []) + \
            ([f"collector {cfg.collector_url}"] if cfg.collector_url else [])
    return f", forwarding to {' and '.join(parts)}" if parts else ""


def _token_file_warnings(cfg: config_mod.Config) -> list:
    path = cfg.collector_token_file
    if not path or not cfg.collector_url:
        return [f"{cfg.path}: collector_token_file is set but collector_url is not: it is not used"] if path else []
    try:
        st = os.stat(path)
        token = forward.read_token(path)
    except OSError as exc:  # textfile.FileProblem: a FIFO, a device, too large, not UTF-8, ...
        return [f"collector_token_file {path}: cannot read: {exc.strerror or exc}; the sensor "
                "will run, and count the records it cannot forward as forward_dropped"]
    problems = []
    if not token:
        problems.append(f"collector_token_file {path} is empty")
    if st.st_mode & 0o077:
        problems.append(f"collector_token_file {path} is readable by group or others (mode "
                        f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    return problems


def _pin_dir(option: Path | None, cfg: config_mod.Config) -> Path | None:
    if option is None:
        return Path(cfg.bpf_pin_dir) if cfg.bpf_pin_dir else None
    return None if str(option) in ("", ".") else option


def cmd_run(ns: argparse.Namespace) -> int:
    if os.path.lexists(ns.config) or ns.config != config_mod.DEFAULT_PATH:  # a dangling symlink is an error
        cfg = config_mod.load(ns.config)
    else:
        cfg = config_mod.Config()
        daemon.log(f"{ns.config} not found; using the defaults (enforce, terminate_process = true)")
    return daemon.run(cfg, duration=ns.duration, policy_dir=ns.policy_dir or Path(cfg.policy_dir),
                      bpf_dir=ns.bpf_dir or default_bpf_dir(), deny=ns.deny, tier=ns.tier, log_dir=ns.log_dir,
                      reload_interval=ns.reload_interval, resolve_interval=ns.resolve_interval,
                      pin_dir=_pin_dir(ns.pin_dir, cfg), handoff=ns.handoff)


def cmd_release(ns: argparse.Namespace) -> int:
    """Detach what a stopped sensor left pinned; with --unless-restarting, only after a real stop."""
    if os.path.lexists(ns.config) or ns.config != config_mod.DEFAULT_PATH:
        try:
            cfg = config_mod.load(ns.config)
        except config_mod.ConfigError as exc:  # a broken config must not stop a release: use the defaults
            print(f"endura-sensor: warning: {exc.problems[0]}; using the default bpf_pin_dir and fail_closed",
                  file=sys.stderr)
            cfg = config_mod.Config()
    else:
        cfg = config_mod.Config()
    if daemon.read_status(ns.log_dir or Path(cfg.log_dir)) is not None:
        raise SensorError("a sensor is running (endura-sensor status); stop it first: it owns the pinned programs")
    decision = handoff.run_release(_pin_dir(ns.pin_dir, cfg), ns.log_dir or Path(cfg.log_dir),
                                   unless_restarting=ns.unless_restarting, fail_closed=cfg.fail_closed, unit=ns.unit)
    print(f"endura-sensor: {decision.reason}", file=sys.stderr)
    return 0


EXIT_NOT_RUNNING = 3  # LSB: program is not running
EXIT_DEGRADED = 4  # LSB: status unknown: running, but tampered with (sticky) or not responding
STALE_HEARTBEATS = 5  # heartbeats missed before `status` says the sensor does not respond


def process_state(pid: int) -> str:
    """The kernel's one-letter state of pid (R, S, T = stopped, ...), '' when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def health(status: dict, now: float) -> list:
    """Why the running sensor is not doing its job ([] when it is): tampering found, a stopped or hung loop."""
    problems = []
    tampered = status.get("tampered") or {}
    if tampered:
        problems.append(f"TAMPERED: {tampered.get('count', 1)} time(s), last at {tampered.get('last')} "
                        f"({tampered.get('reason')}): " + "; ".join(tampered.get("problems") or [])
                        + (" -- restored: " + "; ".join(tampered["restored"]) if tampered.get("restored") else ""))
    state = process_state(int(status["pid"]))
    beat = status.get("heartbeat")
    if state in ("T", "t"):
        problems.append(f"STOPPED (SIGSTOP or a tracer): no events are read; the programs still enforce, events beyond "
                        f"the ring buffer are lost (last heartbeat {now - beat:.0f}s ago)" if beat else "STOPPED")
    elif beat and now - beat > STALE_HEARTBEATS * float(status.get("heartbeat_interval_s") or 1):
        problems.append(f"NOT RESPONDING: last heartbeat {now - beat:.0f}s ago")
    return problems


def cmd_status(ns: argparse.Namespace) -> int:
    cfg = (config_mod.load(ns.config) if os.path.lexists(ns.config) or ns.config != config_mod.DEFAULT_PATH
           else config_mod.Config())
    log_dir = ns.log_dir or Path(cfg.log_dir)
    status = daemon.read_status(log_dir)
    if status is None:
        print(f"endura-sensor is not running (no live {log_dir / daemon.STATUS_NAME})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if ns.verify:
        status = _verify_now(log_dir, status)
    problems = health(status, time.time())
    code = EXIT_DEGRADED if problems else 0
    if ns.json:
        print(json.dumps(dict(status, health=problems), indent=2))
        return code
    counts = ", ".join(f"{n} {t}" for t, n in sorted(status["events"].items())) or "none"
    print(f"endura-sensor running (pid {status['pid']}) since {status['started']}\n"
          f"tier:        {status['tier']} ({', '.join(status['programs'])})\n"
          f"enforcement: {status['enforcement']}, terminate_process {str(status['terminate_process']).lower()}\n"
          f"policy:      {status['rules']} rules from {', '.join(status['policy_files']) or '--deny'} in "
          f"{status['policy_dir']}\n"
          f"last reload: {_format_reload(status['last_reload'])}\n"
          f"downgraded:  {_format_downgrades(status.get('downgrades') or [])}\n"
          f"events:      {counts}\n"
          f"logged:      {status.get('events_in_full', 0)} in full, {status.get('events_summarized', 0)} summarized "
          f"(flood control: {status.get('floods', 0)} flood(s))\n"
          f"dropped:     {status['events_dropped']} event(s) lost because the ring buffer was full\n"
          f"forwarding:  {_format_forwarding(status.get('forwarding') or {})}\n"
          f"verified:    {status.get('verified') or 'not yet'} (kernel maps, programs and pins against the policy)")
    for problem in problems:
        print(f"endura-sensor: {problem}", file=sys.stderr)
    return code


def _verify_now(log_dir: Path, status: dict, timeout: float = 10.0) -> dict:
    """SIGUSR1: the sensor verifies at its next loop turn; wait until status.json says it did."""
    before = status.get("verified")
    os.kill(int(status["pid"]), signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = daemon.read_status(log_dir)
        if current is None:
            raise SensorError("the sensor stopped while verifying")
        if current.get("verified") != before:
            return current
    error = SensorError(f"the sensor did not verify within {timeout:.0f}s: it is stopped or hung (see the heartbeat)")
    error.exit_code = EXIT_DEGRADED
    raise error


def _format_reload(reload: dict) -> str:
    if not reload:
        return "none"
    line = f"{reload['result']} at {reload['time']} ({reload['reason']})"
    if reload.get("problems"):  # rejected: the last good policy is kept
        line += ", the last good policy is kept:" + "".join(f"\n             {p}" for p in reload["problems"])
    return line


def _format_downgrades(downgrades: list) -> str:
    if not downgrades:
        return "no (the policy keeps sensor.conf's enforcement and terminate_process)"
    return "\n             ".join(
        f"{d['setting']} = {json.dumps(d['value'])} at {d['source']} (sensor.conf: {json.dumps(d['sensor_conf'])})"
        for d in downgrades)


def _format_forwarding(forwarding: dict) -> str:
    if not forwarding:
        return "off"
    lines = []
    for kind, s in sorted(forwarding.items()):
        line = f"{kind} {s['target']}: {s['sent']} sent, {s['dropped']} dropped (forward_dropped), {s['queued']} queued"
        if s["dropped_by_reason"]:
            line += " [" + ", ".join(f"{n} {reason}" for reason, n in sorted(s["dropped_by_reason"].items())) + "]"
        if s.get("last_error"):
            line += f"; last error: {s['last_error']}"
        lines.append(line)
    return "\n             ".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_usage(sys.stderr)
        print("endura-sensor: error: a command is required (check, check-config, run, status, release)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return {"check": cmd_check, "check-config": cmd_check_config, "run": cmd_run,
                "status": cmd_status, "release": cmd_release}[ns.command](ns)
    except SensorError as exc:
        if exc.detail:
            print(exc.detail.rstrip(), file=sys.stderr)
        print(f"endura-sensor: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
