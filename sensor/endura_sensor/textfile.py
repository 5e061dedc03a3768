"""Reading the files the configuration names (sensor.conf, policy files, the collector token file).

Whoever can drop a file where the sensor looks must not be able to hang it or exhaust its memory:

- only **regular files** are read: a FIFO would block open() or read() forever, a device such as
  /dev/zero never ends, a directory or socket is no file. /dev/null (1:3) reads as an empty file
  (`--config /dev/null`: the defaults). Symlinks are followed (configuration
  management tools install files as symlinks) when they end at a regular file; a dangling symlink
  or a loop is an error, like any other unreadable file;
- the path is checked with stat() before it is opened, so a device is never opened (opening some
  has side effects: /dev/watchdog arms the watchdog); then it is opened with O_NONBLOCK | O_NOCTTY |
  O_CLOEXEC and the open fd is checked again (the file may be swapped in between);
- at most `limit` + 1 bytes are read: a bigger file is refused without reading the rest;
- text is UTF-8 (a byte-order mark at the start is accepted and dropped); invalid UTF-8, a NUL byte
  and a lone carriage return are refused with the line they are on.

Every problem is a FileProblem (an OSError) whose str() is one line: `path: problem; fix`.
"""
from __future__ import annotations

import errno
import os
import stat

BOM = "\ufeff"

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class FileProblem(OSError):
    """`path: problem`; .strerror is the problem without the path, .path the path."""

    def __init__(self, path: str, problem: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, problem)
        self.path = str(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.strerror}"


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: str, mode: int) -> FileProblem:
    kind = kind_of(mode)
    if os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return FileProblem(path, f"is a symlink to {target}, which is {kind}, not a regular file; point it at a "
                                 "regular file or replace it with one")
    return FileProblem(path, f"is {kind}, not a regular file; replace it with a regular file")


def _stat_problem(path: str, exc: OSError) -> FileProblem:
    """A readable explanation of why stat() failed (dangling symlink, loop, missing, permission)."""
    if exc.errno == errno.ELOOP:
        return FileProblem(path, "is a symlink loop (too many levels of symbolic links); remove it or point it "
                                 "at a regular file", exc.errno)
    if exc.errno == errno.ENOENT and os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return FileProblem(path, f"is a dangling symlink (its target {target} does not exist); remove it or "
                                 "create the target", exc.errno)
    if exc.errno == errno.ENOENT:
        return FileProblem(path, "not found", exc.errno)
    return FileProblem(path, f"cannot read: {exc.strerror or exc}", exc.errno or errno.EIO)


def check_regular(path: str) -> os.stat_result:
    """stat() following symlinks; FileProblem unless it is a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _stat_problem(str(path), exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(str(path), st.st_mode)
    return st


def _is_dev_null(path: str) -> bool:
    """/dev/null (character device 1:3), the usual way to say "an empty file" (`--config /dev/null`):
    it can neither block nor flood, so it reads as empty instead of being refused."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def read_bytes(path, limit: int, limit_hint: str = "") -> bytes:
    """The content of a regular file of at most `limit` bytes (never reads more than limit + 1)."""
    path = str(path)
    if _is_dev_null(path):
        return b""
    check_regular(path)  # before open(): never open a FIFO or a device
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _stat_problem(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between stat() and open()
            raise _not_regular(path, st.st_mode)
        if st.st_size > limit:
            raise _too_large(path, limit, limit_hint)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except FileProblem:
        raise
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror or exc}", exc.errno or errno.EIO) from None
    finally:
        os.close(fd)
    if total > limit:  # it grew while we read
        raise _too_large(path, limit, limit_hint)
    return b"".join(chunks)


def _too_large(path: str, limit: int, hint: str) -> FileProblem:
    return FileProblem(path, f"larger than {show_size(limit)}{'; ' + hint if hint else ''}", errno.EFBIG)


def show_size(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def decode(data: bytes, path) -> str:
    """UTF-8 text without a leading byte-order mark; FileProblem `path:line: ...` for what is not text."""
    path = str(path)
    nul = data.find(b"\0")
    if nul >= 0:
        line, col = _position(data, nul)
        raise FileProblem(f"{path}:{line}", f"NUL byte at column {col}: this is not a text file; "
                                            "write the file as UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        raise FileProblem(f"{path}:{line}", f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {col}); "
                                            "save the file as UTF-8") from None
    if text.startswith(BOM):
        text = text[1:]
    normalized = text.replace("\r\n", "\n") if "\r" in text else text
    lone_cr = normalized.find("\r")
    if lone_cr >= 0:
        line = normalized.count("\n", 0, lone_cr) + 1
        raise FileProblem(f"{path}:{line}", "carriage return without a line feed (old Mac line endings); save "
                                            "the file with LF or CRLF line endings")
    return text


def _position(data: bytes, offset: int):
    """(line, column) of a byte offset, both from 1."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def read_text(path, limit: int, limit_hint: str = "") -> str:
    return decode(read_bytes(path, limit, limit_hint), path)
