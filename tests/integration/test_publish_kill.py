"""kill -9 of the real publisher at each of its steps: the served generation is never touched.

Steps that run a tool are caught by the publisher's own `+ cmd` lines (ENDURA_VERBOSE=1): the
publisher and its tools (its process group) get SIGKILL as soon as the line naming the tool appears.
The steps between tools (flushing the new tree, renaming it into place, the new `current` symlink,
its rename, pruning) are system calls of the publisher's main thread: strace delivers SIGKILL as that
call is entered (`--inject=SYSCALL:signal=KILL`), so the call never runs.

Every time: `current` serves the previous generation byte for byte (for a kill while pruning, which
comes after the switch: the new generation, complete), apt-get update + install still work against
it, and the next publish succeeds and removes what the killed one left.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from families.deb import repository as debrepo
from repo import verify
from tests.integration.test_publish import BASE_URL, REPO, _stop_gpg_agents, apt_client, madison, publish, snapshot  # noqa: F401
from toolbox.tools import require

pytestmark = pytest.mark.slow

#: step -> how to kill there: ("line", text of the `+ cmd` line) or ("syscall", system calls, the nth call[, only
#: those on this path in the repository root])
STEPS = {
    "apt suite": ("line", "+ apt-ftparchive --db"),
    "createrepo_c": ("line", "+ createrepo_c"),
    "pacman repo-add": ("line", "+ repo-add"),
    "apk index": ("line", "APKINDEX.unsigned.tar.gz"),
    "signing": ("line", "--clearsign"),
    "verification: rpm -K": ("line", "+ rpmkeys"),
    "verification: apt-get": ("line", "apt-get -q -y --error-on=any update"),
    "verification: apk fetch": ("line", " fetch --output "),
    "flushing the new tree (syncfs)": ("syscall", "syncfs,fsync", 1),
    "rename into generations/": ("syscall", "rename,renameat,renameat2", 1),
    "the new current symlink": ("syscall", "symlink,symlinkat", 1),
    "the switch (rename over current)": ("syscall", "rename,renameat,renameat2", 2),
    # the deletions inside the generation being pruned (strace -P: other deletions do not count)
    "pruning": ("syscall", "unlinkat", 2, "generations/.pruning-000001"),
}
VERIFYING = ("verification: rpm -K", "verification: apt-get", "verification: apk fetch")


def _leftovers(root: Path) -> list[str]:
    found = [p.name for p in (root / "generations").iterdir() if p.name.startswith(".")]
    found += [p.name for p in root.iterdir() if p.name.startswith((".verify-", ".current.tmp-"))]
    found += [p.name for p in (root / "cache").glob("*.tmp-*")] if (root / "cache").is_dir() else []
    return sorted(found)


def _kill_at_line(argv: list[str], text: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ENDURA_VERBOSE": "1"}, start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 300
    try:
        for line in proc.stderr:
            seen += line
            if (line.startswith("+ ") and text in line) or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # the publisher and the tools it started
    finally:
        proc.wait(timeout=60)
    assert text in seen, f"the publisher never ran {text!r}:\n{seen[-3000:]}"
    return proc, seen


def _kill_at_syscall(argv: list[str], syscall: str, nth: int, path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """strace traces the publisher's main thread only (no -f: its tools and worker threads run untraced)."""
    strace = ["strace", "-qq", "-o", "/dev/null", *(["-P", str(path)] if path else []), "-e", f"trace={syscall}",
              "-e", f"inject={syscall}:signal=KILL:when={nth}", "--"]
    proc = subprocess.run(strace + argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc, proc.stderr


@pytest.mark.parametrize("step", list(STEPS))
def test_kill_9_at_each_step_leaves_the_previous_generation_served(step, tmp_path, dist_v1, dist_v2, debian_root):
    require("strace", "apt-ftparchive", "createrepo_c", "repo-add")
    root = tmp_path / "repo"
    publish(root, "--dist", str(dist_v1), "--no-verify")
    args = ["--dist", str(dist_v2)]
    pruning = step == "pruning"
    if pruning:  # two generations and --keep 2: the third prunes the first
        publish(root, "--refresh", "--no-verify")
        args += ["--keep", "2"]
    if step not in VERIFYING:
        args.append("--no-verify")
    served = os.readlink(root / "current")
    before = snapshot(root / "current")
    argv = [sys.executable, "-m", "channels.publish", "--repo-root", str(root), "--base-url", BASE_URL, *args]

    how = STEPS[step]
    if how[0] == "line":
        proc, seen = _kill_at_line(argv, how[1])
    else:
        proc, seen = _kill_at_syscall(argv, how[1], how[2], root / how[3] if len(how) > 3 else None)
    assert proc.returncode == -signal.SIGKILL, f"the publisher was not killed at {step} ({proc.returncode}):\n{seen[-3000:]}"

    if pruning:  # the kill came after the switch: the new generation is served, the old one half-deleted aside
        assert os.readlink(root / "current") == "generations/000003"
        assert _leftovers(root) == [".pruning-000001"], _leftovers(root)
        assert not (root / "generations/000001").exists()
        expected = ["1.0.0-1", "1.0.1-1"]
    else:
        assert os.readlink(root / "current") == served
        assert snapshot(root / "current") == before, "the served generation was not touched"
        assert _leftovers(root) or (root / "generations/000002").is_dir(), "the kill happened mid-way"
        expected = ["1.0.0-1"]
    with verify.serve(root / "current") as url:
        client = apt_client(debian_root, root / "current", url)
        debrepo.apt_get(client, "update")
        assert madison(client) == expected
        debrepo.apt_get(client, "install", "--no-install-recommends", "endura-sensor")
    installed = debrepo.chroot(client, "endura-sensor", "--version").stdout.strip()
    assert installed == f"endura-sensor {expected[-1].removesuffix('-1')}"

    # the next publish removes what the killed one left and completes
    if pruning:
        result, proc2 = publish(root, "--refresh", "--no-verify", "--keep", "2")
    else:
        result, proc2 = publish(root, "--dist", str(dist_v2), "--no-verify")
    assert os.readlink(root / "current") == f"generations/{result['generation']:06d}"
    assert _leftovers(root) == [], _leftovers(root)
    with verify.serve(root / "current") as url:
        debrepo.apt_get(apt_client(debian_root, root / "current", url), "update")
        assert madison(client) == ["1.0.0-1", "1.0.1-1"]
