"""Prepare each target (kernel, userspace, package) and boot its VMs: -j N in parallel, with timeouts.

A VM that hangs is stopped at the timeout, one that panics reboots at once (panic=-1 reboot=t
-no-reboot); either way the scenarios it did not report fail with the console's tail.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from distros import Catalog, Target
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.files import REPO_TOP, atomic_write, sha256_file
from toolbox.run import CommandFailed, run
from toolbox.tools import require
from vmtest import kernels, plan, results, rootfs

ARCH = "amd64"  # qemu-system-x86_64 only for now (arm64 under TCG: not tried yet, see DESIGN.md)
QEMU = "qemu-system-x86_64"
KVM_PROBE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Prepared:
    """A target ready to boot: its verified kernel and the initrd (userspace + package + driver)."""

    target: str
    kernel: kernels.KernelImage
    initrd: Path
    bpf_lsm_default: bool


# ------------------------------------------------------------------ the package under test

def find_package(dist: Path, target: Target, arch: str = ARCH) -> Path:
    """The built package serving `target` from a dist dir (`dist/` or `dist/<version>/`), checksum verified."""
    fix = (f"build it with 'nox -s package -- --format {target.family} --arch {arch}' (or pass --build, or "
           "--dist DIR)")
    candidates = [dist] if (dist / "manifest.json").is_file() else sorted(
        (p for p in dist.glob("*/manifest.json")), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise EnduraError(f"no built packages in {dist} (no manifest.json); {fix}")
    directory = candidates[-1] if candidates[-1].is_dir() else candidates[-1].parent
    manifest = json.loads((directory / "manifest.json").read_text())
    for a in manifest.get("artifacts", []):
        if a.get("family") == target.family and a.get("arch") == arch and target.id in a.get("targets", []):
            path = directory / a["file"]
            if not path.is_file():
                raise EnduraError(f"{path} is listed in {directory}/manifest.json but missing; {fix}")
            if sha256_file(path) != a.get("sha256"):
                raise EnduraError(f"{path} does not match the sha256 in {directory}/manifest.json; {fix}")
            return path
    raise EnduraError(f"no {target.family} package for {arch} serving {target.id} in {directory}/manifest.json; {fix}")


def build_package(out: Path, fmt: str = "deb", arch: str = ARCH, dry_run: bool = False,
                  version: str | None = None) -> Path:
    """`python3 -m release.package --format deb --arch amd64 --out OUT` (fmt may list several, "deb,rpm";
    version: ENDURA_VERSION); returns dist/<version>."""
    import sys

    argv = [sys.executable, "-m", "release.package", "--format", fmt, "--arch", arch, "--out", os.fspath(out)]
    repo = REPO_TOP
    with log.step(f"building the {fmt} package{'s' if ',' in fmt else ''} {version or ''} for {arch}"):
        proc = run(argv, cwd=repo, timeout=900, dry_run=dry_run,
                   extra_env={"ENDURA_VERSION": version} if version else None)
    lines = proc.stdout.strip().splitlines()
    return Path(lines[-1]) if lines else out


# ------------------------------------------------------------------ per target

def userspace_suite(suite: str) -> str:
    """The release a kernel suite belongs to: bookworm-backports -> bookworm."""
    return suite.split("-", 1)[0].split("/", 1)[0]


def guest_plan(boots: Sequence[str]) -> dict:
    return {"boots": {b: [s.to_guest() for s in plan.BOOTS[b].scenarios] for b in boots}}


def unavailable_reason(target: Target) -> str | None:
    k = target.kernel
    if not k.obtainable:
        return f"kernel {target.kernel_package(ARCH)} from {target.kernel_mirror(ARCH)}" + (
            f" ({k.note})" if k.note else " cannot be downloaded on this machine")
    if target.family != "deb" or k.source != "apt":
        return (f"{target.family} targets need their own userspace (rpm --root into a Debian one is not "
                "implemented yet)")
    if ARCH not in target.arches:
        return f"{target.id} has no {ARCH} build"
    return None


def prepare_target(target: Target, *, deb: Path, work: Path, cache: Path, boots: Sequence[str],
                   refresh: bool = False, dry_run: bool = False, kernel_path: Path | None = None) -> Prepared:
    if kernel_path is not None:
        if not kernel_path.is_file():
            raise EnduraError(f"--kernel {kernel_path}: no such file")
        release = kernel_path.name[len("vmlinuz-"):] if kernel_path.name.startswith("vmlinuz-") else kernel_path.name
        sha = "" if dry_run else sha256_file(kernel_path)
        image = kernels.KernelImage(kernel_path, None, release, "--kernel", "", "", sha)
        bpf_lsm_default = False  # unknown: pass lsm=...,bpf for the lsm-on boot
    else:
        image = kernels.fetch(target.id, target.kernel_package(ARCH), target.kernel_mirror(ARCH),
                              target.kernel.suite, ARCH, refresh=refresh, cache=cache, dry_run=dry_run)
        bpf_lsm_default = target.bpf_lsm_default
    suite = userspace_suite(target.kernel.suite or "bookworm")
    base = rootfs.build_base(suite, target.kernel_mirror(ARCH), ARCH, target.python_package,
                             target.libbpf_package, cache=cache, refresh=refresh, dry_run=dry_run)
    initrd = work / f"{target.id}.initrd.cpio"
    if not dry_run:
        rootfs.assemble(base, initrd, deb=deb, plan=guest_plan(boots), kernel_config=image.config,
                        kernel_release=image.release)
    return Prepared(target.id, image, initrd, bpf_lsm_default)


# ------------------------------------------------------------------ one VM

def vm_spec(job: plan.Job, prepared: Prepared, work: Path, accel: str) -> plan.VmSpec:
    base = work / f"{job.target}.{job.boot}"
    return plan.VmSpec(
        kernel=prepared.kernel.vmlinuz, initrd=prepared.initrd,
        cmdline=plan.kernel_cmdline(plan.BOOTS[job.boot], prepared.bpf_lsm_default),
        console_log=base.with_name(base.name + ".console.log"), results_log=base.with_name(base.name + ".results.jsonl"),
        accel=accel)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def boot(spec: plan.VmSpec, timeout: float, dry_run: bool = False) -> tuple[float, str]:
    """Run qemu; returns (seconds, problem) where problem is "" or 'timeout: ...' / 'panic: ...' / 'qemu: ...'."""
    for path in (spec.console_log, spec.results_log):
        if path.exists():
            path.unlink()
    start = time.monotonic()
    problem = ""
    try:
        proc = run(plan.qemu_argv(spec, QEMU), timeout=timeout, check=False, dry_run=dry_run)
        if proc.returncode != 0:
            problem = f"qemu: exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
    except CommandFailed:
        problem = f"timeout: the guest did not finish within {timeout:g}s (hung); qemu was stopped"
    seconds = time.monotonic() - start
    console = _read(spec.console_log)
    if "Kernel panic" in console:
        line = next(l for l in console.splitlines() if "Kernel panic" in l)
        problem = "panic: " + results.printable(line.strip())
    return seconds, problem


def run_job(job: plan.Job, prepared: Prepared, *, work: Path, accel: str, timeout: float,
            dry_run: bool = False) -> results.VmResult:
    spec = vm_spec(job, prepared, work, accel)
    scenarios = [s.name for s in plan.BOOTS[job.boot].scenarios]
    seconds, problem = boot(spec, timeout, dry_run)
    if dry_run:
        return results.VmResult(job.target, prepared.kernel.release, job.boot, status="dry run")
    lines = results.parse_lines(_read(spec.results_log))
    tail = results.console_tail(_read(spec.console_log)) or "(the console log is empty: the kernel printed nothing)"
    vm = results.judge(job.target, prepared.kernel.release, job.boot, scenarios, lines, exit_problem=problem,
                       console_tail=tail)
    vm.seconds = seconds
    if vm.status != results.PASS:
        log.info(f"--- {job.name} ({prepared.kernel.release}): {vm.status}; console tail "
                 f"({spec.console_log}):\n{tail}\n---")
    return vm


# ------------------------------------------------------------------ KVM or TCG

def kvm_usable(prepared: Prepared, work: Path, cache: Path) -> bool:
    """Boot once with KVM to the guest driver's first line; the answer is cached per host kernel for a week
    (delete <cache>/kvm-probe.json to probe again)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    record = cache / "kvm-probe.json"
    key = hashlib.sha256(f"{os.uname().release} {os.uname().version}".encode()).hexdigest()[:16]
    try:
        saved = json.loads(record.read_text())
        if saved.get("key") == key and time.time() - saved.get("time", 0) < 7 * 86400:
            return bool(saved["kvm"])
    except (OSError, ValueError, KeyError):
        pass
    spec = plan.VmSpec(prepared.kernel.vmlinuz, prepared.initrd,
                       plan.kernel_cmdline(plan.Boot("probe", ()), True), work / "kvm-probe.console.log",
                       work / "kvm-probe.results.jsonl", accel="kvm")
    with log.step("probing KVM (a guest that crashes or hangs here means TCG)"):
        _, problem = boot(spec, KVM_PROBE_TIMEOUT)
        lines = results.parse_lines(_read(spec.results_log))
        ok = not problem and any(l["type"] == "done" for l in lines)
    log.info(f"    KVM {'works' if ok else 'does not work'} here" + ("" if ok else f" ({problem or 'no result'}); using TCG"))
    atomic_write(record, json.dumps({"key": key, "kvm": ok, "time": time.time()}) + "\n")
    return ok


# ------------------------------------------------------------------ everything

def run_all(catalog: Catalog, jobs: Sequence[plan.Job], *, deb_for: Callable[[Target], Path], work: Path,
            cache: Path, accel: str = "auto", parallel: int = 1, timeout: float | None = None,
            refresh: bool = False, dry_run: bool = False, kernel_path: Path | None = None) -> list[results.VmResult]:
    """Prepare every target the jobs name, then boot the jobs; returns results in job order."""
    if not dry_run:
        require(QEMU)
    work.mkdir(parents=True, exist_ok=True)
    out: dict[int, results.VmResult] = {}
    prepared: dict[str, Prepared] = {}
    targets = list(dict.fromkeys(j.target for j in jobs))
    for tid in targets:
        target = catalog.target(tid)
        boots = [j.boot for j in jobs if j.target == tid]
        reason = None if kernel_path else unavailable_reason(target)
        if reason:
            log.info(f"{tid}: {results.UNAVAILABLE}: {reason}")
            for i, j in enumerate(jobs):
                if j.target == tid:
                    out[i] = results.unavailable(tid, reason, [j.boot])
            continue
        with log.step(f"preparing {tid}"):
            prepared[tid] = prepare_target(target, deb=deb_for(target), work=work, cache=cache, boots=boots,
                                           refresh=refresh, dry_run=dry_run, kernel_path=kernel_path)
    runnable = [(i, j) for i, j in enumerate(jobs) if i not in out]
    if runnable:
        if accel == "auto":
            first = prepared[runnable[0][1].target]
            accel = "kvm" if not dry_run and kvm_usable(first, work, cache) else "tcg"
        timeout = timeout or (240.0 if accel == "tcg" else 90.0)
        with log.step(f"booting {len(runnable)} VM(s) with {accel.upper()}, {parallel} at a time"):
            def one(item):
                i, job = item
                start = time.monotonic()
                vm = run_job(job, prepared[job.target], work=work, accel=accel, timeout=timeout, dry_run=dry_run)
                log.info(f"    {job.name} ({prepared[job.target].kernel.release}): {vm.status} in "
                         f"{time.monotonic() - start:.1f}s")
                return i, vm

            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                for i, vm in pool.map(one, runnable):
                    out[i] = vm
    return [out[i] for i in sorted(out)]
