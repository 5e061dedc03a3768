"""`endura-sensor run`: load the policy and the best tier, enforce, reload, log events.

Records (JSON lines) go to stdout and to `<log_dir>/events.log`: `started`, one per kernel event
(`exec_denied`, `file_open_denied`, `connect_denied`, `module_load_denied`, `bpf_denied`),
`policy_loaded`, `policy_rejected`, `policy_warning`, `enforcement_downgraded`, `events_dropped`,
`events_summarized` (flood control, flood.py: beyond the first events of a burst), `forward_dropped`,
`enforcement_tampered` (the kernel state differs from what the sensor loaded, or the pins of a sensor were
removed while no sensor ran: what differed and what was restored), `stopped`.
Messages for people go to stderr. With `syslog` / `collector_url` set in sensor.conf, every record is also
forwarded, from threads of their own (forward.py): a receiver that is down or slow costs counted drops
(`forward_dropped`), never a stalled event loop.

Reload: on SIGHUP, when a file in policy_dir changes (checked every `reload_interval` seconds), and
every `resolve_interval` seconds the rules are resolved again (a replaced binary has a new inode).
A policy that does not parse (or cannot be read: a FIFO, a device, a dangling symlink, a loop; or
downgrades sensor.conf's settings while `policy_may_downgrade = false`) is rejected and the last good
one stays in the kernel; a start refuses the same policy with the same problems.
A policy file that sets enforcement or terminate_process below sensor.conf is reported at start and
at each reload that introduces it: a warning on stderr, an `enforcement_downgraded` record, `status`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List, Sequence

from . import config as config_mod
from . import enforce as enforce_mod
from . import eventlog, events, flood, forward, libbpf, probe
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


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def log(message: str) -> None:
    print(f"endura-sensor: {message}", file=sys.stderr, flush=True)


class Sensor:
    def __init__(self, cfg: config_mod.Config, *, policy_dir: Path, bpf_dir: Path, deny: Sequence[str] = (),
                 tier: str = "auto", log_dir: Path | None = None, reload_interval: float = 1.0,
                 resolve_interval: float = 5.0, pin_dir: Path | None = None, handoff: bool = False) -> None:
        self.cfg = cfg
        self.handoff = handoff  # a clean stop leaves the programs pinned: `release --unless-restarting` decides
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
        self.verify_requested = False  # SIGUSR1 (`endura-sensor status --verify`)
        self.stop_requested = False
        self.tampered: dict = {}  # sticky: the first and last tampering found, what differed, what was restored
        self.verified = ""  # time of the last verification
        self.heartbeat_interval = 1.0  # status.json "heartbeat" and systemd's WATCHDOG=1
        self._signature: tuple = ()
        self._offset = eventlog.boot_to_wall_offset()
        self.counts: dict = {}  # events read from the ring buffer, by type (in full + summarized)
        self.in_full = 0  # events logged in full
        self.flood: flood.FloodControl | None = None  # set in start() unless flood_burst = 0
        self.started_at = time.time()
        self.last_reload: dict = {}
        self.downgrades: List[policy_mod.Downgrade] = []  # of the policy in force
        self._new_downgrades: List[policy_mod.Downgrade] = []  # of the policy read last

    # ------------------------------------------------------------ output

    def emit(self, record: dict, flush: bool = True) -> None:
        """One record to stdout, events.log and the forwarders; the event path flushes once per batch."""
        line = eventlog.encode(record) + "\n"
        sys.stdout.write(line)
        if self.events is not None:
            self.events.write_line(line)
        self.forwarders.submit(record)
        if flush:
            self.flush()

    def flush(self) -> None:
        sys.stdout.flush()
        if self.events is not None:
            self.events.flush()

    def _settings(self, policy: policy_mod.Policy):
        enforcement = policy.enforcement or self.cfg.enforcement
        terminate = self.cfg.terminate_process if policy.terminate_process is None else policy.terminate_process
        return enforcement, terminate

    # ------------------------------------------------------------ policy

    def read_policy(self) -> policy_mod.Policy:
        """The policy on disk, checked against sensor.conf (downgrades); PolicyError when it is not acceptable."""
        new = policy_mod.load_dir(self.policy_dir, require_rules=not self.deny)
        self._new_downgrades = policy_mod.check_downgrades(new, self.cfg)
        return new

    def report_downgrades(self, found: List[policy_mod.Downgrade], reason: str) -> None:
        """A warning and an `enforcement_downgraded` record for each downgrade not in force before."""
        before, self.downgrades = self.downgrades, list(found)
        for downgrade in found:
            if downgrade not in before:
                log(f"warning: {downgrade.warning()}")
                self.emit({"type": "enforcement_downgraded", **downgrade.to_dict(), "sensor_conf_path":
                           downgrade.conf_path, "reason": reason})

    def load_policy(self) -> policy_mod.Policy:
        """The policy at start: a valid one, or (with --deny only) an empty one; else SensorError."""
        self._signature = policy_mod.dir_signature(self.policy_dir)
        try:
            return self.read_policy()
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
            new = self.read_policy()
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
            log(f"policy rejected: {exc}; keeping the last good policy (still loaded)")
            self.emit({"type": "policy_rejected", "reason": reason, "problems": [str(exc)],
                       "kept_rules": len(self.policy.rules)})
            return False
        self.report_downgrades(self._new_downgrades, reason)
        self.write_status()
        return True

    def _apply(self, new: policy_mod.Policy, reason: str) -> None:
        assert self.enforcer is not None
        enforcement, terminate = self._settings(new)
        applied = self.enforcer.apply(new, enforce=enforcement == "enforce", terminate=terminate,
                                      extra_exec=self.deny)
        self.policy = new
        self.write_rules_file()
        self.last_reload = {"time": eventlog.iso_time(time.time()), "result": "loaded", "reason": reason}
        self.write_status()
        for warning in applied.warnings:
            log(f"warning: {warning}")
        self.emit({"type": "policy_loaded", "reason": reason, "rules": len(new.rules), "by_type": new.summary(),
                   "entries": applied.counts, "programs": self.enforcer.attached, "changed": applied.changed,
                   "swap_ms": round(self.enforcer.last_swap_ms, 1) if applied.changed else 0, "enforcement": enforcement,
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
            self.write_rules_file()
            self.emit({"type": "policy_loaded", "reason": "files changed", "rules": len(self.policy.rules),
                       "entries": applied.counts, "changed": applied.changed, "warnings": applied.warnings})

    # ------------------------------------------------------------ start / loop

    def remove_pins_that_would_kill_us(self) -> List[str]:
        """An earlier sensor's pinned programs may enforce a bpf() rule that exempts that sensor's pid and
        service cgroup, not this process: our first bpf() call would be killed. Only then, and only outside
        a cgroup of its own (the systemd unit, OpenRC: exempt by name below the same parent), detach them
        before loading: a short gap, logged. Every other takeover is gapless (ours attach first)."""
        if self.pin_dir is None or not self.pin_dir.is_dir():
            return []
        pins = sorted(self.pin_dir.glob("endura_*"))
        names = {p.name.rsplit("-", 1)[0] for p in pins}
        if enforce_mod.CONFIG_MARKER in names:  # the predecessor says whether it enforces a bpf rule
            risky = enforce_mod.BPF_GUARD_MARKER in names
        else:  # a sensor before the markers (<= ABI 2): any program that may hold a bpf rule
            risky = bool(names & {"endura_lsm_bpf", "endura_fentry_bpf", "endura_tp_sys_enter"})
        if not risky:
            return []
        if enforce_mod.own_service_cgroup()[0]:
            # exempt by cgroup only as a member (placed by the service manager, endura_members.bpf.h; not when
            # started by hand into the cgroup, or by a manager that is not PID 1): a child inherits membership
            if bpf_allowed_for_a_child():
                return []
            log("this sensor runs in the service cgroup but is not exempt from the bpf rule of the sensor before it: "
                "it was not placed there by the service manager (PID 1, or $ENDURA_SERVICE_MANAGER_PID)")
        removed = []
        for path in pins:
            try:
                path.unlink()
                removed.append(path.name)
            except OSError:
                pass
        log(f"removed the programs an earlier sensor left pinned in {self.pin_dir} before loading: they enforce "
            "a bpf rule that denies bpf() to any other process, this one included, and this sensor does not run "
            "in a cgroup of its own (e.g. endura-sensor.service); nothing is enforced until this sensor is attached")
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
        self.flood = self.flood_control(self.cfg)
        self.check_predecessor_pins()
        early = self.remove_pins_that_would_kill_us()
        self.enforcer = self._load_tier(policy)
        self.policy = policy
        predecessors = self.enforcer.open_predecessors()  # their ring buffers: read once they are detached
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
        self.write_rules_file()  # before `started`: what a successor must find pinned if this one is killed now
        self.emit({"type": "started", "tier": self.enforcer.tier.name, "enforcement": enforcement,
                   "terminate_process": terminate, "rules": self.enforcer.rules, "policy_rules": len(policy.rules),
                   "by_type": policy.summary(), "entries": applied.counts, "programs": self.enforcer.attached,
                   "warnings": applied.warnings,
                   "pinned": self.enforcer.pinned, "replaced_pins": replaced,
                   "cgroup": self.enforcer.cgroup_path, "cgroup_exempt_from_bpf_rules": bool(self.enforcer.cgroup_id), "fail_closed": self.cfg.fail_closed,
                   "start_to_enforcing_ms": None if since_exec is None else round(since_exec * 1000),
                   "rss_bytes": eventlog.rss_bytes(), "log": str(self.events.path),
                   "forwarding": {d.kind: d.target for d in self.forwarders.destinations},
                   "flood_control": self.flood_settings()})
        self.report_downgrades(self._new_downgrades, "start")
        self.take_over_events(predecessors)
        self.events.flush()
        self.write_status()
        eventlog.sd_notify(f"READY=1\nSTATUS=enforcing with tier {self.enforcer.tier.name}")

    # ------------------------------------------------------------ handing events over across a restart

    def _rules_file(self, pid: int | None = None) -> Path:
        return self.log_dir / f".rules-{pid or os.getpid()}.json"

    def write_rules_file(self) -> None:
        """What this sensor's rule ids mean, for a successor that reads our ring buffer after we are gone."""
        if self.enforcer is None or self.pin_dir is None:
            return
        rules = {str(i): {"name": r.name, "source": r.source, "path": r.path, "dir": r.dir}
                 for i, r in self.enforcer.rule_by_id.items()}
        path = self._rules_file()
        try:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({"rules": rules, "reported_drops": self.reported_drops, "boot_id": boot_id(),
                                       "pins": self.enforcer.pin_names()}))
            os.replace(tmp, path)
        except OSError as exc:
            log(f"cannot write {path}: {exc.strerror}")

    def take_over_events(self, predecessors: list) -> None:
        """Deliver what the programs of earlier sensors reported while no sensor read them (a restart, a
        crash): their ring buffers were opened before their pins went; their programs are detached now."""
        for p in predecessors:
            try:
                saved = json.loads(self._rules_file(p.pid).read_text())
            except (OSError, ValueError):
                saved = {}
            rules = {int(i): SimpleNamespace(name=r.get("name", ""), source=r.get("source", ""), path=r.get("path", ""),
                                             dir=r.get("dir", ""))  # what on_records reads of a rule
                     for i, r in (saved.get("rules") or {}).items()}
            extra = {"from_predecessor": p.pid}
            try:
                delivered = p.drain(lambda records, rules=rules, extra=extra: self.on_records(records, rules, extra))
                lost = max(0, p.drops() - int(saved.get("reported_drops") or 0))
            except (SensorError, libbpf.BpfError, ValueError) as exc:
                log(f"warning: could not read the events of the earlier sensor {p.pid}: {exc}")
                delivered, lost = 0, -1
            finally:
                p.close()
            self.emit({"type": "events_handed_over", "from_pid": p.pid, "events": delivered,
                       "dropped_while_no_sensor_read": lost})
            if lost > 0:
                log(f"{lost} event(s) of the earlier sensor {p.pid} were lost: its ring buffer was full while no "
                    "sensor read it")
            try:
                self._rules_file(p.pid).unlink()
            except OSError:
                pass

    # ------------------------------------------------------------ tampering

    def report_tampering(self, problems: List[str], restored: List[str], reason: str, **extra) -> None:
        """Loud: a line per problem on stderr, an `enforcement_tampered` record, status (sticky: exit code 4)."""
        now = eventlog.iso_time(time.time())
        for problem in problems:
            log(f"TAMPERING: {problem}")
        for what in restored:
            log(f"restored: {what}")
        self.emit({"type": "enforcement_tampered", "reason": reason, "problems": problems, "restored": restored,
                   **extra})
        self.tampered = {"first": self.tampered.get("first", now), "last": now, "reason": reason,
                         "problems": problems[:20], "restored": restored[:20],
                         "count": self.tampered.get("count", 0) + 1}
        self.write_status()

    def verify(self, reason: str) -> bool:
        """Compare the kernel state with the loaded policy, restore, report. True when it matched."""
        assert self.enforcer is not None
        try:
            problems, restored = self.enforcer.verify()
        except SensorError as exc:
            problems, restored = [f"verification failed: {exc}"], []
        self.verified = eventlog.iso_time(time.time())
        if problems:
            self.report_tampering(problems, restored, reason)
            self.write_rules_file()
        return not problems

    def check_predecessor_pins(self) -> None:
        """At start: a sensor that left pins (a crash, a handoff) wrote which in its rules file; pins missing now
        were removed while no sensor ran (enforcement stopped then, unseen)."""
        if self.pin_dir is None:
            return
        boot = boot_id()
        for path in sorted(self.log_dir.glob(".rules-*.json")):
            pid = path.name[len(".rules-"):-len(".json")]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            expected = saved.get("pins") or []
            if not expected or saved.get("boot_id") != boot:  # an earlier boot's pins went with it
                continue
            missing = [name for name in expected if not (self.pin_dir / name).exists()]
            if missing:
                self.report_tampering(
                    [f"{len(missing)} of the {len(expected)} pins of the earlier sensor {pid} in {self.pin_dir} were "
                     f"removed while no sensor ran: {', '.join(missing)}; what they enforced stopped then"],
                    ["this sensor enforces the policy again"], "pins removed while no sensor ran",
                    predecessor=int(pid), missing_pins=missing)

    def heartbeat(self) -> None:
        """systemd's watchdog (WatchdogSec=: a stopped or hung sensor is killed and restarted) and status.json."""
        eventlog.sd_notify("WATCHDOG=1")
        self.write_status()

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
                  "events_in_full": self.in_full, "events_summarized": self.flood.summarized if self.flood else 0,
                  "events_dropped": self.reported_drops, "flood_control": self.flood_settings(),
                  "floods": self.flood.floods if self.flood else 0, "last_reload": self.last_reload,
                  "downgrades": [dict(d.to_dict(), sensor_conf_path=d.conf_path) for d in self.downgrades],
                  "forwarding": self.forwarders.stats(), "forward_dropped": sum(self.forwarders.reported.values()),
                  "rss_bytes": eventlog.rss_bytes(), "heartbeat": time.time(),
                  "heartbeat_interval_s": self.heartbeat_interval, "verified": self.verified,
                  "tampered": self.tampered, "policy_copies_loaded": 1 + self.enforcer.swaps}
        path = self.log_dir / STATUS_NAME
        tmp = path.with_name(f".{STATUS_NAME}.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            log(f"cannot write {path}: {exc.strerror}")

    # ------------------------------------------------------------ events

    @staticmethod
    def flood_control(cfg: config_mod.Config) -> flood.FloodControl | None:
        burst = flood.effective_burst(cfg.flood_burst, cfg.log_max_bytes, cfg.log_keep)
        if not burst:
            return None
        if burst < cfg.flood_burst:
            log(f"flood_burst lowered from {cfg.flood_burst} to {burst}: the full records of one flood must fit in "
                f"half of what the log rotation keeps (log_keep {cfg.log_keep} x log_max_bytes {cfg.log_max_bytes})")
        return flood.FloodControl(burst, cfg.flood_quiet_s, cfg.flood_summary_max_s)

    def flood_settings(self) -> dict:
        if self.flood is None:
            return {"burst": 0}
        return {"burst": self.flood.burst, "quiet_s": self.flood.quiet_s, "summary_max_s": self.flood.summary_max_s}

    def on_records(self, records: List[bytes], rules: dict | None = None, extra: dict | None = None) -> None:
        """The records one poll read from the ring buffer: each is logged in full, or (beyond a flood's
        first events) counted by flood control. The hot path: keep it lean. `rules`/`extra`: for records a
        predecessor's programs wrote (its rule ids; fields added to each record)."""
        unpack, to_record, names = events.unpack, events.to_record, events.EVENT_TYPES
        counts, control, emit = self.counts, self.flood, self.emit
        if rules is None:
            rules = self.enforcer.rule_by_id if self.enforcer else {}
        offset, iso_time = self._offset, eventlog.iso_time
        now = time.monotonic()
        for data in records:
            if len(data) < events.EVENT.size:
                raise ValueError(f"event record of {len(data)} bytes is shorter than struct endura_event "
                                 f"({events.EVENT.size})")
            v = unpack(data)
            kind, rule_id = v[0], v[3]
            name = names.get(kind) or f"unknown({kind})"
            counts[name] = counts.get(name, 0) + 1
            if control is not None and not control.admit((kind, rule_id), now, v[4], v[1], v[6], v[9], v[14]):
                continue
            self.in_full += 1
            record = to_record(v)
            rule = rules.get(rule_id)
            if rule is not None:
                record["rule"] = rule.name
                record["rule_source"] = rule.source
                if kind == events.EVENT_FILE_OPEN_DENIED:  # the kernel reports the dentry name only
                    record["path"] = rule.path or f"{rule.dir}/.../{record['filename']}"
            record["time"] = iso_time(v[4] / 1e9 + offset)
            if extra:
                record.update(extra)
            emit(record, flush=False)
            if control is not None:
                control.keep_first((kind, rule_id), record)

    def write_summaries(self, pending) -> None:
        """`events_summarized` records for what flood control counted (see flood.py)."""
        rules = self.enforcer.rule_by_id if self.enforcer else {}
        for (kind, rule_id), fields in pending:
            record = {"type": "events_summarized", "event_type": events.EVENT_TYPES.get(kind) or f"unknown({kind})",
                      "rule_id": rule_id}
            rule = rules.get(rule_id)
            if rule is not None:
                record["rule"] = rule.name
                record["rule_source"] = rule.source
            first_ns, last_ns = fields.pop("first_ns"), fields.pop("last_ns")
            record["count"] = fields.pop("count")
            if record["count"]:
                record["first_time"] = eventlog.iso_time(first_ns / 1e9 + self._offset)
                record["last_time"] = eventlog.iso_time(last_ns / 1e9 + self._offset)
            fields["actions"] = {"+".join(events.action_names(bits)) or str(bits): n
                                 for bits, n in sorted(fields["actions"].items())}
            record.update(fields)
            record["time"] = eventlog.iso_time(time.time())
            self.emit(record, flush=False)

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
        next_heartbeat = now
        while not self.stop_requested and (deadline is None or time.monotonic() < deadline):
            self.enforcer.poll_records(self.on_records, 100)
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat_interval
                self.heartbeat()
            if self.verify_requested:
                self.verify_requested = False
                self.verify("on demand (SIGUSR1)")
                self.write_status()
            if self.flood is not None:
                self.write_summaries(self.flood.due(now))
            self.check_drops()
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
                self.verify("periodic")
                self.write_status()
            self.flush()

    def close(self, keep_pinned: bool = False) -> None:
        if self.enforcer is not None:
            try:
                self.enforcer.poll_records(self.on_records, 0)
                self.check_drops()
            except SensorError:
                pass
            if self.flood is not None:
                self.write_summaries(self.flood.finish())
            kept = self.enforcer.pinned if keep_pinned else []
            stopped = {"type": "stopped", "events_dropped": self.reported_drops, "still_enforcing": kept,
                       "handoff": bool(kept) and self.handoff and not self.cfg.fail_closed}
            stopped.update(events_in_full=self.in_full, events_summarized=self.flood.summarized if self.flood else 0)
            if self.forwarders:
                self.forwarders.drain(1.0)  # deliver what is queued, then report what was lost
                self.forwarders.close_stalled()  # a receiver that is down does not get `stopped`: counted here
                self.check_forward_drops()
                stopped["forward_dropped"] = self.forwarders.dropped()
            self.emit(stopped)
            if kept and stopped["handoff"]:
                log(f"exiting; the programs stay attached and enforce the last policy for the next sensor to take "
                    f"over (pinned: {', '.join(kept)}); 'endura-sensor release' detaches them (the service runs "
                    "'endura-sensor release --unless-restarting' after every stop)")
            elif kept:
                log(f"exiting; the programs stay attached and enforce the last policy (pinned: {', '.join(kept)}); "
                    f"the next start takes over, or 'endura-sensor release' detaches them")
            if kept:
                self.write_rules_file()  # with the drops reported so far: the successor reports only new ones
            self.enforcer.close(keep_pinned=keep_pinned)
            self.enforcer = None
            for name in (STATUS_NAME, *([] if kept else [self._rules_file().name])):
                try:
                    (self.log_dir / name).unlink()
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

    def _usr1(*_):
        sensor.verify_requested = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)
    signal.signal(signal.SIGUSR1, _usr1)
    try:
        sensor.start()
        sensor.loop(duration)
    except BaseException:
        sensor.close(keep_pinned=True)  # a crash: stay fail-closed until the restarted sensor takes over
        raise
    sensor.close(keep_pinned=cfg.fail_closed or sensor.handoff)
    return 0
