"""Forwarding records to syslog and to an HTTP JSON collector, each from a thread of its own.

The event loop only appends to a bounded in-memory queue (`forward_queue_max` records per
destination) and never waits for a receiver: when the receiver is down or slow the queue fills and
further records are **dropped and counted** (`forward_dropped`), like the ring buffer's drops.
Enforcement happens in the kernel and never depends on forwarding.

- syslog: `"local"` (the /dev/log datagram socket, in the `<PRI>Mmm dd hh:mm:ss tag[pid]: msg` form
  syslog(3) sends, which journald and rsyslog parse) or `"udp://host[:port]"` (RFC 5424 over UDP,
  RFC 5426). One record per message: MSGID is the record type, MSG its JSON.
- collector: `POST <collector_url>` with a JSON array of up to `collector_batch` records, sent when
  the batch is full or `collector_flush_ms` after its first record; `Authorization: Bearer <token>`
  from `collector_token_file`. 2xx = delivered; 408, 429, 5xx, timeouts and connection errors are
  retried (backoff 0.5 s .. 5 s) while newer records queue up; any other status drops the batch.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from . import __version__, textfile

LOCAL_SOCKET = "/dev/log"
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{n}": 16 + n for n in range(8)}}
APP_NAME = "endura-sensor"
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
#: a record of these types lost on the way is not counted: it is itself a report, the next one has the totals
UNCOUNTED = frozenset({"forward_dropped"})
MAX_TOKEN_BYTES = 64 * 1024


def read_token(path: str) -> str:
    """The collector token: a regular file (or a symlink to one) of at most MAX_TOKEN_BYTES, UTF-8, stripped.
    textfile.FileProblem (an OSError) for a FIFO, a device, a bigger file, ... (never blocks, never reads more)."""
    return textfile.read_text(path, MAX_TOKEN_BYTES, "a bearer token is one short line").strip()
BACKOFF_MIN, BACKOFF_MAX = 0.5, 5.0


# ------------------------------------------------------------------ targets (also used by config.py)

def _host_port(netloc: str, default_port: int | None) -> Tuple[str, int]:
    """Split `host[:port]` / `[v6][:port]`; raise ValueError with the reason."""
    if "@" in netloc:
        raise ValueError("credentials in the URL are not allowed")
    if netloc.startswith("["):
        host, sep, rest = netloc[1:].partition("]")
        if not sep:
            raise ValueError("unterminated [IPv6 address]")
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            raise ValueError(f"invalid IPv6 address {host!r}") from None
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the address")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = netloc.partition(":")
        port_text = port_text if sep else None
        if not host or not _HOST.fullmatch(host) or len(host) > 253:
            raise ValueError(f"invalid host {host!r}")
    if port_text is None:
        if default_port is None:
            raise ValueError("a port is required")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be from 1 to 65535, not {port_text!r}")
    return host, int(port_text)


def parse_syslog_target(value: str) -> Tuple[str, str, int]:
    """("off"|"local"|"udp", host, port); ValueError with the reason."""
    if value in ("off", "local"):
        return value, "", 0
    if value.startswith("udp://"):
        rest = value[len("udp://"):]
        if rest.endswith("/"):
            rest = rest[:-1]
        if not rest or "/" in rest:
            raise ValueError("expected udp://host[:port]")
        host, port = _host_port(rest, 514)
        return "udp", host, port
    raise ValueError('expected "off", "local" or "udp://host[:port]"')


def parse_collector_url(value: str) -> Tuple[str, str, int, str]:
    """(scheme, host, port, path with query); ValueError with the reason."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces")
    host, port = _host_port(parts.netloc, 443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


# ------------------------------------------------------------------ the queue and the sender thread

class Destination:
    """A bounded queue drained by a sender thread; counts what was sent and what was dropped, and why."""

    kind = ""

    def __init__(self, target: str, queue_max: int) -> None:
        self.target = target
        self.queue_max = queue_max
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False  # a batch is being sent
        self._batch: List[dict] = []
        self._abandoned = False  # closed: what was left is counted, late results are ignored
        self.sent = 0
        self.dropped: Dict[str, int] = {}
        self.last_error = ""
        self.last_error_time = 0.0
        self._thread = threading.Thread(target=self._main, name=f"endura-forward-{self.kind}", daemon=True)

    # called by the event loop: never blocks on the receiver
    def submit(self, record: dict) -> bool:
        with self._cond:
            if self._stopping:
                return False
            if len(self._queue) >= self.queue_max:
                if record.get("type") not in UNCOUNTED:
                    self._drop("queue full", 1)
                return False
            self._queue.append(record)
            self._cond.notify()
            return True

    def _drop(self, reason: str, n: int) -> None:  # with the lock held
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _fail(self, error: str) -> None:
        with self._cond:
            self.last_error, self.last_error_time = error, time.time()

    def start(self) -> Destination:
        self._thread.start()
        return self

    @property
    def dropped_total(self) -> int:
        with self._cond:
            return sum(self.dropped.values())

    def stats(self) -> dict:
        with self._cond:
            stats = {"target": self.target, "sent": self.sent, "dropped": sum(self.dropped.values()),
                     "dropped_by_reason": dict(self.dropped), "queued": len(self._queue)}
            if self.last_error:
                stats["last_error"] = self.last_error
            return stats

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def drain(self, timeout: float) -> bool:
        """Wait up to timeout for the queue to empty (True when it did)."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 2.0) -> int:
        """Send what is queued (up to timeout), then stop; returns the records left undelivered, which are
        counted (a batch still on the wire counts as undelivered)."""
        if self._abandoned:
            return 0
        self.drain(timeout)
        with self._cond:
            self._stopping = self._abandoned = True
            pending = list(self._queue) + (self._batch if self._busy else [])
            counted = sum(1 for r in pending if r.get("type") not in UNCOUNTED)
            if counted:
                self._drop("not sent at exit", counted)
            self._queue.clear()
            self._batch, self._busy = [], False
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self._close_connection()
        return len(pending)

    def _take(self, limit: int, linger: float) -> List[dict]:
        """Up to limit records: waits for the first, then up to linger seconds for the batch to fill."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait(0.5)
            if self._stopping:
                return []
            deadline = time.monotonic() + linger
            while len(self._queue) < limit and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            self._batch, self._busy = batch, bool(batch)
            return batch

    def _done(self, batch: List[dict], delivered: bool, reason: str = "") -> None:
        with self._cond:
            if self._abandoned:
                return
            if delivered:
                self.sent += len(batch)
            else:
                counted = sum(1 for r in batch if r.get("type") not in UNCOUNTED)
                if counted:
                    self._drop(reason, counted)
            self._busy = False
            self._batch = []

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when stopping."""
        with self._cond:
            if not self._stopping:
                self._cond.wait(seconds)
            return not self._stopping

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug: say so; the full queue then counts every record as dropped
            self._fail(f"the sender thread failed: {type(exc).__name__}: {exc}")
            with self._cond:
                self._busy = False

    # subclasses
    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close_connection(self) -> None:
        pass


class SyslogDestination(Destination):
    kind = "syslog"

    def __init__(self, target: str, facility: str = "daemon", queue_max: int = 10000,
                 local_socket: str = LOCAL_SOCKET) -> None:
        super().__init__(target, queue_max)
        self.mode, self.host, self.port = parse_syslog_target(target)
        self.facility = FACILITIES[facility]
        self.local_socket = local_socket
        self.hostname = socket.gethostname().split(".")[0] or "-"
        self.pid = os.getpid()
        self._sock: Optional[socket.socket] = None

    def format(self, record: dict) -> bytes:
        pri = self.facility * 8 + severity(record)
        msg = json.dumps(record, separators=(",", ":"))  # ASCII (ensure_ascii): no BOM needed
        if self.mode == "local":
            stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
            return f"<{pri}>{stamp} {APP_NAME}[{self.pid}]: {msg}".encode()
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e6) % 1000000:06d}Z"
        msgid = re.sub(r"[^!-~]", "_", str(record.get("type", "-")))[:32] or "-"
        return f"<{pri}>1 {stamp} {self.hostname} {APP_NAME} {self.pid} {msgid} - {msg}".encode()

    def _connect(self) -> socket.socket:
        if self.mode == "local":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.settimeout(1.0)
                sock.connect(self.local_socket)
            except OSError:
                sock.close()
                raise
            return sock
        family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(1.0)
            sock.connect(address)  # connected: an ICMP port unreachable shows as ECONNREFUSED on a later send
        except OSError:
            sock.close()
            raise
        return sock

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            batch = self._take(64, 0)
            if not batch:
                return
            try:
                if self._sock is None:
                    self._sock = self._connect()
                sent = 0
                try:
                    for record in batch:
                        self._sock.send(self.format(record))
                        sent += 1
                finally:
                    with self._cond:
                        if not self._abandoned:
                            self.sent += sent
                    batch = batch[sent:]
                self._done([], True)
                backoff = BACKOFF_MIN
            except OSError as exc:
                where = self.local_socket if self.mode == "local" else self.target
                self._fail(f"{where}: {exc.strerror or exc}")
                self._close_connection()
                # a datagram is not retried: the lost record and the ones in this batch are counted
                self._done(batch, False, "send failed")
                if not self._sleep(backoff):
                    return
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _close_connection(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class CollectorDestination(Destination):
    kind = "collector"

    def __init__(self, url: str, token_file: str = "", batch: int = 100, flush_ms: int = 1000,
                 timeout_ms: int = 5000, queue_max: int = 10000) -> None:
        super().__init__(url, queue_max)
        self.scheme, self.host, self.port, self.path = parse_collector_url(url)
        self.token_file = token_file
        self.batch, self.linger, self.timeout = batch, flush_ms / 1000, timeout_ms / 1000
        self.hostname = socket.gethostname()
        self.batches = 0
        self._conn: Optional[http.client.HTTPConnection] = None
        self._token: Tuple[Optional[tuple], str] = (None, "")

    def token(self) -> str:
        """The bearer token (re-read when the file changes); "" without a token file. OSError when unreadable."""
        if not self.token_file:
            return ""
        st = textfile.check_regular(self.token_file)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._token[0] != key:
            self._token = (key, read_token(self.token_file))
        return self._token[1]

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def post(self, batch: List[dict]) -> Tuple[bool, bool, str]:
        """(delivered, retry, error)."""
        try:
            token = self.token()
        except OSError as exc:
            return False, True, f"cannot read collector_token_file {self.token_file}: {exc.strerror or exc}"
        if self.token_file and not token:
            return False, True, f"collector_token_file {self.token_file} is empty"
        body = json.dumps([dict(r, host=self.hostname) for r in batch], separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"{APP_NAME}/{__version__}",
                   "Content-Length": str(len(body))}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                self._close_connection()
        except (OSError, http.client.HTTPException) as exc:
            self._close_connection()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
            return False, True, f"{self.target}: {reason}"
        if 200 <= response.status < 300:
            return True, False, ""
        error = f"{self.target}: HTTP {response.status} {response.reason}"
        return False, response.status in (408, 429) or response.status >= 500, error

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        batch: List[dict] = []
        while True:
            if not batch:
                batch = self._take(self.batch, self.linger)
                if not batch:
                    return
            delivered, retry, error = self.post(batch)
            if delivered:
                with self._cond:
                    self.batches += 1
                self._done(batch, True)
                batch, backoff = [], BACKOFF_MIN
                continue
            self._fail(error)
            if not retry:
                self._done(batch, False, "rejected by the collector")
                batch = []
                continue
            if not self._sleep(backoff):  # stopping: close() counted the batch in hand
                return
            backoff = min(backoff * 2, BACKOFF_MAX)

    def stats(self) -> dict:
        stats = super().stats()
        stats["batches"] = self.batches
        return stats

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def severity(record: dict) -> int:
    """syslog severity: 3 err (lost events, rejected policy), 4 warning (blocked/killed),
    5 notice (audited), 6 info (everything else)."""
    kind = record.get("type")
    if kind in ("events_dropped", "forward_dropped", "policy_rejected"):
        return 3
    action = record.get("action")
    if isinstance(action, list) and action:
        return 5 if action == ["audited"] else 4
    return 6


class Forwarders:
    """The configured destinations (none when forwarding is off)."""

    def __init__(self, destinations: List[Destination]) -> None:
        self.destinations = destinations
        self.reported: Dict[str, int] = {d.kind: 0 for d in destinations}

    @classmethod
    def from_config(cls, cfg) -> Forwarders:
        found: List[Destination] = []
        if cfg.syslog != "off":
            found.append(SyslogDestination(cfg.syslog, cfg.syslog_facility, cfg.forward_queue_max))
        if cfg.collector_url:
            found.append(CollectorDestination(cfg.collector_url, cfg.collector_token_file, cfg.collector_batch,
                                              cfg.collector_flush_ms, cfg.collector_timeout_ms,
                                              cfg.forward_queue_max))
        return cls(found)

    def __bool__(self) -> bool:
        return bool(self.destinations)

    def start(self) -> None:
        for d in self.destinations:
            d.start()

    def submit(self, record: dict) -> None:
        if not self.destinations:
            return
        # a copy: the sender threads serialize it later, while the event loop may change shared lists
        snapshot = json.loads(json.dumps(record))
        for d in self.destinations:
            d.submit(snapshot)

    def stats(self) -> Dict[str, dict]:
        return {d.kind: d.stats() for d in self.destinations}

    def dropped(self) -> Dict[str, int]:
        return {d.kind: d.dropped_total for d in self.destinations}

    def new_drops(self) -> List[Tuple[Destination, int, int]]:
        """(destination, total, new) for each destination whose drop count grew since the last call."""
        out = []
        for d in self.destinations:
            total = d.dropped_total
            if total != self.reported[d.kind]:
                out.append((d, total, total - self.reported[d.kind]))
                self.reported[d.kind] = total
        return out

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for d in self.destinations:
            d.drain(max(0.0, deadline - time.monotonic()))

    def close_stalled(self) -> None:
        """Close the destinations that still hold records (receiver down or slow): their losses are counted now."""
        for d in self.destinations:
            if not d.idle():
                d.close(0)

    def close(self, timeout: float = 2.0) -> Dict[str, int]:
        """Flush (up to timeout in all) and stop; {kind: records left undelivered}."""
        deadline = time.monotonic() + timeout
        return {d.kind: d.close(max(0.1, deadline - time.monotonic())) for d in self.destinations}
