"""The policy-file parser and resolver (stdlib only; runs on Python 3.9-3.13 under tox)."""
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from endura_sensor import policy
from endura_sensor.policy import Policy, PolicyError, Rule, parse

EXAMPLE = Path(__file__).resolve().parents[3] / "sensor" / "packaging" / "policies" / "example.toml"
HASH = "ab" * 32


def problems(*texts):
    """Parse texts as files a.toml, b.toml, ... and return the problems."""
    with pytest.raises(PolicyError) as info:
        parse([(f"/p/{chr(97 + i)}.toml", t) for i, t in enumerate(texts)])
    return info.value.problems


def rule(body):
    return "[[rule]]\n" + body


def test_shipped_example_parses_with_every_rule_type():
    pol = parse([(str(EXAMPLE), EXAMPLE.read_text())])
    assert pol.enforcement == "enforce" and pol.terminate_process is True
    assert set(pol.summary()) == {"exec", "file", "connect", "module_load"}
    names = [r.name for r in pol.rules]
    assert "no-netcat" in names and len(names) == len(set(names))
    nc = pol.rules[0]
    assert (nc.type, nc.path, nc.action, nc.source) == ("exec", "/usr/bin/nc.openbsd", "kill", f"{EXAMPLE}:12")


def test_values_defaults_and_normalization():
    pol = parse([("a.toml", '''# comment
enforcement = "audit"   # trailing comment
[[rule]]
type = "exec"
dir = "/opt/bad"
[[rule]]  # comment after a header
type = "file"
path = "/etc/passwd"
access = "read-write"
action = "kill"
[[rule]]
name = "v6"
type = "connect"
address = "2001:DB8::/32"
port = 443
[[rule]]
type = "exec"
sha256 = "%s"
search = ["/usr/bin", "/opt" ]
[[rule]]
type = "bpf"
''' % HASH.upper())])
    assert pol.enforcement == "audit" and pol.terminate_process is None
    ex, f, net, sha, bpf = pol.rules
    assert (ex.dir, ex.action, ex.name) == ("/opt/bad", "block", "a.toml:3")
    assert (f.path, f.access, f.action) == ("/etc/passwd", "read-write", "kill")
    assert (net.network, net.port, net.name) == ("2001:db8::/32", 443, "v6")
    assert (sha.sha256, sha.search) == (HASH, ("/usr/bin", "/opt"))
    assert bpf.type == "bpf" and bpf.describe() == "bpf() by other processes"
    assert parse([("a", rule('type = "exec"\nsha256 = "%s"\n' % HASH))]).rules[0].search == policy.DEFAULT_SEARCH
    assert parse([("a", rule('type = "file"\npath = "/x"\n'))]).rules[0].access == "write"


@pytest.mark.parametrize("body, expected", [
    ('type = "exec"\npath = "usr/bin/nc"\n', "/p/a.toml:3: path 'usr/bin/nc' must be an absolute path (start with /)"),
    ('type = "exec"\npath = "/usr/../bin/nc"\n', "/p/a.toml:3: path '/usr/../bin/nc' must not contain '.' or '..' components"),
    ('type = "exec"\ndir = "/opt/"\n', "/p/a.toml:3: dir '/opt/' has an empty component or trailing '/'; write '/opt'"),
    ('type = "exec"\ndir = "/"\n', '/p/a.toml:3: dir = "/" would deny every program; name a narrower directory'),
    ('type = "exec"\nsha256 = "abc"\n', "/p/a.toml:3: sha256 'abc' is not 64 hexadecimal digits"),
    ('type = "exec"\nsha256 = "%s"\nsearch = []\n' % HASH, "/p/a.toml:4: search must be a non-empty array"),
    ('type = "exec"\npath = "/a"\nsearch = ["/b"]\n', "/p/a.toml:4: search only applies to sha256 rules"),
    ('type = "exec"\npath = "/a"\ndir = "/b"\n', "/p/a.toml:1: a exec rule needs exactly one of path, dir or sha256 (got path, dir)"),
    ('type = "exec"\n', "/p/a.toml:1: a exec rule needs exactly one of path, dir or sha256"),
    ('type = "file"\nsha256 = "%s"\n' % HASH, "/p/a.toml:3: unknown key 'sha256' in a file rule; allowed: name, type, action, path, dir, access"),
    ('type = "file"\npath = "/etc/x"\naccess = "append"\n', "/p/a.toml:4: access = 'append' is not one of 'write', 'read-write', 'read'"),
    ('type = "connect"\naddress = "10.0.0.1/8"\n', "/p/a.toml:3: address '10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?"),
    ('type = "connect"\naddress = "10.0.0.300"\n', "/p/a.toml:3: address '10.0.0.300' is not an IPv4/IPv6 address or CIDR"),
    ('type = "connect"\naddress = "10.0.0.0/33"\n', "/p/a.toml:3: address '10.0.0.0/33' is not an IPv4/IPv6 address or CIDR"),
    ('type = "connect"\nport = 65536\n', "/p/a.toml:3: port must be an integer from 1 to 65535, not 65536"),
    ('type = "connect"\nport = "22"\n', "/p/a.toml:3: port must be an integer from 1 to 65535, not '22'"),
    ('type = "connect"\n', "/p/a.toml:1: a connect rule needs address (IP or CIDR), port, or both"),
    ('type = "connect"\nport = 22\nhost = "x"\n', "/p/a.toml:4: unknown key 'host' in a connect rule; allowed: name, type, action, address, port"),
    ('type = "module_load"\naction = "deny"\n', "/p/a.toml:3: action = 'deny' is not one of 'block', 'kill', 'audit'"),
    ('type = "process"\n', "/p/a.toml:2: type = 'process' is not one of 'exec', 'file', 'connect', 'module_load', 'bpf'"),
    ('path = "/x"\n', "/p/a.toml:1: rule has no type; add type = one of 'exec', 'file', 'connect', 'module_load', 'bpf'"),
    ('type = "bpf"\nname = "has space"\n', "/p/a.toml:3: name 'has space' must be 1-64 letters"),
    ('type = "bpf"\ntype = "bpf"\n', "/p/a.toml:3: duplicate key 'type' in this rule (first set on line 2)"),
    ('type = "exec"\npath = "/x\n', "/p/a.toml:3: path: unterminated string"),
    ('type = "exec"\npath = \'/x\'\n', "/p/a.toml:3: path: literal strings ('...') are not supported"),
    ('type = "exec"\nsha256 = "%s"\nsearch = ["/a",\n' % HASH, "/p/a.toml:4: search: arrays hold \"strings\" or integers and must close on the same line with ]"),
])
def test_rule_errors_name_file_line_and_problem(body, expected):
    (p,) = problems(rule(body))
    assert p.startswith(expected), p


@pytest.mark.parametrize("text, expected", [
    ('enforcement = "block"\n', "/p/a.toml:1: enforcement = 'block' is not one of 'enforce', 'audit'"),
    ('terminate_process = 1\n', "/p/a.toml:1: terminate_process must be true or false, not 1"),
    ('path = "/x"\n', "/p/a.toml:1: unknown key 'path' (rule keys go after a [[rule]] header); top-level keys: "),
    ('[rule]\ntype = "bpf"\n', "/p/a.toml:1: only [[rule]] headers are supported, not '[rule]'"),
    ('[[rules]]\n', "/p/a.toml:1: unknown table [[rules]]; rules are [[rule]]"),
    ('just words\n', "/p/a.toml:1: expected 'key = value' or [[rule]]"),
    ('enforcement = "audit"\nenforcement = "audit"\n', "/p/a.toml:2: duplicate key 'enforcement' (first set at /p/a.toml:1)"),
])
def test_file_level_errors(text, expected):
    assert problems(text)[0].startswith(expected)


def test_every_problem_in_every_file_is_listed_in_order():
    ps = problems(rule('type = "exec"\npath = "x"\n') + rule('type = "connect"\nport = 0\n'),
                  rule('type = "nope"\n'))
    assert [p.split(": ")[0] for p in ps] == ["/p/a.toml:3", "/p/a.toml:6", "/p/b.toml:2"]


def test_duplicate_and_contradictory_rules_across_files():
    a = rule('type = "exec"\npath = "/usr/bin/nc"\naction = "kill"\n') + rule('type = "connect"\naddress = "10.0.0.0/8"\n')
    b = (rule('type = "exec"\npath = "/usr/bin/nc"\naction = "kill"\n')
         + rule('type = "exec"\npath = "/usr/bin/nc"\naction = "audit"\n')
         + rule('type = "connect"\naddress = "10.0.0.0/8"\naction = "audit"\n')
         + rule('type = "connect"\naddress = "10.0.0.0/8"\nport = 22\n'))  # another match: fine
    ps = problems(a, b)
    assert ps == [
        "/p/b.toml:1: duplicate rule: exec of path /usr/bin/nc is already denied by /p/a.toml:1",
        "/p/b.toml:5: contradictory rules for exec of path /usr/bin/nc: action 'audit' vs 'kill' at /p/a.toml:1; keep one",
        "/p/b.toml:9: contradictory rules for connect to 10.0.0.0/8: action 'audit' vs 'block' at /p/a.toml:5; keep one",
    ]
    (p,) = problems(rule('type = "file"\npath = "/etc/x"\n') + rule('type = "file"\npath = "/etc/x"\naccess = "read"\n'))
    assert "contradictory rules for open for read of path /etc/x: access 'read' vs 'write'" in p
    (p,) = problems(rule('type = "bpf"\n'), rule('type = "bpf"\n'))
    assert p == "/p/b.toml:1: duplicate rule: bpf() by other processes is already denied by /p/a.toml:1"


def test_duplicate_names_and_contradictory_settings_across_files():
    ps = problems('enforcement = "enforce"\n' + rule('name = "x"\ntype = "bpf"\n'),
                  'enforcement = "audit"\nterminate_process = false\n' + rule('name = "x"\ntype = "module_load"\n'))
    assert ps == [
        '/p/b.toml:1: enforcement = "audit" contradicts enforcement = "enforce" at /p/a.toml:1; set it in one file',
        "/p/b.toml:3: duplicate rule name 'x' (first used at /p/a.toml:2)",
    ]


def test_100k_rules_get_a_precise_error_quickly():
    text = "".join(rule(f'type = "exec"\npath = "/x/{i}"\n') for i in range(100_000))
    start = time.monotonic()
    ps = problems(text)
    assert time.monotonic() - start < 5
    assert ps == [f"/p/a.toml:{3 * policy.MAX_RULES + 1}: too many rules: more than {policy.MAX_RULES} in this file "
                  f"(the kernel maps hold {policy.MAX_RULES}); merge rules into a directory rule or CIDR"]


def test_rule_limit_counts_all_files():
    one = "".join(rule(f'type = "connect"\nport = {i}\n') for i in range(1, 4))
    two = "".join(rule(f'type = "connect"\nport = {i}\n') for i in range(4, 7))
    with pytest.raises(PolicyError) as info:
        parse([("a", one), ("b", two)], max_rules=4)
    assert info.value.problems == ["b:4: too many rules: more than 4 in this file and the files before it (3) "
                                   "(the kernel maps hold 4); merge rules into a directory rule or CIDR"]


def test_load_dir_reads_toml_files_in_name_order(tmp_path):
    (tmp_path / "20-b.toml").write_text(rule('type = "bpf"\n'))
    (tmp_path / "10-a.toml").write_text(rule('type = "module_load"\n'))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.toml").write_text("ignored = 1")
    pol = policy.load_dir(tmp_path)
    assert [r.type for r in pol.rules] == ["module_load", "bpf"]
    assert [Path(f).name for f in pol.files] == ["10-a.toml", "20-b.toml"]


def test_load_dir_refuses_missing_empty_and_ruleless(tmp_path):
    with pytest.raises(PolicyError, match="policy directory not found"):
        policy.load_dir(tmp_path / "nope")
    with pytest.raises(PolicyError, match=r"no policy files \(\*\.toml\)"):
        policy.load_dir(tmp_path)
    (tmp_path / "a.toml").write_text('enforcement = "audit"\n')
    with pytest.raises(PolicyError, match=r"contain no \[\[rule\]\]; nothing to enforce"):
        policy.load_dir(tmp_path)
    assert policy.load_dir(tmp_path, require_rules=False) == Policy(
        enforcement="audit", files=(str(tmp_path / "a.toml"),), sources=(("enforcement", f"{tmp_path}/a.toml:1"),))
    (tmp_path / "b.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError) as info:
        policy.load_dir(tmp_path)
    assert info.value.problems == [f"{tmp_path}/b.toml:1: not valid UTF-8 (byte 0xff at column 1); save the file as UTF-8"]


def test_dir_signature_changes_on_edit_add_remove(tmp_path):
    (tmp_path / "a.toml").write_text("x")
    sig = policy.dir_signature(tmp_path)
    assert policy.dir_signature(tmp_path) == sig
    (tmp_path / "a.toml").write_text("xy")
    sig2 = policy.dir_signature(tmp_path)
    assert sig2 != sig
    (tmp_path / "b.toml").write_text("x")
    assert policy.dir_signature(tmp_path) != sig2
    assert policy.dir_signature(tmp_path / "missing") == ()


def test_resolve_paths_dirs_hashes_and_warnings(tmp_path):
    exe = tmp_path / "bin" / "tool"
    exe.parent.mkdir()
    shutil.copy(shutil.which("true"), exe)
    digest = hashlib.sha256(exe.read_bytes()).hexdigest()
    (tmp_path / "data").write_text("not executable")
    os.chmod(tmp_path / "data", 0o644)
    pol = Policy(rules=(
        Rule("exec", "kill", "a:1", "by-path", path=str(exe)),
        Rule("exec", "block", "a:2", "by-dir", dir=str(tmp_path / "bin")),
        Rule("exec", "block", "a:3", "by-hash", sha256=digest, search=(str(tmp_path / "bin"),)),
        Rule("exec", "block", "a:4", "missing", path=str(tmp_path / "nodir" / "nope")),
        Rule("exec", "block", "a:5", "unseen-hash", sha256=HASH, search=(str(tmp_path),)),
        Rule("file", "block", "a:6", "f", path=str(tmp_path / "data"), access="write"),
        Rule("exec", "block", "a:7", "dir-is-file", dir=str(tmp_path / "data")),
        Rule("connect", "block", "a:8", "c", port=22),
        Rule("module_load", "audit", "a:9", "m"),
    ))
    res = policy.resolve(pol, extra_exec=[str(tmp_path / "data")])
    st = os.stat(exe)
    key = (policy.kernel_dev(st.st_dev), st.st_ino)
    # the path rule and the hash rule name the same file: both stay, the strictest (kill) is its verdict
    assert res.exec_files[key].scope_rules("self") == [pol.rules[0], pol.rules[2]]
    assert res.exec_files[key].verdict("self", "exec") == pol.rules[0]
    assert res.collisions == [f"a:3: contradictory rules for exec of sha256 {digest[:12]}... ({exe}) and exec of "
                              f"path {exe}: action 'block' vs 'kill' at a:1; both match the same file {exe}; keep one"]
    dst = os.stat(tmp_path / "bin")
    assert res.exec_files[(policy.kernel_dev(dst.st_dev), dst.st_ino)].verdict("below", "exec") == pol.rules[1]
    assert res.exec_files[(policy.kernel_dev(dst.st_dev), dst.st_ino)].verdict("self", "exec") is None
    fst = os.stat(tmp_path / "data")
    assert res.protected_files[(policy.kernel_dev(fst.st_dev), fst.st_ino)].verdict("self", "write").name == "f"
    assert res.exec_files[(policy.kernel_dev(fst.st_dev), fst.st_ino)].verdict("self", "exec").source == "--deny"
    assert [r.name for r in res.networks] == ["c"] and res.tamper["module_load"].name == "m"
    assert len(res.warnings) == 3
    assert res.warnings[0].startswith(f"a:4: {tmp_path}/nodir: No such file or directory; rule 'missing' is inactive "
                                      "until the directory exists")
    assert res.warnings[1] == f"a:7: dir {tmp_path}/data is not a directory; rule 'dir-is-file' is inactive"
    assert res.warnings[2].startswith(f"a:5: no executable with sha256 {HASH[:12]}... in {tmp_path}")


def test_resolve_finds_a_copy_by_hash_only_in_its_search_dirs(tmp_path):
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
        shutil.copy(shutil.which("true"), tmp_path / d / "copy")
    digest = hashlib.sha256((tmp_path / "in" / "copy").read_bytes()).hexdigest()
    res = policy.resolve(Policy(rules=(Rule("exec", "block", "a:1", "h", sha256=digest, search=(str(tmp_path / "in"),)),)))
    assert list(res.exec_files) == [(policy.kernel_dev(os.stat(tmp_path).st_dev), os.stat(tmp_path / "in" / "copy").st_ino)]


# ---------------------------------------------------------------- names, interpreters, generations, singletons

def test_a_path_rule_holds_its_name_whether_the_file_exists_or_not(tmp_path):
    (tmp_path / "etc").mkdir()
    existing = tmp_path / "etc" / "sudoers"
    existing.write_text("root ALL=(ALL) ALL\n")
    pol = Policy(rules=(
        Rule("file", "block", "a:1", "sudoers", path=str(existing), access="write"),
        Rule("file", "kill", "a:2", "rc-local", path=str(tmp_path / "etc" / "rc.local"), access="write"),
        Rule("exec", "block", "a:3", "later", path=str(tmp_path / "etc" / "tool")),
        Rule("file", "block", "a:4", "long", path=str(tmp_path / "etc" / ("n" * 64)), access="write"),
        Rule("file", "block", "a:5", "dir", dir=str(tmp_path / "etc"), access="write"),
    ))
    res = policy.resolve(pol)
    etc = os.stat(tmp_path / "etc")
    dir_key = (policy.kernel_dev(etc.st_dev), etc.st_ino)
    assert {k[2]: e.verdict("self", "write").name for k, e in res.protected_names.items()} == {
        b"sudoers": "sudoers", b"rc.local": "rc-local"}  # 64 bytes: longer than a names-map key holds
    assert all(k[:2] == dir_key for k in res.protected_names)
    assert {k[2]: e.verdict("self", "exec").name for k, e in res.exec_names.items()} == {b"tool": "later"}
    st = os.stat(existing)
    assert res.protected_files[(policy.kernel_dev(st.st_dev), st.st_ino)].verdict("self", "write").name == "sudoers"
    # the missing files are held by name, silently; the one too long for a name is inactive, said so
    assert len(res.warnings) == 1 and "'long' is inactive until it exists" in res.warnings[0]


def test_a_name_is_the_real_one_behind_symlinked_directories(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    res = policy.resolve(Policy(rules=(Rule("file", "block", "a:1", "f", path=str(tmp_path / "link" / "x"),
                                            access="write"),)))
    real = os.stat(tmp_path / "real")
    assert list(res.protected_names) == [(policy.kernel_dev(real.st_dev), real.st_ino, b"x")]


def test_interpreters_are_the_defaults_that_exist_plus_interpreter_rules(tmp_path):
    custom = tmp_path / "python9"
    custom.write_text("")
    pol = policy.parse([("a.toml", f'[[rule]]\ntype = "interpreter"\npath = "{custom}"\n')])
    assert pol.rules[0].match == ("interpreter", str(custom)) and pol.rules[0].describe() == f"interpreter {custom}"
    res = policy.resolve(pol)
    st = os.stat(custom)
    assert res.interpreters[(policy.kernel_dev(st.st_dev), st.st_ino)] == str(custom)
    sh = os.stat("/bin/sh")
    assert (policy.kernel_dev(sh.st_dev), sh.st_ino) in res.interpreters  # /bin/sh -> dash: the real file


def test_singleton_rule_types_parse_once_each():
    pol = policy.parse([("a.toml", '[[rule]]\ntype = "fileless_exec"\naction = "kill"\n'
                                   '[[rule]]\ntype = "io_uring"\n[[rule]]\ntype = "sensor"\n')])
    assert [r.type for r in pol.rules] == ["fileless_exec", "io_uring", "sensor"]
    assert set(policy.resolve(pol).tamper) == {"fileless_exec", "io_uring", "sensor"}
    with pytest.raises(policy.PolicyError) as info:
        policy.parse([("a.toml", '[[rule]]\ntype = "io_uring"\n[[rule]]\ntype = "io_uring"\n')])
    assert "duplicate rule" in info.value.problems[0]
    with pytest.raises(policy.PolicyError) as info:
        policy.parse([("a.toml", '[[rule]]\ntype = "interpreter"\n')])
    assert info.value.problems == ["a.toml:1: an interpreter rule needs path (the interpreter's executable)"]


def test_generations_are_read_where_the_filesystem_tells_and_never_from_a_fifo(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert policy.generation_of(str(fifo), os.stat(fifo)) == 0  # not opened: it would block
    res = policy.resolve(Policy(rules=(Rule("file", "block", "a:1", "f", path=str(f), access="write"),
                                       Rule("file", "block", "a:2", "r", path=str(fifo), access="read"))))
    st = os.stat(f)
    # ext4 (this machine's /tmp) has i_generation; 0 means "not checked" where a filesystem has none
    assert set(res.generations) == {(policy.kernel_dev(st.st_dev), st.st_ino)}  # read-protected files: never opened
