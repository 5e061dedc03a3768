"""Build the CO-RE eBPF objects: `bpf/*.bpf.c` -> `build/bpf/<arch>/<name>.bpf.o`, one set per arch.

    python3 -m bpf.build [--arch amd64 --arch arm64] [--force] [--out build/bpf]

`clang -O2 -g -target bpf` against the committed `bpf/include/<arch>/vmlinux.h`, then
`llvm-strip -g`: DWARF goes, `.BTF` and `.BTF.ext` (needed by CO-RE and for line info) stay.
Deterministic: the same inputs give byte-identical objects on any machine with the same clang
(paths are made relative to the repository). Up to date when a stamp of the sha256 of every
input (sources, headers incl. libbpf's, this file, clang's version) matches; outputs are written
to a temporary file and renamed, so a failed compile leaves no partial object.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

from toolbox import log, tools
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP, atomic_write
from toolbox.run import CommandFailed, output, run

REPO = REPO_TOP
BPF_DIR = REPO / "bpf"
DEFAULT_OUT = REPO / "build" / "bpf"
#: our arch name (Debian's, used in package names and build/bpf/<arch>) -> (include dir, __TARGET_ARCH_ value)
ARCHES: dict[str, tuple[str, str]] = {"amd64": ("x86", "x86"), "arm64": ("arm64", "arm64")}
LIBBPF_INCLUDE = Path("/usr/include/bpf")
STAMP_NAME = ".build-stamp.json"
CFLAGS = ("-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-Wno-unused-function")


def sources() -> list[Path]:
    return sorted(BPF_DIR.glob("*.bpf.c"))


def object_name(source: Path) -> str:
    return source.name[: -len(".c")] + ".o"  # sensor_tp.bpf.c -> sensor_tp.bpf.o


def compile_argv(source: Path, output_path: Path, arch: str) -> list[str]:
    """The clang command for one object (paths relative to the repository, run with cwd=REPO)."""
    include, target = ARCHES[arch]
    rel = lambda p: os.path.relpath(p, REPO)  # noqa: E731
    return [
        "clang", *CFLAGS, f"-D__TARGET_ARCH_{target}",
        f"-fdebug-prefix-map={REPO}=.", f"-fmacro-prefix-map={REPO}=.",
        "-I", rel(BPF_DIR / "include" / include), "-I", rel(BPF_DIR / "include"),
        "-c", rel(source), "-o", str(output_path),
    ]


def strip_argv(path: Path) -> list[str]:
    return ["llvm-strip", "-g", str(path)]


def _inputs(arch: str) -> Iterable[Path]:
    include, _ = ARCHES[arch]
    yield Path(__file__).resolve()
    yield from sources()
    yield from sorted((BPF_DIR / "include").glob("*.h"))
    yield BPF_DIR / "include" / include / "vmlinux.h"
    yield from sorted(LIBBPF_INCLUDE.glob("*.h"))


def input_stamp(arch: str) -> dict:
    """What the outputs depend on: sha256 of each input file, the compiler and the flags."""
    files = {}
    for path in _inputs(arch):
        key = os.path.relpath(path, REPO) if path.is_relative_to(REPO) else str(path)
        files[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"arch": arch, "clang": output(["clang", "--version"]).splitlines()[0], "cflags": list(CFLAGS),
            "inputs": files}


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _compile_one(source: Path, dest: Path, arch: str) -> Path:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        try:
            run(compile_argv(source, tmp, arch), cwd=REPO, timeout=600)
        except CommandFailed as exc:
            raise EnduraError(f"clang failed to compile {os.path.relpath(source, REPO)} for {arch}",
                              detail=exc.detail) from None
        run(strip_argv(tmp), timeout=120)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def build(arches: Sequence[str] = ("amd64", "arm64"), out_dir: Path = Path("build/bpf"), force: bool = False
          ) -> dict[str, list[Path]]:
    """Build every `bpf/*.bpf.c` for each arch; return {arch: [object paths]} (built or already up to date)."""
    unknown = [a for a in arches if a not in ARCHES]
    if unknown:
        raise EnduraError(f"unknown arch {', '.join(unknown)}; use one of {', '.join(ARCHES)}")
    srcs = sources()
    if not srcs:
        raise EnduraError(f"no *.bpf.c in {BPF_DIR}")
    tools.require("clang", "llvm-strip", "libbpf-dev")
    out_dir = Path(out_dir)
    if not out_dir.is_absolute():
        out_dir = REPO / out_dir
    result: dict[str, list[Path]] = {}
    for arch in arches:
        arch_dir = out_dir / arch
        arch_dir.mkdir(parents=True, exist_ok=True)
        outputs = [arch_dir / object_name(s) for s in srcs]
        stamp_path = arch_dir / STAMP_NAME
        stamp = input_stamp(arch)
        if not force and _read_stamp(stamp_path) == stamp and all(p.exists() for p in outputs):
            log.info(f"bpf objects for {arch} are up to date")
            result[arch] = outputs
            continue
        stamp_path.unlink(missing_ok=True)
        with log.step(f"compiling {len(srcs)} eBPF objects for {arch}"):
            with ThreadPoolExecutor(max_workers=min(len(srcs), os.cpu_count() or 1)) as pool:
                futures = [pool.submit(_compile_one, s, o, arch) for s, o in zip(srcs, outputs)]
                errors = [e for e in (f.exception() for f in futures) if e is not None]
            if errors:
                raise errors[0]
        atomic_write(stamp_path, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        result[arch] = outputs
    return result


def main(argv: Sequence[str] | None = None) -> int:
    def _main(args: Sequence[str]) -> int:
        parser = argparse.ArgumentParser(prog="python3 -m bpf.build", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--arch", action="append", choices=sorted(ARCHES),
                            help="arch to build (repeatable; default: all)")
        parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: build/bpf)")
        ns = parser.parse_args(args)
        built = build(tuple(ns.arch or ARCHES), ns.out, ns.force)
        for paths in built.values():
            for path in paths:
                print(path)
        return 0

    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
