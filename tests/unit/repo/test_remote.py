"""Remote target parsing and the argvs/commands of the rsync+ssh push (pure)."""
from __future__ import annotations

import pytest

from repo import remote
from toolbox.errors import EnduraError


@pytest.mark.parametrize("text,host,user,port,path", [
    ("ssh://deploy@repo.example.test:2222/srv/repo/", "repo.example.test", "deploy", 2222, "/srv/repo"),
    ("ssh://127.0.0.1/srv/r", "127.0.0.1", None, None, "/srv/r"),
    ("deploy@web1:/var/www/repo", "web1", "deploy", None, "/var/www/repo"),
    ("web1:/var/www/repo", "web1", None, None, "/var/www/repo"),
])
def test_parse_target(text, host, user, port, path):
    t = remote.parse_target(text)
    assert (t.host, t.user, t.port, t.path) == (host, user, port, path)


@pytest.mark.parametrize("text", ["build/repo", "web1:relative", "ssh://web1/", "web1:/srv/../etc", "https://web1/srv"])
def test_parse_target_refuses(text):
    with pytest.raises(EnduraError, match="--target"):
        remote.parse_target(text)


def test_ssh_and_rsync_argvs(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_PUBLISH_SSH_OPTIONS", "-i /k/id -o UserKnownHostsFile=/k/known")
    t = remote.parse_target("ssh://root@127.0.0.1:2222/srv/r")
    assert remote.ssh_argv(t, "true") == ["ssh", "-o", "BatchMode=yes", "-p", "2222", "-i", "/k/id", "-o",
                                          "UserKnownHostsFile=/k/known", "root@127.0.0.1", "true"]
    argv = remote.rsync_argv(t, tmp_path, "/srv/r/generations/.upload-000002", "../000001")
    assert argv[:4] == ["rsync", "--archive", "--hard-links", "--delete"]
    assert argv[5] == "ssh -o BatchMode=yes -p 2222 -i /k/id -o UserKnownHostsFile=/k/known"
    assert argv[-3:] == ["--link-dest=../000001", f"{tmp_path}/", "root@127.0.0.1:/srv/r/generations/.upload-000002/"]
    assert "--link-dest" not in " ".join(remote.rsync_argv(t, tmp_path, "/x", None))


def test_remote_commands_quote_the_path():
    cmd = remote.switch_command("/srv/my repo", 3)
    assert "mv -T '/srv/my repo'/generations/.upload-000003 '/srv/my repo'/generations/000003" in cmd
    assert "ln -sfn generations/000003 '/srv/my repo'/.current.tmp" in cmd
    assert cmd.endswith("mv -T '/srv/my repo'/.current.tmp '/srv/my repo'/current")
    assert "readlink '/srv/my repo'/current" in remote.prepare_command("/srv/my repo")
    assert '" 000002 000003 "' in remote.prune_command("/srv/r", [3, 2])
