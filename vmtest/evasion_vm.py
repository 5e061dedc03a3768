"""The evasion suite inside the kernel test VM: the LSM tier (BPF LSM on) and the fentry tier (lsm= without bpf).

`python3 -m vmtest.evasion_vm [--boot lsm-on,lsm-off] [--dist DIR | --build] [--work-dir DIR] [--timeout S]`

Boots Debian 12's kernel (6.1; vmtest's verified fetch) with vmtest's Debian 12 userspace, the .deb built
from this tree, vmtest/evasion.py and evasion_run.py, the 32-bit probe (built here with clang), once per boot; the guest
runs every case of the catalog under the boot's tier (`python3 /vmtest/evasion_run.py --guest`) and writes one
JSON line per case to ttyS1. Here each boot's cases are written to build/evasion/<tier>.json, printed as a
table and judged against vmtest/evasion_expected.py. Exit 1 when a boot failed or a case moved.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import List, Sequence

from distros import load_catalog
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.files import REPO_TOP as REPO
from toolbox.run import run
from toolbox.tools import require
from vmtest import cpio, evasion_run, kernels, plan, results, rootfs, runner
from vmtest.evasion_expected import judge

HERE = Path(__file__).resolve().parent
TARGET = "debian-12"
BOOTS = ("lsm-on", "lsm-off")
#: guest_init.sh runs the vmtest driver; this overlay's /init runs the evasion suite instead
DRIVER_LINE = "python3 /vmtest/guest.py"
EVASION_LINE = "python3 /vmtest/evasion_run.py --guest"


def write_overlay(fh, deb: Path, int80: Path | None) -> None:
    writer = cpio.Writer(fh)
    data = run(["dpkg-deb", "--fsys-tarfile", os.fspath(deb)], text=False, timeout=300).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        rootfs.tar_to_cpio(tar, writer, skip=lambda name: False)
    init = rootfs.INIT_SCRIPT.read_text()
    if DRIVER_LINE not in init:
        raise EnduraError(f"{rootfs.INIT_SCRIPT} no longer runs '{DRIVER_LINE}'; update vmtest/evasion_vm.py")
    writer.file("init", init.replace(DRIVER_LINE, EVASION_LINE).encode(), 0o755)
    writer.directory("vmtest")
    for name in ("evasion.py", "evasion_run.py"):
        writer.file(f"vmtest/{name}", (HERE / name).read_bytes(), 0o644)
    if int80 is not None:
        writer.file("vmtest/int80", int80.read_bytes(), 0o755)
    writer.directory("var/tmp", 0o1777)
    writer.finish()


def collect(lines: List[dict]) -> dict:
    """The guest's lines -> the result dict `python3 -m vmtest.evasion --json` writes."""
    done = next((r for r in lines if r.get("type") == "done"), {})
    hello = next((r for r in lines if r.get("type") == "hello"), {})
    cases = {r["id"]: {k: v for k, v in r.items() if k not in ("type", "id")} for r in lines if r.get("type") == "case"}
    return {"tier": done.get("tier") or hello.get("tier"), "kernel": done.get("kernel") or hello.get("kernel"),
            "machine": "x86_64", "timings": done.get("timings", {}), "seconds": done.get("seconds"),
            "cases": cases, "complete": bool(done),
            "errors": [r.get("message") for r in lines if r.get("type") == "error"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vmtest.evasion_vm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boot", default=",".join(BOOTS))
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    parser.add_argument("--build", action="store_true", help="build the .deb into the work dir first")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "evasion-vm")
    parser.add_argument("--out-dir", type=Path, default=REPO / "build" / "evasion")
    parser.add_argument("--timeout", type=float, default=900)
    ns = parser.parse_args(argv)
    boots = [b for b in ns.boot.split(",") if b]
    try:
        for b in boots:
            if b not in BOOTS:
                raise EnduraError(f"--boot {b!r}: choose from {', '.join(BOOTS)}")
        require("qemu-system-x86_64", "mmdebstrap", "dpkg-deb", "clang")
        work = ns.work_dir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        ns.out_dir.mkdir(parents=True, exist_ok=True)
        target = load_catalog().target(TARGET)
        dist = runner.build_package(work / "dist", "deb") if ns.build else ns.dist
        deb = runner.find_package(dist, target)
        cache = kernels.cache_root()
        mirror = target.kernel_mirror(runner.ARCH)
        image = kernels.fetch(target.id, target.kernel_package(runner.ARCH), mirror, target.kernel.suite,
                              runner.ARCH, cache=cache)
        base = rootfs.build_base(runner.userspace_suite(target.kernel.suite), mirror, runner.ARCH,
                                 target.python_package, target.libbpf_package, cache=cache)
        int80 = evasion_run.build_int80(os.fspath(work / "int80"))
        initrd = rootfs.assemble(base, work / "evasion.initrd.cpio",
                                 writer=lambda fh: write_overlay(fh, deb, Path(int80) if int80 else None))
        failed = False
        for boot in boots:
            spec = plan.VmSpec(kernel=image.vmlinuz, initrd=initrd,
                               cmdline=plan.kernel_cmdline(plan.BOOTS[boot], target.bpf_lsm_default),
                               console_log=work / f"{boot}.console.log", results_log=work / f"{boot}.results.jsonl")
            with log.step(f"booting {image.release} ({boot}): the evasion suite under tier "
                          f"{evasion_run.GUEST_TIERS[boot]}"):
                seconds, problem = runner.boot(spec, ns.timeout)
            lines = results.parse_lines(spec.results_log.read_text(errors="replace") if spec.results_log.exists() else "")
            result = collect(lines)
            result["vm_seconds"] = round(seconds, 1)
            tier = evasion_run.GUEST_TIERS[boot]
            (ns.out_dir / f"{tier}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
            if result["cases"]:
                print(evasion_run.table(result))
            problems = ([problem] if problem else []) + result["errors"]
            if not result["complete"]:
                problems.append("the guest did not finish (see the console log)")
            problems += judge(tier, result["cases"]) if result["cases"] else []
            log.info(f"{boot} ({tier}): VM {seconds:.0f}s, guest suite {result.get('seconds')}s, "
                     f"{len(result['cases'])} cases, {len(problems)} problem(s)")
            for p in problems:
                log.info(f"  {p}")
            if problems:
                failed = True
                log.info(f"console tail ({spec.console_log}):\n" + results.console_tail(
                    spec.console_log.read_text(errors="replace") if spec.console_log.exists() else ""))
        return 1 if failed else 0
    except EnduraError as exc:
        log.info(f"error: {exc}")
        return 1


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    log.info(f"vmtest.evasion_vm finished in {time.monotonic() - start:.0f}s")
    sys.exit(code)
