"""Helpers for the package tests: build real packages, enter real Debian roots."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from toolbox.run import run

REPO = Path(__file__).resolve().parents[2]
EPOCH = "1764000000"

def build_dist(out: Path, version: str, *args: str, env: dict[str, str] | None = None, check: bool = True):
    """Run the real package build (`python -m release.package`) and return (dist dir, process)."""
    full_env = {**os.environ, "ENDURA_VERSION": version, "SOURCE_DATE_EPOCH": EPOCH, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "release.package", "--out", str(out), *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"package build failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return (Path(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None), proc


def run_module(module: str, *args: str, env: dict | None = None, check: bool = True,
               timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository with `env` added; raises with its stderr tail when `check`."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def new_secret_key(home: Path, uid: str = "", algo: str = "ed25519", expire: str = "1y", *, batch: str = "") -> str:
    """Generate a throwaway secret key in `home` (created 0700 if missing) and return its fingerprint:
    `--quick-gen-key uid algo sign expire`, or gpg's `--gen-key` parameter block `batch`."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback"]
    if batch:
        run([*gpg, "--gen-key"], input=batch, timeout=300)
    else:
        run([*gpg, "--passphrase", "", "--quick-gen-key", uid, algo, "sign", expire], timeout=300)
    listing = run([*gpg, "--with-colons", "--list-secret-keys", *([uid] if uid else [])]).stdout
    return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][-1]


def chroot(root: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["chroot", str(root), *argv], check=check, extra_env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def artifact(dist: Path, family: str, arch: str = "amd64") -> Path:
    from release.manifest import load

    for a in load(dist)["artifacts"]:
        if a["family"] == family and a["arch"] == arch:
            return dist / a["file"]
    raise AssertionError(f"no {family}/{arch} artifact in {dist}")


def copy_into(root: Path, path: Path) -> str:
    dest = root / "tmp" / path.name
    shutil.copyfile(path, dest)
    return f"/tmp/{path.name}"
