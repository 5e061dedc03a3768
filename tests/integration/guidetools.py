"""Following a generated install guide verbatim in a Debian root (chroot): its ```sh blocks, in order."""
from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from repo.guides import PACKAGE, sh_blocks
from toolbox.run import run

CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
#: `endura-sensor check` exits 10 (degraded tier) or 20 (no tier) on a healthy host without BPF LSM;
#: the guides say so, so its block is the one allowed to exit with those codes
CHECK_BLOCK = f"{PACKAGE} check"
CHECK_EXIT_CODES = (0, 10, 20)


@dataclass
class Ran:
    block: str
    returncode: int
    output: str


def extract_root(tar: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    run(["tar", "-C", str(dest), "-xf", str(tar)], timeout=600)
    return dest


def without_network_sources(root: Path) -> None:
    """The root stands for a host whose distribution packages are already installed: no apt source is left,
    so nothing but what the guide adds (served on loopback, or file://) can be reached."""
    etc = root / "etc" / "apt"
    with contextlib.suppress(FileNotFoundError):
        (etc / "sources.list").unlink()
    for p in (etc / "sources.list.d").glob("*"):
        p.unlink()


def follow(root: Path, markdown: str) -> list[Ran]:
    """Run every ```sh block of `markdown`, unchanged, with `sh -e` in the chroot `root`, in order.
    Raises AssertionError on the first block that fails."""
    ran: list[Ran] = []
    blocks = sh_blocks(markdown)
    assert blocks, "the guide has no sh blocks"
    for block in blocks:
        script = block
        proc: subprocess.CompletedProcess = run(["chroot", str(root), "sh", "-e", "-x", "-c", script],
                                                env=CHROOT_ENV, check=False, timeout=900)
        out = proc.stdout + proc.stderr
        allowed = CHECK_EXIT_CODES if block.strip() == CHECK_BLOCK else (0,)
        if proc.returncode not in allowed:
            raise AssertionError(f"guide block exited {proc.returncode}:\n{script}\n--- output ---\n{out[-4000:]}")
        ran.append(Ran(block, proc.returncode, out))
    return ran


def stop_gpg_agents_in(root: Path) -> None:
    """dnf (librepo) starts gpg-agents for its keyrings inside the root: stop them from inside."""
    for ring in root.rglob("pubring.kbx"):
        home = "/" + str(ring.parent.relative_to(root))
        run(["chroot", str(root), "gpgconf", "--homedir", home, "--kill", "all"], env=CHROOT_ENV, check=False, timeout=60)
