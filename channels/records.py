"""The channel state and the append-only promotion log, kept signed inside each repository generation.

    channels/state.json(.asc)        which version `testing` and `stable` hold, since when, with which digests
    channels/promotions.jsonl(.asc)  one JSON line per promotion or rollback: who, what, when, digests, evidence
    channels/evidence/<name>(.asc)   the evidence records that allowed each promotion, as signed by the test run

Every log line carries `prev`, the sha256 of the line before it, and the state carries the sha256
of the whole log: a line changed or removed breaks the chain, and a new log must begin with the old
one byte for byte (checked on every promotion). Both files are signed by the repository key(s) at
the generation's Date; a publish into `latest` carries them into the new generation re-signed with
the current key(s) after checking them against the previous generation's published keys, so a key
rotation does not orphan the history. `latest` itself is not in the state: it is whatever
`nox -s publish` put there (generation.json).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

from repo import layout
from toolbox import gpg
from toolbox.errors import EnduraError

DIR = layout.CHANNEL_RECORDS_DIR
STATE = f"{DIR}/state.json"
LOG = f"{DIR}/promotions.jsonl"
EVIDENCE = f"{DIR}/evidence"
PROMOTED = layout.PROMOTED
SCHEMA = 1


@dataclasses.dataclass
class Records:
    state: dict
    log: bytes

    @property
    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log.decode().splitlines() if line.strip()]

    def channel(self, name: str) -> dict | None:
        return self.state["channels"].get(name)

    def entered(self, channel: str, version: str) -> int | None:
        """When `version` last entered `channel` (a promotion or a rollback to it), or None."""
        times = [e["time"] for e in self.entries if e["channel"] == channel and e["version"] == version]
        return max(times) if times else None

    def held_before(self, channel: str, version: str) -> bool:
        return any(e["channel"] == channel and e["version"] == version for e in self.entries)


def empty() -> Records:
    return Records({"schema": SCHEMA, "channels": {}, "log_sha256": hashlib.sha256(b"").hexdigest(), "entries": 0}, b"")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def check_chain(log: bytes, where: str) -> None:
    prev = None
    for n, line in enumerate(log.splitlines(), 1):
        entry = json.loads(line)
        if entry.get("seq") != n or entry.get("prev") != prev:
            raise EnduraError(f"promotion log {where} is broken at line {n} (sequence or hash chain); it was edited: "
                              "restore it from the previous generation or the web host")
        prev = line_hash(line)


def read(gen: Path) -> Records:
    """The records of generation `gen`, checked: signatures against its published keys, hash chain, log digest."""
    state_path, log_path = gen / STATE, gen / LOG
    if not state_path.exists() and not log_path.exists():
        return empty()
    keyring = gen / layout.KEY_FILE
    for path in (state_path, log_path):
        sig = path.with_name(path.name + ".asc")
        if not path.is_file() or not sig.is_file():
            raise EnduraError(f"{path} or its signature is missing in generation {gen.name}; the channel records are "
                              "incomplete: restore them from the previous generation or the web host")
        try:
            gpg.verify_detached(keyring, path, sig)
        except EnduraError:
            raise EnduraError(f"{path} fails its signature check against {keyring}; it was modified or signed by an "
                              "unknown key: restore it from the previous generation or the web host") from None
    state = json.loads(state_path.read_text())
    log = log_path.read_bytes()
    check_chain(log, str(log_path))
    if state.get("log_sha256") != hashlib.sha256(log).hexdigest():
        raise EnduraError(f"{state_path} does not match {log_path} (log digest); restore both from the previous generation")
    return Records(state, log)


def append(records: Records, entry: dict) -> Records:
    """A new Records with `entry` logged (seq and prev filled in) and the channel it names updated."""
    lines = records.log.splitlines()
    entry = {**entry, "seq": len(lines) + 1, "prev": line_hash(lines[-1]) if lines else None}
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log = records.log + line
    state = json.loads(json.dumps(records.state))
    state["channels"][entry["channel"]] = {"version": entry["version"], "since": entry["time"],
                                           "artifacts": entry["artifacts"], "log_seq": entry["seq"]}
    state["log_sha256"] = hashlib.sha256(log).hexdigest()
    state["entries"] = entry["seq"]
    state["updated"] = entry["time"]
    return Records(state, log)


def write(gen: Path, records: Records, keys: gpg.Keys, *, date: int, evidence: Sequence[Path] = ()) -> None:
    """Write and sign the records into a generation being built (and copy the evidence they cite)."""
    (gen / DIR).mkdir(parents=True, exist_ok=True)
    state_path, log_path = gen / STATE, gen / LOG
    state_path.write_text(json.dumps(records.state, indent=2, sort_keys=True) + "\n")
    log_path.write_bytes(records.log)
    for path in (state_path, log_path):
        gpg.detached(keys, path, path.with_name(path.name + ".asc"), epoch=date)
    for record in evidence:
        dest = gen / EVIDENCE
        dest.mkdir(parents=True, exist_ok=True)
        for src in (record, record.with_name(record.name + ".asc")):
            (dest / src.name).write_bytes(src.read_bytes())


def carry(old: Path, records: Records, new: Path, keys: gpg.Keys, *, date: int) -> None:
    """Into a new generation that promotes nothing: the records `read(old)` checked, re-signed, unchanged."""
    if not records.log:  # no promotion yet: nothing to carry
        return
    evidence = sorted(p for p in (old / EVIDENCE).glob("*.json")) if (old / EVIDENCE).is_dir() else []
    write(new, records, keys, date=date, evidence=evidence)


def check_append_only(old: Records, new: Records) -> None:
    if not new.log.startswith(old.log):
        raise EnduraError("the new promotion log does not begin with the current one; refusing to rewrite history")


def verify_tree(gen: Path) -> Records:
    """For tests and audits: read() plus every cited evidence record's signature."""
    records = read(gen)
    for record in sorted((gen / EVIDENCE).glob("*.json")) if (gen / EVIDENCE).is_dir() else []:
        gpg.verify_detached(gen / layout.KEY_FILE, record, record.with_name(record.name + ".asc"))
    return records
