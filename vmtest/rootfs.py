"""The guest userspace as an initramfs: a cached base cpio per suite + a small per-run overlay cpio.

Base: `mmdebstrap --variant=extract` of busybox, coreutils (a real `true` for the canaries), the
target's python3 and libbpf packages; merged-/usr links added, the standard library precompiled
inside the root, docs/locales/test suites trimmed, written as an uncompressed newc cpio (tens of MB;
the kernel unpacks it faster than it would decompress it). Cached by its inputs.

Overlay: /init, the guest driver, the boot plan, the kernel's config and the package's files
(`dpkg-deb --fsys-tarfile`), appended to the base on a 512-byte boundary.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from toolbox import log
from toolbox.run import run
from toolbox.tools import require
from vmtest import cpio

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "guest_init.sh"
GUEST_DRIVER = HERE / "guest.py"
#: bump when the base recipe changes in a way its inputs do not show
RECIPE_VERSION = "4"

#: path prefixes (relative, no leading ./) left out of the initramfs
TRIM_PREFIXES = (
    "usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/", "usr/share/lintian/",
    "usr/share/bug/", "usr/share/zoneinfo/", "var/cache/apt/", "var/lib/apt/lists/", "var/log/",
    "usr/lib/x86_64-linux-gnu/gconv/", "usr/lib/aarch64-linux-gnu/gconv/",
)
#: directories of the Python standard library nobody imports in the guest (the sensor's forwarder
#: needs http.client, which needs email: a unit test checks that no module the sensor imports is here)
TRIM_STDLIB = ("test", "idlelib", "ensurepip", "lib2to3", "pydoc_data", "tkinter", "turtledemo", "unittest",
               "asyncio", "xml", "xmlrpc", "html", "wsgiref", "multiprocessing", "distutils",
               "sqlite3", "dbm", "curses", "config-3")

#: runs after mmdebstrap extracted the packages, with the root as $1 (mmdebstrap's hook interface is a
#: shell snippet): merged-/usr links where the packages lack them (trixie), busybox's applet links
#: where no real tool exists (no `busybox --install` at every boot), then the standard library
#: precompiled by the guest's own python3 (the cpio keeps the mtimes the .pyc files check)
EXTRACT_HOOK = (
    'for d in bin sbin lib lib64; do [ -e "$1/$d" ] || [ ! -d "$1/usr/$d" ] || ln -s "usr/$d" "$1/$d"; done; '
    'bb=$(cd "$1" && ls bin/busybox usr/bin/busybox 2>/dev/null | head -n1); '
    'for a in $(chroot "$1" "/$bb" --list-full); do '
    '[ -e "$1/$a" ] || [ -L "$1/$a" ] || ln -s "/$bb" "$1/$a"; done; '
    'for d in "$1"/usr/lib/python3.*; do '
    'chroot "$1" /usr/bin/python3 -m compileall -q -x "/(test|idlelib|lib2to3|tkinter|turtledemo)/" '
    '"/usr/lib/${d##*/}" >/dev/null || exit 1; done'
)


def base_packages(python_package: str, libbpf_package: str) -> list[str]:
    """What the guest needs; `libpython3-stdlib` pulls the stdlib of whatever python3 the suite has."""
    python = [python_package] if python_package != "python3" else ["python3-minimal", "libpython3-stdlib"]
    return sorted({"busybox", "coreutils", *python, libbpf_package})


def mmdebstrap_argv(suite: str, mirror: str, arch: str, packages: Iterable[str], out: Path) -> list[str]:
    return [
        "mmdebstrap", "--variant=extract", f"--architectures={arch}", "--quiet",
        f"--include={','.join(packages)}",
        f"--extract-hook={EXTRACT_HOOK}",
        suite, os.fspath(out), mirror,
    ]


def base_key(suite: str, mirror: str, arch: str, packages: Iterable[str]) -> str:
    text = json.dumps([RECIPE_VERSION, suite, mirror, arch, sorted(packages), EXTRACT_HOOK, TRIM_PREFIXES,
                       TRIM_STDLIB])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trimmed(name: str) -> bool:
    """Whether a root-relative path is left out of the initramfs."""
    name = name[2:] if name.startswith("./") else name.lstrip("/")
    if any(name.startswith(p) or name + "/" == p for p in TRIM_PREFIXES):
        return True
    parts = name.split("/")
    if len(parts) >= 4 and parts[0] == "usr" and parts[1] == "lib" and parts[2].startswith("python3."):
        rest = "/".join(parts[3:]) + "/"
        return any(rest.startswith(d + "/") or (d.endswith("-3") and rest.startswith(d)) for d in TRIM_STDLIB)
    return False


def tar_to_cpio(tar: tarfile.TarFile, writer: cpio.Writer, *, skip=trimmed) -> int:
    """Copy every member (dirs, files, symlinks, hard links as copies, device nodes) into the cpio."""
    count = 0
    for m in tar:
        name = m.name[2:] if m.name.startswith("./") else m.name.lstrip("/")
        name = name.rstrip("/")
        if not name or name == "." or skip(name):
            continue
        kw = {"uid": m.uid, "gid": m.gid, "mtime": int(m.mtime)}
        perm = m.mode & 0o7777
        if m.isdir():
            writer.directory(name, perm, **kw)
        elif m.issym():
            writer.symlink(name, m.linkname, **kw)
        elif m.isreg() or m.islnk():
            fh = tar.extractfile(m)
            writer.file(name, fh.read() if fh else b"", perm, **kw)
        elif m.ischr():
            writer.chardev(name, m.devmajor, m.devminor, perm, **kw)
        else:  # block devices, fifos: not needed in the guest
            continue
        count += 1
    return count


def build_base(suite: str, mirror: str, arch: str, python_package: str, libbpf_package: str, *,
               cache: Path, refresh: bool = False, dry_run: bool = False) -> Path:
    """The cached base initramfs for a suite; built with mmdebstrap on first use."""
    packages = base_packages(python_package, libbpf_package)
    out = cache / "rootfs" / f"{suite}-{arch}-{base_key(suite, mirror, arch, packages)}.cpio"
    if out.is_file() and not refresh:
        return out
    tar_path = out.with_name(f"{out.stem}.{os.getpid()}.tar")  # two runs building at once do not collide
    argv = mmdebstrap_argv(suite, mirror, arch, packages, tar_path)
    if dry_run:
        run(argv, dry_run=True)
        return out
    require("mmdebstrap")
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.step(f"building the {suite} guest userspace ({', '.join(packages)})"):
        run(argv, timeout=1800, hint=f"mmdebstrap could not build a {suite} root from {mirror}")
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
        with tarfile.open(tar_path) as tar, open(tmp, "wb") as fh:
            writer = cpio.Writer(fh)
            tar_to_cpio(tar, writer)
            for name, mode in (("proc", 0o755), ("sys", 0o755), ("run", 0o755)):
                writer.directory(name, mode)
            writer.finish()
        os.replace(tmp, out)
        tar_path.unlink()
        for old in out.parent.glob(f"{suite}-{arch}-*.cpio"):  # earlier recipes of this suite
            if old != out:
                old.unlink()
    log.info(f"    {out} ({out.stat().st_size // 1_000_000} MB)")
    return out


def write_overlay(fh: BinaryIO, *, deb: Path, plan: dict, kernel_config: Path | None, kernel_release: str,
                  dry_run: bool = False) -> None:
    """The second cpio: the package's files, /init, the guest driver and its plan."""
    writer = cpio.Writer(fh)
    if not dry_run:
        data = run(["dpkg-deb", "--fsys-tarfile", os.fspath(deb)], text=False, timeout=300).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar_to_cpio(tar, writer, skip=lambda name: False)
    writer.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    writer.directory("vmtest")
    writer.file("vmtest/guest.py", GUEST_DRIVER.read_bytes(), 0o644)
    writer.file("vmtest/plan.json", json.dumps(plan, indent=1, sort_keys=True).encode(), 0o644)
    if kernel_config and kernel_config.is_file():
        writer.directory("boot")
        writer.file(f"boot/config-{kernel_release}", kernel_config.read_bytes(), 0o644)
    writer.finish()


def assemble(base: Path, out: Path, writer: Callable[[BinaryIO], None] | None = None, **overlay) -> Path:
    """base cpio + overlay cpio -> out (the -initrd qemu boots); the overlay is write_overlay(**overlay)
    unless another `writer(fh)` is given (vmtest.upgrade's)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        with open(base, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)
        pad = -fh.tell() % cpio.BLOCK
        fh.write(b"\0" * pad)
        if writer is not None:
            writer(fh)
        else:
            write_overlay(fh, **overlay)
    return out


