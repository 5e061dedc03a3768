"""How rules combine (sensor/README.md "How rules combine"), for real on this host: tracepoint tier, SIGKILL.

One test per cell of the composition table: every rule that matches an access counts (the file's own
path/sha256 rules and every ancestor directory's dir rules), the strictest action wins (kill > block >
audit), and the event names the rule that decided. Rules that name one file through different paths
with different actions are refused (check-config, start, reload) or, when the collision appears later,
merged to the strictest with a warning.

Writes are tried with O_WRONLY and no O_TRUNC: the tracepoint tier kills at the exit of open(), after an
O_TRUNC would already have truncated; so "killed and the content unchanged" proves the write never happened.
Needs root and kernel BTF (like test_sensor_policy.py, whose fixtures these are).
"""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.test_sensor_policy import KILLED, REPO, bpf_dir, copy_true, pytestmark, rule, run, start  # noqa: F401

ORIGINAL = "original content\n"


def protected_file(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ORIGINAL)
    return path


def write(path, flags="os.O_WRONLY"):
    """Open for writing without O_TRUNC and write: the return code of the writer."""
    return run(sys.executable, "-c", f"import os; fd = os.open({str(path)!r}, {flags}); os.write(fd, b'TAMPERED')")


def read(path, flags="os.O_RDONLY"):
    return run(sys.executable, "-c", f"import os; fd = os.open({str(path)!r}, {flags}); os.read(fd, 1)")


def by_name(records, type_, key="filename"):
    """{filename: [(rule, action, access)]} of the events of one type."""
    out = {}
    for r in records:
        if r["type"] == type_:
            out.setdefault(r[key], []).append((r.get("rule"), r["action"], r.get("access")))
    return out


# ---------------------------------------------------------------- files: path vs dir, read vs write

def test_a_file_with_its_own_read_rule_inside_a_write_protected_dir_cannot_be_written(start, tmp_path):
    """The issue's case: the path rule adds to the directory's protection, it does not replace it."""
    d = tmp_path / "etc-app"
    f, other = protected_file(d / "app.conf"), protected_file(d / "other.conf")
    sensor = start(rule(name="dir-write", type="file", dir=str(d))  # access "write", action "block" (defaults)
                   + rule(name="own-read", type="file", path=str(f), access="read", action="audit"))
    assert write(f) == KILLED  # block + terminate_process (default true): killed on this tier
    assert read(f) == 0  # reading: only the audit rule
    assert write(f, "os.O_RDWR") == KILLED  # read (audit) + write (block): the strictest
    assert write(other) == KILLED
    sensor.wait_for(lambda r: r.get("filename") == "other.conf")
    records = sensor.stop()
    assert f.read_text() == ORIGINAL and other.read_text() == ORIGINAL
    assert by_name(records, "file_open_denied") == {
        "app.conf": [("dir-write", ["killed"], ["write"]), ("own-read", ["audited"], ["read"]),
                     ("dir-write", ["killed"], ["read", "write"])],
        "other.conf": [("dir-write", ["killed"], ["write"])]}
    (other_event,) = [r for r in records if r.get("filename") == "other.conf"]
    assert other_event["ino"] == other.stat().st_ino  # the file's own inode, not its directory's


def test_the_strictest_rule_wins_wherever_it_is_and_ties_go_to_the_nearest(start, tmp_path):
    own_kill = protected_file(tmp_path / "d1" / "own-kill")
    dir_kill = protected_file(tmp_path / "d2" / "dir-kill")
    deep = protected_file(tmp_path / "outer" / "inner" / "deep")
    tie_own = protected_file(tmp_path / "d3" / "tie-own")
    tie_near = protected_file(tmp_path / "o2" / "i2" / "tie-near")
    sensor = start(
        rule(name="p-kill", type="file", path=str(own_kill), action="kill")
        + rule(name="d1-audit", type="file", dir=str(tmp_path / "d1"), action="audit")
        + rule(name="p-audit", type="file", path=str(dir_kill), action="audit")
        + rule(name="d2-kill", type="file", dir=str(tmp_path / "d2"), action="kill")
        # nested dirs: the walk does not stop at the first (nearest) directory with a rule
        + rule(name="inner-audit", type="file", dir=str(tmp_path / "outer" / "inner"), action="audit")
        + rule(name="outer-kill", type="file", dir=str(tmp_path / "outer"), action="kill")
        # equally strict: the file's own rule, then the nearest directory
        + rule(name="d3-kill", type="file", dir=str(tmp_path / "d3"), action="kill")
        + rule(name="tie-own-kill", type="file", path=str(tie_own), action="kill")
        + rule(name="o2-kill", type="file", dir=str(tmp_path / "o2"), action="kill")
        + rule(name="i2-kill", type="file", dir=str(tmp_path / "o2" / "i2"), action="kill"))
    for path in (own_kill, dir_kill, deep, tie_own, tie_near):
        assert write(path) == KILLED, path
    sensor.wait_for(lambda r: r.get("filename") == "tie-near")
    records = sensor.stop()
    assert all(p.read_text() == ORIGINAL for p in (own_kill, dir_kill, deep, tie_own, tie_near))
    assert by_name(records, "file_open_denied") == {
        "own-kill": [("p-kill", ["killed"], ["write"])], "dir-kill": [("d2-kill", ["killed"], ["write"])],
        "deep": [("outer-kill", ["killed"], ["write"])], "tie-own": [("tie-own-kill", ["killed"], ["write"])],
        "tie-near": [("i2-kill", ["killed"], ["write"])]}


def test_a_path_rule_and_a_dir_rule_on_one_directory_cover_it_and_what_is_below_it(start, tmp_path):
    d = tmp_path / "vault"
    inside = protected_file(d / "inside")
    sensor = start(rule(name="vault-itself", type="file", path=str(d), access="read", action="kill")
                   + rule(name="below-vault", type="file", dir=str(d), action="kill"))
    assert read(d, "os.O_RDONLY | os.O_DIRECTORY") == KILLED  # listing it: the path rule
    assert read(inside) == 0  # the path rule is the directory itself; the dir rule is write only
    assert write(inside) == KILLED
    sensor.wait_for(lambda r: r.get("filename") == "inside")
    records = sensor.stop()
    assert inside.read_text() == ORIGINAL
    assert by_name(records, "file_open_denied") == {"vault": [("vault-itself", ["killed"], ["read"])],
                                                    "inside": [("below-vault", ["killed"], ["write"])]}


# ---------------------------------------------------------------- exec: path vs dir vs sha256

def test_exec_rules_by_path_dir_and_hash_combine_to_the_strictest(start, tmp_path):
    p_audit = copy_true(tmp_path / "e1" / "x1")
    p_kill = copy_true(tmp_path / "e2" / "x2")
    h_kill = copy_true(tmp_path / "e3" / "x3")
    h_audit = tmp_path / "e4" / "x4"
    h_audit.parent.mkdir()
    shutil.copy(shutil.which("echo"), h_audit)
    alone = copy_true(tmp_path / "e5" / "x5")
    digest = hashlib.sha256
    sensor = start(
        rule(name="x1-audit", type="exec", path=str(p_audit), action="audit")
        + rule(name="e1-kill", type="exec", dir=str(p_audit.parent), action="kill")
        + rule(name="x2-kill", type="exec", path=str(p_kill), action="kill")
        + rule(name="e2-audit", type="exec", dir=str(p_kill.parent), action="audit")
        + rule(name="hash-kill", type="exec", sha256=digest(h_kill.read_bytes()).hexdigest(),
               search=[str(h_kill.parent)], action="kill")
        + rule(name="e3-audit", type="exec", dir=str(h_kill.parent), action="audit")
        + rule(name="hash-audit", type="exec", sha256=digest(h_audit.read_bytes()).hexdigest(),
               search=[str(h_audit.parent)], action="audit")
        + rule(name="e4-block", type="exec", dir=str(h_audit.parent))  # block + terminate_process (default)
        + rule(name="x5-audit", type="exec", path=str(alone), action="audit"))
    assert sensor.started["warnings"] == []
    for path in (p_audit, p_kill, h_kill, h_audit):
        assert run(path) == KILLED, path
    assert run(alone) == 0
    sensor.wait_for(lambda r: r.get("filename") == str(alone))
    records = sensor.stop()
    assert by_name(records, "exec_denied") == {
        str(p_audit): [("e1-kill", ["killed"], None)], str(p_kill): [("x2-kill", ["killed"], None)],
        str(h_kill): [("hash-kill", ["killed"], None)], str(h_audit): [("e4-block", ["killed"], None)],
        str(alone): [("x5-audit", ["audited"], None)]}


# ---------------------------------------------------------------- global settings vs per-rule actions

def test_global_audit_mode_enforces_nothing_and_reports_the_strictest_rule(start, tmp_path):
    f = protected_file(tmp_path / "d" / "f")
    x = copy_true(tmp_path / "bin" / "x")
    sensor = start('enforcement = "audit"\n'
                   + rule(name="d-kill", type="file", dir=str(f.parent), action="kill")
                   + rule(name="f-audit", type="file", path=str(f), action="audit")
                   + rule(name="x-audit", type="exec", path=str(x), action="audit")
                   + rule(name="bin-kill", type="exec", dir=str(x.parent), action="kill"))
    assert write(f) == 0 and run(x) == 0
    sensor.wait_for(lambda r: r.get("filename") == str(x))
    records = sensor.stop()
    assert f.read_text().startswith("TAMPERED")  # audit mode: reported only
    assert by_name(records, "file_open_denied") == {"f": [("d-kill", ["audited"], ["write"])]}
    assert by_name(records, "exec_denied") == {str(x): [("bin-kill", ["audited"], None)]}


def test_terminate_process_false_block_beats_audit_but_only_kill_kills(start, tmp_path):
    block_wins = copy_true(tmp_path / "b" / "block-wins")
    kill_wins = copy_true(tmp_path / "k" / "kill-wins")
    f = protected_file(tmp_path / "d" / "f")
    sensor = start("terminate_process = false\n"
                   + rule(name="bw-audit", type="exec", path=str(block_wins), action="audit")
                   + rule(name="b-block", type="exec", dir=str(block_wins.parent))
                   + rule(name="kw-block", type="exec", path=str(kill_wins))
                   + rule(name="k-kill", type="exec", dir=str(kill_wins.parent), action="kill")
                   + rule(name="f-audit", type="file", path=str(f), action="audit")
                   + rule(name="d-block", type="file", dir=str(f.parent)))
    assert run(block_wins) == 0  # block is the verdict; this tier cannot refuse and may not kill
    assert run(kill_wins) == KILLED
    assert write(f) == 0
    sensor.wait_for(lambda r: r.get("filename") == "f")
    records = sensor.stop()
    assert by_name(records, "exec_denied") == {str(block_wins): [("b-block", ["audited"], None)],
                                               str(kill_wins): [("k-kill", ["killed"], None)]}
    assert by_name(records, "file_open_denied") == {"f": [("d-block", ["audited"], ["write"])]}


# ---------------------------------------------------------------- rules naming one file by different paths

def merged_usr(tmp_path):
    tool = copy_true(tmp_path / "usr" / "bin" / "tool")
    (tmp_path / "bin").symlink_to("usr/bin")
    return tool, tmp_path / "bin" / "tool"


def test_a_merged_usr_contradiction_is_refused_by_check_config_at_start_and_at_reload(start, tmp_path):
    tool, alias = merged_usr(tmp_path)
    contradiction = (rule(name="usr-kill", type="exec", path=str(tool), action="kill")
                     + rule(name="bin-audit", type="exec", path=str(alias), action="audit"))
    policies = tmp_path / "check"
    policies.mkdir()
    (policies / "50.toml").write_text(contradiction)
    (tmp_path / "empty.conf").write_text("")  # the defaults (a device such as /dev/null is refused as a config)
    proc = subprocess.run([sys.executable, "-m", "endura_sensor", "check-config", "--config", str(tmp_path / "empty.conf"),
                           "--policy-dir", str(policies)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "sensor")))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{policies}/50.toml:6: contradictory rules for exec of path {alias} and exec of path {tool}: "
        f"action 'audit' vs 'kill' at {policies}/50.toml:1; {alias} and {tool} are the same file "
        "(e.g. merged /usr or a hard link); keep one"]
    with pytest.raises(AssertionError, match="contradictory rules for exec of path"):
        start(contradiction)  # refuses to start
    assert run(alias) == 0  # nothing enforced by the refused sensor
    sensor = start(rule(name="usr-kill", type="exec", path=str(tool), action="kill"))
    sensor.write("50-test.toml", contradiction)
    rejected = sensor.wait_for(lambda r: r["type"] == "policy_rejected")
    assert len(rejected["problems"]) == 1 and "are the same file" in rejected["problems"][0]
    assert run(alias) == KILLED  # the last good policy stays
    sensor.stop()


def test_a_hard_link_made_later_gets_the_strictest_verdict_and_a_warning(start, tmp_path):
    watched = copy_true(tmp_path / "watched")
    later = tmp_path / "later"
    sensor = start(rule(name="watched-audit", type="exec", path=str(watched), action="audit")
                   + rule(name="later-kill", type="exec", path=str(later), action="kill"),
                   extra=("--resolve-interval", "0.3"))
    assert run(watched) == 0
    os.link(watched, later)  # now both rules name one inode
    loaded = sensor.wait_for(lambda r: r["type"] == "policy_loaded" and r["reason"] == "files changed", 10)
    assert any("contradictory rules" in w and "are the same file" in w for w in loaded["warnings"])
    assert run(watched) == KILLED  # the strictest, not the first rule in the policy
    sensor.wait_for(lambda r: r.get("rule") == "later-kill")
    records = sensor.stop()
    assert by_name(records, "exec_denied")[str(watched)] == [("watched-audit", ["audited"], None),
                                                            ("later-kill", ["killed"], None)]
    assert "contradictory rules for exec of path" in sensor.stderr
