"""Policy files (`policy_dir`, default /etc/endura/policies/*.toml): parse, validate, resolve.

The same strict TOML subset as sensor.conf (see config.py), plus `[[rule]]` array-of-tables headers
and single-line arrays of strings (`search = ["/usr/bin", "/opt"]`). Every problem is reported as
`file:line: problem`; all files are read and every problem is listed, not just the first.

    enforcement = "enforce"      # optional, overrides sensor.conf; "enforce" or "audit"
    terminate_process = true     # optional, overrides sensor.conf

    [[rule]]
    name = "no-netcat"           # optional, unique; default "<file>:<line>"
    type = "exec"                # exec | file | connect | module_load | bpf | fileless_exec | io_uring
                                 # | sensor | interpreter
    path = "/usr/bin/nc"         # exec: exactly one of path, dir, sha256 (+ optional search)
    action = "kill"              # block (default) | kill | audit

A `path` rule protects the path, not only the file there now: the kernel also matches the name in its
directory, so a file created there later (the path need not exist yet; its directory must) or one that
replaces the protected file (`sed -i`, `mv x /etc/sudoers`) is covered at once, before the sensor
resolves the path again. Names longer than NAME_MAX_BYTES bytes are matched by inode only.

`interpreter` rules name executables that run the files they read (`path` only). The shells and the
dynamic loader in DEFAULT_INTERPRETERS always are: their reading a regular file that an exec rule
denies is refused like the exec (`sh /dev/shm/x.sh`, a `#!` script's interpreter, `ld.so ./payload`).
Add e.g. /usr/bin/python3 to cover `python3 /tmp/x.py`; then python3 cannot read any file an exec rule
denies, data included (e.g. files in an exec-denied /tmp).

Files are applied in name order and together form one policy. A key set to different values in
two files (enforcement, terminate_process), the same match twice (duplicate) or with a different
action or access (contradictory), and more than MAX_RULES rules are errors.

Files are read by textfile.py: regular files (or symlinks to them) only, at most MAX_FILE_BYTES each
and MAX_TOTAL_BYTES together, UTF-8 (an optional byte-order mark), LF or CRLF line endings. A file
that cannot be read (a FIFO, a device, a dangling symlink, a loop) is an error like a syntax error,
both at start and on reload; dir_signature() notices such entries so that a running sensor and a
restarted one judge the same directory the same way.

A policy file setting `enforcement` or `terminate_process` below sensor.conf (a *downgrade*) is
reported by downgrades(); with `policy_may_downgrade = false` in sensor.conf it is an error.
"""
from __future__ import annotations

import array
import fcntl
import hashlib
import ipaddress
import os
import re
import stat
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from . import textfile
from .config import (
    Config,
    ConfigError,
    IntegerTooLong,
    Problems,
    _parse_string,
    _strip_comment,
    numbered_lines,
    parse_int,
    parse_value,
    split_key_value,
)

MAX_RULES = 16384  # = ENDURA_MAX_RULES in bpf/include/endura_events.h (per map and in total)
#: 16384 rules with names, sha256 and comments take ~3 MiB; the bounds keep a hostile or mistaken file
#: from costing more memory than the sensor's unit allows (peak RSS measured in the README)
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
MAX_KEYS_PER_RULE = 32
MAX_ARRAY_ITEMS = 64  # e.g. `search` directories of a sha256 rule
RULE_TYPES = ("exec", "file", "connect", "module_load", "bpf", "fileless_exec", "io_uring", "sensor", "interpreter")
#: rule types that match no object: one rule of each at most (the kernel's endura_tamper array)
SINGLETONS = ("module_load", "bpf", "fileless_exec", "io_uring", "sensor")
#: the longest name (last path component, bytes) the names maps hold: ENDURA_NAME_LEN - 1
NAME_MAX_BYTES = 63
#: executables that run a file they are given to read: always interpreters (see the module docstring);
#: what does not exist on a host is skipped
DEFAULT_INTERPRETERS = ("/bin/sh", "/bin/bash", "/bin/dash", "/bin/zsh", "/bin/ksh", "/bin/mksh", "/bin/ash",
                        "/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/ld-linux.so.2",
                        "/lib/ld-linux-armhf.so.3", "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1")
ACTIONS = ("block", "kill", "audit")
ACCESS = ("write", "read-write", "read")
#: directories searched for binaries whose sha256 is denied when a rule gives no `search`
DEFAULT_SEARCH = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin")
GLOBAL_KEYS = {"enforcement": ("enforce", "audit"), "terminate_process": None}
COMMON_KEYS = ("name", "type", "action")
#: type -> keys allowed besides the common ones
TYPE_KEYS: Dict[str, Tuple[str, ...]] = {
    "exec": ("path", "dir", "sha256", "search"),
    "file": ("path", "dir", "access"),
    "connect": ("address", "port"),
    "module_load": (),
    "bpf": (),
    "fileless_exec": (),
    "io_uring": (),
    "sensor": (),
    "interpreter": ("path",),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEADER = re.compile(r"\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")

Value = Union[str, bool, int, List[str]]


class PolicyError(ConfigError):
    """Problems in the policy files, each `file:line: problem`."""


@dataclass(frozen=True)
class Rule:
    type: str
    action: str
    source: str  # "file:line" of its [[rule]] header
    name: str
    path: str = ""
    dir: str = ""
    sha256: str = ""
    search: Tuple[str, ...] = ()
    access: str = ""  # file rules: write | read-write | read
    network: str = ""  # connect: CIDR ("" = any address)
    port: int = 0  # connect: 0 = any port

    @property
    def match(self) -> Tuple:
        """What the rule matches; two rules with the same match are duplicates or contradictory."""
        if self.type == "exec":
            return ("exec", "path" if self.path else "dir" if self.dir else "sha256", self.path or self.dir or self.sha256)
        if self.type == "file":
            return ("file", "path" if self.path else "dir", self.path or self.dir)
        if self.type == "connect":
            return ("connect", self.network, self.port)
        if self.type == "interpreter":
            return ("interpreter", self.path)
        return (self.type,)

    def describe(self) -> str:
        m = self.match
        if self.type == "connect":
            target = (self.network or "any address") + (f" port {self.port}" if self.port else "")
            return f"connect to {target}"
        if self.type in ("exec", "file"):
            what = {"exec": "exec", "file": f"open for {self.access}"}[self.type]
            return f"{what} of {m[1]} {m[2]}"
        if self.type == "interpreter":
            return f"interpreter {self.path}"
        return {"module_load": "kernel module loading", "bpf": "bpf() by other processes",
                "fileless_exec": "exec of files without a name (memfd, O_TMPFILE, deleted)",
                "io_uring": "io_uring_setup(2)", "sensor": "attempts on the sensor itself"}[self.type]

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": self.type, "action": self.action, "source": self.source}
        for key in ("path", "dir", "sha256", "access", "network", "port"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


@dataclass(frozen=True)
class Policy:
    rules: Tuple[Rule, ...] = ()
    enforcement: str | None = None  # None: not set by any file (sensor.conf decides)
    terminate_process: bool | None = None
    files: Tuple[str, ...] = ()
    sources: Tuple[Tuple[str, str], ...] = ()  # (global key, "file:line" that set it)

    def source_of(self, key: str) -> str:
        return dict(self.sources).get(key, "")

    def summary(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for rule in self.rules:
            counts[rule.type] = counts.get(rule.type, 0) + 1
        return counts


# ---------------------------------------------------------------- values

def _parse_array(text: str) -> Tuple[List[Union[str, int]], str]:
    """A single-line array of strings or integers at the start of text (starts with '[')."""
    items: List[Union[str, int]] = []
    rest = text[1:].lstrip()
    while True:
        if rest.startswith("]"):
            return items, rest[1:]
        if rest.startswith('"'):
            value, rest = _parse_string(rest)
            items.append(value)
        else:
            m = re.match(r"[+-]?[0-9][0-9_]*", rest)
            if not m:
                raise ValueError("arrays hold \"strings\" or integers and must close on the same line with ]")
            items.append(parse_int(m.group(0)))
            rest = rest[m.end():]
        if len(items) > MAX_ARRAY_ITEMS:
            raise ValueError(f"more than {MAX_ARRAY_ITEMS} items in one array; split the rule")
        rest = rest.lstrip()
        if rest.startswith(","):
            rest = rest[1:].lstrip()
        elif not rest.startswith("]"):
            raise ValueError("expected ',' or ']' in the array (arrays must fit on one line)")


def _value(text: str) -> Value:
    stripped = text.strip()
    if stripped.startswith("["):
        items, rest = _parse_array(stripped)
        _strip_comment(rest)
        return items  # type: ignore[return-value]
    return parse_value(text)


# ---------------------------------------------------------------- validation of one value

def check_path(value: str, key: str) -> str:
    """An absolute, normalized path; raise ValueError naming what is wrong."""
    if not value:
        raise ValueError(f"{key} is empty")
    if "\0" in value or "\n" in value:
        raise ValueError(f"{key} {value!r} contains a NUL or newline")
    if not value.startswith("/"):
        raise ValueError(f"{key} {value!r} must be an absolute path (start with /)")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValueError(f"{key} {value!r} must not contain '.' or '..' components")
    if "//" in value or (value.endswith("/") and value != "/"):
        raise ValueError(f"{key} {value!r} has an empty component or trailing '/'; write {os.path.normpath(value)!r}")
    if len(value.encode()) >= 4096:
        raise ValueError(f"{key} is longer than PATH_MAX (4096 bytes)")
    return value


def check_network(value: str) -> str:
    """An IPv4/IPv6 address or CIDR, normalized (e.g. "10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32")."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"address {value!r} is not an IPv4/IPv6 address or CIDR ({exc})") from None
        raise ValueError(f"address {value!r} has host bits set; did you mean {str(loose)!r}?") from None
    return str(net)


def check_port(value: object) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, not {value!r}")
    return value  # type: ignore[return-value]


# ---------------------------------------------------------------- parsing

class _Builder:
    """Collects the raw keys of one [[rule]] table with their line numbers."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.values: Dict[str, Value] = {}
        self.lines: Dict[str, int] = {}
        self.failed = False  # a value did not parse (already reported): do not pile up follow-on errors


def _build_rule(b: _Builder, filename: str, problems: List[str]) -> Rule | None:
    v, at = b.values, lambda key: f"{filename}:{b.lines[key]}" if key in b.lines else b.where
    n_before = len(problems)

    def bad(key: str, message: str) -> None:
        problems.append(f"{at(key)}: {message}")

    rtype = v.get("type")
    if rtype is None:
        problems.append(f"{b.where}: rule has no type; add type = one of {', '.join(map(repr, RULE_TYPES))}")
        return None
    if rtype not in RULE_TYPES:
        bad("type", f"type = {rtype!r} is not one of {', '.join(map(repr, RULE_TYPES))}")
        return None
    allowed = COMMON_KEYS + TYPE_KEYS[rtype]
    for key in v:
        if key not in allowed:
            bad(key, f"unknown key '{key}' in a {rtype} rule; allowed: {', '.join(allowed)}")
    action = v.get("action", "block")
    if action not in ACTIONS:
        bad("action", f"action = {action!r} is not one of {', '.join(map(repr, ACTIONS))}")
    name = v.get("name", b.where)
    if "name" in v and (type(name) is not str or not _NAME.fullmatch(name)):
        bad("name", f"name {name!r} must be 1-64 letters, digits, '_', '.', ':' or '-'")
    for key in ("path", "dir", "sha256", "access", "address", "type", "action", "name"):
        if key in v and type(v[key]) is not str:
            bad(key, f"{key} must be a string, not {v[key]!r}")
    if len(problems) > n_before:
        return None
    kw: Dict[str, object] = {}
    try:
        if rtype in ("exec", "file"):
            given = [k for k in ("path", "dir", "sha256") if k in v]
            if len(given) != 1:
                opts = "path, dir or sha256" if rtype == "exec" else "path or dir"
                raise _Bad(b.where, f"a {rtype} rule needs exactly one of {opts}"
                           + (f" (got {', '.join(given)})" if given else ""))
            key = given[0]
            if key == "sha256":
                if not _SHA256.fullmatch(str(v[key])):
                    raise _Bad(at(key), f"sha256 {v[key]!r} is not 64 hexadecimal digits")
                kw["sha256"] = str(v[key]).lower()
                search = v.get("search", list(DEFAULT_SEARCH))
                if type(search) is not list or not search or not all(type(s) is str for s in search):
                    raise _Bad(at("search"), "search must be a non-empty array of directory paths")
                try:
                    kw["search"] = tuple(check_path(s, "search entry") for s in search)
                except ValueError as exc:
                    raise _Bad(at("search"), str(exc)) from None
            else:
                try:
                    path = check_path(str(v[key]), key)
                except ValueError as exc:
                    raise _Bad(at(key), str(exc)) from None
                if key == "dir" and path == "/":
                    raise _Bad(at(key), f"dir = \"/\" would deny every {'program' if rtype == 'exec' else 'file'}; "
                                        "name a narrower directory")
                kw[key] = path
            if "search" in v and key != "sha256":
                raise _Bad(at("search"), "search only applies to sha256 rules")
            if rtype == "file":
                access = v.get("access", "write")
                if access not in ACCESS:
                    raise _Bad(at("access"), f"access = {access!r} is not one of {', '.join(map(repr, ACCESS))}")
                kw["access"] = access
        elif rtype == "interpreter":
            if "path" not in v:
                raise _Bad(b.where, "an interpreter rule needs path (the interpreter's executable)")
            try:
                kw["path"] = check_path(str(v["path"]), "path")
            except ValueError as exc:
                raise _Bad(at("path"), str(exc)) from None
        elif rtype == "connect":
            if "address" not in v and "port" not in v:
                raise _Bad(b.where, "a connect rule needs address (IP or CIDR), port, or both")
            if "address" in v:
                try:
                    kw["network"] = check_network(str(v["address"]))
                except ValueError as exc:
                    raise _Bad(at("address"), str(exc)) from None
            if "port" in v:
                try:
                    kw["port"] = check_port(v["port"])
                except ValueError as exc:
                    raise _Bad(at("port"), str(exc)) from None
    except _Bad as exc:
        problems.append(f"{exc.where}: {exc.message}")
        return None
    except ValueError as exc:
        problems.append(f"{b.where}: {exc}")
        return None
    return Rule(type=rtype, action=action, source=b.where, name=str(name), **kw)  # type: ignore[arg-type]


class _Bad(Exception):
    def __init__(self, where: str, message: str) -> None:
        self.where, self.message = where, message


def parse_file(text: str, filename: str, problems: Problems, max_rules: int = MAX_RULES, rules_before: int = 0
               ) -> Tuple[List[Rule], Dict[str, Tuple[Value, str]]]:
    """Parse one policy file; append problems; return (rules, {global key: (value, "file:line")}).
    rules_before: the rules of the files before it (together they may hold max_rules)."""
    rules: List[Rule] = []
    globals_: Dict[str, Tuple[Value, str]] = {}
    current: _Builder | None = None
    headers = 0

    def finish() -> None:
        if problems.full:
            return
        if current is not None and not current.failed:
            rule = _build_rule(current, filename, problems)
            if rule is not None:
                rules.append(rule)

    for lineno, where, line in numbered_lines(text, filename, problems):
        if problems.full:  # a file of garbage: say where reading stopped
            problems.stop(where)
            return rules, globals_
        if line.startswith("["):
            m = _HEADER.match(line)
            if not m or m.group(1) != "rule":
                if m:
                    problems.append(f"{where}: unknown table [[{m.group(1)}]]; rules are [[rule]]")
                else:
                    problems.append(f"{where}: only [[rule]] headers are supported, not {line.split('#')[0].strip()!r}")
                current = None
                continue
            try:
                _strip_comment(line[m.end():])
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
            finish()
            headers += 1
            if headers + rules_before > max_rules:
                in_ = "in this file" if not rules_before else f"in this file and the files before it ({rules_before})"
                problems.append(f"{where}: too many rules: more than {max_rules} {in_} "
                                f"(the kernel maps hold {max_rules}); merge rules into a directory rule or CIDR")
                current = None
                return rules, globals_
            current = _Builder(where)
            continue
        key, rest = split_key_value(line, where, problems, "'key = value' or [[rule]]")
        if key is None:
            continue
        try:
            value = _value(rest)
        except ValueError as exc:
            hint = ""
            if isinstance(exc, IntegerTooLong):
                hint = "; port must be an integer from 1 to 65535" if key == "port" else f"; {key} takes no such integer"
            problems.append(f"{where}: {key}: {exc}{hint}")
            if current is not None:
                current.failed = True
            continue
        if current is None:
            if key not in GLOBAL_KEYS:
                hint = " (rule keys go after a [[rule]] header)" if key in ("type", "path", "action", "name") else ""
                problems.append(f"{where}: unknown key '{key}'{hint}; top-level keys: {', '.join(GLOBAL_KEYS)}")
            elif key in globals_:
                problems.append(f"{where}: duplicate key '{key}' (first set at {globals_[key][1]})")
            elif key == "terminate_process" and type(value) is not bool:
                problems.append(f"{where}: terminate_process must be true or false, not {value!r}")
            elif key == "enforcement" and value not in GLOBAL_KEYS["enforcement"]:
                problems.append(f"{where}: enforcement = {value!r} is not one of 'enforce', 'audit'")
            else:
                globals_[key] = (value, where)
            continue
        if key in current.values:
            problems.append(f"{where}: duplicate key '{key}' in this rule (first set on line {current.lines[key]})")
            continue
        if len(current.values) >= MAX_KEYS_PER_RULE:  # a file of a million unknown keys costs no memory
            if not current.failed:
                problems.append(f"{where}: more than {MAX_KEYS_PER_RULE} keys in one rule; a rule has name, "
                                "type, action and the keys of its type")
            current.failed = True
            continue
        current.values[key] = value
        current.lines[key] = lineno
    finish()
    return rules, globals_


def combine(parsed: Sequence[Tuple[str, List[Rule], Dict[str, Tuple[Value, str]]]], problems: List[str],
            max_rules: int = MAX_RULES) -> Policy:
    """Merge the files (in order): duplicates, contradictions, names, limits."""
    by_match: Dict[Tuple, Rule] = {}
    by_name: Dict[str, Rule] = {}
    settings: Dict[str, Tuple[Value, str]] = {}
    rules: List[Rule] = []
    for _filename, file_rules, globals_ in parsed:
        for key, (value, where) in globals_.items():
            if key in settings and settings[key][0] != value:
                problems.append(f"{where}: {key} = {_show(value)} contradicts {key} = {_show(settings[key][0])} "
                                f"at {settings[key][1]}; set it in one file")
            settings.setdefault(key, (value, where))
        for rule in file_rules:
            first = by_match.get(rule.match)
            if first is not None:
                if (first.action, first.access) == (rule.action, rule.access):
                    problems.append(f"{rule.source}: duplicate rule: {rule.describe()} is already denied by "
                                    f"{first.source}")
                else:
                    what = (f"action {rule.action!r} vs {first.action!r}" if first.action != rule.action
                            else f"access {rule.access!r} vs {first.access!r}")
                    problems.append(f"{rule.source}: contradictory rules for {rule.describe()}: {what} at "
                                    f"{first.source}; keep one")
                continue
            if rule.name in by_name:
                problems.append(f"{rule.source}: duplicate rule name {rule.name!r} (first used at "
                                f"{by_name[rule.name].source})")
                continue
            if len(rules) >= max_rules:
                problems.append(f"{rule.source}: too many rules: more than {max_rules} in {len(parsed)} file(s) "
                                f"(the kernel maps hold {max_rules})")
                return Policy(tuple(rules))
            by_match[rule.match] = by_name[rule.name] = rule
            rules.append(rule)
    return Policy(rules=tuple(rules), enforcement=settings.get("enforcement", (None,))[0],  # type: ignore[arg-type]
                  terminate_process=settings.get("terminate_process", (None,))[0],  # type: ignore[arg-type]
                  files=tuple(name for name, _, _ in parsed))


def _show(value: Value) -> str:
    return "true" if value is True else "false" if value is False else f'"{value}"' if isinstance(value, str) else str(value)


def parse(texts: Iterable[Tuple[str, str]], max_rules: int = MAX_RULES) -> Policy:
    """Parse (filename, text) pairs as one policy; raise PolicyError listing every problem (the first
    Problems.MAX_PROBLEMS of them and how many more)."""
    problems = Problems()
    parsed = []
    total_rules = 0
    for filename, text in texts:
        if total_rules > max_rules or problems.full:  # combine() reports it; reading on would only cost memory
            break
        rules, globals_ = parse_file(text, filename, problems, max_rules, total_rules)
        parsed.append((filename, rules, globals_))
        total_rules += len(rules)
    policy = combine(parsed, problems, max_rules)
    if problems or problems.not_listed:
        raise PolicyError(problems.close())
    sources: Dict[str, str] = {}
    for _filename, _rules, globals_ in parsed:
        for key, value_and_where in globals_.items():
            sources.setdefault(key, value_and_where[1])
    return replace(policy, sources=tuple(sorted(sources.items())))


_SIZE_HINT = (f"policy files are at most {textfile.show_size(MAX_FILE_BYTES)} each and "
              f"{textfile.show_size(MAX_TOTAL_BYTES)} together ({MAX_RULES} rules fit in about 3 MiB); split it, "
              "or merge rules into directory rules or CIDRs")


def policy_files(directory: Path) -> List[Path]:
    return sorted(p for p in Path(directory).glob("*.toml") if not p.name.startswith("."))


def load_dir(directory: Path, require_rules: bool = True) -> Policy:
    """Read every `*.toml` in directory (name order) as one policy."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError([f"{directory}: policy directory not found (create it and add a *.toml policy; "
                           "see sensor/packaging/policies/example.toml)"])
    texts, problems, total = [], [], 0
    for path in policy_files(directory):
        try:
            data = textfile.read_bytes(path, MAX_FILE_BYTES, _SIZE_HINT)
        except textfile.FileProblem as exc:
            problems.append(str(exc))
            continue
        total += len(data)
        if total > MAX_TOTAL_BYTES:
            problems.append(f"{directory}: the policy files are larger than {textfile.show_size(MAX_TOTAL_BYTES)} "
                            f"together (at {path.name}); {_SIZE_HINT}")
            break
        try:
            texts.append((str(path), textfile.decode(data, path)))
        except textfile.FileProblem as exc:
            problems.append(str(exc))
    if problems:
        raise PolicyError(problems)
    if not texts:
        raise PolicyError([f"{directory}: no policy files (*.toml); add one (example: "
                           "/usr/share/doc/endura-sensor/example.toml or sensor/packaging/policies/example.toml)"])
    policy = parse(texts)
    collisions = resolve(policy).collisions  # rules that differ in text but name one file
    if collisions:
        raise PolicyError(collisions)
    if require_rules and not policy.rules:
        raise PolicyError([f"{directory}: the policy files ({', '.join(Path(f).name for f in policy.files)}) "
                           "contain no [[rule]]; nothing to enforce"])
    return policy


def dir_signature(directory: Path) -> Tuple:
    """Changes whenever a policy file is added, removed or modified (name, size, mtime, inode, type), and
    when an entry that cannot be read appears or changes (a dangling symlink or a loop: its errno and
    the symlink itself), so that the running sensor reloads and reports what a restart would refuse."""
    sig = []
    try:
        for path in policy_files(directory):
            try:
                st = path.stat()
                sig.append((path.name, st.st_size, st.st_mtime_ns, st.st_ino, stat.S_IFMT(st.st_mode)))
            except OSError as exc:
                try:
                    lst = path.lstat()
                    sig.append((path.name, "unreadable", exc.errno, lst.st_ino, lst.st_mtime_ns))
                except OSError:
                    continue  # removed meanwhile
    except OSError as exc:
        sig.append(("", "directory unreadable", exc.errno))
    return tuple(sig)


# ---------------------------------------------------------------- downgrades

@dataclass(frozen=True)
class Downgrade:
    """A setting a policy file puts below what sensor.conf says (enforcement audit, terminate_process false)."""
    setting: str
    value: Value
    source: str  # "file:line"
    sensor_conf: Value
    conf_path: str

    def effect(self) -> str:
        if self.setting == "enforcement":
            return "no rule blocks or kills any more, every rule only reports"
        return ("on the tracepoint tier 'block' rules only report (only 'kill' rules kill); "
                "the lsm and fentry tiers still refuse with EPERM")

    def warning(self) -> str:
        return (f"{self.source}: {self.setting} = {_show(self.value)} overrides {self.setting} = "
                f"{_show(self.sensor_conf)} of {self.conf_path}: {self.effect()}; to forbid this, set "
                f"policy_may_downgrade = false in {self.conf_path}")

    def error(self) -> str:
        return (f"{self.source}: {self.setting} = {_show(self.value)} would override {self.setting} = "
                f"{_show(self.sensor_conf)} of {self.conf_path}, and policy_may_downgrade = false there forbids "
                f"it; remove the line (or change {self.setting} in {self.conf_path})")

    def to_dict(self) -> dict:
        return {"setting": self.setting, "value": self.value, "source": self.source, "sensor_conf": self.sensor_conf}


def downgrades(policy: Policy, cfg: Config) -> List[Downgrade]:
    """The global settings of the policy files that are weaker than sensor.conf's."""
    conf_path = cfg.path or "sensor.conf (built-in defaults)"
    found = []
    if cfg.enforcement == "enforce" and policy.enforcement == "audit":
        found.append(Downgrade("enforcement", "audit", policy.source_of("enforcement"), "enforce", conf_path))
    if cfg.terminate_process and policy.terminate_process is False:
        found.append(Downgrade("terminate_process", False, policy.source_of("terminate_process"), True, conf_path))
    return found


def check_downgrades(policy: Policy, cfg: Config) -> List[Downgrade]:
    """downgrades(); PolicyError when sensor.conf forbids them (policy_may_downgrade = false)."""
    found = downgrades(policy, cfg)
    if found and not cfg.policy_may_downgrade:
        raise PolicyError([d.error() for d in found])
    return found


# ---------------------------------------------------------------- resolving rules to kernel keys

#: the stricter of two rules that match the same access wins (the kernel compares the same numbers)
STRICTNESS = {"audit": 1, "block": 2, "kill": 3}
Key = Tuple[int, int]  # (kernel dev, inode)
NameKey = Tuple[int, int, bytes]  # (kernel dev, inode of the directory, name)
Slot = Tuple[str, str]  # ("self" | "below", "exec" | "read" | "write")


def accesses(rule: Rule) -> Tuple[str, ...]:
    """The accesses an exec or file rule denies."""
    if rule.type == "exec":
        return ("exec",)
    return {"write": ("write",), "read": ("read",), "read-write": ("read", "write")}[rule.access]


@dataclass
class Entry:
    """Every rule that resolves to one inode of the exec or the files map, by slot ("self" | "below", access):
    `self` holds the rules on the inode itself (path, sha256), `below` the dir rules (everything under it)."""
    rules: Dict[Slot, List[Tuple[int, Rule]]] = field(default_factory=dict)  # slot -> [(policy order, rule)]
    names: Dict[Rule, str] = field(default_factory=dict)  # rule -> the path it resolved through

    def add(self, rule: Rule, order: int, scope: str, name: str) -> None:
        if rule in self.names:  # e.g. a sha256 rule that finds one binary as /bin/x and as /usr/bin/x
            return
        self.names[rule] = name
        for access in accesses(rule):
            self.rules.setdefault((scope, access), []).append((order, rule))

    def verdict(self, scope: str, access: str) -> Rule | None:
        """The strictest rule of the slot (kill > block > audit); of equally strict ones, the first in the policy."""
        ranked = sorted(self.rules.get((scope, access), ()), key=lambda item: (-STRICTNESS[item[1].action], item[0]))
        return ranked[0][1] if ranked else None

    def scope_rules(self, scope: str) -> List[Rule]:
        """The rules of one scope, once each, in policy order."""
        seen = {rule: order for (s, _), items in self.rules.items() if s == scope for order, rule in items}
        return sorted(seen, key=seen.__getitem__)


@dataclass
class Resolved:
    """Kernel keys for the current state of the filesystem, plus what could not be resolved."""
    exec_files: Dict[Key, Entry] = field(default_factory=dict)
    protected_files: Dict[Key, Entry] = field(default_factory=dict)
    #: (directory dev, directory inode, name) of `path` rules: whatever file appears at that name
    exec_names: Dict[NameKey, Entry] = field(default_factory=dict)
    protected_names: Dict[NameKey, Entry] = field(default_factory=dict)
    #: (dev, inode) of the interpreters (DEFAULT_INTERPRETERS + interpreter rules) that exist
    interpreters: Dict[Key, str] = field(default_factory=dict)
    #: (dev, inode) -> i_generation where the filesystem tells it (FS_IOC_GETVERSION; ext4, btrfs, ...)
    generations: Dict[Key, int] = field(default_factory=dict)
    networks: List[Rule] = field(default_factory=list)
    tamper: Dict[str, Rule] = field(default_factory=dict)  # SINGLETONS -> rule
    warnings: List[str] = field(default_factory=list)
    #: textually different rules of one scope that name the same file with a different action or access
    #: (`file:line: contradictory rules ...; keep one`): an error at load, a warning when it appears later
    collisions: List[str] = field(default_factory=list)


_hash_cache: Dict[Tuple[str, int, int, int, int], str] = {}


def sha256_of(path: str, st: os.stat_result) -> str:
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _hash_cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _hash_cache[key] = h.hexdigest()
    return digest


def kernel_dev(st_dev: int) -> int:
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def resolve(policy: Policy, extra_exec: Sequence[str] = ()) -> Resolved:
    """Turn path/dir/sha256 rules into (dev, ino) keys as the files are now. Rules that name the same inode
    all stay (Entry.verdict() picks the strictest per slot); contradictory ones are listed in `collisions`."""
    out = Resolved()
    rules = list(policy.rules) + [Rule("exec", "block", "--deny", f"--deny {p}", path=os.path.abspath(p))
                                  for p in extra_exec]
    by_hash: Dict[str, List[Tuple[int, Rule]]] = {}
    interpreters: List[str] = list(DEFAULT_INTERPRETERS)
    for order, rule in enumerate(rules):
        if rule.type in ("exec", "file") and (rule.path or rule.dir):
            target = rule.path or rule.dir
            warned = len(out.warnings)
            named = rule.path and _add_name(out.exec_names if rule.type == "exec" else out.protected_names,
                                            rule, order, out.warnings)
            try:
                st = os.stat(target)
            except OSError as exc:
                if not named and len(out.warnings) == warned:
                    out.warnings.append(f"{rule.source}: {target}: {exc.strerror}; rule {rule.name!r} is inactive "
                                        "until it exists (checked again on reload and every few seconds)")
                continue  # a name rule holds the path meanwhile: whatever file appears there is matched
            if rule.dir and not stat.S_ISDIR(st.st_mode):
                out.warnings.append(f"{rule.source}: dir {target} is not a directory; rule {rule.name!r} is inactive")
                continue
            table = out.exec_files if rule.type == "exec" else out.protected_files
            key = (kernel_dev(st.st_dev), st.st_ino)
            entry = table.setdefault(key, Entry())
            entry.add(rule, order, "below" if rule.dir else "self", target)
            if not (rule.type == "file" and rule.access != "write"):  # never open what the sensor may not read
                out.generations[key] = generation_of(target, st)
        elif rule.type == "interpreter":
            interpreters.append(rule.path)
        elif rule.type == "exec":
            by_hash.setdefault(rule.sha256, []).append((order, rule))
        elif rule.type == "connect":
            out.networks.append(rule)
        else:
            out.tamper[rule.type] = rule
    if by_hash:
        dirs = sorted({d for rs in by_hash.values() for _, r in rs for d in r.search})
        found = set()
        for directory in dirs:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for dir_entry in entries:
                try:
                    st = os.stat(dir_entry.path)
                    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
                        continue
                    digest = sha256_of(dir_entry.path, st)
                except OSError:
                    continue
                for order, rule in by_hash.get(digest, ()):
                    if directory in rule.search:
                        key = (kernel_dev(st.st_dev), st.st_ino)
                        entry = out.exec_files.setdefault(key, Entry())
                        entry.add(rule, order, "self", dir_entry.path)
                        out.generations[key] = generation_of(dir_entry.path, st)
                        found.add(rule.sha256)
        for digest, rs in by_hash.items():
            if digest not in found:
                first = rs[0][1]
                out.warnings.append(f"{first.source}: no executable with sha256 {digest[:12]}... in "
                                    f"{', '.join(first.search)}; rule {first.name!r} is inactive until one appears")
    for path in interpreters:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.interpreters.setdefault((kernel_dev(st.st_dev), st.st_ino), path)
    for table in (out.exec_files, out.protected_files, out.exec_names, out.protected_names):
        for entry in table.values():
            # a name and the file there are one object: its collisions once
            out.collisions.extend(c for c in _collisions(entry) if c not in out.collisions)
    return out


def _add_name(table: Dict[NameKey, Entry], rule: Rule, order: int, warnings: List[str]) -> bool:
    """Add the name of a `path` rule in its directory (the real one: symlinks resolved as the kernel
    would); False when it cannot be (no such directory, a name too long for the names maps)."""
    real = os.path.realpath(rule.path)
    directory, name = os.path.split(real)
    raw = os.fsencode(name)
    if not raw or len(raw) > NAME_MAX_BYTES:
        return False
    try:
        st = os.stat(directory)
    except OSError as exc:
        warnings.append(f"{rule.source}: {directory}: {exc.strerror}; rule {rule.name!r} is inactive until the "
                        "directory exists (checked again on reload and every few seconds)")
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    table.setdefault((kernel_dev(st.st_dev), st.st_ino, raw), Entry()).add(rule, order, "self", rule.path)
    return True


#: FS_IOC_GETVERSION = _IOR('v', 1, long)
_FS_IOC_GETVERSION = 0x80007601 | (struct.calcsize("l") << 16)
_generation_cache: Dict[Tuple[int, int, int], int] = {}


def generation_of(path: str, st: os.stat_result) -> int:
    """The inode's i_generation (FS_IOC_GETVERSION: ext4, btrfs, xfs, ...), 0 where the filesystem does not
    say (tmpfs, overlayfs) or path is not a regular file or directory (never opens a FIFO or a device)."""
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return 0
    cache_key = (st.st_dev, st.st_ino, st.st_ctime_ns)
    if cache_key in _generation_cache:
        return _generation_cache[cache_key]
    generation = 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
            buf = array.array("l", [0])
            fcntl.ioctl(fd, _FS_IOC_GETVERSION, buf, True)
            generation = buf[0] & 0xFFFFFFFF
    except OSError:
        pass
    finally:
        os.close(fd)
    if len(_generation_cache) > 65536:
        _generation_cache.clear()
    _generation_cache[cache_key] = generation
    return generation


def _collisions(entry: Entry) -> List[str]:
    """Rules of one scope of one inode whose action or access differs from the first one's (policy order)."""
    problems = []
    for scope in ("self", "below"):
        rules = entry.scope_rules(scope)
        first = rules[0] if rules else None
        for rule in rules[1:]:
            assert first is not None
            if (rule.action, rule.access) == (first.action, first.access):
                continue  # the same denial twice (e.g. /bin/x and /usr/bin/x for portability): harmless
            what = (f"action {rule.action!r} vs {first.action!r}" if first.action != rule.action
                    else f"access {rule.access!r} vs {first.access!r}")
            mine, theirs = entry.names[rule], entry.names[first]
            same = (f"{mine} and {theirs} are the same file (e.g. merged /usr or a hard link)" if mine != theirs
                    else f"both match the same file {mine}")
            problems.append(f"{rule.source}: contradictory rules for {_described(rule, mine)} and "
                            f"{_described(first, theirs)}: {what} at {first.source}; {same}; keep one")
    return problems


def _described(rule: Rule, name: str) -> str:
    return f"exec of sha256 {rule.sha256[:12]}... ({name})" if rule.sha256 else rule.describe()
