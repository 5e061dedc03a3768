"""The evasion suite's pure parts: outcomes from what the attacker saw, the judgement against the expected
table, and the generated doc (the cases themselves run in tests/integration/test_evasion*.py)."""
from __future__ import annotations

from pathlib import Path

from vmtest import evasion, evasion_doc
from vmtest.evasion_expected import EXPECTED, judge

REPO = Path(__file__).resolve().parents[3]
ATTACK = evasion.Case("x", "exec", attack=None)
HARMLESS = evasion.Case("y", "false-positive", attack=None, fp=True)


def test_outcomes_from_status_notes_and_effect():
    o = evasion.outcome
    assert o(ATTACK, "eperm", [], False) == "blocked"
    assert o(ATTACK, "eperm", [], True) == "refused-after-effect"
    assert o(ATTACK, "killed", [], False) == "killed-before-effect"
    assert o(ATTACK, "ok", ["killed"], True) == "killed-after-effect"  # a child died, the parent got through
    assert o(ATTACK, "killed", [], None) == "killed"  # effect invisible (bpf, init_module)
    assert o(ATTACK, "ok", [], True) == "evaded"
    assert o(ATTACK, "errno:ENOSYS", [], False) == "failed"
    assert o(ATTACK, "ok", ["n/a"], True) == "n/a"
    assert o(HARMLESS, "ok", [], True) == "ok"
    assert o(HARMLESS, "killed", [], False) == "false-positive"


def test_every_tier_expects_every_case_and_knows_its_outcomes():
    for tier, cases in EXPECTED.items():
        assert set(cases) == set(evasion.CASE_IDS), tier
        assert {o for o, _ in cases.values()} <= set(evasion.OUTCOMES), tier


def test_judge_says_better_or_worse():
    cases = {c: {"outcome": o, "event": e} for c, (o, e) in EXPECTED["tracepoint"].items()}
    assert judge("tracepoint", cases) == []
    evaded = next(c for c, (o, _) in EXPECTED["tracepoint"].items() if o == "evaded")
    stopped = next(c for c, (o, _) in EXPECTED["tracepoint"].items() if o == "killed-before-effect")
    better = dict(cases, **{evaded: {"outcome": "blocked", "event": True}})
    worse = dict(cases, **{stopped: {"outcome": "evaded", "event": False}})
    (problem,) = judge("tracepoint", better)
    assert problem.startswith(f"{evaded}: expected evaded, got blocked + event (better: update")
    (problem,) = judge("tracepoint", worse)
    assert "WORSE: a regression" in problem
    assert judge("nosuchtier", cases) == ["no expected outcomes for tier 'nosuchtier' in vmtest/evasion_expected.py"]


def test_the_committed_doc_is_the_rendered_one():
    assert (REPO / "docs" / "evasion.md").read_text() == evasion_doc.render(), "run: python3 -m vmtest.evasion --table"


def test_every_gap_has_a_reason():
    for tier, cases in EXPECTED.items():
        for case_id, (outcome, _) in cases.items():
            if outcome not in ("blocked", "killed-before-effect", "ok", "n/a"):
                assert (tier, case_id) in evasion_doc.REASONS or case_id in evasion_doc.REASONS, (tier, case_id)
