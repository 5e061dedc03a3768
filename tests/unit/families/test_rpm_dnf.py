"""What a failed dnf check says: dnf's own error lines (`families.rpm.repository.dnf_error_lines`), taken from dnf 4.14's
real output (Debian 12) captured in tests/unit/data/dnf/, and the argv/config that keep the host's dnf
plugins, repositories and variables out of the check."""
from __future__ import annotations

from pathlib import Path

from families import clients
from families.rpm import repository as verify

DATA = Path(__file__).parent / "data" / "dnf"


def captured(name: str) -> str:
    return (DATA / f"{name}.stderr").read_text()


def test_error_line_of_a_host_plugin_repository_is_found_above_the_option_dump():
    # dnf-plugins-core's `local` plugin (enabled by default) added `_dnf_local`: its 40-line option
    # dump filled the 15-line tail, so the error said only "failed with exit code 1"
    text = captured("local-plugin")
    assert "Problem repository" not in "\n".join(text.splitlines()[-15:])
    assert verify.dnf_error_lines(text) == [
        "You have enabled checking of packages via GPG keys. This is a good thing.",
        "Problem repository: [_dnf_local]",
    ]


def test_error_lines_of_an_unreachable_repository():
    lines = verify.dnf_error_lines(captured("unreachable"))
    assert lines[0] == "Errors during downloading metadata for repository 'endura-latest':"
    assert lines[1].startswith("- Curl error (7): Couldn't connect to server for http://127.0.0.1:9/rpm/latest/")
    assert lines[2].startswith("Error: Failed to download metadata for repo 'endura-latest': Cannot download repomd.xml")


def test_error_line_of_a_bad_repomd_signature():
    assert verify.dnf_error_lines(captured("badsig")) == [
        "Error: Failed to download metadata for repo 'endura-latest': repomd.xml GPG signature verification error: "
        "Bad GPG signature"]


def test_error_lines_of_missing_dependencies():
    assert verify.dnf_error_lines(captured("deps")) == [
        "Problem: conflicting requests",
        "- nothing provides (python3 >= 3.9 or python3.11 or python311) needed by endura-sensor-1.0.0-1.x86_64",
        "- nothing provides (libbpf or libbpf1) needed by endura-sensor-1.0.0-1.x86_64",
    ]


def test_private_dnf_config_reads_nothing_of_the_host(tmp_path):
    conf = verify.dnf_config(tmp_path / "dnf", "[endura-latest]\nbaseurl=https://repo.example.test/rpm/latest/$basearch\n",
                             "http://127.0.0.1:1")
    text = conf.read_text()
    assert "plugins=0\n" in text
    assert f"reposdir={tmp_path / 'dnf' / 'repos.d'}\n" in text and f"varsdir={tmp_path / 'dnf' / 'vars'}\n" in text
    assert [p.name for p in (tmp_path / "dnf" / "repos.d").iterdir()] == ["endura.repo"]
    assert not list((tmp_path / "dnf" / "vars").iterdir())
    argv = verify.dnf_argv(conf, tmp_path / "root", "makecache")
    assert "--noplugins" in argv
    assert f"--setopt=reposdir={tmp_path / 'dnf' / 'repos.d'}" in argv  # host paths (dnf(8), --installroot)
    assert f"--setopt=varsdir={tmp_path / 'dnf' / 'vars'}" in argv
    assert argv[-1] == "makecache"


def test_clients_get_no_apt_config_dnf_vars_or_proxy_of_the_host(monkeypatch):
    for name, value in (("APT_CONFIG", "/etc/apt/private.conf"), ("DNF_VAR_basearch", "s390x"),
                        ("http_proxy", "http://proxy:3128"), ("HTTPS_PROXY", "http://proxy:3128"), ("LANG", "C.UTF-8")):
        monkeypatch.setenv(name, value)
    env = clients.client_env(clients.CHROOT_PATH)
    assert not {"APT_CONFIG", "DNF_VAR_basearch", "http_proxy", "HTTPS_PROXY"} & env.keys()
    assert env["LANG"] == "C.UTF-8" and env["PATH"] == clients.CHROOT_PATH["PATH"]
