"""What the families' client checks share: the PATH inside a chroot, an environment that points no client
elsewhere, and stopping the gpg-agents that dnf (librepo's per-repository keyring) and pacman-key start in
scratch directories."""
from __future__ import annotations

import os
from pathlib import Path

from toolbox.run import run

CHROOT_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without what would point a client elsewhere than our private
    configuration and loopback: `APT_CONFIG` (apt in the chroot would read that file), `DNF_VAR_*`
    (dnf variables) and proxies (`http_proxy`...: the repository is on 127.0.0.1)."""
    env = {k: v for k, v in os.environ.items()
           if k != "APT_CONFIG" and not k.startswith("DNF_VAR_") and not k.lower().endswith("_proxy")}
    return {**env, **(extra or {})}


def stop_gpg_agents(under: Path) -> None:
    """Stop the gpg-agents that dnf (librepo's per-repository keyring) and pacman-key start for their
    keyrings below `under`: they would outlive the scratch directory they serve."""
    homes = {p.parent for name in ("pubring.kbx", "pubring.gpg") for p in under.rglob(name)}
    for home in sorted(homes):
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, timeout=60)


