"""The guest's JSON lines -> judged cases -> summary table and JUnit XML. Pure functions only.

The guest only records what happened (vmtest.guest); what *should* have happened lives here:
`EXPECTED` per scenario and `judge_check` per boot.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable, Sequence

DENIED = "/opt/endura-vmtest/denied"  # these match vmtest/guest.py
PROTECTED = "/opt/endura-vmtest/protected"
DENIED_PORT = 40444
PARTS = ("exec", "file", "connect")  # = plan.PARTS

PASS, FAIL, UNAVAILABLE = "pass", "FAIL", "not available here"


@dataclass(frozen=True)
class Expectation:
    tier: str | None  # the tier `run` must report in its "started" line (None: no sensor / any tier)
    outcome: str  # of each denied operation: eperm (refused) | killed | ok (it happened)
    event_action: str | None  # an event for each denied operation must carry this action
    effects: bool = False  # the effect probes ran (= plan.Scenario.effects): one more part, "effects"

    @property
    def parts(self) -> tuple[str, ...]:
        return PARTS + ("effects",) if self.effects else PARTS


EXPECTED: dict[str, Expectation] = {
    "lsm": Expectation("lsm", "eperm", "blocked", effects=True),
    "fentry": Expectation("fentry", "eperm", "blocked", effects=True),
    "tracepoint": Expectation("tracepoint", "killed", "killed"),
    "audit": Expectation(None, "ok", "audited"),  # whichever tier auto picks; it must not block or kill
    "stopped": Expectation(None, "ok", None),
}


def _is_protected(event: dict) -> bool:
    name = event.get("filename", "")
    return name == PROTECTED or name == PROTECTED.rsplit("/", 1)[1]


#: per part: the event type, how to recognise the denied operation's event, and the probes
EVENTS = {
    "exec": ("exec_denied", lambda e: e.get("filename") == DENIED),
    "file": ("file_open_denied", _is_protected),
    "connect": ("connect_denied", lambda e: e.get("port") == DENIED_PORT
                and e.get("addr") in ("127.0.0.1", "::ffff:127.0.0.1")),
}


#: effect probe (vmtest/guest.py effect_probes) -> the event it must cause: (type, field, value, rule)
EFFECT_EVENTS = {
    "rename_over": ("file_op_denied", "op", "rename_to", "vmtest-file"),
    "rename_away": ("file_op_denied", "op", "rename_from", "vmtest-file"),
    "rename_into": ("file_op_denied", "op", "rename_to", "vmtest-dir"),
    "link_into": ("file_op_denied", "op", "link_to", "vmtest-dir"),
    "link_from": ("file_op_denied", "op", "link_from", "vmtest-file"),
    "unlink": ("file_op_denied", "op", "unlink", "vmtest-file"),
    "unlink_below": ("file_op_denied", "op", "unlink", "vmtest-dir"),
    "rmdir_below": ("file_op_denied", "op", "rmdir", "vmtest-dir"),
    "truncate": ("file_op_denied", "op", "truncate", "vmtest-file"),
    "ftruncate_early_fd": ("file_op_denied", "op", "truncate", "vmtest-file"),
    "write_early_fd": ("file_op_denied", "op", "write", "vmtest-file"),
    "create": ("file_op_denied", "op", "create", "vmtest-dir"),
    "mkdir": ("file_op_denied", "op", "create", "vmtest-dir"),
    "symlink": ("file_op_denied", "op", "create", "vmtest-dir"),
    "ldso": ("exec_denied", "how", "interpreted", "vmtest-exec"),  # ld.so is an interpreter: its open is refused
    "sendto": ("connect_denied", "how", "sendmsg", "vmtest-connect"),
}
PROTDIR_LISTING = ["kept", "sub"]
#: effect probes whose event is the file part's (file_open_denied): judged by outcome and content only
EFFECT_OUTCOME_ONLY = ("open_trunc",)


def _effects_problems(expected: Expectation, effects: dict, events: list) -> list[str]:
    if not effects:
        return ["the effect probes did not run"]
    problems = []
    for probe, (event_type, key, value, rule) in EFFECT_EVENTS.items():
        if effects.get(probe) != expected.outcome:
            problems.append(f"{probe}: expected {expected.outcome}, got {effects.get(probe)}")
        actions = [a for e in events if e.get("type") == event_type and e.get(key) == value and e.get("rule") == rule
                   for a in e.get("action", [])]
        if expected.event_action and expected.event_action not in actions:
            problems.append(f"{probe}: expected a {event_type} event ({key} {value}, rule {rule}) with action "
                            f"{expected.event_action}, got {actions}")
    for probe in EFFECT_OUTCOME_ONLY:
        if effects.get(probe) != expected.outcome:
            problems.append(f"{probe}: expected {expected.outcome}, got {effects.get(probe)}")
    for probe, want in (("sendto_allowed", "ok"), ("ldso_allowed", "exit:0"), ("protected_unchanged", True),
                        ("protdir_listing", PROTDIR_LISTING), ("prepared_exists", True)):
        if effects.get(probe) != want:
            problems.append(f"{probe}: expected {want}, got {effects.get(probe)}")
    return problems


@dataclass
class Case:
    """One row of the summary / one JUnit testcase."""

    target: str
    kernel: str
    boot: str
    scenario: str
    status: str  # PASS | FAIL | UNAVAILABLE
    tier: str = ""
    detail: str = ""
    seconds: float = 0.0
    console_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL


@dataclass
class VmResult:
    target: str
    kernel: str
    boot: str
    cases: list[Case] = field(default_factory=list)
    seconds: float = 0.0  # qemu start to exit
    result_seconds: float = 0.0  # guest uptime at "done"
    status: str = PASS  # pass | FAIL | timeout | panic | ...


def printable(text: str) -> str:
    """Console text without control characters (escape sequences break JUnit XML)."""
    return "".join(ch for ch in text.replace("\r", "") if ch in "\n\t" or (ch >= " " and ch != "\x7f"))


def console_tail(text: str, lines: int = 30) -> str:
    return "\n".join(printable(text).rstrip().splitlines()[-lines:])


def parse_lines(text: str) -> list[dict]:
    """JSON objects from the results port; serial line endings and stray bytes are ignored."""
    out = []
    for line in text.replace("\r", "").splitlines():
        line = line.strip().strip("\0")
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "type" in obj:
            out.append(obj)
    return out


#: instructions processed per program on the real kernels (6.1 gives up at a million with E2BIG; a state
#: explosion once took the open program from 17,000 to 90,000). Measured on 6.1 (Debian 12): bprm_check
#: 40,909 (two inlined walks: bprm->file and bprm->executable), mmap_file 19,228, rename/link 18,100, the
#: other effect hooks 7,400-11,700, file_open 16,500
VERIFIER_BUDGET = 50_000


def verifier_problems(stats: dict) -> list[str]:
    problems = []
    for obj, programs in sorted(stats.items()):
        if "error" in programs:
            problems.append(f"verifier statistics of {obj}: {programs['error']}")
            continue
        for program, insns in sorted(programs.items()):
            if insns == "missing":
                continue  # the kernel lacks its function: the sensor does not load it either
            if not isinstance(insns, int) or insns >= VERIFIER_BUDGET:
                problems.append(f"{obj} {program}: {insns} instructions processed (budget {VERIFIER_BUDGET:,})")
    return problems


def judge_check(boot: str, obs: dict) -> tuple[list[str], str]:
    """Problems with `endura-sensor check --json` for this boot, and the tier it chose."""
    report = obs.get("report") or {}
    tier = report.get("tier") or ""
    problems = []
    if not report:
        return [f"check printed no JSON (exit code {obs.get('exit_code')}): {obs.get('stderr', '')}"], tier
    if boot == "lsm-on":
        if obs.get("exit_code") != 0 or tier != "lsm":
            problems.append(f"expected exit code 0 and tier lsm, got {obs.get('exit_code')} and {tier or 'none'}")
    elif boot == "lsm-off":
        if obs.get("exit_code") != 10 or tier != "fentry":
            problems.append(f"expected exit code 10 and tier fentry, got {obs.get('exit_code')} and {tier or 'none'}")
        if report.get("bpf_lsm_active") is not False:
            problems.append(f"expected bpf_lsm_active false, got {report.get('bpf_lsm_active')}")
        lsm = next((t for t in report.get("tiers", []) if t.get("tier") == "lsm"), {})
        if lsm.get("usable") or "lsm=" not in lsm.get("fix", ""):
            problems.append(f"expected the lsm tier unusable with an lsm=...,bpf fix, got {lsm}")
    problems += verifier_problems(obs.get("verifier_stats") or {})
    for t in report.get("tiers", []):
        if t.get("canary", "").startswith("error"):
            problems.append(f"tier {t.get('tier')} canary: {t.get('canary')}")
    return problems, tier


def _part_problems(part: str, name: str, expected: Expectation, probes: dict, events: list) -> list[str]:
    problems = []
    want = expected.outcome
    if part == "exec":
        want_exec = "exit:0" if want == "ok" else want
        if probes.get("exec_denied") != want_exec:
            problems.append(f"denied binary: expected {want_exec}, got {probes.get('exec_denied')}")
        if probes.get("exec_allowed") != "exit:0":
            problems.append(f"allowed binary: expected exit:0, got {probes.get('exec_allowed')}")
    elif part == "file":
        if probes.get("file_write") != want:
            problems.append(f"open {PROTECTED} for write: expected {want}, got {probes.get('file_write')}")
        if probes.get("file_unchanged") is not (want != "ok"):
            problems.append(f"{PROTECTED} expected {'unchanged' if want != 'ok' else 'written'}, it was "
                            f"{'unchanged' if probes.get('file_unchanged') else 'written'}")
        if probes.get("file_read") != "ok":
            problems.append(f"open {PROTECTED} for read: expected ok, got {probes.get('file_read')}")
    else:
        if probes.get("connect_denied") != want:
            problems.append(f"connect to 127.0.0.1:{DENIED_PORT}: expected {want}, got {probes.get('connect_denied')}")
        if probes.get("connect_allowed") != "ok":
            problems.append(f"connect to the allowed port: expected ok, got {probes.get('connect_allowed')}")
    if expected.event_action:
        event_type, match = EVENTS[part]
        matching = [e for e in events if e.get("type") == event_type and match(e)]
        actions = [a for e in matching for a in e.get("action", [])]
        if expected.event_action not in actions:
            problems.append(f"expected a {event_type} event with action {expected.event_action}, got {actions}")
        rules = {e.get("rule") for e in matching}
        if matching and rules != {f"vmtest-{part}"}:  # the rule came from the policy file, not elsewhere
            problems.append(f"expected the {event_type} events to name rule vmtest-{part}, got {sorted(map(str, rules))}")
        if name == "audit" and {"blocked", "killed"} & set(actions):
            problems.append(f"audit mode must only log, got actions {actions}")
    return problems


def judge_scenario(obs: dict) -> tuple[dict[str, list[str]], str]:
    """Problems with one scenario's observations per part (exec, file, connect), and the tier the sensor ran."""
    name = obs.get("name", "")
    started = obs.get("started") or {}
    tier = started.get("tier", "")
    expected = EXPECTED.get(name)
    parts = expected.parts if expected else PARTS
    if obs.get("error"):
        problem = obs["error"] + (f"; sensor stderr: {obs['stderr']}" if obs.get("stderr") else "")
        return {part: [problem] for part in parts}, tier
    if expected is None:
        return {part: [f"unknown scenario {name!r}"] for part in parts}, tier
    common = []
    if expected.tier and tier != expected.tier:
        common.append(f"expected tier {expected.tier}, the sensor started {tier or 'nothing'}")
    if obs.get("tier_requested") and obs.get("exit_code") not in (0, None):
        common.append(f"the sensor exited {obs.get('exit_code')}: {obs.get('stderr', '')}")
    if obs.get("stop"):
        common.append(obs["stop"])
    probes = obs.get("probes") or {}
    events = obs.get("events", [])
    judged = {part: common + _part_problems(part, name, expected, probes, events) for part in PARTS}
    if expected.effects:
        judged["effects"] = common + _effects_problems(expected, obs.get("effects") or {}, events)
    return judged, tier


def judge(target: str, kernel: str, boot: str, scenarios: Sequence[str], lines: Sequence[dict],
          *, exit_problem: str = "", console_tail: str = "") -> VmResult:
    """Turn one VM's result lines into cases (`check`, then `<scenario>/<part>` for each of PARTS); a
    scenario that never reported fails with `exit_problem`."""
    vm = VmResult(target, kernel, boot)
    by_name: dict[str, dict] = {}
    done = None
    guest_errors = []
    for obj in lines:
        if obj["type"] == "error":
            guest_errors.append(str(obj.get("message", "")))
        elif obj["type"] == "check":
            by_name["check"] = obj
        elif obj["type"] == "scenario":
            by_name[obj.get("name", "")] = obj
        elif obj["type"] == "done":
            done = obj
        elif obj["type"] == "hello" and obj.get("kernel"):
            vm.kernel = kernel or obj["kernel"]
    if done is not None:
        vm.result_seconds = float(done.get("uptime", 0.0))
    missing_reason = exit_problem or ("the guest stopped before reporting it" if done is None
                                      else "the guest reported no result for it")
    guest_note = "".join(f"; guest driver: {e}" for e in guest_errors)
    for name in scenarios:
        obs = by_name.get(name)
        parts = EXPECTED[name].parts if name in EXPECTED else PARTS
        case_names = [name] if name == "check" else [f"{name}/{part}" for part in parts]
        if obs is None:
            for case_name in case_names:
                vm.cases.append(Case(target, vm.kernel, boot, case_name, FAIL,
                                     detail=f"no result: {missing_reason}{guest_note}", console_tail=console_tail))
            continue
        if name == "check":
            problems, tier = judge_check(boot, obs)
            by_part = {name: problems}
        else:
            per_part, tier = judge_scenario(obs)
            by_part = {f"{name}/{part}": problems for part, problems in per_part.items()}
        for i, (case_name, problems) in enumerate(by_part.items()):
            detail = "; ".join(problems) + (guest_note if problems else "")
            # the scenario's time once (on its first row), so that JUnit case times add up
            vm.cases.append(Case(target, vm.kernel, boot, case_name, FAIL if problems else PASS, tier=tier,
                                 detail=detail, seconds=float(obs.get("seconds", 0.0)) if i == 0 else 0.0,
                                 console_tail=console_tail if problems else ""))
    if exit_problem:
        vm.status = exit_problem.split(":", 1)[0]
    elif any(not c.ok for c in vm.cases):
        vm.status = FAIL
    return vm


def unavailable(target: str, reason: str, boots: Iterable[str]) -> VmResult:
    vm = VmResult(target, "-", "-", status=UNAVAILABLE)
    vm.cases = [Case(target, "-", b, "-", UNAVAILABLE, detail=reason) for b in boots]
    return vm


def summary_table(vms: Sequence[VmResult]) -> str:
    """kernel x boot (tier) x scenario, one row per case, plus per-VM times."""
    header = ("target", "kernel", "boot", "scenario", "tier", "result", "time")
    rows = [header]
    for vm in vms:
        for c in vm.cases:
            rows.append((c.target, c.kernel, c.boot, c.scenario, c.tier or "-", c.status,
                         f"{c.seconds:.1f}s" if c.seconds else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for vm in vms:
        if vm.status == UNAVAILABLE:
            lines.append(f"{vm.target}: {UNAVAILABLE}: {vm.cases[0].detail if vm.cases else ''}")
        else:
            lines.append(f"{vm.target} {vm.kernel} {vm.boot}: {vm.status}, boot to last result "
                         f"{vm.result_seconds:.1f}s (guest uptime), VM {vm.seconds:.1f}s")
    failed = [c for vm in vms for c in vm.cases if c.status == FAIL]
    for c in failed:
        lines.append(f"FAIL {c.target} {c.kernel} {c.boot} {c.scenario}: {c.detail}")
    return "\n".join(lines)


def junit_xml(vms: Sequence[VmResult], suite: str = "vmtest") -> str:
    cases = [(vm, c) for vm in vms for c in vm.cases]
    failures = sum(1 for _, c in cases if c.status == FAIL)
    skipped = sum(1 for _, c in cases if c.status == UNAVAILABLE)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures),
                       skipped=str(skipped), errors="0", time=f"{sum(vm.seconds for vm in vms):.1f}")
    for _vm, c in cases:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{c.target}.{c.kernel}.{c.boot}",
                           name=c.scenario, time=f"{c.seconds:.2f}")
        if c.status == FAIL:
            failure = ET.SubElement(tc, "failure", message=printable(c.detail[:500]))
            failure.text = printable(c.detail + ("\n--- guest console (tail) ---\n" + c.console_tail
                                                 if c.console_tail else ""))
        elif c.status == UNAVAILABLE:
            ET.SubElement(tc, "skipped", message=printable(f"{UNAVAILABLE}: {c.detail}"))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
