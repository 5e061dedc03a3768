"""Decoding of ring-buffer records and the map layouts; mirrors bpf/include/endura_events.h.

tests/integration/test_bpf_build.py compares EVENT_FIELDS with the BTF of the compiled objects.
"""
from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

ABI_VERSION = 4
COMM_LEN = 16
PATH_LEN = 256

EVENT_EXEC_DENIED, EVENT_FILE_OPEN_DENIED, EVENT_CONNECT_DENIED, EVENT_MODULE_LOAD_DENIED, EVENT_BPF_DENIED = 1, 2, 3, 4, 5
EVENT_FILE_OP_DENIED, EVENT_SENSOR_TAMPER_DENIED = 6, 7
EVENT_TYPES: Dict[int, str] = {EVENT_EXEC_DENIED: "exec_denied", EVENT_FILE_OPEN_DENIED: "file_open_denied",
                               EVENT_CONNECT_DENIED: "connect_denied", EVENT_MODULE_LOAD_DENIED: "module_load_denied",
                               EVENT_BPF_DENIED: "bpf_denied", EVENT_FILE_OP_DENIED: "file_op_denied",
                               EVENT_SENSOR_TAMPER_DENIED: "sensor_tamper_denied"}
#: struct endura_event.detail names per event type (enum endura_exec_how, endura_file_op, endura_net_how,
#: endura_sensor_op)
EXEC_HOW: Dict[int, str] = {0: "execve", 1: "interpreted", 2: "mmap", 3: "fileless"}
FILE_OPS: Dict[int, str] = {1: "rename_from", 2: "rename_to", 3: "link_from", 4: "link_to", 5: "unlink",
                            6: "truncate", 7: "create", 8: "write", 9: "rmdir"}
NET_HOW: Dict[int, str] = {0: "connect", 1: "sendmsg"}
SENSOR_OPS: Dict[int, str] = {1: "signal", 2: "ptrace", 3: "cgroup", 4: "pin"}

ACTION_AUDITED, ACTION_BLOCKED, ACTION_KILLED = 1, 2, 4
ACTIONS: Dict[int, str] = {ACTION_AUDITED: "audited", ACTION_BLOCKED: "blocked", ACTION_KILLED: "killed"}

TIER_LSM, TIER_FENTRY, TIER_TRACEPOINT = 1, 2, 3
TIERS: Dict[int, str] = {TIER_LSM: "lsm", TIER_FENTRY: "fentry", TIER_TRACEPOINT: "tracepoint"}

ENFORCEMENT_AUDIT, ENFORCEMENT_ENFORCE = 0, 1
RULE_NONE, RULE_AUDIT, RULE_BLOCK, RULE_KILL = 0, 1, 2, 3  # enum endura_rule_action: by strictness
RULE_ACTIONS: Dict[str, int] = {"audit": RULE_AUDIT, "block": RULE_BLOCK, "kill": RULE_KILL}
SLOT_EXEC, SLOT_READ, SLOT_WRITE, SLOTS = 0, 0, 1, 2  # enum endura_slot
TAMPER_MODULE_LOAD, TAMPER_BPF, TAMPER_FILELESS_EXEC, TAMPER_IO_URING, TAMPER_SENSOR, TAMPER_COUNT = 0, 1, 2, 3, 4, 5
MODULE_HOW: Dict[int, str] = {1: "init_module", 2: "finit_module", 3: "request_module"}
MAX_RULES = 16384
AF_INET, AF_INET6 = 2, 10

#: struct endura_event, in order: (field, struct format); little-endian, no padding
EVENT_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("type", "I"), ("action", "I"), ("tier", "I"), ("rule_id", "I"),
    ("timestamp_ns", "Q"), ("cgroup_id", "Q"),
    ("pid", "I"), ("tid", "I"), ("ppid", "I"), ("uid", "I"), ("gid", "I"), ("kill_result", "i"),
    ("dev", "Q"), ("ino", "Q"),
    ("comm", f"{COMM_LEN}s"), ("filename", f"{PATH_LEN}s"),
    ("addr", "16s"), ("port", "H"), ("family", "H"), ("detail", "I"),
)
EVENT = struct.Struct("<" + "".join(fmt for _, fmt in EVENT_FIELDS))
FILE_KEY = struct.Struct("<QQ")  # struct endura_file_key {dev, ino}
RULE = struct.Struct("<II8x")  # struct endura_rule {rule_id, action, reserved[2]} (net, tamper)
VERDICT = struct.Struct("<II")  # struct endura_verdict {rule_id, action}
#: struct endura_file_rule {self[SLOTS], below[SLOTS], generation, reserved} (exec, files and the names maps):
#: (rule_id, action) per slot
FILE_RULE = struct.Struct("<" + "II" * 2 * SLOTS + "I4x")
NAME_LEN = 64  # ENDURA_NAME_LEN: a name and its NUL
NAME_KEY = struct.Struct(f"<QQ{NAME_LEN}s")  # struct endura_name_key {dev, ino, name}
NET_KEY = struct.Struct("<I2s16s2x")  # struct endura_net_key {prefixlen, port[2] (big-endian), addr[16], reserved[2]}
#: struct endura_config {enforcement, terminate_process, sensor_tgid, exec_subtree_rules, file_rules,
#: file_subtree_rules, net_rules, file_read_rules, sensor_cgroup_id, sensor_cgroup_parent_id, sensor_cgroup_name,
#: exec_interpreters, name_rules, tainted_files, reserved[5]}
CGROUP_NAME_LEN = 64
CONFIG = struct.Struct(f"<IIIIIIIIQQ{CGROUP_NAME_LEN}sIII20x")


Verdict = Tuple[int, int]  # (rule_id, action); (0, RULE_NONE) = no rule


def pack_file_rule(self_: Sequence[Verdict], below: Sequence[Verdict], generation: int = 0) -> bytes:
    """struct endura_file_rule from SLOTS verdicts for the inode itself and SLOTS for below it; generation:
    the inode's i_generation (0: not checked)."""
    assert len(self_) == len(below) == SLOTS
    return FILE_RULE.pack(*(n for verdict in (*self_, *below) for n in verdict), generation)


def unpack_file_rule(value: bytes) -> Tuple[List[Verdict], List[Verdict]]:
    """(self verdicts, below verdicts) of a struct endura_file_rule."""
    numbers = FILE_RULE.unpack(value)[:4 * SLOTS]
    verdicts = [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)]
    return verdicts[:SLOTS], verdicts[SLOTS:]


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
    addr: str
    port: int
    family: int
    detail: int

    def to_dict(self) -> dict:
        """JSON-ready: fields that do not apply to this event type are left out."""
        d = asdict(self)
        if self.type != "connect_denied":
            for key in ("addr", "port", "family"):
                del d[key]
        if self.type in ("connect_denied", "module_load_denied", "bpf_denied", "sensor_tamper_denied"):
            del d["dev"], d["ino"]
        if self.type == "file_open_denied":
            d["access"] = [name for bit, name in ((1, "read"), (2, "write")) if self.detail & bit]
        elif self.type == "module_load_denied":
            d["how"] = MODULE_HOW.get(self.detail, str(self.detail))
        elif self.type == "bpf_denied":
            d["bpf_cmd"] = self.detail
        else:
            d.update(_detail_fields(EVENT_TYPE_NUMBERS.get(self.type, 0), self.detail))
        del d["detail"]
        return d


EVENT_TYPE_NUMBERS: Dict[str, int] = {name: number for number, name in EVENT_TYPES.items()}


def _detail_fields(kind: int, detail: int) -> dict:
    """The named form of struct endura_event.detail for exec, connect, file-op and sensor events."""
    if kind == EVENT_EXEC_DENIED:
        return {"how": EXEC_HOW.get(detail, str(detail))}
    if kind == EVENT_CONNECT_DENIED:
        return {"how": NET_HOW.get(detail, str(detail))}
    if kind == EVENT_FILE_OP_DENIED:
        return {"op": FILE_OPS.get(detail, str(detail))}
    if kind == EVENT_SENSOR_TAMPER_DENIED:
        return {"op": SENSOR_OPS.get(detail, str(detail))}
    return {}


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
    raw = values["addr"]
    if values["family"] == AF_INET or raw[:12] == b"\0" * 10 + b"\xff\xff":
        values["addr"] = str(ipaddress.IPv4Address(raw[12:]))
    else:
        values["addr"] = str(ipaddress.IPv6Address(raw))
    return Event(**values)


# ------------------------------------------------------------------ the fast path (daemon): tuples -> records

#: indexes into EVENT.unpack_from(...) (the order of EVENT_FIELDS)
I_TYPE, I_ACTION, I_TIER, I_RULE_ID, I_TIMESTAMP_NS, I_PID, I_UID, I_COMM = 0, 1, 2, 3, 4, 6, 9, 14
unpack = EVENT.unpack_from  # one record -> tuple (struct.error when it is too short)
_ACTION_NAMES = tuple(tuple(action_names(bits)) for bits in range(8))
_DEV_INO_TYPES = (EVENT_EXEC_DENIED, EVENT_FILE_OPEN_DENIED)
_ACCESS = (["read"], ["write"], ["read", "write"])


def _cstring(raw: bytes) -> str:
    end = raw.find(b"\0")
    raw = raw if end < 0 else raw[:end]
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")


def to_record(v: tuple) -> dict:
    """A tuple from `unpack` as the JSON-ready dict `decode(data).to_dict()` gives, without the Event and
    ipaddress detours (the daemon's per-event path)."""
    kind, action, tier, detail = v[0], v[1], v[2], v[19]
    record = {"type": EVENT_TYPES.get(kind) or f"unknown({kind})",
              "action": list(_ACTION_NAMES[action]) if action < 8 else action_names(action),
              "tier": TIERS.get(tier) or f"unknown({tier})", "rule_id": v[3], "timestamp_ns": v[4],
              "cgroup_id": v[5], "pid": v[6], "tid": v[7], "ppid": v[8], "uid": v[9], "gid": v[10],
              "kill_result": v[11]}
    if kind not in (EVENT_CONNECT_DENIED, EVENT_MODULE_LOAD_DENIED, EVENT_BPF_DENIED, EVENT_SENSOR_TAMPER_DENIED):
        record["dev"], record["ino"] = v[12], v[13]
    record["comm"] = _cstring(v[14])
    record["filename"] = _cstring(v[15])
    if kind == EVENT_CONNECT_DENIED:
        raw = v[16]
        if v[18] == AF_INET or raw[:12] == b"\0" * 10 + b"\xff\xff":
            record["addr"] = str(ipaddress.IPv4Address(raw[12:]))
        else:
            record["addr"] = str(ipaddress.IPv6Address(raw))
        record["port"], record["family"] = v[17], v[18]
    elif kind == EVENT_FILE_OPEN_DENIED:
        record["access"] = list(_ACCESS[(detail & 3) - 1]) if detail & 3 else []
    elif kind == EVENT_MODULE_LOAD_DENIED:
        record["how"] = MODULE_HOW.get(detail, str(detail))
    elif kind == EVENT_BPF_DENIED:
        record["bpf_cmd"] = detail
    if kind in (EVENT_EXEC_DENIED, EVENT_CONNECT_DENIED, EVENT_FILE_OP_DENIED, EVENT_SENSOR_TAMPER_DENIED):
        record.update(_detail_fields(kind, detail))
    return record


def net_key(network: str, port: int) -> bytes:
    """The LPM-trie key of a connect rule: port (0 = any) then the address, IPv4 as ::ffff:a.b.c.d."""
    net = ipaddress.ip_network(network or "::/0")
    if net.version == 4:
        addr = b"\0" * 10 + b"\xff\xff" + net.network_address.packed
        bits = 96 + net.prefixlen
    else:
        addr, bits = net.network_address.packed, net.prefixlen
    if not network:
        bits = 0
    return NET_KEY.pack(16 + bits, port.to_bytes(2, "big"), addr)
