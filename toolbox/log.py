"""Progress output: what is happening and how long it took, on stderr (stdout is for results)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Iterator

VERBOSE = os.environ.get("ENDURA_VERBOSE", "") not in ("", "0")


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def debug(message: str) -> None:
    if VERBOSE:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """`with step("building rpm amd64"):` prints `==> building rpm amd64` and then its duration."""
    info(f"==> {what}")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        info(f"    failed after {time.monotonic() - start:.1f}s: {what}")
        raise
    info(f"    done in {time.monotonic() - start:.1f}s: {what}")
