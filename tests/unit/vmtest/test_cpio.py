"""vmtest.cpio (newc writer), the rootfs trimming and tar -> cpio copy, and the guest driver's helpers."""
from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile

import pytest

from vmtest import cpio, guest, results, rootfs


def test_writer_output_is_aligned_and_readable():
    buf = io.BytesIO()
    w = cpio.Writer(buf)
    w.directory("dev")
    w.chardev("dev/console", 5, 1)
    w.file("init", b"#!/bin/sh\n", 0o755)
    w.symlink("bin", "usr/bin")
    w.finish()
    data = buf.getvalue()
    assert len(data) % cpio.BLOCK == 0
    assert data.startswith(b"070701")
    assert cpio.read_names(data) == ["dev", "dev/console", "init", "bin"]
    # a second archive appended after the padding is still found (what the kernel unpacks)
    buf2 = io.BytesIO()
    w2 = cpio.Writer(buf2)
    w2.file("vmtest/plan.json", b"{}")
    w2.finish()
    assert cpio.read_names(data + buf2.getvalue())[-1] == "vmtest/plan.json"


def test_header_fields():
    head = cpio.header("init", mode=stat.S_IFREG | 0o755, size=10, ino=7, mtime=1)
    assert head[:6] == b"070701"
    assert int(head[14:22], 16) == stat.S_IFREG | 0o755
    assert int(head[54:62], 16) == 10
    assert len(head) % 4 == 0 and head[110:115] == b"init\0"


def test_cpio_matches_gnu_cpio(tmp_path):
    """The real tool lists what we wrote."""
    from toolbox.tools import require

    require("cpio")
    buf = io.BytesIO()
    w = cpio.Writer(buf)
    w.directory("a")
    w.file("a/b", b"hello")
    w.finish()
    import subprocess

    out = subprocess.run(["cpio", "-t"], input=buf.getvalue(), capture_output=True, check=True).stdout.decode()
    assert out.split() == ["a", "a/b"]


@pytest.mark.parametrize("name,cut", [
    ("usr/share/doc/libc6/copyright", True),
    ("usr/share/doc", True),
    ("usr/lib/python3.11/test/test_os.py", True),
    ("usr/lib/python3.13/asyncio/__init__.py", True),
    ("usr/lib/python3.11/config-3.11-x86_64-linux-gnu/Makefile", True),
    ("usr/lib/x86_64-linux-gnu/gconv/BIG5.so", True),
    ("usr/lib/python3.11/json/__init__.py", False),
    ("usr/lib/python3.11/ctypes/__init__.py", False),
    ("usr/lib/python3.11/urllib/parse.py", False),  # pathlib imports it
    ("usr/lib/python3.11/__pycache__/os.cpython-311.pyc", False),
    ("usr/bin/python3.11", False),
    ("./usr/share/man/man1/ls.1.gz", True),
])
def test_trimmed(name, cut):
    assert rootfs.trimmed(name) is cut


def test_tar_to_cpio_keeps_modes_links_and_devices():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, kind, extra in [("./usr", tarfile.DIRTYPE, {}), ("./usr/bin", tarfile.DIRTYPE, {}),
                                  ("./usr/share/doc/x", tarfile.REGTYPE, {}),
                                  ("./usr/bin/true", tarfile.REGTYPE, {}),
                                  ("./usr/bin/busybox-link", tarfile.LNKTYPE, {"linkname": "./usr/bin/true"}),
                                  ("./bin", tarfile.SYMTYPE, {"linkname": "usr/bin"}),
                                  ("./dev/console", tarfile.CHRTYPE, {"devmajor": 5, "devminor": 1})]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755
            for k, v in extra.items():
                setattr(info, k, v)
            data = b"\x7fELF" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    raw.seek(0)
    out = io.BytesIO()
    with tarfile.open(fileobj=raw) as tar:
        w = cpio.Writer(out)
        assert rootfs.tar_to_cpio(tar, w) == 6  # the doc file is trimmed
        w.finish()
    assert cpio.read_names(out.getvalue()) == ["usr", "usr/bin", "usr/bin/true", "usr/bin/busybox-link", "bin",
                                               "dev/console"]


def test_base_packages_follow_the_catalog():
    assert rootfs.base_packages("python3", "libbpf1") == ["busybox", "coreutils", "libbpf1", "libpython3-stdlib",
                                                          "python3-minimal"]
    assert "python3.11" in rootfs.base_packages("python3.11", "libbpf0")


def test_mmdebstrap_argv():
    argv = rootfs.mmdebstrap_argv("trixie", "http://deb.debian.org/debian", "amd64", ["busybox", "libbpf1"],
                                  rootfs.Path("/c/x.tar"))
    assert argv[:2] == ["mmdebstrap", "--variant=extract"]
    assert "--include=busybox,libbpf1" in argv and any(a.startswith("--extract-hook=") for a in argv)
    assert argv[-3:] == ["trixie", "/c/x.tar", "http://deb.debian.org/debian"]


# ---------------------------------------------------------------- guest driver helpers (run on the host)

def test_guest_boot_name():
    assert guest.boot_name("console=ttyS0 quiet endura_vmtest=lsm-off lsm=yama\n") == "lsm-off"
    assert guest.boot_name("console=ttyS0") == ""


def test_guest_probe_outcomes(tmp_path):
    true = shutil.which("true")
    assert guest.probe(true) == "exit:0"
    assert guest.probe(shutil.which("false")) == "exit:1"
    not_exec = tmp_path / "data"
    not_exec.write_text("x")
    assert guest.probe(str(not_exec)) == "eacces"
    killer = tmp_path / "killer"
    killer.write_text("#!/bin/sh\nkill -9 $$\n")
    os.chmod(killer, 0o755)
    assert guest.probe(str(killer)) == "killed"
    assert guest.probe(str(tmp_path / "missing")).startswith("error:")


def test_guest_config_is_valid_for_the_sensor(tmp_path):
    from endura_sensor import config  # the sensor's own parser

    path = tmp_path / "s.conf"
    guest.write_config(str(path), str(tmp_path / "policies"), "audit", False)
    cfg = config.load(path)
    assert cfg.enforcement == "audit" and cfg.terminate_process is False
    assert str(cfg.policy_dir) == str(tmp_path / "policies")


def test_guest_policy_is_valid_for_the_sensor(tmp_path):
    """The policy the guest writes, read by the sensor's own policy loader: one rule per probed type."""
    from endura_sensor import policy

    guest.write_config(str(tmp_path / "s.conf"), str(tmp_path / "policies"), "enforce", True)
    loaded = policy.load_dir(tmp_path / "policies").rules
    rules = {r.name: r for r in loaded}
    assert {r.type for r in loaded} == {"exec", "file", "connect"} == set(results.PARTS)
    assert rules["vmtest-exec"].path == guest.DENIED == results.DENIED
    assert (rules["vmtest-file"].path, rules["vmtest-file"].access) == (guest.PROTECTED, "write")
    assert guest.PROTECTED == results.PROTECTED
    # the effect probes: a dir rule protects what is below the directory (and names that do not exist yet)
    assert (rules["vmtest-dir"].type, rules["vmtest-dir"].dir, rules["vmtest-dir"].access) == ("file", guest.PROTDIR,
                                                                                             "write")
    assert {rule for _, _, _, rule in results.EFFECT_EVENTS.values()} == set(rules)
    assert sorted(guest.PROTDIR_FILES) == results.PROTDIR_LISTING
    assert (rules["vmtest-connect"].network, rules["vmtest-connect"].port) == ("127.0.0.1/32", guest.DENIED_PORT)
    assert guest.DENIED_PORT == results.DENIED_PORT and guest.ALLOWED_PORT != guest.DENIED_PORT
    assert set(rules) == {f"vmtest-{part}" for part in results.PARTS} | {"vmtest-dir"}
    assert all(r.action == "block" for r in rules.values())
    assert {name for name, _ in guest.effect_actions(-1)} | {"ldso", "tcp_fastopen", "sendto"} == set(results.EFFECT_EVENTS) | set(
        results.EFFECT_OUTCOME_ONLY)


def test_the_guest_keeps_every_stdlib_module_the_sensor_imports():
    """Importing every sensor module (in a fresh interpreter) must not need a trimmed stdlib package."""
    import subprocess
    import sys
    from pathlib import Path

    sensor = Path(__file__).resolve().parents[3] / "sensor"
    code = ("import pkgutil, importlib, sys, endura_sensor\n"
            "for m in pkgutil.iter_modules(endura_sensor.__path__):\n"
            "    if m.name != '__main__':\n"
            "        importlib.import_module('endura_sensor.' + m.name)\n"
            "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))\n")
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(sensor)!r})\n" + code],
                          capture_output=True, text=True, check=True)
    imported = set(proc.stdout.split())
    assert "endura_sensor" in imported
    assert not imported & set(rootfs.TRIM_STDLIB), "the guest initramfs trims modules the sensor imports"
