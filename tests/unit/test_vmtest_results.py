"""vmtest.results: parsing the results port, judging each scenario, the table and JUnit XML."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from vmtest import plan, results

DENIED = results.DENIED


def _event(action: str, tier: str) -> dict:
    return {"type": "exec_denied", "action": [action], "tier": tier, "filename": DENIED, "rule_id": 1}


def _scenario(name: str, tier: str | None, denied: str, action: str | None, **kw) -> dict:
    obs = {"type": "scenario", "name": name, "tier_requested": "auto", "exit_code": 0, "seconds": 1.7,
           "probes": {"denied": denied, "allowed": "exit:0"},
           "events": [_event(action, tier)] if action else []}
    if tier:
        obs["started"] = {"type": "started", "tier": tier}
    obs.update(kw)
    return obs


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
    _scenario("audit", "lsm", "exit:0", "audited"),
    {"type": "scenario", "name": "stopped", "tier_requested": None, "probes": {"denied": "exit:0", "allowed": "exit:0"}},
    {"type": "done", "uptime": 14.6},
]
GOOD_OFF = [
    _check(10, "fentry", False),
    _scenario("fentry", "fentry", "killed", "killed"),
    _scenario("tracepoint", "tracepoint", "killed", "killed"),
    {"type": "scenario", "name": "stopped", "tier_requested": None, "probes": {"denied": "exit:0", "allowed": "exit:0"}},
    {"type": "done", "uptime": 13.5},
]


def _names(boot: str) -> list[str]:
    return [s.name for s in plan.BOOTS[boot].scenarios]


def test_parse_lines_survives_serial_noise():
    text = '\r\n\0\0{"type": "hello", "uptime": 1}\r\ngarbage\n{"type": "done"\n{"no_type": 1}\n{"type": "done"}\r\n'
    assert [o["type"] for o in results.parse_lines(text)] == ["hello", "done"]


@pytest.mark.parametrize("boot,lines", [("lsm-on", GOOD_ON), ("lsm-off", GOOD_OFF)])
def test_good_runs_pass(boot, lines):
    vm = results.judge("debian-12", "6.1.0-50-cloud-amd64", boot, _names(boot), lines)
    assert vm.status == results.PASS, [c.detail for c in vm.cases]
    assert [c.scenario for c in vm.cases] == _names(boot)
    assert vm.result_seconds == lines[-1]["uptime"]


def _replace(lines, name, new):
    return [new if o.get("name") == name or (name == "check" and o["type"] == "check") else o for o in lines]


@pytest.mark.parametrize("boot,lines,scenario,needle", [
    # LSM not enforcing: the denied exec ran
    ("lsm-on", _replace(GOOD_ON, "lsm", _scenario("lsm", "lsm", "exit:0", None)), "lsm", "expected eperm"),
    # auto picked the wrong tier
    ("lsm-on", _replace(GOOD_ON, "lsm", _scenario("lsm", "fentry", "killed", "killed")), "lsm", "expected tier lsm"),
    # audit must not kill
    ("lsm-on", _replace(GOOD_ON, "audit", _scenario("audit", "lsm", "killed", "killed")), "audit", "expected exit:0"),
    # audit must log
    ("lsm-on", _replace(GOOD_ON, "audit", _scenario("audit", "lsm", "exit:0", None)), "audit", "action audited"),
    # tracepoint killed but no event arrived
    ("lsm-off", _replace(GOOD_OFF, "tracepoint", _scenario("tracepoint", "tracepoint", "killed", None)),
     "tracepoint", "expected an event"),
    # check did not notice that bpf is missing from lsm=
    ("lsm-off", _replace(GOOD_OFF, "check", _check(0, "lsm", True)), "check", "expected exit code 10"),
    # still blocked after the sensor stopped
    ("lsm-off", _replace(GOOD_OFF, "stopped", {"type": "scenario", "name": "stopped", "tier_requested": None,
                                               "probes": {"denied": "eperm", "allowed": "exit:0"}}),
     "stopped", "expected exit:0"),
    # the sensor could not start
    ("lsm-off", _replace(GOOD_OFF, "fentry", {"type": "scenario", "name": "fentry", "tier_requested": "auto",
                                              "error": "the sensor did not report 'started' within 60s",
                                              "stderr": "no enforcement tier could be loaded"}),
     "fentry", "no enforcement tier"),
])
def test_wrong_observations_fail_with_the_reason(boot, lines, scenario, needle):
    vm = results.judge("debian-12", "6.1", boot, _names(boot), lines)
    failed = {c.scenario: c.detail for c in vm.cases if c.status == results.FAIL}
    assert list(failed) == [scenario] and needle in failed[scenario], failed
    assert vm.status == results.FAIL


def test_a_guest_that_stopped_early_fails_the_rest_with_the_console_tail():
    vm = results.judge("debian-13", "6.12", "lsm-on", _names("lsm-on"), GOOD_ON[:3],
                       exit_problem="panic: Kernel panic - not syncing: Attempted to kill init!",
                       console_tail="[ 3.1] Kernel panic - not syncing")
    statuses = {c.scenario: c.status for c in vm.cases}
    assert statuses["check"] == statuses["lsm"] == results.PASS
    assert statuses["audit"] == results.FAIL and vm.status == "panic"
    audit = next(c for c in vm.cases if c.scenario == "audit")
    assert "Attempted to kill init" in audit.detail and "Kernel panic" in audit.console_tail


def test_missing_done_is_reported():
    vm = results.judge("debian-12", "6.1", "lsm-off", _names("lsm-off"), GOOD_OFF[:2])
    assert "stopped before reporting" in next(c for c in vm.cases if c.scenario == "stopped").detail


def test_table_and_junit():
    vms = [results.judge("debian-12", "6.1.0-50-cloud-amd64", "lsm-on", _names("lsm-on"), GOOD_ON),
           results.judge("debian-12", "6.1.0-50-cloud-amd64", "lsm-off", _names("lsm-off"),
                         _replace(GOOD_OFF, "fentry", _scenario("fentry", "fentry", "exit:0", None)),
                         console_tail="console \x1b[0m line"),
           results.unavailable("rhel-9", "kernel-core needs a Red Hat subscription", ["lsm-on", "lsm-off"])]
    table = results.summary_table(vms)
    assert "FAIL debian-12 6.1.0-50-cloud-amd64 lsm-off fentry" in table
    assert "rhel-9: not available here: kernel-core needs a Red Hat subscription" in table
    header = table.splitlines()[0].split()
    assert header == ["target", "kernel", "boot", "scenario", "tier", "result", "time"]
    root = ET.fromstring(results.junit_xml(vms).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("tests") == str(5 + 4 + 2) and suite.get("failures") == "1" and suite.get("skipped") == "2"
    failure = root.find(".//testcase[@name='fentry']/failure")
    assert "expected killed" in failure.get("message")


def test_console_tail_strips_control_characters():
    assert results.console_tail("a\r\n\x1b[0mb\nc\n", 2) == "[0mb\nc"


def test_real_guest_line_round_trips():
    """A line as the guest writes it (sort_keys JSON, CRLF from the serial port)."""
    line = json.dumps(GOOD_ON[2], sort_keys=True) + "\r\n"
    (obs,) = results.parse_lines(line)
    assert results.judge_scenario(obs) == ([], "lsm")
