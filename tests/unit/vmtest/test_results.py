"""vmtest.results: parsing the results port, judging each scenario, the table and JUnit XML."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from vmtest import plan, results

DENIED = results.DENIED


def _events(action: str, tier: str) -> list[dict]:
    """One event per denied operation, as the sensor writes them."""
    common = {"action": [action], "tier": tier, "rule_id": 1}
    return [{"type": "exec_denied", "filename": DENIED, "rule": "vmtest-exec", **common},
            {"type": "file_open_denied", "filename": "protected", "access": ["write"], "rule": "vmtest-file", **common},
            {"type": "connect_denied", "addr": "127.0.0.1", "port": results.DENIED_PORT, "family": 2,
             "rule": "vmtest-connect", **common}]


def _probes(outcome: str) -> dict:
    """The guest's probes when every denied operation ended with `outcome` (eperm | killed | ok)."""
    return {"exec_denied": "exit:0" if outcome == "ok" else outcome, "exec_allowed": "exit:0",
            "file_write": outcome, "file_unchanged": outcome != "ok", "file_read": "ok",
            "connect_denied": outcome, "connect_allowed": "ok"}


def _effects(outcome: str) -> dict:
    """The guest's effect probes when each denied one ended with `outcome`."""
    return {**{probe: outcome for probe in (*results.EFFECT_EVENTS, *results.EFFECT_OUTCOME_ONLY)}, "sendto_allowed": "ok", "ldso_allowed": "exit:0",
            "protected_unchanged": True, "protdir_listing": results.PROTDIR_LISTING, "prepared_exists": True}


def _effect_events(action: str, tier: str) -> list[dict]:
    return [{"type": event_type, key: value, "rule": rule, "action": [action], "tier": tier, "rule_id": 2}
            for event_type, key, value, rule in results.EFFECT_EVENTS.values()]


def _scenario(name: str, tier: str | None, outcome: str, action: str | None, **kw) -> dict:
    obs = {"type": "scenario", "name": name, "tier_requested": "auto", "exit_code": 0, "seconds": 1.7,
           "probes": _probes(outcome), "events": _events(action, tier) if action else []}
    if name in results.EXPECTED and results.EXPECTED[name].effects:
        obs["effects"] = _effects(outcome)
        obs["events"] += _effect_events(action, tier) if action else []
    if tier:
        obs["started"] = {"type": "started", "tier": tier}
    obs.update(kw)
    return obs


def _stopped(**probes) -> dict:
    return {"type": "scenario", "name": "stopped", "tier_requested": None, "probes": {**_probes("ok"), **probes}}


def _check(exit_code: int, tier: str, bpf_active: bool) -> dict:
    tiers = [{"tier": "lsm", "usable": bpf_active, "canary": "blocked" if bpf_active else "not run",
              "fix": "" if bpf_active else "boot with lsm=lockdown,yama,integrity,apparmor,bpf (...)"},
             {"tier": "fentry", "usable": True, "canary": "killed", "fix": ""}]
    return {"type": "check", "exit_code": exit_code, "seconds": 3.4,
            "report": {"tier": tier, "bpf_lsm_active": bpf_active, "tiers": tiers}}


GOOD_ON = [
    {"type": "hello", "kernel": "6.1.0-50-cloud-amd64", "boot": "lsm-on", "uptime": 4.8},
    _check(0, "lsm", True),
    _scenario("lsm", "lsm", "eperm", "blocked"),
    _scenario("tracepoint", "tracepoint", "killed", "killed"),
    _scenario("audit", "lsm", "ok", "audited"),
    _stopped(),
    {"type": "done", "uptime": 14.6},
]
GOOD_OFF = [
    _check(10, "fentry", False),
    _scenario("fentry", "fentry", "eperm", "blocked"),
    _scenario("tracepoint", "tracepoint", "killed", "killed"),
    _stopped(),
    {"type": "done", "uptime": 13.5},
]


def _names(boot: str) -> list[str]:
    return [s.name for s in plan.BOOTS[boot].scenarios]


def _with_probes(obs: dict, **probes) -> dict:
    return {**obs, "probes": {**obs["probes"], **probes}}


def _without_event(obs: dict, event_type: str) -> dict:
    return {**obs, "events": [e for e in obs["events"] if e["type"] != event_type]}


LSM_OK = GOOD_ON[2]
FENTRY_OK = GOOD_OFF[1]


def test_parse_lines_survives_serial_noise():
    text = '\r\n\0\0{"type": "hello", "uptime": 1}\r\ngarbage\n{"type": "done"\n{"no_type": 1}\n{"type": "done"}\r\n'
    assert [o["type"] for o in results.parse_lines(text)] == ["hello", "done"]


@pytest.mark.parametrize("boot,lines", [("lsm-on", GOOD_ON), ("lsm-off", GOOD_OFF)])
def test_good_runs_pass(boot, lines):
    vm = results.judge("debian-12", "6.1.0-50-cloud-amd64", boot, _names(boot), lines)
    assert vm.status == results.PASS, [c.detail for c in vm.cases]
    assert [c.scenario for c in vm.cases] == plan.BOOTS[boot].case_names
    assert vm.result_seconds == lines[-1]["uptime"]


def test_each_sensor_scenario_is_three_cases():
    assert plan.BOOTS["lsm-off"].case_names == [
        "check", "fentry/exec", "fentry/file", "fentry/connect", "fentry/effects", "tracepoint/exec", "tracepoint/file",
        "tracepoint/connect", "stopped/exec", "stopped/file", "stopped/connect"]
    vm = results.judge("debian-12", "6.1", "lsm-on", _names("lsm-on"), GOOD_ON)
    assert [c.seconds for c in vm.cases if c.scenario.startswith("lsm/")] == [1.7, 0.0, 0.0, 0.0]  # time counted once


def _replace(lines, name, new):
    return [new if o.get("name") == name or (name == "check" and o["type"] == "check") else o for o in lines]


@pytest.mark.parametrize("boot,lines,cases,needle", [
    # LSM not enforcing: the denied exec ran
    ("lsm-on", _replace(GOOD_ON, "lsm", _with_probes(LSM_OK, exec_denied="exit:0")), ["lsm/exec"], "expected eperm"),
    # the file write was refused but the file changed anyway
    ("lsm-on", _replace(GOOD_ON, "lsm", _with_probes(LSM_OK, file_unchanged=False)), ["lsm/file"],
     "expected unchanged"),
    # the write went through under LSM
    ("lsm-on", _replace(GOOD_ON, "lsm", _with_probes(LSM_OK, file_write="ok", file_unchanged=False)),
     ["lsm/file"], "expected eperm, got ok"),
    # a write rule must not stop reading
    ("lsm-on", _replace(GOOD_ON, "lsm", _with_probes(LSM_OK, file_read="eperm")), ["lsm/file"], "for read"),
    # connect not refused
    ("lsm-on", _replace(GOOD_ON, "lsm", _with_probes(LSM_OK, connect_denied="ok")), ["lsm/connect"],
     "expected eperm, got ok"),
    # the allowed port was refused too (lo down, or an over-broad rule)
    ("lsm-on", _replace(GOOD_ON, "lsm", _with_probes(LSM_OK, connect_allowed="errno:ECONNREFUSED")),
     ["lsm/connect"], "allowed port"),
    # auto picked the wrong tier: every part of the scenario fails
    ("lsm-on", _replace(GOOD_ON, "lsm", _scenario("lsm", "fentry", "killed", "killed")),
     ["lsm/exec", "lsm/file", "lsm/connect", "lsm/effects"], "expected tier lsm"),
    # audit must not kill
    ("lsm-on", _replace(GOOD_ON, "audit", _with_probes(GOOD_ON[4], file_write="killed", file_unchanged=True)),
     ["audit/file"], "expected ok"),
    # audit must log
    ("lsm-on", _replace(GOOD_ON, "audit", _without_event(GOOD_ON[4], "connect_denied")), ["audit/connect"],
     "action audited"),
    # fentry killed the writer but no event arrived
    ("lsm-off", _replace(GOOD_OFF, "fentry", _without_event(FENTRY_OK, "file_open_denied")), ["fentry/file"],
     "expected a file_open_denied event"),
    # the event came from another rule than the policy file's
    ("lsm-off", _replace(GOOD_OFF, "fentry", {**FENTRY_OK, "events": [
        {**e, "rule": "deny-0"} if e["type"] == "exec_denied" and "how" not in e else e for e in FENTRY_OK["events"]]}),
     ["fentry/exec"], "rule vmtest-exec"),
    # tracepoint killed but no event arrived
    ("lsm-off", _replace(GOOD_OFF, "tracepoint", _scenario("tracepoint", "tracepoint", "killed", None)),
     ["tracepoint/exec", "tracepoint/file", "tracepoint/connect"], "expected a"),
    # check did not notice that bpf is missing from lsm=
    ("lsm-off", _replace(GOOD_OFF, "check", _check(0, "lsm", True)), ["check"], "expected exit code 10"),
    # still blocked after the sensor stopped
    ("lsm-off", _replace(GOOD_OFF, "stopped", _stopped(exec_denied="eperm")), ["stopped/exec"], "expected exit:0"),
    ("lsm-off", _replace(GOOD_OFF, "stopped", _stopped(file_write="eperm", file_unchanged=True)), ["stopped/file"],
     "expected ok"),
    # the sensor could not start
    ("lsm-off", _replace(GOOD_OFF, "fentry", {"type": "scenario", "name": "fentry", "tier_requested": "auto",
                                              "error": "the sensor did not report 'started' within 60s",
                                              "stderr": "no enforcement tier could be loaded"}),
     ["fentry/exec", "fentry/file", "fentry/connect", "fentry/effects"], "no enforcement tier"),
    # a rename over the protected file went through: the content changed
    ("lsm-on", _replace(GOOD_ON, "lsm", {**LSM_OK, "effects": {**LSM_OK["effects"], "rename_over": "ok",
                                                                 "protected_unchanged": False}}),
     ["lsm/effects"], "rename_over: expected eperm, got ok"),
    # O_TRUNC went through on the fentry tier (the open was not refused before the truncation)
    ("lsm-off", _replace(GOOD_OFF, "fentry", {**FENTRY_OK, "effects": {**FENTRY_OK["effects"], "open_trunc": "ok",
                                                                       "protected_unchanged": False}}),
     ["fentry/effects"], "open_trunc: expected eperm, got ok"),
    # a file appeared in the protected directory
    ("lsm-off", _replace(GOOD_OFF, "fentry", {**FENTRY_OK, "effects": {**FENTRY_OK["effects"],
                                                                       "protdir_listing": ["kept", "new", "sub"]}}),
     ["fentry/effects"], "protdir_listing"),
    # refused, but without the event saying how (ld.so: exec_denied how interpreted)
    ("lsm-off", _replace(GOOD_OFF, "fentry", {**FENTRY_OK, "events": [
        e for e in FENTRY_OK["events"] if e.get("how") != "interpreted"]}), ["fentry/effects"], "ldso: expected a exec_denied"),
    # the guest ran no effect probes
    ("lsm-on", _replace(GOOD_ON, "lsm", {k: v for k, v in LSM_OK.items() if k != "effects"}), ["lsm/effects"],
     "did not run"),
])
def test_wrong_observations_fail_with_the_reason(boot, lines, cases, needle):
    vm = results.judge("debian-12", "6.1", boot, _names(boot), lines)
    failed = {c.scenario: c.detail for c in vm.cases if c.status == results.FAIL}
    assert list(failed) == cases and all(needle in failed[c] for c in cases), failed
    assert vm.status == results.FAIL


def test_a_guest_that_stopped_early_fails_the_rest_with_the_console_tail():
    vm = results.judge("debian-13", "6.12", "lsm-on", _names("lsm-on"), GOOD_ON[:3],
                       exit_problem="panic: Kernel panic - not syncing: Attempted to kill init!",
                       console_tail="[ 3.1] Kernel panic - not syncing")
    statuses = {c.scenario: c.status for c in vm.cases}
    assert statuses["check"] == statuses["lsm/exec"] == statuses["lsm/connect"] == results.PASS
    assert statuses["audit/file"] == results.FAIL and vm.status == "panic"
    audit = next(c for c in vm.cases if c.scenario == "audit/exec")
    assert "Attempted to kill init" in audit.detail and "Kernel panic" in audit.console_tail


def test_missing_done_is_reported():
    vm = results.judge("debian-12", "6.1", "lsm-off", _names("lsm-off"), GOOD_OFF[:2])
    assert "stopped before reporting" in next(c for c in vm.cases if c.scenario == "stopped/file").detail


def test_guest_errors_explain_the_failures():
    lines = [{"type": "error", "message": "cannot listen on 127.0.0.1: [Errno 99] (is lo up?)"},
             *_replace(GOOD_OFF, "fentry", _with_probes(FENTRY_OK, connect_denied="errno:ECONNREFUSED",
                                                        connect_allowed="errno:ECONNREFUSED"))]
    vm = results.judge("debian-12", "6.1", "lsm-off", _names("lsm-off"), lines)
    failed = {c.scenario: c.detail for c in vm.cases if c.status == results.FAIL}
    assert list(failed) == ["fentry/connect"] and "is lo up?" in failed["fentry/connect"]


def test_table_and_junit():
    vms = [results.judge("debian-12", "6.1.0-50-cloud-amd64", "lsm-on", _names("lsm-on"), GOOD_ON),
           results.judge("debian-12", "6.1.0-50-cloud-amd64", "lsm-off", _names("lsm-off"),
                         _replace(GOOD_OFF, "fentry", _with_probes(FENTRY_OK, exec_denied="exit:0")),
                         console_tail="console \x1b[0m line"),
           results.unavailable("rhel-9", "kernel-core needs a Red Hat subscription", ["lsm-on", "lsm-off"])]
    table = results.summary_table(vms)
    assert "FAIL debian-12 6.1.0-50-cloud-amd64 lsm-off fentry/exec: denied binary: expected eperm" in table
    assert "rhel-9: not available here: kernel-core needs a Red Hat subscription" in table
    header = table.splitlines()[0].split()
    assert header == ["target", "kernel", "boot", "scenario", "tier", "result", "time"]
    root = ET.fromstring(results.junit_xml(vms).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("tests") == str(14 + 11 + 2) and suite.get("failures") == "1" and suite.get("skipped") == "2"
    failure = root.find(".//testcase[@name='fentry/exec']/failure")
    assert "expected eperm" in failure.get("message")


def test_console_tail_strips_control_characters():
    assert results.console_tail("a\r\n\x1b[0mb\nc\n", 2) == "[0mb\nc"


def test_real_guest_line_round_trips():
    """A line as the guest writes it (sort_keys JSON, CRLF from the serial port)."""
    line = json.dumps(GOOD_ON[2], sort_keys=True) + "\r\n"
    (obs,) = results.parse_lines(line)
    assert results.judge_scenario(obs) == ({"exec": [], "file": [], "connect": [], "effects": []}, "lsm")


def test_the_verifier_budget_is_judged_per_program_on_the_real_kernel():
    stats = {"sensor_lsm.bpf.o": {"endura_lsm_path_rename": 18123, "endura_lsm_file_truncate": "missing"},
             "sensor_fentry.bpf.o": {"endura_fentry_mmap_file": results.VERIFIER_BUDGET}}
    assert results.verifier_problems(stats) == [
        f"sensor_fentry.bpf.o endura_fentry_mmap_file: {results.VERIFIER_BUDGET} instructions processed "
        f"(budget {results.VERIFIER_BUDGET:,})"]
    assert "failed (-13)" in results.verifier_problems({"sensor_lsm.bpf.o": {"error": "loading failed (-13)"}})[0]
    check = {**_check(0, "lsm", True), "verifier_stats": stats}
    problems, _ = results.judge_check("lsm-on", check)
    assert len(problems) == 1 and "mmap_file" in problems[0]
    assert plan.BOOTS["lsm-on"].scenarios[0].to_guest()["verifier_stats"] is True
    assert not any(s.verifier_stats for s in plan.BOOTS["lsm-off"].scenarios)
