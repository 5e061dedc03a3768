"""Upgrades in place without a window: a kernel test VM booted with systemd as PID 1.

`python3 -m vmtest.upgrade [--formats deb,rpm,arch,tgz] [--work-dir DIR] [--timeout S]`

Builds two versions of the packages from this tree (ENDURA_VERSION 1.0.0 and 1.0.1; deb, rpm, arch,
tarball for amd64), boots Debian 12's kernel (vmtest's verified fetch; BPF LSM active, so the sensor runs
its LSM tier) with a Debian 12 userspace that has systemd, dpkg, rpm and pacman (mmdebstrap minbase,
cached as a cpio), and runs vmtest/upgrade_guest.py as a systemd unit there: per format, install 1.0.0,
start endura-sensor.service, loop denied operations of every rule type (vmtest/denied_loop.py) while
upgrading to 1.0.1 with the format's own tool and scripts, `systemctl restart`, a crash and a reload;
then `systemctl stop` must detach. The judgement: every format installed, upgraded and restarted, 0
windows, the denied program runs after the stop, nothing left pinned. A table on stderr, summary.json
in the work dir (path on stdout); exit 1 on any failure.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

from distros import load_catalog
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.files import REPO_TOP as REPO
from toolbox.run import run
from toolbox.tools import require
from vmtest import cpio, kernels, plan, results, rootfs, runner

HERE = Path(__file__).resolve().parent
#: apk is not here: the .apk ships the OpenRC service (Alpine), and this guest runs systemd
FORMATS = ("deb", "rpm", "arch", "tgz")
VERSIONS = ("1.0.0", "1.0.1")
TARGET = "debian-12"
SUITE = "bookworm"
#: the guest userspace: systemd as PID 1 and each format's own package tool
PACKAGES = ("systemd", "systemd-sysv", "python3", "libbpf1", "procps", "rpm", "pacman-package-manager",
            "libarchive-tools", "zstd", "xz-utils")
RECIPE_VERSION = "1"
TEST_UNIT = "endura-upgrade-test.service"
TEST_UNIT_TEXT = """[Unit]
Description=Endura upgrade test driver (vmtest.upgrade)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /vmtest/upgrade_guest.py
ExecStopPost=/usr/bin/systemctl --force --force poweroff
StandardOutput=journal+console
StandardError=journal+console
[Install]
WantedBy=multi-user.target
"""


def build_versions(work: Path, formats: Sequence[str]) -> Dict[str, Dict[str, Path]]:
    """{version: {family: package}} built from this tree with ENDURA_VERSION set."""
    out: Dict[str, Dict[str, Path]] = {}
    for version in VERSIONS:
        directory = runner.build_package(work / "dist" / version, ",".join(formats), version=version)
        manifest = json.loads((directory / "manifest.json").read_text())
        out[version] = {a["family"]: directory / a["file"] for a in manifest["artifacts"]
                        if a["family"] in formats and a["arch"] == runner.ARCH}
    return out


def base_key(packages: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([RECIPE_VERSION, SUITE, sorted(packages)]).encode()).hexdigest()[:12]


def build_base(cache: Path, mirror: str, refresh: bool = False) -> Path:
    """The cached systemd userspace (cpio), made with mmdebstrap minbase (maintainer scripts run)."""
    out = cache / "rootfs" / f"{SUITE}-systemd-amd64-{base_key(PACKAGES)}.cpio"
    if out.is_file() and not refresh:
        return out
    require("mmdebstrap")
    out.parent.mkdir(parents=True, exist_ok=True)
    tar_path = out.with_name(f"{out.stem}.{os.getpid()}.tar")
    with log.step(f"building the {SUITE} systemd guest userspace ({', '.join(PACKAGES)})"):
        run(["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(PACKAGES)}", SUITE,
             os.fspath(tar_path), mirror], timeout=1800, hint=f"mmdebstrap could not build a {SUITE} root from {mirror}")
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
        with tarfile.open(tar_path) as tar, open(tmp, "wb") as fh:
            writer = cpio.Writer(fh)
            rootfs.tar_to_cpio(tar, writer)
            writer.finish()
        os.replace(tmp, out)
        tar_path.unlink()
    return out


def write_overlay(fh, packages: Dict[str, Dict[str, Path]], formats: Sequence[str]) -> None:
    writer = cpio.Writer(fh)
    writer.symlink("init", "/lib/systemd/systemd")
    writer.file("etc/machine-id", b"", 0o444)
    writer.file(f"etc/systemd/system/{TEST_UNIT}", TEST_UNIT_TEXT.encode(), 0o644)
    writer.symlink(f"etc/systemd/system/multi-user.target.wants/{TEST_UNIT}", f"/etc/systemd/system/{TEST_UNIT}")
    for unit in ("serial-getty@ttyS0.service", "getty@tty1.service", "apt-daily.timer", "apt-daily-upgrade.timer",
                 "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer", "systemd-timesyncd.service"):
        writer.symlink(f"etc/systemd/system/{unit}", "/dev/null")  # masked: nothing but the test competes for CPU
    writer.directory("vmtest")
    writer.directory("vmtest/pkgs")
    for name in ("upgrade_guest.py", "denied_loop.py"):
        writer.file(f"vmtest/{name}", (HERE / name).read_bytes(), 0o644)
    guest_plan = {"formats": []}
    for family in formats:
        entry = {"family": family}
        for label, version in zip(("v1", "v2"), VERSIONS):
            path = packages[version][family]
            writer.file(f"vmtest/pkgs/{path.name}", path.read_bytes(), 0o644)
            entry[label] = f"/vmtest/pkgs/{path.name}"
        guest_plan["formats"].append(entry)
    writer.file("vmtest/upgrade-plan.json", json.dumps(guest_plan, indent=1).encode(), 0o644)
    writer.finish()


def judge(lines: List[dict], formats: Sequence[str]) -> List[dict]:
    """One row per format: status PASS/FAIL and why."""
    by_family = {r.get("family"): r for r in lines if r.get("type") == "format"}
    rows = []
    for family in formats:
        r = by_family.get(family)
        problems = []
        if r is None:
            problems.append("no result (the guest did not get to it; see the console log)")
        elif "error" in r:
            problems.append(r["error"])
        else:
            steps = r["steps"]
            for step in ("install_v1", "start", "upgrade", "restart", "crash", "reload", "stop", "remove"):
                if steps.get(step, {}).get("rc") != 0:
                    problems.append(f"{step} exited {steps.get(step, {}).get('rc')}: {steps.get(step, {}).get('tail', '')[-200:]}")
                elif "failed to execute correctly" in steps.get(step, {}).get("tail", ""):  # pacman: a scriptlet failed, exit 0
                    problems.append(f"{step}: a package script failed: {steps[step]['tail'][-300:]}")
            ops = r.get("loop", {}).get("ops", {})
            if not ops or any(o["attempts"] < 10 for o in ops.values()):
                problems.append(f"the denied loop did not run: {r.get('loop')}")
            windows = {name: o["windows"] for name, o in ops.items() if o["windows"]}
            if windows:
                problems.append(f"denied operations succeeded: {windows}")
            if VERSIONS[1] not in r.get("version_running", ""):
                problems.append(f"not upgraded: {r.get('version_running')}")
            if r.get("denied_after_stop") != 0:
                problems.append(f"after 'systemctl stop' the denied program still fails ({r.get('denied_after_stop')}):"
                                " the stop did not detach")
            if r.get("pins_after_stop"):
                problems.append(f"left pinned after the stop: {r['pins_after_stop']}")
        rows.append({"family": family, "status": "FAIL" if problems else "PASS", "problems": problems,
                     "result": r})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vmtest.upgrade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "upgrade")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--refresh", action="store_true", help="rebuild the cached userspace and refetch the kernel")
    ns = parser.parse_args(argv)
    formats = [f for f in ns.formats.split(",") if f]
    try:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise EnduraError(f"--formats: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        require("qemu-system-x86_64", "mmdebstrap", "dpkg-deb")
        work = ns.work_dir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        cache = kernels.cache_root()
        target = load_catalog().target(TARGET)
        mirror = target.kernel_mirror(runner.ARCH)
        image = kernels.fetch(target.id, target.kernel_package(runner.ARCH), mirror, target.kernel.suite,
                              runner.ARCH, refresh=ns.refresh, cache=cache)
        base = build_base(cache, mirror, ns.refresh)
        packages = build_versions(work, formats)
        initrd = rootfs.assemble(base, work / "upgrade.initrd.cpio",
                                 writer=lambda fh: write_overlay(fh, packages, formats))
        lsm_on = plan.BOOTS["lsm-on"]
        spec = plan.VmSpec(kernel=image.vmlinuz, initrd=initrd,
                           cmdline=plan.kernel_cmdline(lsm_on, target.bpf_lsm_default).replace(
                               "rdinit=/init", "rdinit=/init systemd.show_status=0"),
                           console_log=work / "upgrade.console.log", results_log=work / "upgrade.results.jsonl",
                           memory_mb=2048, smp=2)
        with log.step(f"booting {image.release} with systemd: upgrades of {', '.join(formats)} under a denied loop"):
            seconds, problem = runner.boot(spec, ns.timeout)
        lines = results.parse_lines(spec.results_log.read_text(errors="replace") if spec.results_log.exists() else "")
        rows = judge(lines, formats)
        hello = next((r for r in lines if r.get("type") == "hello"), {})
        summary = {"kernel": image.release, "lsm": hello.get("lsm", ""), "seconds": round(seconds, 1),
                   "problem": problem, "rows": rows}
        (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        for row in rows:
            r = row["result"] or {}
            ops = (r.get("loop") or {}).get("ops", {})
            attempts = sum(o["attempts"] for o in ops.values())
            windows = sum(o["windows"] for o in ops.values())
            log.info(f"{row['family']:5} {row['status']}  denied attempts {attempts:5}  windows {windows}  "
                     f"upgrade {r.get('steps', {}).get('upgrade', {}).get('s', '-')}s  "
                     + "; ".join(row["problems"]))
        if problem or any(row["status"] != "PASS" for row in rows):
            log.info(f"console tail ({spec.console_log}):\n" + results.console_tail(
                spec.console_log.read_text(errors="replace") if spec.console_log.exists() else ""))
            print(work / "summary.json")
            return 1
        print(work / "summary.json")
        return 0
    except EnduraError as exc:
        log.info(f"error: {exc}")
        return 1


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    log.info(f"vmtest.upgrade finished in {time.monotonic() - start:.0f}s")
    sys.exit(code)
