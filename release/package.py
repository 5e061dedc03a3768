"""`nox -s package`: signed packages of Endura Runtime Sensor for every target, in dist/<version>/.

For each arch: build (or reuse) the BPF objects, stage the file tree once, then per catalog build
(deb, rpm, apk, arch) run nfpm and sign natively, add the tarball, an SBOM per artifact, the public
keys, manifest.json, SHA256SUMS and its armored signature. Everything is written into a hidden
directory beside the result and renamed into place only when complete: a failed build leaves
dist/ as it was. The result directory's path is printed on stdout.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from distros import load_catalog
from families import ARCHES, FAMILIES
from release import manifest, nfpm, sbom, signing, stage, tarball
from release.version import source_commit, source_date_epoch, version_from_git
from toolbox import gpg, log
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP as REPO
from toolbox.run import output
from toolbox.tools import require

ALL_FORMATS = tuple(FAMILIES)
ALL_ARCHES = ARCHES
BUILD_TOOLS = ("gpg", "gpgv", "openssl", "rpmsign", "ar", "clang", "llvm-strip", "bpftool", "libbpf-dev", "git")


def _split(value: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise EnduraError(f"unknown {what} {', '.join(bad) or repr(value)}; choose from {','.join(allowed)}")
    return items


def tool_versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        return output(argv).splitlines()[0].strip()

    return {
        "nfpm": next((l.split()[-1] for l in output(["nfpm", "--version"]).splitlines() if l.startswith("GitVersion")), "?"),
        "clang": first_line(["clang", "--version"]),
        "gpg": first_line(["gpg", "--version"]),
        "rpmsign": first_line(["rpm", "--version"]),
    }


def _install(partial: Path, final: Path) -> None:
    """Swap the finished directory into place (the old one, if any, is removed after the rename)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.rename(final, old)
    os.rename(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def select_formats(catalog, formats: Sequence[str], targets: Sequence[str]) -> tuple[str, ...]:
    """Narrow the formats to those serving the named targets (unknown ids: error with close matches)."""
    if not targets:
        return tuple(formats)
    wanted = {catalog.target(t).family for t in targets} | {"tgz"}
    return tuple(f for f in formats if f in wanted)


def build_release(*, formats: Sequence[str], arches: Sequence[str], out: Path, targets: Sequence[str] = ()) -> Path:
    started = time.monotonic()
    catalog = load_catalog()
    formats = select_formats(catalog, formats, targets)
    version = version_from_git(REPO)
    semver = str(version)
    epoch = source_date_epoch(REPO)
    log.info(f"==> Endura Runtime Sensor {semver} (SOURCE_DATE_EPOCH={epoch}): {','.join(formats)} for {','.join(arches)}")
    require(*BUILD_TOOLS)
    require("nfpm")

    from bpf.build import build as build_bpf

    with log.step("BPF objects (rebuilt only when sources changed)"):
        bpf_objects = build_bpf(arches=tuple(arches))
    key = signing.resolve_key()
    apk_key = signing.resolve_apk_key(key) if "apk" in formats else None
    tools = tool_versions()

    out.mkdir(parents=True, exist_ok=True)
    final = out / semver
    partial = out / f".{semver}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    artifacts: list[manifest.Artifact] = []
    try:
        with tempfile.TemporaryDirectory(prefix="endura-package-") as tmp:
            work = Path(tmp)
            secret_dir = work / "secret"
            secret_dir.mkdir(mode=0o700)
            jobs: list[tuple[Callable[..., manifest.Artifact], tuple]] = []
            for arch in arches:
                with log.step(f"staging the {arch} tree"):
                    entries = stage.stage(arch, semver, bpf_objects[arch], work / f"stage-{arch}", epoch)
                for build in catalog.builds:
                    if FAMILIES[build.family].nfpm_packager is None or build.family not in formats or arch not in build.arches:
                        continue
                    jobs.append((_native_package, (build, catalog, version, semver, arch, entries, work / f"{build.id}-{arch}",
                                                   partial, epoch, key, apk_key, tools)))
                if "tgz" in formats:
                    jobs.append((_tarball, (catalog, semver, arch, entries, partial, epoch, key, tools)))
            # The tools (nfpm, gpg, rpmsign) run as subprocesses: overlap them on every core.
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                futures = [pool.submit(func, *args) for func, args in jobs]
                artifacts = [f.result() for f in futures]
            with log.step("keys, manifest, SHA256SUMS and its signature"):
                gpg.export_public_keys(key, partial / "signing-key.asc")
                if apk_key is not None:
                    shutil.copyfile(apk_key.public, partial / apk_key.name)
                manifest.write(partial, version=semver, epoch=epoch, key_fingerprint=key.fingerprint,
                               key_development=key.development, apk_key=apk_key.name if apk_key else "",
                               artifacts=artifacts, source=source_commit(REPO))
                sums = manifest.write_sha256sums(partial)
                gpg.detached(key, sums, partial / "SHA256SUMS.asc", epoch=epoch, when="SOURCE_DATE_EPOCH")
                gpg.verify_detached(partial / "signing-key.asc", sums, partial / "SHA256SUMS.asc")
                for p in partial.iterdir():
                    os.utime(p, (epoch, epoch))
        _install(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in final.iterdir())
    log.info(f"==> {len(artifacts)} artifacts, {size / 1e6:.1f} MB in {final} ({time.monotonic() - started:.1f}s)")
    if key.development:
        log.warn(f"signed with the DEVELOPMENT key {key.fingerprint}: fine for testing, never publish it")
    return final


def _native_package(build, catalog, version, semver, arch, entries, work, partial, epoch, key, apk_key, tools):
    family = FAMILIES[build.family]
    package_arch = family.arch_name(arch)
    package_version = family.package_version(version)
    depends = list(build.depends(catalog))
    name = family.file_name(nfpm.NAME, package_version, package_arch)
    target = partial / name
    work.mkdir()
    with log.step(f"{name}"):
        cfg = nfpm.config(family=family, arch_name=package_arch, version=package_version, depends=depends,
                          entries=entries, scripts_dir=work, epoch=epoch, apk_key=apk_key)
        nfpm.build(cfg, family, work, target, epoch=epoch, passphrase_env={})
        how = family.sign(key, target, epoch=epoch)
        sbom_name = f"{name}.cdx.json"
        (partial / sbom_name).write_text(sbom.build(
            artifact=target, family=build.family, arch=package_arch, version=semver,
            package_version=package_version, depends=depends, entries=entries, tools=tools, epoch=epoch))
    targets = tuple(t.id for t in catalog.targets_for_build(build.id))
    return manifest.Artifact(name, build.family, arch, package_arch, package_version, build.id, targets,
                             how, sbom_name, tuple(depends))


def _tarball(catalog, semver, arch, entries, partial, epoch, key, tools):
    family = FAMILIES["tgz"]
    name = family.file_name(nfpm.NAME, semver, family.arch_name(arch))
    target = partial / name
    with log.step(name):
        tarball.build(entries, semver, arch, target, epoch)
        how = family.sign(key, target, epoch=epoch)
        sbom_name = f"{name}.cdx.json"
        (partial / sbom_name).write_text(sbom.build(
            artifact=target, family="tgz", arch=arch, version=semver, package_version=semver, depends=[],
            entries=entries, tools=tools, epoch=epoch))
    targets = tuple(t.id for t in catalog.targets)
    return manifest.Artifact(name, "tgz", arch, arch, semver, "tgz", targets, how, sbom_name, ())


def _cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s package --", description=__doc__.splitlines()[0])
    parser.add_argument("--format", default=",".join(ALL_FORMATS), help=f"comma list of {','.join(ALL_FORMATS)} (default: all)")
    parser.add_argument("--arch", default=",".join(ALL_ARCHES), help="comma list of amd64,arm64 (default: both)")
    parser.add_argument("--target", action="append", default=[], metavar="ID",
                        help="only the packages serving this catalog target (repeatable), e.g. debian-12, rhel-8")
    parser.add_argument("--out", default=str(REPO / "dist"), help="output directory (default: dist/)")
    args = parser.parse_args(argv)
    final = build_release(formats=_split(args.format, ALL_FORMATS, "format"),
                          arches=_split(args.arch, ALL_ARCHES, "arch"), out=Path(args.out), targets=args.target)
    print(final)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(_cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
