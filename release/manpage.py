"""`endura-sensor(1)`, generated at package time from the staged sensor's own argparse help, so the manual
page says what the installed command does (defaults included) and never drifts from it.

`collect()` runs the staged modules in a subprocess (`python -I`, 80 columns) and returns the help of the
command and of each subcommand; `render()` (pure) turns them into roff; `write()` gzips it (no name, mtime
SOURCE_DATE_EPOCH, level 9: reproducible, as lintian wants it).
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import sys
from pathlib import Path

from toolbox.run import run

#: where the page goes in every package (the command is /usr/bin/endura-sensor: section 1)
MAN_PATH = "/usr/share/man/man1/endura-sensor.1.gz"

_COLLECT = """
import json
from endura_sensor import cli
parser = cli._parser()
subs = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
print(json.dumps({"main": parser.format_help(),
                  "commands": {name: p.format_help() for name, p in subs.choices.items()},
                  "summaries": {a.dest: a.help or "" for a in subs._choices_actions}}))
"""


def collect(libdir: Path) -> dict:
    """The help texts of the sensor staged under `libdir` (the directory holding `endura_sensor/`)."""
    out = run([sys.executable, "-I", "-B", "-c", f"import sys; sys.path.insert(0, {str(libdir)!r})\n{_COLLECT}"],
              extra_env={"COLUMNS": "80", "LC_ALL": "C.UTF-8"},
              hint="the staged sensor could not print its help for the manual page").stdout
    return json.loads(out)


def _escape(line: str) -> str:
    """One line of text for roff: backslashes escaped, a leading . or ' not taken as a request."""
    line = line.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + line if line.startswith((".", "'")) else line


def _verbatim(text: str) -> list[str]:
    return [".nf", *(_escape(line) if line.strip() else "" for line in text.rstrip().splitlines()), ".fi"]


def render(helps: dict, *, version: str, epoch: int) -> str:
    """The roff source of endura-sensor(1) (pure)."""
    date = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d")
    lines = [
        f'.TH ENDURA\\-SENSOR 1 "{date}" "endura\\-sensor {_escape(version)}" "Endura Runtime Sensor"',
        ".SH NAME",
        "endura\\-sensor \\- eBPF runtime security enforcement",
        ".SH SYNOPSIS",
        ".B endura\\-sensor",
        ".RB [ \\-\\-version ]",
        ".I COMMAND",
        ".RI [ options ]",
        ".SH DESCRIPTION",
        "Endura Runtime Sensor enforces a security policy in the kernel with eBPF programs: BPF LSM hooks "
        "refuse an operation before it happens; where BPF LSM is not active, fentry or tracepoint programs "
        "kill the offending process.",
        "The service runs",
        ".BR \"endura\\-sensor run\" ;",
        ".B \"endura\\-sensor check\"",
        "tells which enforcement tier this host supports and how to enable a missing one.",
        ".PP",
        *_verbatim(helps["main"]),
        ".SH COMMANDS",
    ]
    for name, text in helps["commands"].items():
        lines += [f".SS {_escape(name)}", _escape(helps["summaries"].get(name, "")), ".PP", *_verbatim(text)]
    lines += [
        ".SH FILES",
        ".TP", ".I /etc/endura/sensor.conf", "the configuration (see \\fBendura\\-sensor check\\-config\\fR)",
        ".TP", ".I /etc/endura/policies/", "the policies, one TOML file each",
        ".TP", ".I /var/log/endura/events.log", "the event log (JSON lines), rotated by the sensor",
        ".TP", ".I /usr/lib/endura\\-sensor/bpf/", "the compiled eBPF programs, one per enforcement tier",
        ".SH SEE ALSO",
        "/usr/share/doc/endura\\-sensor/README.md, /usr/share/doc/endura\\-sensor/POLICIES.md",
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, libdir: Path, *, version: str, epoch: int) -> Path:
    """Render the page for the sensor staged under `libdir` and write it gzipped to `path`."""
    page = render(collect(libdir), version=version, epoch=epoch).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=epoch) as gz:
        gz.write(page)
    os.chmod(path, 0o644)
    os.utime(path, (epoch, epoch))
    return path
