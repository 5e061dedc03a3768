"""Decoding of ring-buffer records and the map layouts; mirrors bpf/include/endura_events.h.

tests/integration/test_bpf_build.py compares EVENT_FIELDS with the BTF of the compiled objects.
"""
from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

ABI_VERSION = 1
COMM_LEN = 16
PATH_LEN = 256

EVENT_EXEC_DENIED = 1
EVENT_TYPES: Dict[int, str] = {EVENT_EXEC_DENIED: "exec_denied"}

ACTION_AUDITED, ACTION_BLOCKED, ACTION_KILLED = 1, 2, 4
ACTIONS: Dict[int, str] = {ACTION_AUDITED: "audited", ACTION_BLOCKED: "blocked", ACTION_KILLED: "killed"}

TIER_LSM, TIER_FENTRY, TIER_TRACEPOINT = 1, 2, 3
TIERS: Dict[int, str] = {TIER_LSM: "lsm", TIER_FENTRY: "fentry", TIER_TRACEPOINT: "tracepoint"}

ENFORCEMENT_AUDIT, ENFORCEMENT_ENFORCE = 0, 1

#: struct endura_event, in order: (field, struct format); little-endian, no padding
EVENT_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("type", "I"), ("action", "I"), ("tier", "I"), ("rule_id", "I"),
    ("timestamp_ns", "Q"), ("cgroup_id", "Q"),
    ("pid", "I"), ("tid", "I"), ("ppid", "I"), ("uid", "I"), ("gid", "I"), ("kill_result", "i"),
    ("dev", "Q"), ("ino", "Q"),
    ("comm", f"{COMM_LEN}s"), ("filename", f"{PATH_LEN}s"),
)
EVENT = struct.Struct("<" + "".join(fmt for _, fmt in EVENT_FIELDS))
FILE_KEY = struct.Struct("<QQ")  # struct endura_file_key {dev, ino}
DENY_RULE = struct.Struct("<II")  # struct endura_deny_rule {rule_id, flags}
CONFIG = struct.Struct("<II8x")  # struct endura_config {enforcement, terminate_process, reserved[2]}


def event_layout() -> List[Tuple[str, int, int]]:
    """(field, byte offset, byte size) of struct endura_event as this decoder reads it."""
    layout, offset = [], 0
    for name, fmt in EVENT_FIELDS:
        size = struct.calcsize("<" + fmt)
        layout.append((name, offset, size))
        offset += size
    return layout


def kernel_dev(st_dev: int) -> int:
    """userspace st_dev -> the kernel's internal dev_t (MKDEV: major << 20 | minor) used as map key."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def file_key(path: str) -> bytes:
    """The deny-map key for a file (follows symlinks: the kernel sees the target's inode)."""
    st = os.stat(path)
    return FILE_KEY.pack(kernel_dev(st.st_dev), st.st_ino)


def action_names(action: int) -> List[str]:
    return [name for bit, name in sorted(ACTIONS.items()) if action & bit]


@dataclass(frozen=True)
class Event:
    type: str
    action: List[str]
    tier: str
    rule_id: int
    timestamp_ns: int
    cgroup_id: int
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    kill_result: int
    dev: int
    ino: int
    comm: str
    filename: str

    def to_dict(self) -> dict:
        return asdict(self)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def decode(data: bytes) -> Event:
    """Decode one ring-buffer record; ValueError when it is too short."""
    if len(data) < EVENT.size:
        raise ValueError(f"event record of {len(data)} bytes is shorter than struct endura_event ({EVENT.size})")
    values = dict(zip((name for name, _ in EVENT_FIELDS), EVENT.unpack_from(data)))
    values["type"] = EVENT_TYPES.get(values["type"], f"unknown({values['type']})")
    values["tier"] = TIERS.get(values["tier"], f"unknown({values['tier']})")
    values["action"] = action_names(values["action"])
    values["comm"] = _cstr(values["comm"])
    values["filename"] = _cstr(values["filename"])
    return Event(**values)
