"""endura-sensor command line: --version, check, check-config, run."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import List, Sequence

from . import __version__, libbpf, probe
from . import bpf_dir as default_bpf_dir
from . import config as config_mod
from .enforce import TIER_BY_NAME, TIERS, Enforcer
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

    run = sub.add_parser("run", help="enforce: load the best tier and print events as JSON lines on stdout")
    run.add_argument("--config", type=Path, default=config_mod.DEFAULT_PATH, help="default: %(default)s")
    run.add_argument("--deny", action="append", default=[], metavar="PATH",
                     help="deny executing this file (by device and inode; repeatable)")
    run.add_argument("--tier", choices=["auto"] + [t.name for t in TIERS], default="auto")
    run.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")
    run.add_argument("--bpf-dir", type=Path, help="directory of the .bpf.o files")
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
          f"terminate_process {str(cfg.terminate_process).lower()})")
    return 0


def _log(message: str) -> None:
    print(f"endura-sensor: {message}", file=sys.stderr, flush=True)


def _start(ns: argparse.Namespace, cfg: config_mod.Config) -> Enforcer:
    directory = ns.bpf_dir or default_bpf_dir()
    enforce, terminate = cfg.enforcement == "enforce", cfg.terminate_process
    if ns.tier != "auto":
        candidates = [TIER_BY_NAME[ns.tier]]
    else:
        facts = probe.host_facts()
        candidates = [t for t in TIERS if t.name != "lsm" or facts.bpf_lsm_active]
        if not facts.bpf_lsm_active:
            _log("skipping tier lsm: bpf is not in the active LSM list ('endura-sensor check' shows the fix)")
    failures: List[str] = []
    for tier in candidates:
        try:
            return Enforcer(tier, directory, enforce=enforce, terminate=terminate, deny=ns.deny)
        except libbpf.BpfError as exc:
            failures.append(f"{tier.name}: {exc}")
            _log(f"tier {tier.name} unavailable: {exc}")
    raise SensorError("no enforcement tier could be loaded (" + "; ".join(failures) + "); run 'endura-sensor check'")


def cmd_run(ns: argparse.Namespace) -> int:
    if ns.config.exists() or ns.config != config_mod.DEFAULT_PATH:
        cfg = config_mod.load(ns.config)
    else:
        cfg = config_mod.Config()
        _log(f"{ns.config} not found; using the defaults (enforce, terminate_process = true)")
    enforcer = _start(ns, cfg)
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.append(True))
    try:
        _log(f"tier {enforcer.tier.name}, enforcement {cfg.enforcement}, terminate_process "
             f"{str(cfg.terminate_process).lower()}, {len(enforcer.rules)} deny rule(s)")
        if cfg.enforcement == "enforce" and not enforcer.tier.can_block and not cfg.terminate_process:
            _log(f"warning: tier {enforcer.tier.name} can only kill and terminate_process = false: "
                 "violations are reported, not enforced")
        print(json.dumps({"type": "started", "tier": enforcer.tier.name, "enforcement": cfg.enforcement,
                          "terminate_process": cfg.terminate_process, "rules": enforcer.rules}), flush=True)

        def emit(event) -> None:
            print(json.dumps(event.to_dict()), flush=True)

        deadline = None if ns.duration is None else time.monotonic() + ns.duration
        reported_drops = 0
        while not stop and (deadline is None or time.monotonic() < deadline):
            enforcer.poll(emit, 100)
            drops = enforcer.drops()
            if drops != reported_drops:
                print(json.dumps({"type": "events_dropped", "total": drops, "new": drops - reported_drops}),
                      flush=True)
                reported_drops = drops
    finally:
        enforcer.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_usage(sys.stderr)
        print("endura-sensor: error: a command is required (check, check-config, run)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return {"check": cmd_check, "check-config": cmd_check_config, "run": cmd_run}[ns.command](ns)
    except SensorError as exc:
        if exc.detail:
            print(exc.detail.rstrip(), file=sys.stderr)
        print(f"endura-sensor: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
