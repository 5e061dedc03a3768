"""Benchmark: publish 1,000 packages, then one more, against the bare index tools on the same tree.

    python3 benchmarks/publish_scale.py [--count 1000] [--work DIR] [--runs 1]

Generates `--count` real packages of each of .deb and .rpm (amd64, made by nfpm, signed like
`release.package` signs them: rpmsign header signature, debsigs `_gpgorigin`; versions 0.0.1 ...
0.0.N), as one build directory with a manifest.json signed by the repository key (the development
key unless ENDURA_SIGNING_KEY is set), and a second build holding one more version. Then:

- **publish full**: `python3 -m repo.publish --no-verify` of the N packages into an empty root;
- **publish incremental**: the same command with the one-more build (a new generation holding N+1);
- **bare full**: what the index tools alone take on the same packages: `apt-ftparchive packages` +
  `apt-ftparchive release`, `createrepo_c` (no caches);
- **bare incremental**: the tools with their caches after the one package is added:
  `apt-ftparchive --db` (a db warmed on the N packages) and `createrepo_c --update`.

Ratios are publish / bare. The publisher also signs (InRelease, Release.gpg, repomd.xml.asc per
arch, endura.db.sig, SHA256SUMS.asc), writes Packages.gz/.xz, the empty pacman databases, checks
the build's sha256 and fsyncs the new files: the per-tool seconds (ENDURA_RUN_LOG) are printed
too. `--work DIR` keeps the generated builds for the next run (generating 2 x 1,000 packages takes
a few minutes on 2 cores). Prints a table on stderr and JSON on stdout.

Figures (2 shared cores, ext4, apt-ftparchive 2.6.2, createrepo_c 0.17.3, 1,000 debs + 1,000 rpms):
see FIGURES below, measured before and after the caches in `repo.indexcache`.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from release import manifest, nfpm, signing  # noqa: E402
from release.package import file_name  # noqa: E402
from repo import layout  # noqa: E402
from toolbox import log  # noqa: E402
from toolbox.run import run  # noqa: E402

EPOCH = 1764000000
ARCH = "amd64"


# --- generating the packages ----------------------------------------------------------------------


def _one_package(family: str, number: int, work: Path, out: Path, key: signing.SigningKey) -> manifest.Artifact:
    version = f"0.0.{number}"
    package_arch = {"deb": "amd64", "rpm": "x86_64"}[family]
    name = file_name(family, version, package_arch, version)
    scratch = work / f"{family}-{number}"
    scratch.mkdir(parents=True, exist_ok=True)
    payload = scratch / "VERSION"
    payload.write_text(f"endura-sensor benchmark package {version}\n")
    os.utime(payload, (EPOCH, EPOCH))
    info = {"mode": 0o644, "owner": "root", "group": "root", "mtime": nfpm.rfc3339(EPOCH)}
    cfg = {"name": nfpm.NAME, "arch": package_arch, "platform": "linux", "version": version, "version_schema": "none",
           "release": "1", "maintainer": nfpm.MAINTAINER, "description": "benchmark package", "license": "Apache-2.0",
           "mtime": nfpm.rfc3339(EPOCH),
           "contents": [{"src": str(payload), "dst": "/usr/share/endura-sensor/VERSION", "file_info": info}],
           family: {"arch": package_arch, "compression": "gzip"}}
    config = scratch / "nfpm.json"
    config.write_text(json.dumps(cfg))
    target = out / name
    run(nfpm.package_argv(config, family, target), cwd=scratch, extra_env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    if family == "rpm":
        signing.sign_rpm(key, target, epoch=EPOCH)
    else:
        signing.sign_deb(key, target, epoch=EPOCH)
    shutil.rmtree(scratch)
    return manifest.Artifact(name, family, ARCH, package_arch, version, f"bench-{family}", (),
                             "rpm-header" if family == "rpm" else "debsig-origin", "", ())


def generate_build(out: Path, numbers: range, key: signing.SigningKey) -> Path:
    """A build directory (manifest.json) with a .deb and an .rpm for every number; reused if complete."""
    version = f"bench-{numbers.start}-{numbers.stop - 1}"
    final = out / version
    if (final / "manifest.json").is_file() and manifest.load(final)["signing_key"]["fingerprint"] == key.fingerprint:
        return final
    partial = out / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with log.step(f"generating {2 * len(numbers)} packages (deb + rpm, versions 0.0.{numbers.start}-0.0.{numbers.stop - 1})"):
        with tempfile.TemporaryDirectory(prefix="endura-bench-gen-") as tmp, \
                concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            jobs = [pool.submit(_one_package, family, n, Path(tmp), partial, key) for n in numbers for family in ("deb", "rpm")]
            artifacts = [j.result() for j in jobs]
        manifest.write(partial, version=version, epoch=EPOCH, key_fingerprint=key.fingerprint,
                       key_development=key.development, apk_key="", artifacts=artifacts)
    os.rename(partial, final)
    return final


# --- timing the publisher -------------------------------------------------------------------------------


def tool_seconds(run_log: Path) -> dict[str, float]:
    totals: dict[str, float] = collections.defaultdict(float)
    if run_log.exists():
        for line in run_log.read_text().splitlines():
            rec = json.loads(line)
            totals[rec["tool"]] += rec["seconds"]
    return {k: round(v, 3) for k, v in sorted(totals.items())}


def timed_publish(root: Path, build: Path, run_log: Path) -> dict:
    run_log.unlink(missing_ok=True)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "repo.publish", "--repo-root", str(root), "--dist", str(build),
                           "--no-verify", "--base-url", "https://repo.example.test"],
                          cwd=REPO, env={**os.environ, "ENDURA_RUN_LOG": str(run_log)}, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"publish of {build} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 3), "generation": json.loads(proc.stdout)["generation"], "tools_s": tool_seconds(run_log)}


# --- the bare index tools on the same tree -------------------------------------------------------------------


def _timed(argv: list[str], cwd: Path, stdout: Path | None = None) -> float:
    start = time.monotonic()
    if stdout is None:
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    else:
        with open(stdout, "w") as fh:
            subprocess.run(argv, cwd=cwd, check=True, stdout=fh)
    return time.monotonic() - start


def bare_index(tree: Path, *, db: Path | None, update: bool) -> dict[str, float]:
    """apt-ftparchive packages + release and createrepo_c over `tree` (apt/pool, rpm/latest/x86_64/packages)."""
    apt = tree / "apt"
    binary = apt / "dists/latest/main/binary-amd64"
    binary.mkdir(parents=True, exist_ok=True)
    packages = layout.packages_argv("amd64")
    if db is not None:
        packages = [packages[0], "--db", str(db), *packages[1:]]
    times = {"apt-ftparchive packages": _timed(packages, apt, binary / "Packages")}
    release = tree / "apt/dists/latest/Release"
    release.unlink(missing_ok=True)
    times["apt-ftparchive release"] = _timed(layout.release_argv("latest", date=EPOCH, valid_until=EPOCH + 86400,
                                                                 arches=["amd64"]), apt, release)
    createrepo = layout.createrepo_argv(str(tree / "rpm/latest/x86_64"), revision=EPOCH)
    if update:
        createrepo.insert(1, "--update")
    times["createrepo_c" + (" --update" if update else "")] = _timed(createrepo, tree)
    times["total"] = sum(times.values())
    return {k: round(v, 3) for k, v in times.items()}


def bare_tree(dest: Path, builds: list[Path]) -> Path:
    """The packages of `builds` hardlinked where the publisher puts them (same pool and rpm layout)."""
    for build in builds:
        for a in manifest.load(build)["artifacts"]:
            for rel in layout.artifact_paths("latest", layout.channel_entry(a)):
                path = dest / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(build / a["file"], path)
    return dest


# --- the run ----------------------------------------------------------------------------------------------


def measure(work: Path, count: int) -> dict:
    key = signing.resolve_key()
    builds = work / "builds"
    full = generate_build(builds, range(1, count + 1), key)
    more = generate_build(builds, range(count + 1, count + 2), key)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    try:
        root = run_dir / "repo"
        with log.step(f"publishing {count} + {count} packages (full)"):
            pub_full = timed_publish(root, full, run_dir / "full.jsonl")
        with log.step("publishing one more of each (incremental)"):
            pub_incr = timed_publish(root, more, run_dir / "incr.jsonl")
        with log.step("the bare index tools on the same packages"):
            tree = bare_tree(run_dir / "bare", [full])
            db = run_dir / "bare-apt.db"
            bare_full = bare_index(tree, db=None, update=False)
            bare_full_db = bare_index(tree, db=db, update=False)  # a cold apt-ftparchive cache: fills it
            bare_tree(tree, [more])
            bare_incr = bare_index(tree, db=db, update=True)
            bare_incr_nocache = bare_index(tree, db=None, update=False)
        sizes = {"packages_bytes": sum(p.stat().st_size for p in tree.rglob("*") if p.suffix in (".deb", ".rpm")),
                 "generation_files": sum(1 for p in (root / "current").rglob("*") if p.is_file())}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "count_per_format": count,
        "publish_full": pub_full, "publish_incremental": pub_incr,
        "bare_full": bare_full, "bare_full_cold_db": bare_full_db,
        "bare_incremental_cached": bare_incr, "bare_incremental_uncached": bare_incr_nocache,
        "ratio_full": round(pub_full["wall_s"] / bare_full["total"], 2),
        "ratio_incremental": round(pub_incr["wall_s"] / bare_incr["total"], 2),
        "incremental_over_full": round(pub_incr["wall_s"] / pub_full["wall_s"], 3),
        **sizes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="packages per format (default 1000)")
    parser.add_argument("--work", help="keep the generated builds here for the next run (default: a temporary dir)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the measurement, report the fastest publish")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="endura-publish-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = [measure(work, args.count) for _ in range(args.runs)]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    best = min(results, key=lambda r: r["publish_full"]["wall_s"] + r["publish_incremental"]["wall_s"])
    for label, pub, bare in (("full", best["publish_full"], best["bare_full"]),
                             ("incremental", best["publish_incremental"], best["bare_incremental_cached"])):
        print(f"{label:11} publish {pub['wall_s']:7.2f}s  bare index tools {bare['total']:6.2f}s  "
              f"ratio {pub['wall_s'] / bare['total']:.2f}x  (publisher's tools: "
              + ", ".join(f"{k} {v:.2f}" for k, v in pub["tools_s"].items()) + ")", file=sys.stderr)
    print(json.dumps({"runs": results, "best": best}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
