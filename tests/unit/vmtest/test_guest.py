"""vmtest.guest's probes, run for real on this host: how a forked child's end is recorded."""
from __future__ import annotations

import errno
import json
import os
import signal
import time

from vmtest import guest


def _raise(err: int):
    def action() -> None:
        raise OSError(err, os.strerror(err))
    return action


def test_forked_records_how_the_child_ended():
    assert guest.forked(lambda: None) == "ok"
    assert guest.forked(_raise(errno.EPERM)) == "eperm"
    assert guest.forked(_raise(errno.EACCES)) == "eacces"
    assert guest.forked(_raise(errno.ECONNREFUSED)) == "errno:ECONNREFUSED"
    assert guest.forked(lambda: os.kill(os.getpid(), signal.SIGKILL)) == "killed"
    assert guest.forked(lambda: os.kill(os.getpid(), signal.SIGTERM)) == "signal:%d" % signal.SIGTERM
    assert guest.forked(lambda: 1 / 0) == "exit:98"


def test_connect_probes_against_a_real_listener():
    sock = guest.listen(0)  # any free port on 127.0.0.1
    port = sock.getsockname()[1]
    try:
        assert guest.forked(guest.connect_to(port)) == "ok"
    finally:
        sock.close()
    assert guest.forked(guest.connect_to(port)) == "errno:ECONNREFUSED"


def test_file_probes_and_the_unchanged_check(tmp_path, monkeypatch):
    monkeypatch.setattr(guest, "PROTECTED", str(tmp_path / "protected"))
    guest.reset_protected()
    assert guest.forked(guest.read_protected) == "ok"
    assert guest.forked(guest.write_protected) == "ok"  # nothing denies it here
    assert (tmp_path / "protected").read_bytes() != guest.PROTECTED_CONTENT
    assert guest.forked(guest.read_protected) == "errno:EIO"  # reading checks the content too
    guest.reset_protected()
    assert (tmp_path / "protected").read_bytes() == guest.PROTECTED_CONTENT


def test_wait_for_events_returns_once_each_type_arrived(tmp_path):
    out = tmp_path / "sensor.out"
    out.write_text("".join(json.dumps({"type": t}) + "\n" for t in ("started", *guest.EVENT_TYPES)) + "{partial")
    start = time.monotonic()
    guest.wait_for_events(str(out), 5.0)
    assert time.monotonic() - start < 1.0
    out.write_text(json.dumps({"type": "exec_denied"}) + "\n")
    start = time.monotonic()
    guest.wait_for_events(str(out), 0.3)  # gives up at the timeout; the host judges what is missing
    assert 0.3 <= time.monotonic() - start < 2.0
