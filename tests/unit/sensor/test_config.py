import pytest
from endura_sensor import config
from endura_sensor.config import Config, ConfigError, parse

GOOD = '''# Endura sensor configuration
mode = "standalone"
enforcement = "audit"   # never blocks
terminate_process = false
log_dir = "/var/log/endura"
policy_dir = "/etc/endura/policies"
'''


def problems(text):
    with pytest.raises(ConfigError) as info:
        parse(text, "/etc/endura/sensor.conf")
    return info.value.problems


def test_valid_file_gives_values_and_defaults():
    cfg = parse(GOOD, "x.conf")
    assert cfg == Config(mode="standalone", enforcement="audit", terminate_process=False,
                         log_dir="/var/log/endura", policy_dir="/etc/endura/policies", path="x.conf")


def test_empty_file_is_all_defaults():
    cfg = parse("\n# nothing\n", "x")
    assert (cfg.enforcement, cfg.terminate_process, cfg.mode) == ("enforce", True, "standalone")


def test_unknown_key_lists_the_known_keys_with_file_and_line():
    (p,) = problems('mode = "standalone"\n\nenforcment = "audit"\n')
    assert p.startswith("/etc/endura/sensor.conf:3: unknown key 'enforcment'; known keys: ")
    for key in config.KEYS:
        assert key in p


@pytest.mark.parametrize("line, expected", [
    ('enforcement = "block"', "enforcement = 'block' is not one of 'enforce', 'audit'"),
    ('terminate_process = "yes"', "terminate_process must be true or false"),
    ('terminate_process = 1', "terminate_process must be true or false"),
    ('log_dir = "var/log"', "log_dir must be an absolute path"),
    ('log_dir = "/var/log', 'unterminated string'),
    ("log_dir = '/var/log'", "literal strings"),
    ('mode = standalone', "invalid value 'standalone'"),
    ('mode =', "missing value"),
    ('mode = "standalone" extra', "unexpected text after the value"),
    ('policy_dir = ["/a"]', "arrays and inline tables are not supported"),
    ('[sensor]', "tables ([sensor]) are not supported"),
    ('just words', "expected 'key = value'"),
    ('a.b = 1', "invalid key 'a.b'"),
    ('log_dir = "/x\\q"', "unsupported escape"),
    ('team_server_url = "http://x"', "must start with https://"),
])
def test_each_problem_is_reported_with_its_line(line, expected):
    (p,) = problems(f"# header\n{line}\n")
    assert p.startswith("/etc/endura/sensor.conf:2: "), p
    assert expected in p, p


def test_duplicate_key_names_the_first_line():
    (p,) = problems('mode = "standalone"\nmode = "standalone"\n')
    assert p == "/etc/endura/sensor.conf:2: duplicate key 'mode' (first set on line 1)"


def test_all_problems_are_collected():
    found = problems('bogus = 1\nenforcement = "x"\nlog_dir = "rel"\n')
    assert [p.split(":")[1] for p in found] == ["1", "2", "3"]


def test_team_server_mode_needs_an_url():
    (p,) = problems('mode = "team-server"\n')
    assert "needs team_server_url" in p and p.startswith("/etc/endura/sensor.conf:1:")
    cfg = parse('mode = "team-server"\nteam_server_url = "https://ts.example.com"\n', "x")
    assert cfg.team_server_url == "https://ts.example.com"


def test_escapes_and_hash_inside_strings():
    cfg = parse('log_dir = "/var/log/a#b\\"c" # comment\n', "x")
    assert cfg.log_dir == '/var/log/a#b"c'


def test_load_missing_and_present_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.conf")
    assert info.value.problems[0].startswith(f"{tmp_path / 'nope.conf'}: not found")
    path = tmp_path / "sensor.conf"
    path.write_text(GOOD)
    assert config.load(path).enforcement == "audit"
