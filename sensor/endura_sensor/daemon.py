"""`endura-sensor run`: load the policy and the best tier, enforce, reload, log events.

Records (JSON lines) go to stdout and to `<log_dir>/events.log`: `started`, one per kernel event
(`exec_denied`, `file_open_denied`, `connect_denied`, `module_load_denied`, `bpf_denied`),
`policy_loaded`, `policy_rejected`, `policy_warning`, `events_dropped`, `forward_dropped`, `stopped`.
Messages for people go to stderr. With `syslog` / `collector_url` set in sensor.conf, every record is also
forwarded, from threads of their own (forward.py): a receiver that is down or slow costs counted drops
(`forward_dropped`), never a stalled event loop.

Reload: on SIGHUP, when a file in policy_dir changes (checked every `reload_interval` seconds), and
every `resolve_interval` seconds the rules are resolved again (a replaced binary has a new inode).
A policy that does not parse is rejected and the last good one stays in the kernel.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

from . import config as config_mod
from . import enforce as enforce_mod
from . import eventlog, forward, libbpf, probe
from . import policy as policy_mod
from .enforce import TIER_BY_NAME, TIERS, Enforcer
from .errors import SensorError

STATUS_NAME = "status.json"


def read_status(log_dir: Path) -> dict | None:
    """The running sensor's status (None when it is not running: no file, or its pid is gone)."""
    try:
        status = json.loads((Path(log_dir) / STATUS_NAME).read_text())
        os.kill(int(status["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status


_BPF_CHILD = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
              # bpf(BPF_PROG_GET_NEXT_ID, NULL, 0): harmless; exit 1 when refused with EPERM
              "r = libc.syscall(%d, 11, None, 0); sys.exit(1 if r < 0 and ctypes.get_errno() == 1 else 0)")
_BPF_NR = {"x86_64": 321, "aarch64": 280}


def bpf_allowed_for_a_child() -> bool:
    """True when a child process may call bpf() (neither SIGKILLed nor refused by a bpf rule)."""
    nr = _BPF_NR.get(os.uname().machine)
    if nr is None:
        return True
    try:
        return subprocess.run([sys.executable, "-c", _BPF_CHILD % nr], timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def log(message: str) -> None:
    print(f"endura-sensor: {message}", file=sys.stderr, flush=True)


class Sensor:
    def __init__(self, cfg: config_mod.Config, *, policy_dir: Path, bpf_dir: Path, deny: Sequence[str] = (),
                 tier: str = "auto", log_dir: Path | None = None, reload_interval: float = 1.0,
                 resolve_interval: float = 5.0, pin_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.pin_dir = pin_dir  # None: not pinned (enforcement ends with this process)
        self.policy_dir = Path(policy_dir)
        self.bpf_dir = Path(bpf_dir)
        self.deny = list(deny)
        self.tier_choice = tier
        self.reload_interval, self.resolve_interval = reload_interval, resolve_interval
        self.log_dir = Path(log_dir or cfg.log_dir)
        self.policy: policy_mod.Policy = policy_mod.Policy()
        self.enforcer: Enforcer | None = None
        self.events: eventlog.EventLog | None = None
        self.reported_drops = 0
        self.forwarders = forward.Forwarders([])
        self.forward_check_interval = 1.0
        self.reload_requested = False
        self.stop_requested = False
        self._signature: tuple = ()
        self._offset = eventlog.boot_to_wall_offset()
        self.counts: dict = {}
        self.started_at = time.time()
        self.last_reload: dict = {}

    # ------------------------------------------------------------ output

    def emit(self, record: dict) -> None:
        print(json.dumps(record), flush=True)
        if self.events is not None:
            self.events.write(record)
        self.forwarders.submit(record)

    def _settings(self, policy: policy_mod.Policy):
        enforcement = policy.enforcement or self.cfg.enforcement
        terminate = self.cfg.terminate_process if policy.terminate_process is None else policy.terminate_process
        return enforcement, terminate

    # ------------------------------------------------------------ policy

    def load_policy(self) -> policy_mod.Policy:
        """The policy at start: a valid one, or (with --deny only) an empty one; else SensorError."""
        self._signature = policy_mod.dir_signature(self.policy_dir)
        try:
            return policy_mod.load_dir(self.policy_dir, require_rules=not self.deny)
        except policy_mod.PolicyError as exc:
            if self.deny and (not self.policy_dir.is_dir() or not policy_mod.policy_files(self.policy_dir)):
                log(f"no policy files in {self.policy_dir}; enforcing the --deny rules only")
                return policy_mod.Policy()
            raise SensorError(f"no valid policy in {self.policy_dir}; refusing to start (nothing would be "
                              "enforced). Fix the problems above and check them with 'endura-sensor check-config'",
                              detail=exc.detail) from None

    def reload(self, reason: str) -> bool:
        """Swap in the policy on disk; on any problem keep the last good one. True when swapped."""
        assert self.enforcer is not None
        self._signature = policy_mod.dir_signature(self.policy_dir)
        try:
            new = policy_mod.load_dir(self.policy_dir, require_rules=not self.deny)
        except policy_mod.PolicyError as exc:
            for problem in exc.problems:
                log(f"policy rejected: {problem}")
            log(f"keeping the last good policy ({len(self.policy.rules)} rules from "
                f"{', '.join(Path(f).name for f in self.policy.files) or '--deny'})")
            self.emit({"type": "policy_rejected", "reason": reason, "problems": exc.problems,
                       "kept_rules": len(self.policy.rules)})
            self.last_reload = {"time": eventlog.iso_time(time.time()), "result": "rejected", "reason": reason,
                                "problems": exc.problems[:20]}
            self.write_status()
            return False
        try:
            self._apply(new, reason)
        except SensorError as exc:
            log(f"policy rejected: {exc}; keeping the last good policy (the kernel maps may hold both)")
            self.emit({"type": "policy_rejected", "reason": reason, "problems": [str(exc)],
                       "kept_rules": len(self.policy.rules)})
            return False
        return True

    def _apply(self, new: policy_mod.Policy, reason: str) -> None:
        assert self.enforcer is not None
        enforcement, terminate = self._settings(new)
        applied = self.enforcer.apply(new, enforce=enforcement == "enforce", terminate=terminate,
                                      extra_exec=self.deny)
        self.policy = new
        self.last_reload = {"time": eventlog.iso_time(time.time()), "result": "loaded", "reason": reason}
        self.write_status()
        for warning in applied.warnings:
            log(f"warning: {warning}")
        self.emit({"type": "policy_loaded", "reason": reason, "rules": len(new.rules), "by_type": new.summary(),
                   "entries": applied.counts, "programs": self.enforcer.attached, "changed": applied.changed,
                   "enforcement": enforcement,
                   "terminate_process": terminate, "files": list(new.files), "warnings": applied.warnings})

    def resolve_again(self) -> None:
        """Re-resolve paths and hashes of the current policy (binaries replaced, files created)."""
        assert self.enforcer is not None
        enforcement, terminate = self._settings(self.policy)
        try:
            applied = self.enforcer.apply(self.policy, enforce=enforcement == "enforce", terminate=terminate,
                                          extra_exec=self.deny)
        except SensorError as exc:
            log(f"warning: re-resolving the policy failed: {exc}; the maps keep what they hold")
            return
        for collision in applied.new_collisions:  # e.g. a hard link made between two files with different rules
            log(f"warning: {collision}; the kernel enforces the strictest of them")
        if applied.changed or applied.new_collisions:
            self.emit({"type": "policy_loaded", "reason": "files changed", "rules": len(self.policy.rules),
                       "entries": applied.counts, "changed": applied.changed, "warnings": applied.warnings})

    # ------------------------------------------------------------ start / loop

    def remove_pins_that_would_kill_us(self) -> List[str]:
        """An earlier sensor's pinned programs may enforce a bpf() rule, with that sensor's pid exempt, not
        ours: our first bpf() call would be killed. Unless we run in the service's own cgroup (exempt too:
        the systemd unit, OpenRC), detach those programs before loading: a short gap, logged."""
        if self.pin_dir is None or not self.pin_dir.is_dir() or enforce_mod.own_service_cgroup()[0]:
            return []
        risky = [p for p in sorted(self.pin_dir.glob("endura_*"))
                 if p.name.rsplit("-", 1)[0] in ("endura_lsm_bpf", "endura_fentry_bpf", "endura_tp_sys_enter")]
        if not risky:
            return []
        removed = []
        for path in sorted(self.pin_dir.glob("endura_*")):
            try:
                path.unlink()
                removed.append(path.name)
            except OSError:
                pass
        log(f"removed the programs an earlier sensor left pinned in {self.pin_dir} before loading: they may deny "
            "bpf() to any other process, this one included, and this sensor does not run in a cgroup of its own "
            "(e.g. endura-sensor.service); nothing is enforced until this sensor is attached")
        # the kernel releases an unpinned link after an RCU grace period: wait until a child may call bpf()
        deadline = time.monotonic() + 10
        while not bpf_allowed_for_a_child() and time.monotonic() < deadline:
            time.sleep(0.05)
        return removed

    def _load_tier(self, policy: policy_mod.Policy) -> Enforcer:
        enforcement, terminate = self._settings(policy)
        if self.tier_choice != "auto":
            candidates = [TIER_BY_NAME[self.tier_choice]]
        else:
            facts = probe.host_facts()
            candidates = [t for t in TIERS if t.name != "lsm" or facts.bpf_lsm_active]
            if not facts.bpf_lsm_active:
                log("skipping tier lsm: bpf is not in the active LSM list ('endura-sensor check' shows the fix)")
        failures: List[str] = []
        for tier in candidates:
            try:
                return Enforcer(tier, self.bpf_dir, enforce=enforcement == "enforce", terminate=terminate,
                                deny=self.deny, policy=policy, pin_dir=self.pin_dir)
            except libbpf.BpfError as exc:
                failures.append(f"{tier.name}: {exc}")
                log(f"tier {tier.name} unavailable: {exc}")
        raise SensorError("no enforcement tier could be loaded (" + "; ".join(failures) + "); run 'endura-sensor check'")

    def start(self) -> None:
        policy = self.load_policy()
        self.events = eventlog.EventLog(self.log_dir, self.cfg.log_max_bytes, self.cfg.log_keep)
        early = self.remove_pins_that_would_kill_us()
        self.enforcer = self._load_tier(policy)
        self.policy = policy
        replaced = early + self.enforcer.remove_stale_pins()  # the previous sensor's, now that ours enforce
        if replaced:
            log(f"took over from programs an earlier sensor left pinned in {self.pin_dir}: {', '.join(replaced)}")
        if self.enforcer.pin_problem:
            log(f"warning: {self.enforcer.pin_problem}")
            applied_warnings = [self.enforcer.pin_problem]
        else:
            applied_warnings = []
        enforcement, terminate = self._settings(policy)
        since_exec = eventlog.seconds_since_exec()
        self.start_forwarding()
        applied = self.enforcer.apply(policy, enforce=enforcement == "enforce", terminate=terminate,
                                      extra_exec=self.deny)  # no change: reports the counts and warnings
        for warning in applied.warnings:
            log(f"warning: {warning}")
        applied.warnings.extend(applied_warnings)
        log(f"tier {self.enforcer.tier.name}, enforcement {enforcement}, terminate_process {str(terminate).lower()}, "
            f"{len(policy.rules)} policy rule(s) from {self.policy_dir}, {len(self.deny)} --deny rule(s)")
        if enforcement == "enforce" and not self.enforcer.tier.can_block and not terminate:
            log(f"warning: tier {self.enforcer.tier.name} can only kill and terminate_process = false: "
                "violations of 'block' rules are reported, not enforced ('kill' rules still kill)")
        self.emit({"type": "started", "tier": self.enforcer.tier.name, "enforcement": enforcement,
                   "terminate_process": terminate, "rules": self.enforcer.rules, "policy_rules": len(policy.rules),
                   "by_type": policy.summary(), "entries": applied.counts, "programs": self.enforcer.attached,
                   "warnings": applied.warnings,
                   "pinned": self.enforcer.pinned, "replaced_pins": replaced,
                   "cgroup": self.enforcer.cgroup_path, "cgroup_exempt_from_bpf_rules": bool(self.enforcer.cgroup_id), "fail_closed": self.cfg.fail_closed,
                   "start_to_enforcing_ms": None if since_exec is None else round(since_exec * 1000),
                   "rss_bytes": eventlog.rss_bytes(), "log": str(self.events.path),
                   "forwarding": {d.kind: d.target for d in self.forwarders.destinations}})
        self.events.flush()
        self.write_status()
        eventlog.sd_notify(f"READY=1\nSTATUS=enforcing with tier {self.enforcer.tier.name}")

    def write_status(self) -> None:
        """<log_dir>/status.json for `endura-sensor status` (atomic replace)."""
        if self.enforcer is None:
            return
        enforcement, terminate = self._settings(self.policy)
        status = {"pid": os.getpid(), "tier": self.enforcer.tier.name, "enforcement": enforcement,
                  "terminate_process": terminate, "started": eventlog.iso_time(self.started_at),
                  "updated": eventlog.iso_time(time.time()), "policy_dir": str(self.policy_dir),
                  "policy_files": [Path(f).name for f in self.policy.files], "rules": len(self.policy.rules),
                  "by_type": self.policy.summary(), "programs": self.enforcer.attached, "events": self.counts,
                  "events_dropped": self.reported_drops, "last_reload": self.last_reload,
                  "forwarding": self.forwarders.stats(), "forward_dropped": sum(self.forwarders.reported.values()),
                  "rss_bytes": eventlog.rss_bytes()}
        path = self.log_dir / STATUS_NAME
        tmp = path.with_name(f".{STATUS_NAME}.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            log(f"cannot write {path}: {exc.strerror}")

    def on_event(self, event) -> None:
        record = event.to_dict()
        self.counts[event.type] = self.counts.get(event.type, 0) + 1
        rule = self.enforcer.rule_by_id.get(event.rule_id) if self.enforcer else None
        if rule is not None:
            record["rule"] = rule.name
            record["rule_source"] = rule.source
            if event.type == "file_open_denied":  # the kernel reports the dentry name only
                record["path"] = rule.path or f"{rule.dir}/.../{event.filename}"
        record["time"] = eventlog.iso_time(event.timestamp_ns / 1e9 + self._offset)
        self.emit(record)

    def check_drops(self) -> None:
        assert self.enforcer is not None
        drops = self.enforcer.drops()
        if drops != self.reported_drops:
            log(f"{drops - self.reported_drops} event(s) dropped: the ring buffer was full ({drops} in total)")
            self.emit({"type": "events_dropped", "total": drops, "new": drops - self.reported_drops})
            self.reported_drops = drops
            self.write_status()

    def start_forwarding(self) -> None:
        """Start the syslog / collector sender threads configured in sensor.conf (no-op when off)."""
        self.forwarders = forward.Forwarders.from_config(self.cfg)
        for d in self.forwarders.destinations:
            if isinstance(d, forward.CollectorDestination) and d.token_file:
                try:
                    if not d.token():
                        log(f"warning: collector_token_file {d.token_file} is empty: the collector will refuse "
                            "the records (counted as forward_dropped)")
                except OSError as exc:
                    log(f"warning: cannot read collector_token_file {d.token_file}: {exc.strerror}; records for the "
                        "collector are held (then dropped and counted) until it is readable")
            log(f"forwarding records to {d.kind} {d.target}")
        self.forwarders.start()

    def check_forward_drops(self) -> None:
        """A `forward_dropped` record (and a line on stderr) for each destination that lost records."""
        for dest, total, new in self.forwarders.new_drops():
            stats = dest.stats()
            log(f"{new} record(s) not forwarded to {dest.kind} {dest.target} ({total} in total): "
                f"{stats.get('last_error') or 'the queue was full'}")
            self.emit({"type": "forward_dropped", "destination": dest.kind, "target": dest.target, "total": total,
                       "new": new, "by_reason": stats["dropped_by_reason"], "last_error": stats.get("last_error", "")})
            self.write_status()

    def loop(self, duration: float | None = None) -> None:
        assert self.enforcer is not None and self.events is not None
        now = time.monotonic()
        deadline = None if duration is None else now + duration
        next_check, next_resolve = now + self.reload_interval, now + self.resolve_interval
        next_forward_check = now + self.forward_check_interval
        while not self.stop_requested and (deadline is None or time.monotonic() < deadline):
            self.enforcer.poll(self.on_event, 100)
            self.check_drops()
            now = time.monotonic()
            if self.reload_requested:
                self.reload_requested = False
                self.reload("SIGHUP")
            elif now >= next_check:
                next_check = now + self.reload_interval
                if policy_mod.dir_signature(self.policy_dir) != self._signature:
                    self.reload("policy files changed")
                else:
                    self.write_status()
            if self.forwarders and now >= next_forward_check:
                next_forward_check = now + self.forward_check_interval
                self.check_forward_drops()
            if now >= next_resolve:
                next_resolve = now + self.resolve_interval
                self.resolve_again()
                self.write_status()
            self.events.flush()

    def close(self, keep_pinned: bool = False) -> None:
        if self.enforcer is not None:
            try:
                self.enforcer.poll(self.on_event, 0)
                self.check_drops()
            except SensorError:
                pass
            kept = self.enforcer.pinned if keep_pinned else []
            stopped = {"type": "stopped", "events_dropped": self.reported_drops, "still_enforcing": kept}
            if self.forwarders:
                self.forwarders.drain(1.0)  # deliver what is queued, then report what was lost
                self.forwarders.close_stalled()  # a receiver that is down does not get `stopped`: counted here
                self.check_forward_drops()
                stopped["forward_dropped"] = self.forwarders.dropped()
            self.emit(stopped)
            if kept:
                log(f"exiting; the programs stay attached and enforce the last policy (pinned: {', '.join(kept)}); "
                    f"the next start takes over, or 'rm {self.pin_dir}/endura_*' detaches them")
            self.enforcer.close(keep_pinned=keep_pinned)
            self.enforcer = None
            try:
                (self.log_dir / STATUS_NAME).unlink()
            except OSError:
                pass
        if self.forwarders:
            for kind, left in self.forwarders.close(1.0).items():
                if left:
                    log(f"{left} record(s) not forwarded to {kind} at exit (the receiver is down or slow)")
            self.forwarders = forward.Forwarders([])
        if self.events is not None:
            self.events.close()
            self.events = None


def run(cfg: config_mod.Config, *, duration: float | None = None, **kwargs) -> int:
    sensor = Sensor(cfg, **kwargs)

    def _stop(*_):
        sensor.stop_requested = True

    def _hup(*_):
        sensor.reload_requested = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)
    try:
        sensor.start()
        sensor.loop(duration)
    except BaseException:
        sensor.close(keep_pinned=True)  # a crash: stay fail-closed until the restarted sensor takes over
        raise
    sensor.close(keep_pinned=cfg.fail_closed)
    return 0
