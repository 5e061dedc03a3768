"""`endura-sensor check`: what this host supports, proven by loading each tier for real.

For each tier (lsm, fentry, tracepoint) the compiled object is loaded and attached; a tier that
attaches is then proven with a canary: a private copy of `true` is denied and executed, and
must be refused (LSM, -EPERM) or killed (fentry/tracepoint, SIGKILL), with the event received
on the ring buffer. The LSM tier also needs `bpf` in the active LSM list: an LSM program loads and
attaches without it and then never runs.

Exit codes (EXIT_*): 0 = LSM tier usable (blocks before exec); 10 = degraded (fentry or
tracepoint: kill only); 20 = no tier usable.
"""
from __future__ import annotations

import ctypes
import gzip
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Tuple

from . import __version__, host_arch, libbpf
from . import bpf_dir as default_bpf_dir
from .enforce import TIERS, Enforcer, Tier
from .errors import SensorError
from .limits import limits

EXIT_FULL, EXIT_DEGRADED, EXIT_NONE = 0, 10, 20
SECURITYFS = "sys/kernel/security"


@dataclass
class HostFacts:
    kernel: str
    machine: str
    arch: str
    btf: bool
    lsm_list: List[str] | None  # None when /sys/kernel/security/lsm cannot be read
    lsm_list_note: str = ""
    lockdown: str | None = None  # the active lockdown mode, e.g. "none", "integrity"
    config_bpf_lsm: bool | None = None  # CONFIG_BPF_LSM from /boot/config-* or /proc/config.gz
    euid: int = 0

    @property
    def bpf_lsm_active(self) -> bool | None:
        return None if self.lsm_list is None else "bpf" in self.lsm_list


@dataclass
class TierResult:
    tier: str
    object: str
    result: str  # "ok" (loaded and attached), an errno name (EPERM...), or "missing"
    usable: bool = False
    canary: str = "not run"  # blocked | killed | not enforced | not run | error: ...
    reason: str = ""
    fix: str = ""
    log: str = ""  # tail of libbpf's log when it failed


@dataclass
class Report:
    version: str
    facts: HostFacts
    bpf_dir: str
    tiers: List[TierResult] = field(default_factory=list)

    @property
    def tier(self) -> str | None:
        return next((t.tier for t in self.tiers if t.usable), None)

    @property
    def exit_code(self) -> int:
        return {None: EXIT_NONE, "lsm": EXIT_FULL}.get(self.tier, EXIT_DEGRADED)

    def to_dict(self) -> dict:
        facts = asdict(self.facts)
        facts["bpf_lsm_active"] = self.facts.bpf_lsm_active
        return {"version": self.version, **facts, "bpf_dir": self.bpf_dir,
                "tiers": [{**asdict(t), "limits": list(limits(t.tier))} for t in self.tiers], "tier": self.tier,
                "exit_code": self.exit_code}


# ---------------------------------------------------------------- host facts

def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _mount_securityfs(target: Path) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"securityfs", os.fsencode(str(target)), b"securityfs", 0, None) != 0:
        return os.strerror(ctypes.get_errno())
    return ""


def read_lsm_list(root: Path, mount: bool) -> Tuple[List[str] | None, str]:
    lsm_file = root / SECURITYFS / "lsm"
    text = _read(lsm_file)
    note = ""
    if text is None and mount and os.geteuid() == 0 and (root / SECURITYFS).is_dir():
        problem = _mount_securityfs(root / SECURITYFS)
        note = f"mounting securityfs failed: {problem}" if problem else "mounted securityfs"
        text = _read(lsm_file)
    if text is None:
        return None, note or f"cannot read /{SECURITYFS}/lsm (securityfs not mounted; mount it as root)"
    return [s for s in text.split(",") if s], note


def read_lockdown(root: Path) -> str | None:
    text = _read(root / SECURITYFS / "lockdown")  # "none [integrity] confidentiality"
    if not text:
        return None
    active = [w.strip("[]") for w in text.split() if w.startswith("[")]
    return active[0] if active else text


def read_config_bpf_lsm(root: Path, release: str) -> bool | None:
    text = _read(root / "boot" / f"config-{release}")
    if text is None:
        try:
            text = gzip.decompress((root / "proc/config.gz").read_bytes()).decode(errors="replace")
        except (OSError, EOFError, ValueError):
            return None
    return "CONFIG_BPF_LSM=y" in text.splitlines()


def host_facts(root: Path = Path("/"), machine: str | None = None, mount_securityfs: bool = True) -> HostFacts:
    machine = machine or platform.machine()
    release = _read(root / "proc/sys/kernel/osrelease") or platform.release()
    lsm_list, note = read_lsm_list(root, mount_securityfs and root == Path("/"))
    return HostFacts(kernel=release, machine=machine, arch=host_arch(machine),
                     btf=(root / "sys/kernel/btf/vmlinux").exists(), lsm_list=lsm_list, lsm_list_note=note,
                     lockdown=read_lockdown(root), config_bpf_lsm=read_config_bpf_lsm(root, release),
                     euid=os.geteuid())


# ---------------------------------------------------------------- load + canary

def run_canary(tier: Tier, bpf_dir: Path) -> str:
    """Deny a private copy of `true`, exec it, and report what happened (blocked/killed/not enforced)."""
    true = shutil.which("true") or "/bin/true"
    seen: list = []
    with tempfile.TemporaryDirectory(prefix="endura-canary-") as tmp:
        canary = os.path.join(tmp, "endura-canary")
        shutil.copy(true, canary)
        os.chmod(canary, 0o755)
        try:
            baseline = subprocess.run([canary], timeout=10).returncode
        except OSError as exc:
            return f"error: the canary cannot run here at all ({exc.strerror}; noexec {tmp}?)"
        if baseline != 0:
            return f"error: the canary exited {baseline} before any policy was loaded"
        # LSM: block without killing, to observe -EPERM; the others can only kill
        with Enforcer(tier, bpf_dir, enforce=True, terminate=not tier.can_block, deny=[canary]) as enforcer:
            try:
                rc = subprocess.run([canary], timeout=10).returncode
                outcome = "killed" if rc == -9 else f"not enforced (exit code {rc})"
            except PermissionError:
                outcome = "blocked"
            enforcer.poll(seen.append, 200)
    if outcome in ("blocked", "killed") and not seen:
        return f"error: {outcome} but no event arrived on the ring buffer"
    return outcome


def load_tier(tier: Tier, bpf_dir: Path, canary: bool) -> TierResult:
    """Load + attach for real (then detach); with canary, prove enforcement."""
    path = bpf_dir / tier.object_name
    result = TierResult(tier.name, str(path), "ok")
    if not path.is_file():
        result.result = "missing"
        return result
    try:
        with Enforcer(tier, bpf_dir, enforce=False, terminate=False, attach_all=True):
            pass
    except libbpf.BpfError as exc:
        result.result = libbpf.errno_name(exc.errno)
        result.log = "\n".join(exc.log.splitlines()[-8:])
        return result
    if canary:
        try:
            result.canary = run_canary(tier, bpf_dir)
        except (SensorError, OSError, subprocess.SubprocessError) as exc:
            result.canary = f"error: {exc}"
    return result


# ---------------------------------------------------------------- decisions

def _lsm_boot_fix(facts: HostFacts) -> str:
    if facts.config_bpf_lsm is False:
        return "this kernel is built without CONFIG_BPF_LSM=y; use a kernel that has it"
    current = [s for s in (facts.lsm_list or []) if s != "bpf"]
    lsm = ",".join(current + ["bpf"]) if current else "<current list>,bpf"
    return (f"boot with lsm={lsm} (add it to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub "
            "or grub2-mkconfig -o /boot/grub2/grub.cfg, reboot)")


def _load_failure_fix(facts: HostFacts, tier: Tier, result: str) -> str:
    if result == "missing":
        return "build the objects with 'python3 -m bpf.build' (nox -s bpf) or reinstall endura-sensor"
    if not facts.btf:
        return ("the kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF=y): CO-RE programs "
                "cannot load; use the distribution's current kernel, which has BTF")
    if facts.euid != 0 and result == "EPERM":
        return "run as root (loading BPF needs CAP_BPF, CAP_PERFMON and CAP_MAC_ADMIN or CAP_SYS_ADMIN)"
    if result == "EPERM":
        lockdown = f" (lockdown: {facts.lockdown})" if facts.lockdown else ""
        return ("the kernel refused it although running as root: kernel lockdown" + lockdown +
                ", a container/seccomp sandbox or a hypervisor policy restricts "
                + ("BPF LSM programs" if tier.name == "lsm" else "BPF trampolines" if tier.name == "fentry"
                   else "BPF tracing") + "; run on the host with those restrictions lifted")
    if result in ("ENOTSUPP", "EOPNOTSUPP", "EINVAL") and tier.name in ("fentry", "lsm"):
        return "this kernel has no BPF trampolines for this architecture (x86_64 >= 5.5, arm64 >= 6.0)"
    return "see the libbpf log below"


def evaluate(facts: HostFacts, tier: Tier, result: TierResult) -> TierResult:
    """Decide whether a tier is usable from the load result, the canary and the host facts."""
    if tier.name == "lsm" and facts.lsm_list is not None and not facts.bpf_lsm_active:
        result.usable = False
        result.reason = (f"bpf is not in the active LSM list ({','.join(facts.lsm_list)}): an LSM program "
                         "would load and attach but never run")
        result.fix = _lsm_boot_fix(facts)
        return result
    if result.result != "ok":
        result.usable = False
        result.reason = ("object missing" if result.result == "missing"
                         else f"loading/attaching failed with {result.result}")
        result.fix = _load_failure_fix(facts, tier, result.result)
        return result
    expected = "blocked" if tier.can_block else "killed"
    if result.canary == expected:
        result.usable = True
        result.reason = f"loaded, attached; canary exec {expected}"
    elif result.canary == "not run":
        # without a canary, an LSM program is trusted only when bpf is known to be active
        result.usable = tier.name != "lsm" or facts.bpf_lsm_active is True
        result.reason = "loaded and attached (canary not run)"
        if not result.usable:
            result.reason += "; the active LSM list is unknown, so it may never run"
            result.fix = f"mount securityfs (mount -t securityfs securityfs /{SECURITYFS}) or run the canary"
    else:
        result.usable = False
        result.reason = f"loaded and attached but the canary exec was {result.canary}"
        result.fix = _lsm_boot_fix(facts) if tier.name == "lsm" else "report this as a bug with the JSON output"
    return result


def check(root: Path = Path("/"), bpf_dir: Path | None = None, canary: bool = True,
          machine: str | None = None,
          loader: Callable[[Tier, Path, bool], TierResult] = load_tier) -> Report:
    facts = host_facts(root, machine)
    directory = Path(bpf_dir) if bpf_dir else default_bpf_dir()
    report = Report(__version__, facts, str(directory))
    for tier in TIERS:
        skip_lsm = tier.name == "lsm" and facts.lsm_list is not None and not facts.bpf_lsm_active
        # still load it: the result tells whether adding bpf to lsm= would be enough
        result = loader(tier, directory, canary and not skip_lsm)
        report.tiers.append(evaluate(facts, tier, result))
    return report


def format_text(report: Report) -> str:
    f = report.facts
    lsm = ",".join(f.lsm_list) if f.lsm_list is not None else f"unknown ({f.lsm_list_note})"
    lines = [
        f"endura-sensor {report.version}",
        f"kernel:      {f.kernel} ({f.machine}, arch {f.arch})",
        f"BTF:         {'yes' if f.btf else 'no'} (/sys/kernel/btf/vmlinux)",
        f"active LSMs: {lsm}" + (f"  [{f.lsm_list_note}]" if f.lsm_list is not None and f.lsm_list_note else ""),
        f"bpf LSM:     {({True: 'active', False: 'NOT active', None: 'unknown'})[f.bpf_lsm_active]}"
        + ("" if f.config_bpf_lsm is None else f" (CONFIG_BPF_LSM={'y' if f.config_bpf_lsm else 'not set'})"),
    ]
    if f.lockdown:
        lines.append(f"lockdown:    {f.lockdown}")
    lines.append(f"BPF objects: {report.bpf_dir}")
    for t in report.tiers:
        lines.append(f"tier {t.tier:<10} load: {t.result:<8} canary: {t.canary:<10} "
                     f"{'USABLE' if t.usable else 'unusable'} - {t.reason}")
        if t.fix:
            lines.append(f"    fix: {t.fix}")
        for log_line in t.log.splitlines()[-3:] if t.result != "ok" else []:
            lines.append(f"    libbpf: {log_line[len('libbpf: '):] if log_line.startswith('libbpf: ') else log_line}")
    chosen = report.tier
    summary = {None: "no enforcement tier is usable on this host",
               "lsm": "would use tier lsm: exec of denied files is refused before it happens",
               "fentry": "would use tier fentry (degraded: BPF LSM is not active; fmod_ret programs on the "
                         "security_*() checks refuse denied operations, as the lsm tier does)"}
    lines.append(summary.get(chosen, f"would use tier {chosen} (degraded: denied programs are killed "
                                      "before their first instruction, not refused)"))
    if chosen:
        lines.append(f"what tier {chosen} cannot guarantee (docs: POLICIES.md, 'What each tier guarantees'):")
        lines.extend(f"  - {limit}" for limit in limits(chosen))
    return "\n".join(lines)
