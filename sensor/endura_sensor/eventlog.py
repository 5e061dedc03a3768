"""The local event log: JSON lines in `<log_dir>/events.log`, rotated by size (events.log.1 .. .N)."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import SensorError

LOG_NAME = "events.log"
#: records as compact JSON (ASCII: ensure_ascii escapes the rest), one encoder for the log, stdout and forwarding
encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class EventLog:
    def __init__(self, directory: Path, max_bytes: int = 10 * 1024 * 1024, keep: int = 5) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_NAME
        self.max_bytes, self.keep = max_bytes, keep
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._file = open(self.path, "a", encoding="ascii", buffering=1 << 16)
        except OSError as exc:
            raise SensorError(f"cannot write the event log {self.path}: {exc.strerror}; create {self.directory} "
                              "(the package does) or set log_dir in sensor.conf") from None
        self._size = self._file.tell()

    def write(self, record: dict) -> None:
        self.write_line(encode(record) + "\n")

    def write_line(self, line: str) -> None:
        """One JSON line from `encode` (ASCII: its length is its size in bytes), newline included.
        Buffered: `flush()` once per batch of records."""
        if self._size + len(line) > self.max_bytes and self._size:
            self.rotate()
        self._file.write(line)
        self._size += len(line)

    def flush(self) -> None:
        self._file.flush()

    def rotate(self) -> None:
        self._file.close()
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{LOG_NAME}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{LOG_NAME}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{LOG_NAME}.1"))
        self._file = open(self.path, "a", encoding="ascii", buffering=1 << 16)
        self._size = 0

    def close(self) -> None:
        self._file.close()


def boot_to_wall_offset() -> float:
    """Add to a CLOCK_BOOTTIME value (seconds) to get the wall-clock time (seconds since the epoch)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def iso_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1e6) % 1000000:06d}Z"


def seconds_since_exec() -> float | None:
    """How long ago this process was exec'd (from /proc/self/stat starttime and CLOCK_BOOTTIME)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def sd_notify(message: str) -> bool:
    """systemd readiness/status notification (Type=notify); False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False
