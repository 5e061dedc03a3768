"""What the families' client checks share: the PATH inside a chroot, and stopping the gpg-agents that
dnf (librepo's per-repository keyring) and pacman-key start in scratch directories."""
from __future__ import annotations

from pathlib import Path

from toolbox.run import run

CHROOT_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def stop_gpg_agents(under: Path) -> None:
    """Stop the gpg-agents that dnf (librepo's per-repository keyring) and pacman-key start for their
    keyrings below `under`: they would outlive the scratch directory they serve."""
    homes = {p.parent for name in ("pubring.kbx", "pubring.gpg") for p in under.rglob(name)}
    for home in sorted(homes):
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, timeout=60)


