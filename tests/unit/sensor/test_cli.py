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
        f"{bad}:2: unknown key 'foo'; known keys: enforcement, log_dir, mode, policy_dir, team_server_url, "
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
    cfg.write_text("")
    assert cli.main(["run", "--config", str(cfg), "--tier", "tracepoint", "--bpf-dir", str(tmp_path)]) == 1
    assert "python3 -m bpf.build" in capsys.readouterr().err


def test_bpf_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_BPF_DIR", str(tmp_path))
    assert endura_sensor.bpf_dir() == tmp_path
    monkeypatch.delenv("ENDURA_BPF_DIR")
    root = endura_sensor.source_tree()
    assert root is not None and endura_sensor.bpf_dir() == root / "build" / "bpf" / endura_sensor.host_arch()
    assert endura_sensor.host_arch("x86_64") == "amd64" and endura_sensor.host_arch("aarch64") == "arm64"
