"""Package upgrades in place open no window: `python3 -m vmtest.upgrade` for real.

A Debian 12 kernel test VM booted with systemd as PID 1 (LSM tier) installs each format's 1.0.0 with its
own tool (dpkg, rpm, pacman, the tarball's install.sh), starts endura-sensor.service, and while a loop
tries denied operations of every rule type (exec, open for write, connect, bpf(), finit_module()),
upgrades to 1.0.1 (the package's scripts restart the service), restarts it, crashes it and reloads it.
Every denied operation must have been killed; `systemctl stop` must then detach everything.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.pkgtools import REPO
from toolbox.tools import require


@pytest.fixture(scope="module")
def upgrade_run(tmp_path_factory):
    require("qemu-system-x86_64", "mmdebstrap", "dpkg-deb")
    work = tmp_path_factory.mktemp("upgrade-vm")
    proc = subprocess.run([sys.executable, "-m", "vmtest.upgrade", "--work-dir", str(work), "--timeout", "1500"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800, env=dict(os.environ))
    summary = json.loads((work / "summary.json").read_text()) if (work / "summary.json").exists() else None
    return proc, summary


@pytest.mark.parametrize("family", ["deb", "rpm", "arch", "tgz"])
def test_an_upgrade_restart_crash_and_reload_let_no_denied_operation_through(upgrade_run, family):
    proc, summary = upgrade_run
    assert summary is not None, proc.stderr[-3000:]
    assert "bpf" in summary["lsm"]  # the LSM tier: blocked before the operation, and killed
    (row,) = [r for r in summary["rows"] if r["family"] == family]
    assert row["status"] == "PASS", (row["problems"], proc.stderr[-2000:])
    result = row["result"]
    ops = result["loop"]["ops"]
    assert set(ops) == {"exec", "file", "connect", "bpf", "module_load"}
    assert all(o["attempts"] >= 10 and o["windows"] == 0 for o in ops.values()), ops
    assert result["version_running"].endswith("1.0.1")
    assert result["denied_after_stop"] == 0 and result["pins_after_stop"] == []  # a real stop detaches
    print(f"{family}: {json.dumps(ops)} steps " + json.dumps({k: v.get('s') for k, v in result['steps'].items()}))


def test_the_run_as_a_whole_passed(upgrade_run):
    proc, summary = upgrade_run
    assert proc.returncode == 0 and summary["problem"] == "", proc.stderr[-3000:]
