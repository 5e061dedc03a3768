"""Hostile or odd configuration files: FIFOs, devices, symlinks, sizes, encodings, huge values; downgrades.

Each case must give a precise one-line `file[:line]: problem; fix` error (and never hang or exhaust
memory); the running sensor's side (keeping the last good policy) is in
tests/integration/test_sensor_policy.py.
"""
import json
import os
import subprocess
import sys
import time

import pytest
from endura_sensor import cli, config, forward, policy, textfile
from endura_sensor.config import ConfigError
from endura_sensor.policy import PolicyError

RULE = '[[rule]]\ntype = "connect"\nport = 9\n'


def load_problems(directory):
    with pytest.raises(PolicyError) as info:
        policy.load_dir(directory)
    return info.value.problems


def check_config(env, *args, timeout=20):
    """`endura-sensor check-config` in a subprocess: a hang is a failure, not a stuck test run."""
    return subprocess.run([sys.executable, "-m", "endura_sensor", "check-config", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def pdir(tmp_path):
    d = tmp_path / "policies"
    d.mkdir()
    (d / "10-good.toml").write_text(RULE)
    return d


# ---------------------------------------------------------------- not regular files

def test_a_fifo_policy_file_is_refused_without_blocking(pdir, tmp_path, sensor_env):
    os.mkfifo(pdir / "20-fifo.toml")
    started = time.monotonic()
    assert load_problems(pdir) == [f"{pdir}/20-fifo.toml: is a FIFO (named pipe), not a regular file; replace it "
                                   "with a regular file"]
    assert time.monotonic() - started < 5
    conf = tmp_path / "sensor.conf"
    conf.write_text("")
    proc = check_config(sensor_env, "--config", conf, "--policy-dir", pdir)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"{pdir}/20-fifo.toml: is a FIFO (named pipe), not a regular file; replace it with a regular file"]


def test_symlinks_to_devices_dangling_loops_and_directories_are_refused(pdir):
    (pdir / "20-zero.toml").symlink_to("/dev/zero")
    (pdir / "30-dangling.toml").symlink_to("nowhere.toml")
    (pdir / "40-loop.toml").symlink_to("40-loop.toml")
    (pdir / "50-dir.toml").mkdir()
    assert load_problems(pdir) == [
        f"{pdir}/20-zero.toml: is a symlink to /dev/zero, which is a character device, not a regular file; point "
        "it at a regular file or replace it with one",
        f"{pdir}/30-dangling.toml: is a dangling symlink (its target nowhere.toml does not exist); remove it or "
        "create the target",
        f"{pdir}/40-loop.toml: is a symlink loop (too many levels of symbolic links); remove it or point it at a "
        "regular file",
        f"{pdir}/50-dir.toml: is a directory, not a regular file; replace it with a regular file",
    ]


def test_a_symlink_to_a_regular_file_is_followed(pdir, tmp_path):
    (tmp_path / "managed.toml").write_text('[[rule]]\ntype = "bpf"\n')
    (pdir / "20-link.toml").symlink_to(tmp_path / "managed.toml")
    assert [r.type for r in policy.load_dir(pdir).rules] == ["connect", "bpf"]


def test_sensor_conf_as_a_device_fifo_or_dangling_symlink(tmp_path, sensor_env):
    zero = tmp_path / "zero.conf"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ConfigError) as info:
        config.load(zero)
    assert info.value.problems == [f"{zero}: is a symlink to /dev/zero, which is a character device, not a regular "
                                   "file; point it at a regular file or replace it with one"]
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    proc = check_config(sensor_env, "--config", fifo)
    assert proc.returncode == 1 and "fifo.conf: is a FIFO (named pipe), not a regular file" in proc.stderr
    dangling = tmp_path / "dangling.conf"
    dangling.symlink_to(tmp_path / "gone.conf")
    with pytest.raises(ConfigError, match="is a dangling symlink"):
        config.load(dangling)
    with pytest.raises(ConfigError, match=r"missing.conf: not found \(the package installs one"):
        config.load(tmp_path / "missing.conf")


def test_a_dangling_default_sensor_conf_is_an_error_not_the_defaults(tmp_path, monkeypatch, capsys):
    link = tmp_path / "sensor.conf"
    link.symlink_to(tmp_path / "gone")
    monkeypatch.setattr(config, "DEFAULT_PATH", link)
    assert cli.main(["run", "--config", str(link)]) == 1
    assert "is a dangling symlink" in capsys.readouterr().err


def test_the_collector_token_file_is_read_like_the_others(tmp_path, sensor_env):
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    with pytest.raises(textfile.FileProblem, match="is a FIFO"):
        forward.read_token(str(fifo))
    dest = forward.CollectorDestination("http://127.0.0.1:9/x", token_file=str(fifo))
    with pytest.raises(OSError, match="is a FIFO"):
        dest.token()
    big = tmp_path / "big-token"
    big.write_text("x" * (forward.MAX_TOKEN_BYTES + 1))
    with pytest.raises(textfile.FileProblem, match="larger than 64 KiB"):
        forward.read_token(str(big))
    conf = tmp_path / "sensor.conf"
    conf.write_text(f'collector_url = "http://127.0.0.1:9/x"\ncollector_token_file = "{fifo}"\n')
    proc = check_config(sensor_env, "--config", conf)
    assert proc.returncode == 0 and f"collector_token_file {fifo}: cannot read: is a FIFO" in proc.stderr


# ---------------------------------------------------------------- sizes

def test_sizes_are_bounded_and_never_read_past_the_limit(pdir, tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(textfile.FileProblem) as info:
        textfile.read_bytes(path, 10)
    assert str(info.value) == f"{path}: larger than 10 bytes"
    assert textfile.read_bytes(path, 11) == b"x" * 11
    (pdir / "20-big.toml").write_bytes(b"#" * (policy.MAX_FILE_BYTES + 1))
    assert load_problems(pdir) == [f"{pdir}/20-big.toml: larger than 4 MiB; policy files are at most 4 MiB each "
                                   "and 8 MiB together (16384 rules fit in about 3 MiB); split it, or merge rules "
                                   "into directory rules or CIDRs"]
    (pdir / "20-big.toml").unlink()
    monkeypatch.setattr(policy, "MAX_TOTAL_BYTES", 100)
    (pdir / "20-more.toml").write_text("#" * 90 + "\n")
    assert load_problems(pdir)[0].startswith(f"{pdir}: the policy files are larger than 100 bytes together (at "
                                             "20-more.toml); ")


def test_a_file_of_garbage_stops_after_100_problems_quickly(pdir):
    (pdir / "20-garbage.toml").write_text("x\n" * 2_000_000)
    started = time.monotonic()
    problems = load_problems(pdir)
    assert time.monotonic() - started < 10
    assert len(problems) == 101 and problems[0] == f"{pdir}/20-garbage.toml:1: expected 'key = value' or [[rule]]"
    assert problems[-1] == (f"{pdir}/20-garbage.toml:101: stopped reading here after 100 problems; fix the ones "
                            "above and run 'endura-sensor check-config' again")


def test_long_lines_huge_arrays_and_many_keys(pdir):
    long_value = "a" * (config.MAX_LINE_CHARS + 1)
    (pdir / "20-odd.toml").write_text(
        f'x = "{long_value}"\n'
        '[[rule]]\ntype = "exec"\nsha256 = "' + "ab" * 32 + '"\nsearch = [' + ", ".join(f'"/d{i}"' for i in range(65))
        + "]\n[[rule]]\n" + "".join(f"k{i} = 1\n" for i in range(40)))
    assert load_problems(pdir) == [
        f"{pdir}/20-odd.toml:1: line longer than 65536 characters (65543); split it (every value fits in far less)",
        f"{pdir}/20-odd.toml:5: search: more than 64 items in one array; split the rule",
        f"{pdir}/20-odd.toml:39: more than 32 keys in one rule; a rule has name, type, action and the keys of its type",
    ]


def test_huge_integers_say_what_to_write(tmp_path):
    digits = "9" * 5000
    with pytest.raises(PolicyError) as info:
        policy.parse([("/p/a.toml", f'[[rule]]\ntype = "connect"\nport = {digits}\n'),
                      ("/p/b.toml", f'[[rule]]\ntype = "exec"\nsha256 = "{"ab" * 32}"\nsearch = [{digits}]\n')])
    assert info.value.problems == [
        "/p/a.toml:3: port: integer of 5000 digits is far out of range; port must be an integer from 1 to 65535",
        "/p/b.toml:4: search: integer of 5000 digits is far out of range; search takes no such integer",
    ]
    with pytest.raises(ConfigError) as info:
        config.parse(f"log_keep = {digits}\ncollector_batch = -{digits}\nfail_closed = {digits}\n", "/c")
    assert info.value.problems == [
        "/c:1: log_keep: integer of 5000 digits is far out of range; log_keep must be an integer from 1 to 100",
        "/c:2: collector_batch: integer of 5000 digits is far out of range; collector_batch must be an integer "
        "from 1 to 10000",
        "/c:3: fail_closed: integer of 5000 digits is far out of range; fail_closed must be true or false",
    ]
    # 20 digits still parse (and get the key's own range check)
    with pytest.raises(ConfigError, match=r"log_keep must be from 1 to 100, not 99999999999999999999"):
        config.parse("log_keep = 99999999999999999999\n", "/c")


# ---------------------------------------------------------------- encodings and line endings

def test_bom_and_crlf_are_accepted(pdir, tmp_path):
    (pdir / "20-bom.toml").write_bytes(b"\xef\xbb\xbf" + b'[[rule]]\r\ntype = "bpf"\r\naction = "audit"  # x\r\n')
    pol = policy.load_dir(pdir)
    assert [(r.type, r.action, r.source) for r in pol.rules][1] == ("bpf", "audit", f"{pdir}/20-bom.toml:1")
    conf = tmp_path / "sensor.conf"
    conf.write_bytes(b'\xef\xbb\xbfenforcement = "audit"\r\nlog_keep = 3\r\n')
    cfg = config.load(conf)
    assert (cfg.enforcement, cfg.log_keep) == ("audit", 3)


def test_nul_bytes_invalid_utf8_and_lone_carriage_returns(pdir, tmp_path):
    (pdir / "20-nul.toml").write_bytes(b"# ok\n# ok\nab\0c = 1\n")
    (pdir / "30-latin1.toml").write_bytes(b'[[rule]]\ntype = "exec"\npath = "/usr/bin/caf\xe9"\n')
    (pdir / "40-mac.toml").write_bytes(b'[[rule]]\rtype = "bpf"\r')
    assert load_problems(pdir) == [
        f"{pdir}/20-nul.toml:3: NUL byte at column 3: this is not a text file; write the file as UTF-8 text",
        f"{pdir}/30-latin1.toml:3: not valid UTF-8 (byte 0xe9 at column 21); save the file as UTF-8",
        f"{pdir}/40-mac.toml:1: carriage return without a line feed (old Mac line endings); save the file with LF "
        "or CRLF line endings",
    ]
    conf = tmp_path / "sensor.conf"
    conf.write_bytes(b'log_dir = "/var/log/\xff"\n')
    with pytest.raises(ConfigError) as info:
        config.load(conf)
    assert info.value.problems == [f"{conf}:1: not valid UTF-8 (byte 0xff at column 21); save the file as UTF-8"]


# ---------------------------------------------------------------- what the running sensor watches

def test_dir_signature_notices_entries_that_cannot_be_read(pdir):
    sig = policy.dir_signature(pdir)
    (pdir / "20-dangling.toml").symlink_to("nowhere")
    dangling = policy.dir_signature(pdir)
    assert dangling != sig
    (pdir / "20-dangling.toml").unlink()
    (pdir / "20-dangling.toml").symlink_to("20-dangling.toml")  # now a loop, same name
    assert policy.dir_signature(pdir) not in (sig, dangling)
    (pdir / "20-dangling.toml").unlink()
    assert policy.dir_signature(pdir) == sig
    os.mkfifo(pdir / "30-fifo.toml")
    assert policy.dir_signature(pdir) != sig


# ---------------------------------------------------------------- downgrades

@pytest.mark.parametrize("conf, text, expected", [
    ("", 'enforcement = "audit"\n', [("enforcement", "audit", "enforce")]),
    ("", "terminate_process = false\n", [("terminate_process", False, True)]),
    ("", 'enforcement = "audit"\nterminate_process = false\n',
     [("enforcement", "audit", "enforce"), ("terminate_process", False, True)]),
    ('enforcement = "audit"\n', 'enforcement = "audit"\n', []),  # no weaker than sensor.conf
    ("terminate_process = false\n", "terminate_process = false\n", []),
    ('enforcement = "audit"\n', 'enforcement = "enforce"\n', []),  # stricter: fine
    ("", 'enforcement = "enforce"\nterminate_process = true\n', []),
])
def test_downgrades_are_settings_below_sensor_conf(conf, text, expected):
    pol = policy.parse([("/p/a.toml", text + RULE)])
    found = policy.downgrades(pol, config.parse(conf, "/etc/endura/sensor.conf"))
    assert [(d.setting, d.value, d.sensor_conf) for d in found] == expected
    assert all(d.source.startswith("/p/a.toml:") for d in found)


def test_check_config_warns_about_a_downgrade_and_refuses_it_when_forbidden(pdir, tmp_path, sensor_env):
    (pdir / "00-mode.toml").write_text('# dropped in by someone\nenforcement = "audit"\n')
    conf = tmp_path / "sensor.conf"
    conf.write_text('enforcement = "enforce"\n')
    proc = check_config(sensor_env, "--config", conf, "--policy-dir", pdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f'warning: {pdir}/00-mode.toml:2: enforcement = "audit" overrides enforcement = "enforce" of {conf}: no '
        f"rule blocks or kills any more, every rule only reports; to forbid this, set policy_may_downgrade = false "
        f"in {conf}"]
    conf.write_text('enforcement = "enforce"\npolicy_may_downgrade = false\n')
    proc = check_config(sensor_env, "--config", conf, "--policy-dir", pdir)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f'{pdir}/00-mode.toml:2: enforcement = "audit" would override enforcement = "enforce" of {conf}, and '
        f"policy_may_downgrade = false there forbids it; remove the line (or change enforcement in {conf})"]
    (pdir / "00-mode.toml").write_text("terminate_process = false\n")
    proc = check_config(sensor_env, "--config", conf, "--policy-dir", pdir)
    assert proc.returncode == 1 and "00-mode.toml:1: terminate_process = false would override" in proc.stderr
    (pdir / "00-mode.toml").write_text('enforcement = "enforce"\n')  # the same as sensor.conf: fine
    proc = check_config(sensor_env, "--config", conf, "--policy-dir", pdir)
    assert proc.returncode == 0 and proc.stderr == ""


def test_status_shows_downgrades_and_a_rejected_reload(tmp_path, capsys):
    status = {"pid": os.getpid(), "tier": "tracepoint", "programs": ["endura_tp_exec"], "enforcement": "audit",
              "terminate_process": True, "started": "t0", "policy_dir": "/p", "policy_files": ["a.toml"],
              "rules": 1, "events": {}, "events_dropped": 0, "forwarding": {},
              "last_reload": {"time": "t1", "result": "rejected", "reason": "policy files changed",
                              "problems": ["/p/b.toml: is a dangling symlink (its target x does not exist); remove "
                                           "it or create the target"]},
              "downgrades": [{"setting": "enforcement", "value": "audit", "source": "/p/a.toml:1",
                              "sensor_conf": "enforce", "sensor_conf_path": "/etc/endura/sensor.conf"}]}
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert cli.main(["status", "--config", str(tmp_path / "none.conf"), "--log-dir", str(tmp_path)]) == 1
    conf = tmp_path / "sensor.conf"
    conf.write_text("")
    assert cli.main(["status", "--config", str(conf), "--log-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("last reload: rejected at t1 (policy files changed), the last good policy is kept:\n"
            "             /p/b.toml: is a dangling symlink") in out
    assert 'downgraded:  enforcement = "audit" at /p/a.toml:1 (sensor.conf: "enforce")' in out


def test_dev_null_reads_as_an_empty_file_and_other_devices_are_refused():
    from endura_sensor import textfile

    assert textfile.read_text("/dev/null", 1024) == ""  # `--config /dev/null`: the defaults
    with pytest.raises(textfile.FileProblem, match="is a character device, not a regular file"):
        textfile.read_text("/dev/zero", 1024)
