"""What to boot and how: targets -> jobs (target x boot), sharding, kernel command lines, qemu argv.

Everything here is pure (no I/O) and unit-tested; `runner` executes what it builds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from toolbox.errors import EnduraError

#: lsm= for the boot without BPF LSM: a real list (lsm= replaces the kernel's CONFIG_LSM) lacking bpf
LSM_WITHOUT_BPF = "lockdown,yama,integrity,apparmor"
#: lsm= for kernels whose CONFIG_LSM lacks bpf (bpf_lsm_default = false in the catalog)
LSM_WITH_BPF = LSM_WITHOUT_BPF + ",bpf"

BASE_CMDLINE = ("console=ttyS0", "quiet", "panic=-1", "reboot=t", "rdinit=/init", "mitigations=off")
#: measured (DESIGN.md): without -cx16 Debian's 6.12 kernel crashed in a third of TCG boots
TCG_CPU = "max,-cx16"
ACCELS = ("tcg", "kvm")


#: what each sensor scenario probes, one summary row / JUnit case each: exec of a denied binary, opening
#: a protected file for write, connect() to a denied 127.0.0.1 port (with an allowed counterpart each)
PARTS = ("exec", "file", "connect")
#: the extra row of the lsm and fentry scenarios: the same effects reached another way (vmtest/guest.py)
EFFECTS = "effects"


@dataclass(frozen=True)
class Scenario:
    """One sensor run inside the guest. `tier` is passed to `run --tier`; None = no sensor at all.
    `canary` only matters for `check` (False: `check --no-canary`)."""

    name: str
    tier: str | None = "auto"
    enforcement: str = "enforce"
    terminate: bool = True
    canary: bool = True
    effects: bool = False  # also the effect probes (rename, link, unlink, truncate, create, early fds, ld.so, sendto)
    verifier_stats: bool = False  # check: also the verifier's instruction counts of the lsm and fentry objects

    @property
    def parts(self) -> tuple[str, ...]:
        return PARTS + (EFFECTS,) if self.effects else PARTS

    @property
    def case_names(self) -> tuple[str, ...]:
        """The summary rows / JUnit testcases this scenario is judged as: 'check', or 'lsm/exec', 'lsm/file', ..."""
        return (self.name,) if self.name == "check" else tuple(f"{self.name}/{part}" for part in self.parts)

    def to_guest(self) -> dict:
        return {"name": self.name, "tier": self.tier, "enforcement": self.enforcement, "terminate": self.terminate,
                "canary": self.canary, "effects": self.effects, "verifier_stats": self.verifier_stats}


#: lsm-on: the verifier's cost of the lsm and fentry objects on this kernel too (they load only in VMs; the
#: budget is results.VERIFIER_BUDGET); the lsm-off boot's kernel is the same, so it is measured once
CHECK = Scenario("check", tier=None, verifier_stats=True)
#: lsm-off: the canaries of all three tiers already ran in the lsm-on boot's check (and the LSM canary is
#: skipped when bpf is not in the LSM list); what this boot proves is that check reports bpf missing
CHECK_NO_CANARY = Scenario("check", tier=None, canary=False)
#: LSM tier: refuse with -EPERM; terminate_process = false so the caller sees the EPERM itself
LSM = Scenario("lsm", terminate=False, effects=True)
#: fentry tier (fmod_ret on security_*): refuses with -EPERM too; terminate_process = false to see it
FENTRY = Scenario("fentry", terminate=False, effects=True)
TRACEPOINT = Scenario("tracepoint", tier="tracepoint")
AUDIT = Scenario("audit", enforcement="audit")
STOPPED = Scenario("stopped", tier=None)  # after the last sensor stopped: nothing is blocked


@dataclass(frozen=True)
class Boot:
    """One way of booting a kernel: `lsm-on` (BPF LSM active) or `lsm-off` (an lsm= list without bpf)."""

    name: str
    scenarios: tuple[Scenario, ...]

    @property
    def case_names(self) -> list[str]:
        return [c for s in self.scenarios for c in s.case_names]

    def lsm_arg(self, bpf_lsm_default: bool) -> str | None:
        if self.name == "lsm-off":
            return f"lsm={LSM_WITHOUT_BPF}"
        return None if bpf_lsm_default else f"lsm={LSM_WITH_BPF}"


BOOTS: dict[str, Boot] = {
    "lsm-on": Boot("lsm-on", (CHECK, LSM, TRACEPOINT, AUDIT, STOPPED)),
    "lsm-off": Boot("lsm-off", (CHECK_NO_CANARY, FENTRY, TRACEPOINT, STOPPED)),
}


@dataclass(frozen=True)
class Job:
    """One VM: a target's kernel booted one way."""

    target: str
    boot: str

    @property
    def name(self) -> str:
        return f"{self.target}/{self.boot}"


def expand(targets: Sequence[str], boots: Sequence[str] = tuple(BOOTS)) -> list[Job]:
    """target x boot, in the order given (targets first)."""
    for b in boots:
        if b not in BOOTS:
            raise EnduraError(f"unknown boot {b!r}; choose from {', '.join(BOOTS)}")
    return [Job(t, b) for t in targets for b in boots]


def parse_shard(text: str) -> tuple[int, int]:
    """'2/5' -> (2, 5); 1-based, as CI matrices count."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise EnduraError(f"--shard {text!r} is not i/n (e.g. --shard 1/4)") from None
    if count < 1 or not 1 <= index <= count:
        raise EnduraError(f"--shard {text!r}: need 1 <= i <= n (e.g. --shard 1/4)")
    return index, count


def shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Round-robin share `index` (1-based) of `count`: every job lands in exactly one shard, and the
    two boots of one target go to different shards when count > 1 (spreads the slow kernels)."""
    return [job for i, job in enumerate(jobs) if i % count == index - 1]


def kernel_cmdline(boot: Boot, bpf_lsm_default: bool, extra: Sequence[str] = ()) -> str:
    args = list(BASE_CMDLINE) + [f"endura_vmtest={boot.name}"]
    lsm = boot.lsm_arg(bpf_lsm_default)
    if lsm:
        args.append(lsm)
    return " ".join([*args, *extra])


@dataclass(frozen=True)
class VmSpec:
    kernel: Path
    initrd: Path
    cmdline: str
    console_log: Path
    results_log: Path
    accel: str = "tcg"
    memory_mb: int = 1024
    smp: int = 1
    extra: tuple[str, ...] = field(default=())


def qemu_argv(spec: VmSpec, qemu: str = "qemu-system-x86_64") -> list[str]:
    """The qemu command line (the DESIGN.md recipe): ttyS0 = console log, ttyS1 = JSON results."""
    if spec.accel not in ACCELS:
        raise EnduraError(f"unknown accelerator {spec.accel!r}; choose from {', '.join(ACCELS)}")
    for path in (spec.console_log, spec.results_log):
        if "," in os.fspath(path):
            raise EnduraError(f"qemu cannot take a serial log path with a comma: {path}; use another --work-dir")
    cpu = TCG_CPU if spec.accel == "tcg" else "host"
    return [
        qemu,
        "-accel", spec.accel,
        "-cpu", cpu,
        "-smp", str(spec.smp),
        "-m", str(spec.memory_mb),
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-display", "none",
        "-kernel", os.fspath(spec.kernel),
        "-initrd", os.fspath(spec.initrd),
        "-append", spec.cmdline,
        "-serial", f"file:{os.fspath(spec.console_log)}",
        "-serial", f"file:{os.fspath(spec.results_log)}",
        *spec.extra,
    ]
