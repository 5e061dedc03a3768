"""What each enforcement tier cannot guarantee: shown by `endura-sensor check` (text and JSON) for the
tier the host would use, and kept in step with docs/evasion.md (the evasion suite's measured table,
vmtest/evasion_expected.py). Each line says what gets through and, where there is one, what to do.
"""
from __future__ import annotations

from typing import Dict, Tuple

#: limits every tier shares (the policy language's own boundaries)
COMMON: Tuple[str, ...] = (
    "content piped into an interpreter (`cat x | sh`, `python3 -c \"$(cat x)\"`) is not a file: exec rules "
    "do not see it",
    "interpreters other than the shells and the dynamic loader (python3, perl, ...) reading an exec-denied "
    "file are covered only when an `interpreter` rule names them",
    "sha256 rules match copies in their `search` directories only, found within the resolve interval (5 s): "
    "deny writable places with `dir` rules",
    "an inode number reused on a filesystem without generations (tmpfs, overlayfs) can match a deleted "
    "file's rule until the next resolve (5 s)",
    "root can stop the sensor through init (systemctl stop): that is the administrator's way, and it is "
    "logged",
)

#: tier -> what it cannot guarantee beyond COMMON
TIER_LIMITS: Dict[str, Tuple[str, ...]] = {
    "lsm": (),
    "fentry": (
        "hooks whose security_*() function the kernel lacks (e.g. security_file_truncate before 6.2) are "
        "covered by another hook where one exists, and named in a warning at start",
    ),
    "tracepoint": (
        "kill only, after the call returned: the effect of the denied call itself happens (O_TRUNC "
        "truncates, O_CREAT leaves an empty file, a UDP datagram or a TCP SYN leaves); the process dies "
        "before it can use the result",
        "rename, link, unlink and truncate by a path deeper than one component are not seen (no path walk "
        "in BPF; on ext4 unlink and truncate are), nor writes through an fd opened before the sensor "
        "started, nor ptrace of the sensor: use the lsm or fentry tier where they matter",
        "io_uring operations are not syscalls and are not seen: deny io_uring_setup with an `io_uring` rule "
        "(or sysctl kernel.io_uring_disabled=2 on 6.6+)",
        "processes sharing the offender's fd table are killed at their next syscall: one call already in "
        "flight completes",
        "bpf() and signals to the sensor complete before the sender is killed: the rule maps are frozen, "
        "a stopped sensor is restarted by the watchdog, and `status` says so",
    ),
}


def limits(tier: str) -> Tuple[str, ...]:
    """What `tier` cannot guarantee (tier-specific first, then the common ones)."""
    return TIER_LIMITS.get(tier, ()) + COMMON
