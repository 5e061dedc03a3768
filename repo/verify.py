"""Verify a generation with the real clients before anyone can see it.

The generation directory is served on 127.0.0.1 (an ephemeral port, a thread of this process) and
every published family checks it with its own client (`Family.verify_channel`): apt in a Debian root,
`rpm -K` and dnf in an empty root, pacman with a private keyring, apk-tools v2 and v3, gpgv and
`sha256sum -c` for the tarballs. What each one does is in its module (`families.<name>.repository`).
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

from families import published
from families.clients import stop_gpg_agents
from release.version import Version
from toolbox import log

# --- loopback HTTP ---------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        log.debug("http: " + format % args)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` read-only on 127.0.0.1 (ephemeral port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="repo-verify-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the checks -----------------------------------------------------------------------------------------


def verify_generation(gen: Path, channel: str, workdir: Path, *, expected_version: Any = None) -> dict:
    """Run every family's client check against `gen` served on loopback; raises EnduraError on the first failure.

    `expected_version` (a `release.version.Version`, or its string) is what the clients must install from
    `channel` (None: any). `workdir` (roots, keyrings) is emptied first and removed afterwards."""
    if isinstance(expected_version, str):
        expected_version = Version.parse(expected_version)
    result: dict = {}
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        with serve(gen) as url:
            for family in published():
                with log.step(f"{family.name}: its client against {url} (channel {channel})"):
                    result[family.name] = family.verify_channel(gen, channel, url, workdir / family.name,
                                                                expected_version=expected_version)
    finally:
        stop_gpg_agents(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    return result
