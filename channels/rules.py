"""The promotion rules, as pure functions of the repository's content, the channel records and the evidence.

- A version enters `testing` from `latest` and `stable` from `testing`: it cannot skip a channel.
- A channel only moves forward (semver precedence), unless `--rollback` to a version it held before.
- A pre-release (or development build) never reaches `stable`.
- `testing` needs valid evidence of each kind the policy lists; `stable` needs the soak time in
  `testing` and, if the policy says so, an approval record made while the version was in `testing`.
A rollback skips the gates (the version passed them when it entered), and must give a reason.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from channels.policy import Policy, format_duration
from channels.records import Records
from release.version import Version
from repo.layout import PROMOTED, Channel
from toolbox.errors import EnduraError

#: lookup(kind, version, not_before) -> (valid record or None, why not)
EvidenceLookup = Callable[[str, str, "int | None"], tuple[object, str]]


def source_of(channel: str) -> str:
    if channel not in PROMOTED:
        raise EnduraError(f"cannot promote into {channel!r}; promote into {' or '.join(PROMOTED)} "
                          "('latest' receives builds from 'nox -s publish')")
    return str(Channel(channel).source)


def parse(version: str) -> Version:
    return Version.parse(version, source="version")


def versions_in(entries: list[dict]) -> list[str]:
    """The distinct versions of a channel's artifact list, oldest first (semver precedence)."""
    return sorted({e["version"] for e in entries}, key=parse)


def digests(entries: list[dict], version: str) -> dict[str, str]:
    return {e["file"]: e["sha256"] for e in entries if e["version"] == version}


def current_version(records: Records, channels: dict[str, list[dict]], channel: str) -> str | None:
    if channel == "latest":
        found = versions_in(channels.get("latest", []))
        return found[-1] if found else None
    held = records.channel(channel)
    return held["version"] if held else None


@dataclasses.dataclass
class Decision:
    channel: str
    version: str
    rollback: bool
    current: str | None
    refusals: list[str]
    evidence: list = dataclasses.field(default_factory=list)
    noop: bool = False

    @property
    def allowed(self) -> bool:
        return not self.refusals and not self.noop


def evaluate(channel: str, version: str, *, channels: dict[str, list[dict]], records: Records, policy: Policy,
             now: int, lookup: EvidenceLookup, rollback: bool = False) -> Decision:
    source = source_of(channel)
    wanted = parse(version)
    current = current_version(records, channels, channel)
    decision = Decision(channel, version, rollback, current, [])
    refuse = decision.refusals.append
    if current is not None and parse(current) == wanted and not rollback:
        decision.noop = True
        return decision
    if rollback:
        if current is None or not wanted < parse(current):
            refuse(f"--rollback moves {channel} back to an older version, and {version} is not older than what it holds "
                   f"({current or 'nothing'}); promote without --rollback")
        elif not records.held_before(channel, version):
            refuse(f"{channel} never held {version}; a rollback returns to a version the channel held before "
                   f"(see 'nox -s channels')")
        return decision
    if version not in versions_in(channels.get(source, [])):
        how = ("publish it with 'nox -s publish'" if source == "latest" else f"promote it to {source} first "
               f"('nox -s promote -- {source} {version}')")
        refuse(f"{version} is not in {source}; a version cannot skip a channel: {how}")
        return decision
    if current is not None and wanted < parse(current):
        refuse(f"{channel} holds {current}, newer than {version}; channels only move forward: promote a newer version, "
               "or pass --rollback (with --reason) to go back")
    if channel == "stable" and not wanted.is_release:
        refuse(f"{version} is a pre-release; only a release (vX.Y.Z) reaches stable: tag one and promote it")
    if channel == "testing":
        for kind in policy.testing_evidence:
            record, why = lookup(kind, version, None)
            if record is None:
                refuse(why + f" ({_how_to_get(kind)})")
            else:
                decision.evidence.append(record)
    else:
        entered = records.entered("testing", version)
        if entered is None:
            refuse(f"the promotion log has no entry of {version} entering testing; promote it to testing first")
            return decision
        soaked = now - entered
        if soaked < policy.stable_soak:
            refuse(f"{version} has been in testing for {format_duration(soaked)}; stable needs "
                   f"{format_duration(policy.stable_soak)} of soak ({format_duration(policy.stable_soak - soaked)} left)")
        if policy.stable_approval:
            record, why = lookup("approval", version, entered)
            if record is None:
                refuse(why + f" ({_how_to_get('approval', version)})")
            else:
                decision.evidence.append(record)
    return decision


def _how_to_get(kind: str, version: str = "<version>") -> str:
    return {
        "sensor-tests": "run 'nox -s tests' on the build's commit with the build in dist/",
        "e2e-tests": "run 'nox -s vmtest -- debian-12 debian-13' on the build's commit",
        "approval": f"after testing it, run 'nox -s approve -- {version} --reason \"...\"'",
    }[kind]
