"""`python3 -m vmtest [TARGET ...|all] [options]`: boot kernels under qemu and prove enforcement.

Examples:
    python3 -m vmtest debian-12 debian-13 --build      # build the .deb, boot both kernels twice
    python3 -m vmtest all -j 2 --shard 1/4             # this runner's quarter of every target
    python3 -m vmtest --kernel ./vmlinuz-6.18 --build  # any kernel, Debian 12 userspace
    python3 -m vmtest debian-12 --dry-run              # print the commands only

Each target's kernel boots twice: `lsm-on` (check -> tier lsm; a denied exec, a write-open of a
protected file and a connect to a denied loopback port fail with EPERM while the allowed ones work;
tier tracepoint forced kills; audit only logs; after the sensor stops nothing is blocked) and
`lsm-off` (lsm= without bpf: check says so, the sensor falls back to fentry and SIGKILLs; tracepoint
kills; nothing blocked after stop). The sensor runs from a policy file (exec, file, connect rules). Targets whose kernel cannot be downloaded
here are reported "not available here". Output: the summary table (stderr), JUnit XML and a JSON
summary in the work dir (their paths on stdout); exit code 1 when any scenario failed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from distros import load_catalog
from toolbox import log
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP as REPO
from toolbox.files import atomic_write
from vmtest import kernels, plan, results, runner


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m vmtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="TARGET", help="target ids from distros/catalog.toml, or 'all'")
    p.add_argument("--kernel", type=Path, help="boot this vmlinuz (with the Debian 12 userspace) instead of a target's")
    p.add_argument("--boot", default=",".join(plan.BOOTS), help="boots to run (default: %(default)s)")
    p.add_argument("--dist", type=Path, default=REPO / "dist", help="built packages: dist/ or dist/<version>/ "
                   "(default: %(default)s)")
    p.add_argument("--build", action="store_true", help="build the .deb into the work dir first (release.package)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="VMs in parallel (default: 1)")
    p.add_argument("--shard", default="1/1", help="i/n: run only this share of the VMs (CI matrices)")
    p.add_argument("--accel", choices=("auto", *plan.ACCELS), default="auto",
                   help="auto: KVM when a probe boot works, else TCG (default)")
    p.add_argument("--timeout", type=float, help="seconds per VM before it counts as hung (TCG 240, KVM 90)")
    p.add_argument("--work-dir", type=Path, default=REPO / "build" / "vmtest",
                   help="initrds, console logs, junit.xml (default: %(default)s)")
    p.add_argument("--refresh", action="store_true", help="re-read apt indexes and rebuild the cached userspace")
    p.add_argument("--dry-run", action="store_true", help="print the commands, boot nothing")
    return p


def resolve_targets(catalog, names: Sequence[str], kernel: Path | None) -> list[str]:
    if kernel is not None:
        if names and names != ["debian-12"]:
            raise EnduraError("--kernel boots with the Debian 12 userspace; give no target (or debian-12)")
        return ["debian-12"]
    if not names:
        raise EnduraError("name a target (e.g. 'python3 -m vmtest debian-12'), 'all', or --kernel PATH; "
                          "list targets with 'python3 -m distros'")
    if "all" in names:
        return list(catalog.target_ids)
    for n in names:
        catalog.target(n)  # unknown ids: one clear error with close matches
    return list(dict.fromkeys(names))


def _main(argv: Sequence[str]) -> int:
    ns = parser().parse_args(argv)
    if ns.jobs < 1:
        raise EnduraError(f"-j {ns.jobs}: need at least 1")
    catalog = load_catalog()
    targets = resolve_targets(catalog, ns.targets, ns.kernel)
    boots = [b for b in ns.boot.split(",") if b]
    index, count = plan.parse_shard(ns.shard)
    all_jobs = plan.expand(targets, boots)
    jobs = plan.shard(all_jobs, index, count)
    log.info(f"vmtest: {len(jobs)} of {len(all_jobs)} VM(s) in shard {index}/{count}")
    work = ns.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not jobs:
        return 0

    dist = ns.dist
    if ns.build:
        dist = runner.build_package(work / "dist", dry_run=ns.dry_run)
    packages: dict[str, Path] = {}

    def deb_for(target) -> Path:
        if ns.dry_run and not (dist / "manifest.json").exists():
            return dist / f"endura-sensor_DRY-RUN_{runner.ARCH}.deb"
        if target.id not in packages:
            packages[target.id] = runner.find_package(dist, target)
        return packages[target.id]

    vms = runner.run_all(catalog, jobs, deb_for=deb_for, work=work, cache=kernels.cache_root(), accel=ns.accel,
                         parallel=ns.jobs, timeout=ns.timeout, refresh=ns.refresh, dry_run=ns.dry_run,
                         kernel_path=ns.kernel.resolve() if ns.kernel else None)
    if ns.dry_run:
        return 0
    table = results.summary_table(vms)
    log.info("\n" + table)
    junit = work / "junit.xml"
    atomic_write(junit, results.junit_xml(vms))
    summary = work / "summary.json"
    atomic_write(summary, json.dumps([{
        "target": vm.target, "kernel": vm.kernel, "boot": vm.boot, "status": vm.status, "seconds": round(vm.seconds, 1),
        "boot_to_result_seconds": vm.result_seconds,
        "cases": [{"scenario": c.scenario, "tier": c.tier, "status": c.status, "detail": c.detail,
                   "seconds": c.seconds} for c in vm.cases]} for vm in vms], indent=1) + "\n")
    print(junit)
    print(summary)
    failed = [c for vm in vms for c in vm.cases if c.status == results.FAIL]
    if failed:
        raise EnduraError(f"{len(failed)} scenario(s) failed (see the table above, {junit}, and the console logs "
                          f"in {work})")
    record_evidence(packages, vms, junit, shard=ns.shard)
    return 0


def record_evidence(packages: dict[str, Path], vms, junit: Path, *, shard: str) -> Path | None:
    """Every VM passed: a signed e2e-tests evidence record naming the .deb's sha256 (see channels.evidence)."""
    from channels.evidence import record_for_build

    passed = [c for vm in vms for c in vm.cases if c.status == results.PASS]
    if not packages or not passed:
        log.info("==> no e2e-tests evidence recorded: no scenario ran")
        return None
    builds = {p.parent for p in packages.values()}
    if len(builds) != 1:
        log.info(f"==> no e2e-tests evidence recorded: the packages came from {len(builds)} builds")
        return None
    path = record_for_build("e2e-tests", builds.pop(), junit=junit, tested=sorted({p.name for p in packages.values()}),
                            extra={"targets": sorted(packages), "scenarios_passed": len(passed), "shard": shard})
    log.info(f"==> recorded e2e-tests evidence: {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
