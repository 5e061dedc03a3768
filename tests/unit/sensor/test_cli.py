import subprocess
import sys

import endura_sensor
from endura_sensor import cli


def run_cli(env, *args):
    return subprocess.run([sys.executable, "-m", "endura_sensor", *args], env=env, capture_output=True, text=True)


def test_version(sensor_env):
    proc = run_cli(sensor_env, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"endura-sensor {endura_sensor.__version__}"


def test_no_command_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    assert "a command is required" in capsys.readouterr().err


def test_check_config_ok_and_errors(tmp_path, sensor_env):
    good = tmp_path / "good.conf"
    good.write_text('enforcement = "audit"\n')
    proc = run_cli(sensor_env, "check-config", "--config", str(good))
    assert proc.returncode == 0 and "enforcement audit" in proc.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text('mode = "standalone"\nfoo = 1\nterminate_process = maybe\n')
    proc = run_cli(sensor_env, "check-config", "--config", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{bad}:2: unknown key 'foo'; known keys: bpf_pin_dir, collector_batch, collector_flush_ms, "
        "collector_timeout_ms, collector_token_file, collector_url, enforcement, fail_closed, flood_burst, "
        "flood_quiet_s, flood_summary_max_s, forward_queue_max, "
        "log_dir, log_keep, log_max_bytes, mode, policy_dir, policy_may_downgrade, syslog, syslog_facility, team_server_url, "
        "terminate_process",
        f"{bad}:3: terminate_process: invalid value 'maybe' (expected a \"string\", true/false or an integer)",
    ]
    proc = run_cli(sensor_env, "check-config", "--config", str(tmp_path / "missing.conf"))
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_run_with_a_bad_config_fails_before_loading_anything(tmp_path, capsys):
    bad = tmp_path / "bad.conf"
    bad.write_text("enforcement = 1\n")
    assert cli.main(["run", "--config", str(bad)]) == 1
    assert f"{bad}:1: enforcement must be a string" in capsys.readouterr().err


def test_run_with_missing_objects_says_how_to_build(tmp_path, capsys):
    cfg = tmp_path / "c.conf"
    cfg.write_text(f'log_dir = "{tmp_path}/log"\n')
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "a.toml").write_text('[[rule]]\ntype = "exec"\npath = "/bin/true"\n')
    assert cli.main(["run", "--config", str(cfg), "--tier", "tracepoint", "--bpf-dir", str(tmp_path),
                     "--policy-dir", str(policies)]) == 1
    assert "python3 -m bpf.build" in capsys.readouterr().err


def test_run_without_a_valid_policy_refuses_to_start(tmp_path, capsys):
    cfg = tmp_path / "c.conf"
    cfg.write_text(f'policy_dir = "{tmp_path}/policies"\nlog_dir = "{tmp_path}/log"\n')
    assert cli.main(["run", "--config", str(cfg), "--tier", "tracepoint", "--bpf-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/policies: policy directory not found" in err and "refusing to start" in err
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "a.toml").write_text('[[rule]]\ntype = "exec"\npath = "bin/true"\n')
    assert cli.main(["run", "--config", str(cfg), "--tier", "tracepoint", "--bpf-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/policies/a.toml:3: path 'bin/true' must be an absolute path" in err
    assert "refusing to start" in err and not (tmp_path / "log").exists()


def test_check_config_validates_the_policy_dir(tmp_path, sensor_env):
    cfg = tmp_path / "c.conf"
    cfg.write_text(f'policy_dir = "{tmp_path}/policies"\n')
    proc = run_cli(sensor_env, "check-config", "--config", str(cfg))
    assert proc.returncode == 0 and "no policy files" in proc.stderr
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "a.toml").write_text('[[rule]]\ntype = "connect"\nport = 0\n')
    proc = run_cli(sensor_env, "check-config", "--config", str(cfg))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"{tmp_path}/policies/a.toml:3: port must be an integer from 1 to 65535, not 0"]
    (tmp_path / "policies" / "a.toml").write_text('[[rule]]\ntype = "connect"\nport = 22\n'
                                                  f'[[rule]]\ntype = "exec"\npath = "{tmp_path}/nodir/later"\n')
    proc = run_cli(sensor_env, "check-config", "--config", str(cfg))
    assert proc.returncode == 0 and f"{tmp_path}/policies: ok (2 rules: 1 connect, 1 exec; from a.toml)" in proc.stdout
    assert proc.stderr.startswith(f"warning: {tmp_path}/policies/a.toml:4: {tmp_path}/nodir: No such file or directory; "
                                  "rule")


def test_bpf_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_BPF_DIR", str(tmp_path))
    assert endura_sensor.bpf_dir() == tmp_path
    monkeypatch.delenv("ENDURA_BPF_DIR")
    root = endura_sensor.source_tree()
    assert root is not None and endura_sensor.bpf_dir() == root / "build" / "bpf" / endura_sensor.host_arch()
    assert endura_sensor.host_arch("x86_64") == "amd64" and endura_sensor.host_arch("aarch64") == "arm64"
