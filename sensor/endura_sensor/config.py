"""`/etc/endura/sensor.conf`: a small, strict TOML subset read by our own parser (no tomllib on 3.9/3.10).

Accepted: blank lines, `# comments`, and `key = value` lines where value is a "basic string"
(escapes \\" \\\\ \\n \\t), `true`/`false`, or a decimal integer; a trailing `# comment` is allowed.
No tables, arrays, multi-line strings, or dotted keys. Every problem is reported as `file:line: problem`.

    mode = "standalone"            # "standalone" or "team-server"
    enforcement = "enforce"        # "enforce" or "audit" (audit never blocks or kills)
    terminate_process = true       # SIGKILL offenders (the only enforcement fentry/tracepoint tiers have)
    log_dir = "/var/log/endura"
    policy_dir = "/etc/endura/policies"
    team_server_url = "https://teams.example.com"   # required in team-server mode
    log_max_bytes = 10485760       # rotate events.log at this size (bytes, >= 4096)
    log_keep = 5                   # rotated files kept: events.log.1 .. events.log.N (1..100)
    bpf_pin_dir = "/sys/fs/bpf/endura"   # "" = do not pin (enforcement ends with the process)
    fail_closed = false            # true: programs stay attached after a clean stop too
    syslog = "off"                 # "off" | "local" (/dev/log) | "udp://host[:port]" (RFC 5424, port 514)
    syslog_facility = "daemon"     # kern user mail daemon auth syslog lpr news uucp cron authpriv ftp local0..local7
    collector_url = ""             # "" = off; "http(s)://host[:port]/path": POST JSON arrays of records
    collector_token_file = ""      # "" or an absolute path: its content is sent as `Authorization: Bearer ...`
    collector_batch = 100          # records per POST (1..10000)
    collector_flush_ms = 1000      # a record waits at most this long for its batch to fill (10..60000)
    collector_timeout_ms = 5000    # connect/send/response timeout (100..60000)
    forward_queue_max = 10000      # records held in memory per destination; beyond: dropped, counted (1..1000000)
    policy_may_downgrade = true    # false: refuse a policy file that sets enforcement/terminate_process below this
    flood_burst = 100              # events per (type, rule) logged in full before a flood is summarized (0 = off)
    flood_quiet_s = 10             # a flood ends after this many seconds without its events (1..86400)
    flood_summary_max_s = 300      # summaries of a flood: after 1 s, then doubling up to this interval (1..86400)

The file is read like every file the sensor reads (textfile.py): a regular file (or a symlink to
one) of at most MAX_CONFIG_BYTES, UTF-8 with an optional byte-order mark, LF or CRLF line endings,
lines of at most MAX_LINE_CHARS characters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

from . import forward, textfile
from .errors import SensorError

DEFAULT_PATH = Path("/etc/endura/sensor.conf")
MAX_CONFIG_BYTES = 1024 * 1024
MAX_LINE_CHARS = 64 * 1024  # sensor.conf and policy files: a longer line is an error (and is not parsed)
MAX_INT_DIGITS = 20  # any integer the sensor accepts fits in 64 bits
Value = Union[str, bool, int]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INT = re.compile(r"[+-]?(0|[1-9][0-9_]*)")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class Config:
    mode: str = "standalone"
    enforcement: str = "enforce"
    terminate_process: bool = True
    log_dir: str = "/var/log/endura"
    policy_dir: str = "/etc/endura/policies"
    team_server_url: str = ""
    log_max_bytes: int = 10 * 1024 * 1024
    log_keep: int = 5
    bpf_pin_dir: str = "/sys/fs/bpf/endura"
    fail_closed: bool = False
    syslog: str = "off"
    syslog_facility: str = "daemon"
    collector_url: str = ""
    collector_token_file: str = ""
    collector_batch: int = 100
    collector_flush_ms: int = 1000
    collector_timeout_ms: int = 5000
    forward_queue_max: int = 10000
    policy_may_downgrade: bool = True
    flood_burst: int = 100
    flood_quiet_s: int = 10
    flood_summary_max_s: int = 300
    path: str = ""  # where it was read from ("" = built-in defaults)


#: key -> (type, allowed values or None, is a path)
KEYS: Dict[str, Tuple[type, Tuple[str, ...] | None, bool]] = {
    "mode": (str, ("standalone", "team-server"), False),
    "enforcement": (str, ("enforce", "audit"), False),
    "terminate_process": (bool, None, False),
    "log_dir": (str, None, True),
    "policy_dir": (str, None, True),
    "team_server_url": (str, None, False),
    "log_max_bytes": (int, None, False),
    "log_keep": (int, None, False),
    "bpf_pin_dir": (str, None, False),
    "fail_closed": (bool, None, False),
    "syslog": (str, None, False),
    "syslog_facility": (str, tuple(forward.FACILITIES), False),
    "collector_url": (str, None, False),
    "collector_token_file": (str, None, False),
    "collector_batch": (int, None, False),
    "collector_flush_ms": (int, None, False),
    "collector_timeout_ms": (int, None, False),
    "forward_queue_max": (int, None, False),
    "policy_may_downgrade": (bool, None, False),
    "flood_burst": (int, None, False),
    "flood_quiet_s": (int, None, False),
    "flood_summary_max_s": (int, None, False),
}
#: integer keys with a range: key -> (min, max)
RANGES = {"collector_batch": (1, 10000), "collector_flush_ms": (10, 60000), "collector_timeout_ms": (100, 60000),
          "forward_queue_max": (1, 1000000), "flood_burst": (0, 1000000), "flood_quiet_s": (1, 86400),
          "flood_summary_max_s": (1, 86400)}
#: what each integer key accepts, for the message about an integer too long to be read
INT_HINTS = {"log_max_bytes": "from 4096 to 2^40", "log_keep": "from 1 to 100",
             **{key: f"from {lo} to {hi}" for key, (lo, hi) in RANGES.items()}}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


class ConfigError(SensorError):
    """One or more problems, each `file:line: problem`."""

    def __init__(self, problems: List[str]) -> None:
        self.problems = problems
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems in the configuration",
                         detail="\n".join(problems))


def _parse_string(text: str) -> Tuple[str, str]:
    """Parse a basic string at the start of text (which starts with "); return (value, rest)."""
    out, i = [], 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), text[i + 1 :]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                raise ValueError(f"unsupported escape '\\{text[i + 1:i + 2]}' (use \\\" \\\\ \\n \\t)")
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        if ch in "\n\r" or ord(ch) < 0x20 and ch != "\t":
            break
        out.append(ch)
        i += 1
    raise ValueError("unterminated string (missing closing \")")


def _strip_comment(rest: str) -> str:
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ValueError(f"unexpected text after the value: {rest!r}")
    return ""


def parse_value(text: str) -> Value:
    text = text.strip()
    if not text or text.startswith("#"):
        raise ValueError("missing value after '='")
    if text.startswith('"'):
        value, rest = _parse_string(text)
        _strip_comment(rest)
        return value
    if text.startswith("'"):
        raise ValueError("literal strings ('...') are not supported; use double quotes")
    token, _, rest = text.partition("#")
    token = token.strip()
    if token in ("true", "false"):
        return token == "true"
    if _INT.fullmatch(token):
        return parse_int(token)
    if token.startswith(("[", "{")):
        raise ValueError("arrays and inline tables are not supported")
    raise ValueError(f"invalid value {token!r} (expected a \"string\", true/false or an integer)")


class IntegerTooLong(ValueError):
    """An integer with more digits than any value the sensor accepts; callers add the allowed range."""


def parse_int(token: str) -> int:
    """A decimal integer (digits, optional sign and _); one with more digits than any 64-bit value is an
    error (Python would refuse beyond 4300 digits with a message about its own internals)."""
    digits = token.lstrip("+-").replace("_", "")
    if len(digits.lstrip("0")) > MAX_INT_DIGITS:
        raise IntegerTooLong(f"integer of {len(digits)} digits is far out of range")
    return int(token.replace("_", ""))


class Problems(list):
    """The problems found in the configuration or policy: the first MAX_PROBLEMS are kept (a file of
    garbage has one per line: millions), the others counted; close() adds a line saying how many more.
    Parsers stop at the line where it is `full` (stop()): reading on would only cost time."""

    MAX_PROBLEMS = 100

    def __init__(self) -> None:
        super().__init__()
        self.not_listed = 0
        self.stopped = ""

    @property
    def full(self) -> bool:
        return len(self) >= self.MAX_PROBLEMS

    def stop(self, where: str) -> None:
        self.stopped = self.stopped or where

    def append(self, problem: str) -> None:
        if len(self) < self.MAX_PROBLEMS:
            super().append(problem)
        else:
            self.not_listed += 1

    def close(self) -> List[str]:
        if self.stopped:
            return list(self) + [f"{self.stopped}: stopped reading here after {len(self)} problems; fix the ones "
                                 "above and run 'endura-sensor check-config' again"]
        if self.not_listed:
            return list(self) + [f"... and {self.not_listed} more problem(s) not listed; fix the ones above and "
                                 "run 'endura-sensor check-config' again"]
        return list(self)


def _target_problem(parse_target, value: str) -> str:
    try:
        parse_target(value)
    except ValueError as exc:
        return str(exc)
    return ""


def parse(text: str, filename: str = "<config>") -> Config:
    """Parse and validate; raise ConfigError listing every problem (the first Problems.MAX_PROBLEMS)."""
    problems = Problems()
    values: Dict[str, Value] = {}
    seen: Dict[str, int] = {}
    for lineno, where, line in numbered_lines(text, filename, problems):
        if problems.full:
            problems.stop(where)
            break
        if line.startswith("["):
            problems.append(f"{where}: tables ({line.split(']')[0]}]) are not supported; use top-level keys")
            continue
        key, rest = split_key_value(line, where, problems)
        if key is None:
            continue
        if key not in KEYS:
            problems.append(f"{where}: unknown key '{key}'; known keys: {', '.join(sorted(KEYS))}")
            continue
        if key in seen:
            problems.append(f"{where}: duplicate key '{key}' (first set on line {seen[key]})")
            continue
        seen[key] = lineno
        try:
            value = parse_value(rest)
        except ValueError as exc:
            hint = ""
            if isinstance(exc, IntegerTooLong):
                hint = (f"; {key} must be an integer {INT_HINTS[key]}" if key in INT_HINTS
                        else f"; {key} must be {_TYPE_NAMES[KEYS[key][0]]}")
            problems.append(f"{where}: {key}: {exc}{hint}")
            continue
        kind, choices, is_path = KEYS[key]
        if type(value) is not kind:
            problems.append(f"{where}: {key} must be {_TYPE_NAMES[kind]}, not {value!r}")
        elif choices and value not in choices:
            problems.append(f"{where}: {key} = {value!r} is not one of {', '.join(repr(c) for c in choices)}")
        elif is_path and not str(value).startswith("/"):
            problems.append(f"{where}: {key} must be an absolute path, not {value!r}")
        elif key == "log_max_bytes" and not 4096 <= int(value) <= 1 << 40:
            problems.append(f"{where}: log_max_bytes must be from 4096 to 2^40, not {value!r}")
        elif key == "bpf_pin_dir" and value and not str(value).startswith("/"):
            problems.append(f"{where}: bpf_pin_dir must be an absolute path or \"\", not {value!r}")
        elif key == "log_keep" and not 1 <= int(value) <= 100:
            problems.append(f"{where}: log_keep must be from 1 to 100, not {value!r}")
        elif key == "team_server_url" and not str(value).startswith("https://"):
            problems.append(f"{where}: team_server_url must start with https://, not {value!r}")
        elif key in RANGES and not RANGES[key][0] <= int(value) <= RANGES[key][1]:
            problems.append(f"{where}: {key} must be from {RANGES[key][0]} to {RANGES[key][1]}, not {value!r}")
        elif key == "syslog" and _target_problem(forward.parse_syslog_target, str(value)):
            problems.append(f"{where}: syslog = {value!r}: {_target_problem(forward.parse_syslog_target, str(value))}")
        elif key == "collector_url" and value and _target_problem(forward.parse_collector_url, str(value)):
            problems.append(f"{where}: collector_url = {value!r}: "
                            f"{_target_problem(forward.parse_collector_url, str(value))} (\"\" turns it off)")
        elif key == "collector_token_file" and value and not str(value).startswith("/"):
            problems.append(f"{where}: collector_token_file must be an absolute path or \"\", not {value!r}")
        else:
            values[key] = value
    if not problems and values.get("mode") == "team-server" and not values.get("team_server_url"):
        problems.append(f"{filename}:{seen['mode']}: mode = \"team-server\" needs team_server_url = \"https://...\"")
    if problems:
        raise ConfigError(problems.close())
    return Config(path=filename, **values)  # type: ignore[arg-type]


def load(path: Path = DEFAULT_PATH) -> Config:
    """Read and parse sensor.conf (a regular file, or a symlink to one, of at most MAX_CONFIG_BYTES)."""
    try:
        text = textfile.read_text(path, MAX_CONFIG_BYTES, "sensor.conf holds a few short settings: is this the "
                                                          "right file?")
    except textfile.FileProblem as exc:
        if str(exc) == f"{path}: not found":
            raise ConfigError([f"{path}: not found (the package installs one; or pass --config PATH)"]) from None
        raise ConfigError([str(exc)]) from None
    return parse(text, str(path))


def split_key_value(line: str, where: str, problems: list, expected: str = "'key = value'"):
    """Split `key = rest`; on a malformed line record the problem and return (None, "")."""
    key, sep, rest = line.partition("=")
    key = key.strip()
    if not sep:
        problems.append(f"{where}: expected {expected}")
        return None, ""
    if not _KEY.fullmatch(key):
        problems.append(f"{where}: invalid key {key!r} (bare keys only: letters, digits, _ and -)")
        return None, ""
    return key, rest


def numbered_lines(text: str, filename: str, problems: list):
    """(line number, `file:line`, stripped line) for every line that is neither blank nor a comment.

    Lines end at LF (a CR before it is dropped: CRLF files read like LF ones); a line longer than
    MAX_LINE_CHARS is reported in problems and skipped."""
    start, lineno = 0, 0
    while start <= len(text):  # not text.split(): a file of millions of short lines would cost a string each
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        lineno += 1
        if end - start > MAX_LINE_CHARS:
            problems.append(f"{filename}:{lineno}: line longer than {MAX_LINE_CHARS} characters "
                            f"({end - start}); split it (every value fits in far less)")
            start = end + 1
            continue
        raw, start = text[start:end], end + 1
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, f"{filename}:{lineno}", line
