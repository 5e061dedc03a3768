"""The evasion suite inside the kernel test VM (Debian 12, 6.1): the LSM tier (BPF LSM on) and the fentry
tier (an lsm= list without bpf), one boot each, with the .deb built from this tree.

`python3 -m vmtest.evasion_vm` runs every case of vmtest/evasion.py in the guest, writes
build/evasion/lsm.json and fentry.json and compares each case with vmtest/evasion_expected.py: a case that
got better or worse fails until the table is updated. `pytest -m evasion` runs it with the host's
tracepoint run alone. Measured: about 4 minutes under TCG (two boots of ~100 s, plus the package build).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.pkgtools import REPO, build_dist
from toolbox.tools import require
from vmtest import evasion
from vmtest.evasion_expected import EXPECTED

pytestmark = [pytest.mark.evasion, pytest.mark.slow]


@pytest.fixture(scope="module")
def vm_run(tmp_path_factory):
    require("qemu-system-x86_64", "mmdebstrap", "dpkg-deb", "clang")
    dist, _ = build_dist(tmp_path_factory.mktemp("evasion-dist"), "1.0.0", "--format", "deb", "--arch", "amd64")
    work = tmp_path_factory.mktemp("evasion-vm")
    out = REPO / "build" / "evasion"
    proc = subprocess.run([sys.executable, "-m", "vmtest.evasion_vm", "--dist", str(dist), "--work-dir", str(work),
                           "--out-dir", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ))
    print(proc.stdout)
    return proc, out


@pytest.mark.parametrize("tier", ["lsm", "fentry"])
def test_every_case_has_the_expected_outcome_in_the_vm(vm_run, tier):
    proc, out = vm_run
    result = json.loads((out / f"{tier}.json").read_text())
    assert result["complete"] and not result["errors"], proc.stderr[-4000:]
    assert result["kernel"].startswith("6.1.") and set(result["cases"]) == set(evasion.CASE_IDS)
    assert set(EXPECTED[tier]) == set(evasion.CASE_IDS)
    assert proc.returncode == 0, proc.stderr[-6000:]


def test_the_lsm_tier_blocks_the_direct_forms(vm_run):
    _, out = vm_run
    cases = json.loads((out / "lsm.json").read_text())["cases"]
    for case_id in ("file-write-direct", "exec-direct", "tcp-connect"):
        assert cases[case_id]["outcome"] == "blocked" and cases[case_id]["event"], cases[case_id]
    assert all(cases[c]["outcome"] == "ok" for c in evasion.CASE_IDS if c.startswith("fp-")), cases
