"""Path and exec semantics on the tracepoint tier (this host): a rule protects a path, not an inode, and
an exec rule holds for every way of running a file.

- a `path` rule holds for a file that does not exist yet and for a file that replaces the protected one
  (`sed -i`, `mv x path`), at once, through the kernel's names map (directory inode + name);
- an inode number freed and reused by another file never matches the old entry (i_generation);
- an interpreter reading an exec-denied file is the exec: `sh x.sh`, a `#!` script, `ld.so ./payload`;
- a `fileless_exec` rule stops memfd_create + execve of /proc/self/fd/N;
- a bind mount of a subdirectory of an exec-denied directory is still below it.

The tracepoint tier can only kill, after the call returned: these tests assert the kill and the event;
that an O_CREAT open still leaves an empty file there is the tier's stated limit (docs/enforcement.md).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .test_sensor_policy import KILLED, TRUE, bpf_dir, copy_true, rule, run, start  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="loading BPF needs root and a kernel with BTF")


def python(code: str, *args: str) -> int:
    """Run `code` in a fresh interpreter (python3 is no interpreter rule here): its exit code, -9 if killed."""
    return subprocess.run([sys.executable, "-c", code, *args], timeout=30, capture_output=True).returncode


WRITE = "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'x')"


def test_a_path_rule_holds_for_a_file_that_does_not_exist_yet(start, tmp_path):
    target = tmp_path / "etc" / "rc.local"
    target.parent.mkdir()
    sensor = start(rule(name="rc-local", type="file", path=str(target), action="block"),
                   conf="terminate_process = true\n")
    assert sensor.started["entries"]["files"] == 0 and sensor.started["entries"]["file_names"] == 1
    assert python(WRITE, str(target)) == KILLED
    event = sensor.wait_for(lambda r: r["type"] == "file_open_denied")
    assert event["rule"] == "rc-local" and event["filename"] == "rc.local" and event["action"] == ["killed"]
    assert target.read_bytes() == b""  # the tier kills after open() returned: the file exists, nothing written
    sensor.stop()


def test_a_file_renamed_over_the_protected_path_is_protected_at_once(start, tmp_path):
    """`sed -i`: write a temporary file, rename it over the original; the next open for write is killed
    by the name before the sensor resolves the path again (--resolve-interval is an hour here)."""
    target = tmp_path / "sudoers"
    target.write_text("root ALL=(ALL) ALL\n")
    sensor = start(rule(name="sudoers", type="file", path=str(target)), conf="terminate_process = true\n",
                   extra=("--resolve-interval", "3600"))
    temp = tmp_path / "sedXYZ"
    temp.write_text("evil ALL=(ALL) NOPASSWD: ALL\n")
    os.rename(temp, target)  # the rename itself: see the file-op hooks (tier table in docs/enforcement.md)
    assert python(WRITE, str(target)) == KILLED
    event = sensor.wait_for(lambda r: r["type"] == "file_open_denied")
    assert event["rule"] == "sudoers" and event["ino"] == os.stat(target).st_ino
    sensor.stop()


REUSE = """
import os, sys, time
# ext4 gives a new file the first free inode of its directory's group: the freed number comes back once
# every lower free number of the group is taken (a test session frees many), so the files are kept until
# it does (then removed); a sync first, so the unlink's journal transaction is committed
os.sync()
made = []
found = ""
for i in range(60000):
    path = os.path.join(sys.argv[1], "reuse-%d" % i)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    if os.stat(path).st_ino == int(sys.argv[2]):
        found = path
        break
    made.append(path)
    if i % 5000 == 4999:
        os.sync()
for path in made:
    os.unlink(path)
print(found)
"""

def test_a_reused_inode_number_does_not_match_the_deleted_files_rule(start, tmp_path):
    """ext4 hands a freed inode number to the next new file; the map entry keeps the old file's
    i_generation, so the new file is not taken for the protected one (no kill, no event)."""
    protected = tmp_path / "protected"
    protected.write_text("x")
    ino = protected.stat().st_ino
    sensor = start(rule(name="gone", type="file", dir=str(tmp_path / "unrelated-dir-missing"))
                   + rule(name="prot", type="file", path=str(protected)), extra=("--resolve-interval", "3600"),
                   conf="terminate_process = true\n")
    assert sensor.started["entries"]["files"] == 1
    # removing it is killed (after the effect: the tracepoint tier cannot refuse), so not from this process
    assert python("import os, sys; os.unlink(sys.argv[1])", str(protected)) in (0, KILLED)
    assert not protected.exists()
    # new files until one gets the old number (ext4 reuses freed numbers quickly), made by a child: were
    # the old entry to match, the child would be killed, not this test
    finder = subprocess.run([sys.executable, "-c", REUSE, str(tmp_path), str(ino)], timeout=300, capture_output=True,
                            text=True)  # in the same directory: ext4 allocates near its directory's inode
    assert finder.returncode == 0, f"the child creating files died ({finder.returncode}): the old entry matched"
    reused = finder.stdout.strip()
    if not reused:
        pytest.fail(f"no new file reused inode {ino} on this filesystem: the test cannot show reuse here")
    assert python(WRITE, reused) == 0
    sensor.stop()
    assert not [r for r in sensor.records if r["type"] == "file_open_denied"]


@pytest.fixture
def shm_dir(tmp_path):
    """A denied directory with a script, a `#!` script and a copy of `true` in it."""
    denied = tmp_path / "shm"
    denied.mkdir()
    (denied / "x.sh").write_text("echo ran\n")
    hashbang = denied / "run.sh"
    hashbang.write_text("#!/bin/sh\necho ran\n")
    hashbang.chmod(0o755)
    copy_true(denied / "payload")
    return denied


def test_a_shell_reading_a_script_in_an_exec_denied_dir_is_killed(start, shm_dir):
    sensor = start(rule(name="no-shm", type="exec", dir=str(shm_dir), action="block"), conf="terminate_process = true\n")
    assert run("sh", shm_dir / "x.sh") == KILLED
    event = sensor.wait_for(lambda r: r["type"] == "exec_denied" and r["how"] == "interpreted")
    assert event["rule"] == "no-shm" and event["filename"] == "x.sh" and event["comm"] in ("sh", "dash")
    assert run(shm_dir / "run.sh") == KILLED  # `#!`: the interpreter opens the script
    assert run("sh", "-c", "echo fine") == 0  # the shell itself still runs
    sensor.stop()


def test_the_dynamic_loader_running_a_denied_binary_is_killed(start, shm_dir):
    loader = os.path.realpath("/lib64/ld-linux-x86-64.so.2" if os.path.exists("/lib64/ld-linux-x86-64.so.2")
                              else "/lib/ld-linux-aarch64.so.1")
    sensor = start(rule(name="no-shm", type="exec", dir=str(shm_dir)), conf="terminate_process = true\n")
    assert run(loader, shm_dir / "payload") == KILLED
    sensor.wait_for(lambda r: r["type"] == "exec_denied" and r["how"] == "interpreted" and r["filename"] == "payload")
    assert run(loader, TRUE) == 0  # allowed binaries still run through the loader
    sensor.stop()


MEMFD_EXEC = """
import os, sys
fd = os.memfd_create("payload", 0)
os.write(fd, open(sys.argv[1], "rb").read())
os.execv(f"/proc/self/fd/{fd}", ["payload"])
"""


def test_a_fileless_exec_rule_kills_memfd_execution(start, tmp_path):
    assert python(MEMFD_EXEC, TRUE) == 0  # control: without the sensor it runs
    sensor = start(rule(name="fileless", type="fileless_exec", action="kill"))
    assert python(MEMFD_EXEC, TRUE) == KILLED
    event = sensor.wait_for(lambda r: r["type"] == "exec_denied" and r["how"] == "fileless")
    assert event["rule"] == "fileless"
    assert run(TRUE) == 0  # files with a name still run
    sensor.stop()


def test_a_bind_mount_of_a_subdirectory_stays_below_the_denied_dir(start, tmp_path):
    denied = tmp_path / "denied"
    inner = copy_true(denied / "sub" / "tool")
    elsewhere = tmp_path / "mnt"
    elsewhere.mkdir()
    sensor = start(rule(name="no-denied", type="exec", dir=str(denied)), conf="terminate_process = true\n")
    subprocess.run(["mount", "--bind", str(inner.parent), str(elsewhere)], check=True)
    try:
        assert run(elsewhere / "tool") == KILLED
        # the same in an unprivileged user + mount namespace (unshare -r: root there, nobody outside)
        assert subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {inner.parent} {elsewhere} && "
                               f"exec {elsewhere}/tool"], timeout=30).returncode == KILLED
    finally:
        subprocess.run(["umount", str(elsewhere)], check=True)
    sensor.stop()
    assert all(e["rule"] == "no-denied" for e in sensor.records if e["type"] == "exec_denied")


def test_copy_of_true_outside_denied_dir_still_runs(start, shm_dir, tmp_path):
    """control for the cases above: nothing else is denied"""
    sensor = start(rule(name="no-shm", type="exec", dir=str(shm_dir)), conf="terminate_process = true\n")
    free = copy_true(tmp_path / "free" / "true")
    assert run(free) == 0 and run("sh", "-c", f"{free}") == 0
    sensor.stop()
    assert not sensor.events("exec_denied")


