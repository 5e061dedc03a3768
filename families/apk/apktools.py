"""Alpine's own package manager, apk-tools, built here: v2 (Alpine <= 3.22) and v3 (Alpine >= 3.23).

Neither apk-tools nor abuild is packaged for Debian, so the clients that build (`apk index`) and verify
(`apk update`, `apk fetch`, `apk add`) the Alpine repository are compiled once from the vendored source
tarballs by their build script (`build.sh PREFIX [2|3]`, idempotent) into the cache:

    <cache>/apk-tools/2/apk      apk-tools 2.14 (a wrapper that finds its own libapk.so)
    <cache>/apk-tools/3/apk      apk-tools 3.0

The script lives outside this repository, in the shared vendor directory beside it
(`../shared/vendor/apk-tools` from the repository top); `ENDURA_APK_TOOLS_SRC` names another directory
holding `build.sh` and the tarballs. The first build takes a minute or two (v3 uses meson + ninja).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from toolbox import log
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP, cache_dir
from toolbox.run import run
from toolbox.tools import require

SRC_ENV = "ENDURA_APK_TOOLS_SRC"
DEFAULT_SRC = REPO_TOP.parent / "shared" / "vendor" / "apk-tools"
SCRIPT = "build.sh"
MAJORS = ("2", "3")
#: what build.sh needs (tools on PATH and headers, see toolbox.tools): v2 with make, v3 with meson + ninja
BUILD_DEPS = {"2": ("cc", "make", "pkg-config", "libssl-dev", "zlib1g-dev"),
              "3": ("cc", "pkg-config", "meson", "ninja", "libssl-dev", "zlib1g-dev", "libzstd-dev")}
BUILD_TIMEOUT = 1800


@dataclasses.dataclass(frozen=True)
class ApkClients:
    """The `apk` wrappers of both major versions."""

    v2: Path
    v3: Path

    def by_major(self) -> dict[str, Path]:
        return {"2": self.v2, "3": self.v3}


def tools_dir() -> Path:
    """Where the clients are built: `<cache>/apk-tools` (`toolbox.files.cache_dir`)."""
    return cache_dir() / "apk-tools"


def wrapper(prefix: Path, major: str) -> Path:
    return prefix / major / "apk"


def source_dir() -> Path:
    configured = os.environ.get(SRC_ENV, "").strip()
    return Path(configured) if configured else DEFAULT_SRC


def build_script() -> Path:
    """The vendored build script, or an error naming the fix."""
    directory = source_dir()
    script = directory / SCRIPT
    if not script.is_file():
        how = f"{SRC_ENV}={os.environ[SRC_ENV]}" if os.environ.get(SRC_ENV, "").strip() else f"the default {directory}"
        raise EnduraError(f"apk-tools build script not found at {script} ({how}); set {SRC_ENV} to the directory "
                          "holding build.sh and the apk-tools tarballs (shared/vendor/apk-tools beside the repository)")
    return script


def build_argv(script: Path, prefix: Path, major: str) -> list[str]:
    return ["bash", str(script), str(prefix), major]


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def build(major: str, prefix: Path | None = None) -> Path:
    """Build one major version with the vendored script unless its wrapper is already there."""
    prefix = prefix or tools_dir()
    apk = wrapper(prefix, major)
    if _usable(apk):
        return apk
    script = build_script()
    require(*BUILD_DEPS[major])
    prefix.mkdir(parents=True, exist_ok=True)
    with log.step(f"building apk-tools v{major} into {prefix / major} (once; this takes a minute or two)"):
        argv = build_argv(script, prefix, major)
        proc = run(argv, check=False, timeout=BUILD_TIMEOUT)
        if proc.returncode != 0 and (prefix / major / "bin" / "apk").exists() and not _usable(apk):
            # build.sh (v3) copies `libapk.so*` with a glob that also matches meson's `libapk.so.*.p`
            # directory: cp fails after copying the binary and the library, before the wrapper is
            # written. The script is idempotent: a second run skips the build and writes the wrapper.
            log.warn(f"{script} stopped after installing the v{major} binary ({_last_line(proc)}); running it once more")
            proc = run(argv, check=False, timeout=BUILD_TIMEOUT)
        if proc.returncode != 0 or not _usable(apk):
            raise EnduraError(f"'{' '.join(argv)}' did not build apk-tools v{major} (exit code {proc.returncode}); "
                              f"read its output below, fix the build dependencies and run it again",
                              detail=(proc.stdout + proc.stderr)[-3000:])
    return apk


def _last_line(proc) -> str:
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def clients(prefix: Path | None = None) -> ApkClients:
    """Both `apk` wrappers, built first when missing."""
    return ApkClients(v2=build("2", prefix), v3=build("3", prefix))


def version(apk: Path) -> str:
    """`apk-tools 2.14.10, compiled for x86_64.` -> `2.14.10`."""
    text = run([str(apk), "--version"]).stdout.strip()
    parts = text.split()
    return parts[1].rstrip(",") if len(parts) > 1 else text


def main(argv: list[str] | None = None) -> int:
    """`python -m families.apk.apktools`: build both clients if needed and print their paths."""
    def go(_args) -> None:
        found = clients()
        for major, path in found.by_major().items():
            print(f"{major} {path}")

    return cli_main(go, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
