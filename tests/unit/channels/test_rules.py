"""channels.rules, channels.policy and the pure part of channels.records: promotion decisions from data."""
from __future__ import annotations

import json

import pytest

from channels import records, rules
from channels.policy import Policy, format_duration, load_policy, parse_duration
from toolbox.errors import EnduraError

DAY = 86400
NOW = 1_800_000_000


def entries(version: str, *families: str) -> list[dict]:
    return [{"file": f"endura-sensor_{version}_{fam}", "family": fam, "arch": "amd64", "version": version,
             "sha256": f"{version}-{fam}".ljust(64, "0")} for fam in (families or ("deb", "rpm"))]


def found(kind, version, not_before):
    return (f"record:{kind}:{version}", "")


def missing(kind, version, not_before):
    return (None, f"no {kind} evidence for {version}")


def state(*moves: tuple[str, str, int]) -> records.Records:
    recs = records.empty()
    for channel, version, when in moves:
        recs = records.append(recs, {"time": when, "who": "t", "action": "promote", "channel": channel,
                                     "version": version, "artifacts": {}})
    return recs


CHANNELS = {"latest": entries("1.0.0") + entries("1.0.1") + entries("1.1.0-rc.1"),
            "testing": entries("1.0.0") + entries("1.0.1"), "stable": entries("1.0.0")}
DEFAULT = Policy()
HISTORY = state(("testing", "1.0.0", NOW - 10 * DAY), ("stable", "1.0.0", NOW - 2 * DAY),
                ("testing", "1.0.1", NOW - 3 * DAY))


def evaluate(channel, version, *, lookup=found, rollback=False, recs=HISTORY, policy=DEFAULT, chans=CHANNELS):
    return rules.evaluate(channel, version, channels=chans, records=recs, policy=policy, now=NOW, lookup=lookup,
                          rollback=rollback)


def test_testing_needs_each_evidence_kind_and_names_the_missing_one():
    d = evaluate("testing", "1.1.0-rc.1", lookup=missing)
    assert not d.allowed
    assert [r.split(" (")[0] for r in d.refusals] == ["no sensor-tests evidence for 1.1.0-rc.1",
                                                      "no e2e-tests evidence for 1.1.0-rc.1"]
    assert "nox -s vmtest" in d.refusals[1]
    d = evaluate("testing", "1.1.0-rc.1")
    assert d.allowed and d.evidence == ["record:sensor-tests:1.1.0-rc.1", "record:e2e-tests:1.1.0-rc.1"]


def test_a_version_cannot_skip_a_channel():
    d = evaluate("stable", "1.1.0-rc.1")
    assert d.refusals == ["1.1.0-rc.1 is not in testing; a version cannot skip a channel: promote it to testing first "
                          "('nox -s promote -- testing 1.1.0-rc.1')"]
    with pytest.raises(EnduraError, match="cannot promote into 'latest'"):
        evaluate("latest", "1.0.0")


def test_channels_only_move_forward_and_the_same_version_is_a_no_op():
    d = evaluate("testing", "1.0.0")
    assert any("testing holds 1.0.1, newer than 1.0.0; channels only move forward" in r for r in d.refusals)
    assert evaluate("testing", "1.0.1").noop


def test_a_pre_release_never_reaches_stable():
    chans = {**CHANNELS, "testing": CHANNELS["testing"] + entries("1.1.0-rc.1")}
    recs = state(("testing", "1.1.0-rc.1", NOW - 30 * DAY))
    d = evaluate("stable", "1.1.0-rc.1", chans=chans, recs=recs)
    assert d.refusals == ["1.1.0-rc.1 is a pre-release; only a release (vX.Y.Z) reaches stable: tag one and promote it"]


def test_stable_needs_the_soak_time_and_an_approval_made_in_testing():
    seen = []

    def approval(kind, version, not_before):
        seen.append((kind, version, not_before))
        return (None, "no approval evidence for 1.0.1") if kind == "approval" else found(kind, version, not_before)

    d = evaluate("stable", "1.0.1", lookup=approval)
    assert d.refusals[0] == "1.0.1 has been in testing for 3d; stable needs 7d of soak (4d left)"
    assert d.refusals[1].startswith("no approval evidence for 1.0.1 (after testing it, run 'nox -s approve -- 1.0.1")
    assert seen == [("approval", "1.0.1", NOW - 3 * DAY)]
    assert evaluate("stable", "1.0.1", policy=Policy(stable_soak=3 * DAY)).allowed
    assert evaluate("stable", "1.0.1", lookup=approval, policy=Policy(stable_soak=DAY, stable_approval=False)).allowed


def test_rollback_returns_only_to_an_older_version_the_channel_held():
    assert evaluate("testing", "1.0.0", rollback=True, lookup=missing).allowed  # no gates on the way back
    d = evaluate("testing", "1.0.1", rollback=True)
    assert d.refusals == ["--rollback moves testing back to an older version, and 1.0.1 is not older than what it "
                          "holds (1.0.1); promote without --rollback"]
    d = evaluate("stable", "0.9.0", rollback=True, chans={**CHANNELS, "stable": entries("0.9.0") + entries("1.0.0")})
    assert d.refusals == ["stable never held 0.9.0; a rollback returns to a version the channel held before "
                          "(see 'nox -s channels')"]


def test_the_log_is_a_hash_chain_and_the_state_follows_it():
    recs = HISTORY
    assert [e["seq"] for e in recs.entries] == [1, 2, 3]
    assert recs.channel("testing")["version"] == "1.0.1" and recs.channel("stable")["version"] == "1.0.0"
    assert recs.entered("testing", "1.0.0") == NOW - 10 * DAY
    records.check_chain(recs.log, "log")
    lines = recs.log.splitlines()
    edited = json.loads(lines[1])
    edited["version"] = "9.9.9"
    forged = b"\n".join([lines[0], json.dumps(edited, sort_keys=True, separators=(",", ":")).encode(), lines[2]]) + b"\n"
    with pytest.raises(EnduraError, match="broken at line 3"):
        records.check_chain(forged, "log")
    with pytest.raises(EnduraError, match="broken at line 1"):
        records.check_chain(b"\n".join(lines[1:]) + b"\n", "log")
    with pytest.raises(EnduraError, match="refusing to rewrite history"):
        records.check_append_only(recs, state(("testing", "1.0.0", NOW)))


def test_durations_and_the_policy_file(tmp_path):
    assert parse_duration("7d") == 7 * DAY and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(EnduraError, match="'a week' is not a duration"):
        parse_duration("a week")
    assert format_duration(4 * DAY + 3 * 3600 + 60) == "4d 3h" and format_duration(59) == "59s"
    assert load_policy() == Policy(source=load_policy().source)  # the shipped policy is the documented default
    bad = tmp_path / "p.toml"
    bad.write_text('[testing]\nevidence = ["approval"]\n')
    with pytest.raises(EnduraError, match="'approval' is not a test evidence kind"):
        load_policy(bad)
    bad.write_text('[stable]\nsoak = "1w"\n')
    with pytest.raises(EnduraError, match="soak '1w' is not a duration"):
        load_policy(bad)
    bad.write_text('[stabel]\n')
    with pytest.raises(EnduraError, match="unknown section"):
        load_policy(bad)
