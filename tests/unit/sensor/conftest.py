import os
import sys
from pathlib import Path

import pytest

SENSOR = Path(__file__).resolve().parents[3] / "sensor"
if str(SENSOR) not in sys.path:
    sys.path.insert(0, str(SENSOR))


@pytest.fixture
def sensor_env():
    """Environment for running `python -m endura_sensor` in a subprocess from the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SENSOR), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture
def fake_root(tmp_path):
    """A fake / with the files probe.py reads; tests add what they need."""
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.1.0-50-amd64\n")
    (tmp_path / "sys/kernel/btf").mkdir(parents=True)
    (tmp_path / "sys/kernel/btf/vmlinux").write_bytes(b"\x9f\xeb")
    (tmp_path / "sys/kernel/security").mkdir(parents=True)
    return tmp_path
