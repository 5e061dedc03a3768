"""How rules compose (sensor/README.md "How rules combine"): the merge of every rule that resolves to one
inode into the exec/files map values, and the contradictions between rules that name the same file.

The kernel side (the walk that takes the strictest of the file's own verdict and every ancestor's `below`
verdict) is proven with real kills in tests/integration/test_sensor_compose.py; here: what userspace puts
in each slot of each inode's struct endura_file_rule, and what check-config / load_dir reject.
"""
import hashlib
import os
import shutil

import pytest
from endura_sensor import enforce, events, policy
from endura_sensor.policy import Policy, PolicyError, Rule

NONE = (None, None)


def values(rules, extra_exec=()):
    """(map values {map: {path-independent key: value}}, resolved, rule by id) for the rules."""
    ids = {}
    resolved = policy.resolve(Policy(rules=tuple(rules)), extra_exec)
    maps = enforce.file_map_values(resolved, lambda r: ids.setdefault(r, len(ids) + 1))
    return maps, resolved, {i: r for r, i in ids.items()}


def slots(maps, by_id, map_name, path):
    """{"self": [(rule name, action)] per slot, "below": [...]} of the entry for path's inode."""
    value = maps[map_name][events.file_key(str(path))]
    names = {events.RULE_NONE: None, **{n: a for a, n in events.RULE_ACTIONS.items()}}
    own, below = events.unpack_file_rule(value)
    show = lambda verdicts: [(by_id[i].name if i else None, names[a]) for i, a in verdicts]  # noqa: E731
    return {"self": show(own), "below": show(below)}


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "etc" / "app").mkdir(parents=True)
    (tmp_path / "etc" / "app" / "app.conf").write_text("x")
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("true"), tmp_path / "usr" / "bin" / "tool")
    (tmp_path / "bin").symlink_to("usr/bin")  # merged /usr in miniature
    return tmp_path


def file_rule(name, action, access, **where):
    return Rule("file", action, f"p.toml:{name}", name, access=access, **{k: str(v) for k, v in where.items()})


def exec_rule(name, action, **where):
    return Rule("exec", action, f"p.toml:{name}", name, **{k: (str(v) if k != "search" else v)
                                                           for k, v in where.items()})


# ---------------------------------------------------------------- path vs dir: separate slots, never replaced

def test_a_read_rule_on_a_file_does_not_replace_its_directory_write_rule(tree):
    """The issue's case: both stay; the kernel combines the file's `self` with the directory's `below`."""
    d, f = tree / "etc" / "app", tree / "etc" / "app" / "app.conf"
    maps, res, by_id = values([file_rule("dir-write", "block", "write", dir=d),
                               file_rule("own-read", "audit", "read", path=f)])
    assert slots(maps, by_id, "endura_files", f) == {"self": [("own-read", "audit"), NONE], "below": [NONE, NONE]}
    assert slots(maps, by_id, "endura_files", d) == {"self": [NONE, NONE], "below": [NONE, ("dir-write", "block")]}
    assert res.collisions == []


def test_a_path_rule_and_a_dir_rule_on_one_directory_share_its_entry(tree):
    d = tree / "etc" / "app"
    maps, res, by_id = values([file_rule("dir-itself", "kill", "read", path=d),
                               file_rule("below-it", "block", "read-write", dir=d)])
    assert slots(maps, by_id, "endura_files", d) == {"self": [("dir-itself", "kill"), NONE],
                                                     "below": [("below-it", "block"), ("below-it", "block")]}
    assert res.collisions == []  # different scopes: no contradiction


def test_read_and_write_are_separate_slots(tree):
    f = tree / "etc" / "app" / "app.conf"
    os.link(f, tree / "etc" / "app.link")
    maps, res, by_id = values([file_rule("r", "kill", "read", path=f), file_rule("w", "kill", "write",
                                                                               path=tree / "etc" / "app.link")])
    assert slots(maps, by_id, "endura_files", f)["self"] == [("r", "kill"), ("w", "kill")]
    assert len(res.collisions) == 1  # ... but the same file with a different access is a contradiction


# ---------------------------------------------------------------- the strictest per slot: kill > block > audit

@pytest.mark.parametrize("first, second, winner", [
    ("audit", "kill", "b"), ("kill", "audit", "a"), ("audit", "block", "b"), ("block", "kill", "b"),
    ("kill", "block", "a"), ("block", "audit", "a"),
    ("kill", "kill", "a"), ("block", "block", "a"), ("audit", "audit", "a"),  # ties: the first in the policy
])
def test_the_strictest_of_rules_naming_one_inode_wins_in_each_slot(tree, first, second, winner):
    tool = tree / "usr" / "bin" / "tool"
    maps, res, by_id = values([exec_rule("a", first, path=tool), exec_rule("b", second, path=tree / "bin" / "tool")])
    action = {"a": first, "b": second}[winner]
    assert slots(maps, by_id, "endura_exec", tool)["self"] == [(winner, action), NONE]
    assert bool(res.collisions) == (first != second)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_path_and_sha256_rules_on_one_binary_merge_whatever_their_order(tree, order):
    tool = tree / "usr" / "bin" / "tool"
    digest = hashlib.sha256(tool.read_bytes()).hexdigest()
    rules = [exec_rule("by-path", "audit", path=tool),
             exec_rule("by-hash", "kill", sha256=digest, search=(str(tree / "usr" / "bin"),))]
    maps, res, by_id = values([rules[i] for i in order])
    assert slots(maps, by_id, "endura_exec", tool)["self"] == [("by-hash", "kill"), NONE]
    assert res.collisions and "both match the same file" in res.collisions[0]


def test_a_sha256_rule_finding_one_binary_under_two_names_is_one_rule(tree):
    tool = tree / "usr" / "bin" / "tool"
    digest = hashlib.sha256(tool.read_bytes()).hexdigest()
    maps, res, by_id = values([exec_rule("h", "kill", sha256=digest, search=(str(tree / "bin"), str(tree / "usr" / "bin")))])
    assert slots(maps, by_id, "endura_exec", tool)["self"] == [("h", "kill"), NONE]
    assert res.collisions == [] and res.warnings == []


def test_nested_dir_rules_each_keep_their_verdict_for_the_kernel_walk(tree):
    outer, inner = tree / "etc", tree / "etc" / "app"
    maps, res, by_id = values([file_rule("inner", "audit", "write", dir=inner),
                               file_rule("outer", "kill", "write", dir=outer)])
    assert slots(maps, by_id, "endura_files", inner)["below"] == [NONE, ("inner", "audit")]
    assert slots(maps, by_id, "endura_files", outer)["below"] == [NONE, ("outer", "kill")]
    assert res.collisions == []


def test_dir_rules_naming_one_directory_by_two_paths_merge(tree):
    maps, res, by_id = values([exec_rule("usr-bin", "block", dir=tree / "usr" / "bin"),
                               exec_rule("bin", "kill", dir=tree / "bin")])
    assert slots(maps, by_id, "endura_exec", tree / "usr" / "bin")["below"] == [("bin", "kill"), NONE]
    assert len(res.collisions) == 1


def test_a_deny_option_on_a_file_with_a_kill_rule_keeps_the_kill(tree):
    tool = tree / "usr" / "bin" / "tool"
    maps, res, by_id = values([exec_rule("k", "kill", path=tool)], extra_exec=[str(tool)])
    assert slots(maps, by_id, "endura_exec", tool)["self"] == [("k", "kill"), NONE]
    maps, res, by_id = values([exec_rule("a", "audit", path=tool)], extra_exec=[str(tool)])
    assert slots(maps, by_id, "endura_exec", tool)["self"] == [(f"--deny {tool}", "block"), NONE]


# ---------------------------------------------------------------- contradictions between rules naming one file

def write_policy(directory, text):
    directory.mkdir(exist_ok=True)
    (directory / "50.toml").write_text(text)
    return directory / "50.toml"


def test_merged_usr_contradiction_is_an_error_naming_both_paths(tree):
    toml = write_policy(tree / "policies", f'''[[rule]]
type = "exec"
path = "{tree}/usr/bin/tool"
action = "kill"

[[rule]]
type = "exec"
path = "{tree}/bin/tool"
action = "audit"
''')
    with pytest.raises(PolicyError) as info:
        policy.load_dir(tree / "policies")
    assert info.value.problems == [
        f"{toml}:6: contradictory rules for exec of path {tree}/bin/tool and exec of path {tree}/usr/bin/tool: "
        f"action 'audit' vs 'kill' at {toml}:1; {tree}/bin/tool and {tree}/usr/bin/tool are the same file "
        "(e.g. merged /usr or a hard link); keep one"]


def test_hard_linked_files_with_different_access_are_an_error(tree):
    f = tree / "etc" / "app" / "app.conf"
    os.link(f, tree / "etc" / "copy.conf")
    toml = write_policy(tree / "policies", f'''[[rule]]
type = "file"
path = "{f}"
access = "write"

[[rule]]
type = "file"
path = "{tree}/etc/copy.conf"
access = "read"
''')
    with pytest.raises(PolicyError) as info:
        policy.load_dir(tree / "policies")
    (problem,) = info.value.problems
    assert problem.startswith(f"{toml}:6: contradictory rules for open for read of path {tree}/etc/copy.conf and "
                              f"open for write of path {f}: access 'read' vs 'write' at {toml}:1; ")
    assert problem.endswith("are the same file (e.g. merged /usr or a hard link); keep one")


def test_a_hash_and_a_path_on_one_binary_with_different_actions_are_an_error(tree):
    tool = tree / "usr" / "bin" / "tool"
    digest = hashlib.sha256(tool.read_bytes()).hexdigest()
    toml = write_policy(tree / "policies", f'''[[rule]]
type = "exec"
sha256 = "{digest}"
search = ["{tree}/usr/bin"]

[[rule]]
type = "exec"
path = "{tool}"
action = "audit"
''')
    with pytest.raises(PolicyError) as info:
        policy.load_dir(tree / "policies")
    assert info.value.problems == [
        f"{toml}:6: contradictory rules for exec of path {tool} and exec of sha256 {digest[:12]}... ({tool}): "
        f"action 'audit' vs 'block' at {toml}:1; both match the same file {tool}; keep one"]


def test_overlaps_that_are_not_contradictions_load(tree):
    """Same action through two names (portable /bin + /usr/bin lists), a path inside a dir rule, a path
    rule and a dir rule on one directory: all fine."""
    write_policy(tree / "policies", f'''[[rule]]
type = "exec"
path = "{tree}/usr/bin/tool"
action = "kill"
[[rule]]
type = "exec"
path = "{tree}/bin/tool"
action = "kill"
[[rule]]
type = "exec"
dir = "{tree}/usr/bin"
action = "audit"
[[rule]]
type = "file"
dir = "{tree}/etc/app"
[[rule]]
type = "file"
path = "{tree}/etc/app/app.conf"
access = "read"
action = "audit"
[[rule]]
type = "file"
path = "{tree}/etc/app"
access = "read"
''')
    assert len(policy.load_dir(tree / "policies").rules) == 6


def test_a_collision_that_appears_later_is_reported_by_resolve_not_refused(tree):
    """The periodic re-resolve: load_dir accepted the policy; a hard link made later joins two rules."""
    tool = tree / "usr" / "bin" / "tool"
    later = tree / "usr" / "bin" / "later"
    pol = Policy(rules=(exec_rule("audit-tool", "audit", path=tool), exec_rule("kill-later", "kill", path=later)))
    assert policy.resolve(pol).collisions == []
    os.link(tool, later)
    maps, res, by_id = values(pol.rules)
    assert slots(maps, by_id, "endura_exec", tool)["self"] == [("kill-later", "kill"), NONE]  # strictest, not first
    assert len(res.collisions) == 1 and "are the same file" in res.collisions[0]
