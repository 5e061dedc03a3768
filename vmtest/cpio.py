"""A minimal cpio "newc" writer for initramfs images: no root, no external tool, deterministic.

The kernel unpacks several concatenated newc archives in a row (each must start on a 4-byte
boundary, else "invalid magic"); `Writer` pads every archive it finishes to 512 bytes, so a second
archive can simply be appended to the first.
"""
from __future__ import annotations

import stat
from typing import BinaryIO

TRAILER = "TRAILER!!!"
BLOCK = 512


def header(name: str, *, mode: int, size: int, ino: int, uid: int = 0, gid: int = 0, nlink: int = 1,
           mtime: int = 0, rdevmajor: int = 0, rdevminor: int = 0) -> bytes:
    """One newc header plus the NUL-terminated name, padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, uid, gid, nlink, mtime, size, 0, 0, rdevmajor, rdevminor, len(encoded), 0)
    head = b"070701" + b"".join(b"%08X" % (f & 0xFFFFFFFF) for f in fields) + encoded
    return head + b"\0" * (-len(head) % 4)


class Writer:
    """`w = Writer(fh); w.directory("dev"); w.file("init", data, 0o755); w.finish()`."""

    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self.out = out
        self.mtime = mtime
        self.ino = 1000  # distinct per entry; hard links are written as separate files
        self.written = 0

    def _entry(self, name: str, mode: int, data: bytes = b"", *, uid: int = 0, gid: int = 0,
               mtime: int | None = None, rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.lstrip("/") or "."
        self.ino += 1
        head = header(name, mode=mode, size=len(data), ino=self.ino, uid=uid, gid=gid,
                      mtime=self.mtime if mtime is None else mtime, rdevmajor=rdev[0], rdevminor=rdev[1],
                      nlink=2 if stat.S_ISDIR(mode) else 1)
        self.out.write(head)
        self.out.write(data)
        pad = b"\0" * (-len(data) % 4)
        self.out.write(pad)
        self.written += len(head) + len(data) + len(pad)

    def directory(self, name: str, perm: int = 0o755, **kw) -> None:
        self._entry(name, stat.S_IFDIR | perm, **kw)

    def file(self, name: str, data: bytes, perm: int = 0o644, **kw) -> None:
        self._entry(name, stat.S_IFREG | perm, data, **kw)

    def symlink(self, name: str, target: str, **kw) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode(), **kw)

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600, **kw) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor), **kw)

    def finish(self) -> None:
        self._entry(TRAILER, 0)
        pad = -self.written % BLOCK
        self.out.write(b"\0" * pad)
        self.written += pad


def read_names(data: bytes) -> list[str]:
    """The entry names of one or more concatenated newc archives (for tests and debugging)."""
    names, pos = [], 0
    while pos + 110 <= len(data):
        if data[pos:pos + 6] != b"070701":
            if data[pos:pos + 4] == b"\0\0\0\0":  # padding between archives
                pos += 4
                continue
            raise ValueError(f"invalid cpio magic at offset {pos}")
        size = int(data[pos + 54:pos + 62], 16)
        namesize = int(data[pos + 94:pos + 102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        pos += size
        pos += -pos % 4
        if name != TRAILER:
            names.append(name)
    return names
