"""Load one enforcement tier with a deny list and a config, and stream its events."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List

from . import events, libbpf
from .errors import SensorError


@dataclass(frozen=True)
class Tier:
    name: str  # on-disk/JSON string: lsm, fentry, tracepoint
    object_name: str
    program: str
    can_block: bool


TIERS = (
    Tier("lsm", "sensor_lsm.bpf.o", "endura_lsm_bprm_check", True),
    Tier("fentry", "sensor_fentry.bpf.o", "endura_fentry_bprm_check", False),
    Tier("tracepoint", "sensor_tp.bpf.o", "endura_tp_exec", False),
)
TIER_BY_NAME = {t.name: t for t in TIERS}


class Enforcer:
    """One loaded and attached tier. `with Enforcer(tier, bpf_dir, ...) as e: e.deny(path); e.poll(...)`.

    The deny map and config are filled *before* attaching, so there is no window with a half policy.
    """

    def __init__(self, tier: Tier, bpf_dir: Path, *, enforce: bool, terminate: bool,
                 deny: Iterable[str] = (), attach: bool = True) -> None:
        self.tier = tier
        self.path = Path(bpf_dir) / tier.object_name
        if not self.path.is_file():
            raise SensorError(f"BPF object {self.path} is missing; build it with 'python3 -m bpf.build' "
                              "(nox -s bpf) or reinstall endura-sensor")
        self._obj = libbpf.BpfObject(self.path)
        self._ring: libbpf.RingBuffer | None = None
        self.rules: List[str] = []
        try:
            self._obj.load()
            self._deny_fd = self._obj.map_fd("endura_deny")
            self._drops_fd = self._obj.map_fd("endura_drops")
            libbpf.map_update(self._obj.map_fd("endura_config"), b"\0\0\0\0", events.CONFIG.pack(
                events.ENFORCEMENT_ENFORCE if enforce else events.ENFORCEMENT_AUDIT, int(terminate)))
            for path in deny:
                self.deny(path)
            if attach:
                self._obj.attach(tier.program)
        except BaseException:
            self.close()
            raise

    def deny(self, path: str) -> int:
        """Deny executing `path` (by device and inode); return its rule id."""
        try:
            key = events.file_key(path)
        except OSError as exc:
            raise SensorError(f"cannot deny {path}: {exc.strerror}") from None
        rule_id = len(self.rules) + 1
        libbpf.map_update(self._deny_fd, key, events.DENY_RULE.pack(rule_id, 0))
        self.rules.append(os.path.abspath(path))
        return rule_id

    def drops(self) -> int:
        """Events lost because the ring buffer was full (sum over CPUs)."""
        ncpu = libbpf.possible_cpus()
        raw = libbpf.map_lookup(self._drops_fd, b"\0\0\0\0", 8 * ncpu) or b""
        return sum(int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8))

    def poll(self, callback: Callable[[events.Event], None], timeout_ms: int) -> int:
        if self._ring is None:
            self._ring = libbpf.RingBuffer(self._obj.map_fd("endura_events"),
                                           lambda data: callback(events.decode(data)))
        return self._ring.poll(timeout_ms)

    def close(self) -> None:
        if self._ring is not None:
            self._ring.free()
            self._ring = None
        self._obj.close()

    def __enter__(self) -> Enforcer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
