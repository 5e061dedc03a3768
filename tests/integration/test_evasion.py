"""The evasion suite on this host (tracepoint tier): every case of vmtest/evasion.py under a real sensor.

Runs `python3 -m vmtest.evasion --tier tracepoint` (its own sensors, one per group of cases, on a private
tmpfs and a private bpffs; a bpf rule is loaded only for the few seconds of its group), writes
build/evasion/tracepoint.json and prints the table, then compares each case with
vmtest/evasion_expected.py: a case that got better or worse fails until the table is updated.
Needs root, kernel BTF and clang (the 32-bit probe).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "sensor")]
from vmtest import evasion  # noqa: E402
from vmtest.evasion_expected import judge  # noqa: E402

pytestmark = [pytest.mark.evasion,
              pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"),
                                 reason="loading BPF needs root and a kernel with BTF")]


@pytest.fixture(scope="module")
def tracepoint_run():
    from endura_sensor import host_arch

    from bpf.build import build

    arch = host_arch()
    bpf_dir = build((arch,))[arch][0].parent
    out = REPO / "build" / "evasion" / "tracepoint.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "vmtest.evasion", "--tier", "tracepoint", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, ENDURA_BPF_DIR=str(bpf_dir)))
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


def test_every_case_has_the_expected_outcome_on_the_tracepoint_tier(tracepoint_run):
    result, _ = tracepoint_run
    assert result["tier"] == "tracepoint" and set(result["cases"]) == set(evasion.CASE_IDS)
    problems = judge("tracepoint", result["cases"])
    assert not problems, "\n".join(problems)


def test_the_direct_forms_are_stopped_and_harmless_operations_are_not(tracepoint_run):
    """Whatever EXPECTED says, the baselines must hold: otherwise the suite measures a broken sensor."""
    cases = tracepoint_run[0]["cases"]
    for case_id in ("file-write-direct", "exec-direct"):
        assert cases[case_id]["outcome"] in ("blocked", "killed-before-effect") and cases[case_id]["event"], cases[case_id]
    for case_id in ("fp-read-protected", "fp-write-sibling", "fp-exec-allowed", "fp-connect-allowed"):
        assert cases[case_id]["outcome"] == "ok", cases[case_id]


def test_no_sensor_tmpfs_or_bpffs_is_left_behind(tracepoint_run):
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "endura-evasion-" not in mounts
    assert "endura-evasion" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
