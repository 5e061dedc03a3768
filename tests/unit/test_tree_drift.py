"""Drift checks over the source tree: hints and headers that must agree with how things really are."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", *patterns], check=True,
                         capture_output=True, text=True).stdout
    return [REPO / p for p in out.split("\0") if p and (REPO / p).is_file()]


def test_promote_hints_put_the_channel_after_the_double_dash():
    # without the '--', nox takes the channel for a second session name
    wrong = re.compile(r"nox -s promote\s+(?!--)[\w<{]")
    allowed = "nox reads `nox -s promote testing` as two sessions"
    bad = []
    for path in tracked("*.py", "*.md", "*.toml", "*.txt", "*.sh"):
        text = path.read_text(errors="replace").replace(allowed, "")
        bad += [f"{path.relative_to(REPO)}: {m.group(0)!r}" for m in wrong.finditer(text)]
    assert not bad, "write 'nox -s promote -- <channel>':\n" + "\n".join(bad)


def test_bpf_sources_carry_the_license_of_LICENSE():
    # LICENSE and release/nfpm.py: the eBPF programs are GPL-2.0-only OR BSD-2-Clause
    from release.nfpm import LICENSE

    assert "(GPL-2.0-only OR BSD-2-Clause)" in LICENSE
    assert "GPL-2.0-only OR BSD-2-Clause" in (REPO / "LICENSE").read_text().replace("\n", " ")
    sources = tracked("bpf/*.c", "bpf/*.h", "tests/integration/attacks/*.c")
    sources = [p for p in sources if not p.name.startswith("vmlinux")]
    assert sources
    for path in sources:
        text = path.read_text()
        spdx = re.findall(r"SPDX-License-Identifier: ([^*\n]+?)\s*(?:\*/)?$", text, re.M)
        assert spdx == ["GPL-2.0-only OR BSD-2-Clause"], f"{path.relative_to(REPO)}: {spdx}"
        for license_string in re.findall(r'SEC\("license"\)\s*=\s*"([^"]*)"', text):
            # the kernel refuses GPL-only helpers to a program whose license string is not GPL-compatible
            assert license_string in ("GPL", "Dual BSD/GPL", "GPL v2", "Dual MIT/GPL"), f"{path}: {license_string}"
