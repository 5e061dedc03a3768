"""The one process runner: every external tool (gpg, nfpm, rpm, dnf, apt, qemu, docker...) runs here.

Argument lists only, never a shell. `ENDURA_VERBOSE=1` prints `+ cmd` before each command. A missing
tool raises `ToolMissing` naming the Debian package that provides it; a failing command raises
`CommandFailed` with the command, its exit code and the tail of its stderr. Building an argv is kept
apart from running it, so callers build argvs in pure (unit-tested) functions and pass `dry_run`.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from typing import Mapping, Sequence

from toolbox import log
from toolbox.errors import EnduraError, ToolMissing
from toolbox.packages import install_hint

STDERR_TAIL_LINES = 15


class CommandFailed(EnduraError):
    """A tool exited non-zero (or timed out)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, hint: str = "") -> None:
        tail = "\n".join((stderr or "").strip().splitlines()[-STDERR_TAIL_LINES:])
        message = f"'{format_argv(argv)}' failed with exit code {returncode}"
        if hint:
            message += f"; {hint}"
        super().__init__(message, detail=tail)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def format_argv(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def which(tool: str) -> str | None:
    return shutil.which(tool)


def ensure_tool(tool: str) -> str:
    """Return the tool's path or raise ToolMissing naming its package (see toolbox.tools)."""
    path = which(tool)
    if path:
        return path
    raise ToolMissing(f"'{tool}' is not installed; {install_hint(tool)}")


def run(
    argv: Sequence[str | os.PathLike],
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    capture: bool = True,
    check: bool = True,
    timeout: float | None = None,
    dry_run: bool = False,
    hint: str = "",
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run argv and return the CompletedProcess (stdout/stderr captured as text by default).

    `extra_env` is added to the current environment; `env` replaces it. `hint` is appended to the
    error message on failure (the fix, when the caller knows it). With `dry_run` the command is only
    printed and an empty successful result is returned.
    """
    args = [os.fspath(a) for a in argv]
    if dry_run:
        log.info(f"+ {format_argv(args)}  (dry run)")
        return subprocess.CompletedProcess(args, 0, "" if text else b"", "" if text else b"")
    ensure_tool(args[0])
    log.debug(f"+ {format_argv(args)}")
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    if isinstance(input, str) and not text:
        input = input.encode()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            text=text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandFailed(args, -1, err, hint=hint or f"it did not finish within {timeout:g}s") from None
    _record(args, time.monotonic() - started)
    if check and proc.returncode != 0:
        err = proc.stderr if text else (proc.stderr or b"").decode(errors="replace")
        if not err and proc.stdout:
            err = proc.stdout if text else proc.stdout.decode(errors="replace")
        raise CommandFailed(args, proc.returncode, err or "", hint=hint)
    return proc


def _record(args: list[str], seconds: float) -> None:
    """With ENDURA_RUN_LOG=FILE, append one JSON line per command (benchmarks sum the tools' time)."""
    path = os.environ.get("ENDURA_RUN_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"tool": os.path.basename(args[0]), "seconds": round(seconds, 6), "argv": args}) + "\n")


def output(argv: Sequence[str | os.PathLike], **kwargs) -> str:
    """Run and return stdout stripped of trailing whitespace."""
    return run(argv, **kwargs).stdout.rstrip()
