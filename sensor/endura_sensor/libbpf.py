"""A small ctypes binding to the system's libbpf (libbpf.so.1, or libbpf.so.0 on older distros).

Only what the sensor needs: open/load a CO-RE object, find and attach a program, map fds,
update/lookup map elements, ring buffers, and libbpf's own log captured via libbpf_set_print.
Every failure raises `BpfError` with the operation, the errno name (EPERM...) and libbpf's log tail.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import json
import os
import resource
import threading
from pathlib import Path
from typing import Callable, Dict, List

from .errors import SensorError

LIBRARY_NAMES = ("libbpf.so.1", "libbpf.so.0")
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
ENOTSUPP = 524  # kernel-internal "operation not supported" (e.g. fentry on arm64 < 6.0)
LIBBPF_ERRNO_START, LIBBPF_ERRNO_END = 4000, 4013
_MAX_ERRNO = 4095
_PTR_MASK = (1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1
_BATCH_FULL = -8191  # returned by our batching sample callback: libbpf stops consuming and returns it


class LibbpfMissing(SensorError):
    exit_code = 2


class BpfError(SensorError):
    """A libbpf call failed. `errno` is positive (1 = EPERM); `log` holds libbpf's messages."""

    def __init__(self, op: str, err: int, log: str = "") -> None:
        self.op, self.errno, self.log = op, abs(err), log
        super().__init__(f"{op}: {errno_name(self.errno)} ({describe_errno(self.errno)})", detail=log)


def errno_name(err: int) -> str:
    err = abs(err)
    if err == ENOTSUPP:
        return "ENOTSUPP"
    if LIBBPF_ERRNO_START <= err < LIBBPF_ERRNO_END:
        return f"LIBBPF_ERRNO_{err}"
    return errno_mod.errorcode.get(err, f"errno {err}")


def describe_errno(err: int) -> str:
    err = abs(err)
    if err == ENOTSUPP:
        return "operation not supported by this kernel"
    if LIBBPF_ERRNO_START <= err < LIBBPF_ERRNO_END and _lib is not None:
        buf = ctypes.create_string_buffer(256)
        _lib.libbpf_strerror(-err, buf, len(buf))
        return buf.value.decode(errors="replace")
    return os.strerror(err)


def os_release(root: Path = Path("/")) -> Dict[str, str]:
    info: Dict[str, str] = {}
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                info[key.strip()] = value.strip().strip('"').strip("'")
        break
    return info


#: generated at package time from distros/catalog.toml (release/distro_data.py); absent in a source checkout
PACKAGES_FILE = Path(__file__).with_name("libbpf_packages.json")
GENERIC_PACKAGE = "libbpf (your distribution's libbpf runtime package: libbpf.so.1, or libbpf.so.0 on older releases)"


def _version_key(version: str) -> List[int]:
    return [int(p) if p.isdigit() else -1 for p in version.split(".")]


def _load_packages(path: Path) -> List[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return data.get("hosts", []) if isinstance(data, dict) and data.get("schema") == 1 else []


def libbpf_package(info: Dict[str, str], packages: List[dict] | None = None) -> str:
    """The package that provides libbpf.so on this host, from /etc/os-release's ID and VERSION_ID and the
    catalog's answer (PACKAGES_FILE): its release (`15` matches `15.6`, `3.20` matches `3.20.3`), else the
    newest catalog release of that distribution not newer than the host's; else a generic answer."""
    rows = [r for r in (_load_packages(PACKAGES_FILE) if packages is None else packages) if r.get("id") == info.get("ID")]
    version = info.get("VERSION_ID", "")
    exact = [r for r in rows if version == r["version"] or version.startswith(r["version"] + ".")
             or r["version"] == "rolling"]
    older = sorted((r for r in rows if r["version"] != "rolling" and _version_key(r["version"]) <= _version_key(version)),
                   key=lambda r: _version_key(r["version"]))
    found = exact[0] if exact else (older[-1] if older and version else None)
    return f"{found['package']} ({found['install']})" if found else GENERIC_PACKAGE


_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_log_lines: List[str] = []
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_libc.vsnprintf.restype = ctypes.c_int


@_PRINT_FN
def _print_cb(level: int, fmt: bytes, args: int) -> int:
    # va_list arrives as a pointer on x86_64 (array type) and aarch64 (large struct by reference)
    if level > LIBBPF_INFO:
        return 0
    buf = ctypes.create_string_buffer(2048)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    _log_lines.extend(buf.value.decode(errors="replace").rstrip("\n").splitlines())
    del _log_lines[:-400]
    return 0


def _proto(lib: ctypes.CDLL, name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)


def library(names=LIBRARY_NAMES) -> ctypes.CDLL:
    """Load libbpf once; raise LibbpfMissing naming this distro's package when it is absent."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for name in names:
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError as exc:
                errors.append(str(exc))
        else:
            raise LibbpfMissing(f"libbpf is not installed ({' / '.join(names)} not found); install "
                                f"{libbpf_package(os_release())}")
        vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        _proto(lib, "libbpf_set_print", vp, _PRINT_FN)
        _proto(lib, "libbpf_strerror", i, i, cp, ctypes.c_size_t)
        _proto(lib, "libbpf_num_possible_cpus", i)
        _proto(lib, "bpf_object__open_file", vp, cp, vp)
        _proto(lib, "bpf_object__load", i, vp)
        _proto(lib, "bpf_object__close", None, vp)
        _proto(lib, "bpf_object__find_program_by_name", vp, vp, cp)
        _proto(lib, "bpf_object__find_map_fd_by_name", i, vp, cp)
        _proto(lib, "bpf_program__attach", vp, vp)
        _proto(lib, "bpf_program__set_autoload", i, vp, ctypes.c_bool)
        _proto(lib, "bpf_link__destroy", i, vp)
        _proto(lib, "bpf_link__pin", i, vp, cp)
        _proto(lib, "bpf_obj_pin", i, i, cp)
        _proto(lib, "bpf_obj_get", i, cp)
        _proto(lib, "bpf_map_update_elem", i, i, vp, vp, ctypes.c_uint64)
        _proto(lib, "bpf_map_lookup_elem", i, i, vp, vp)
        _proto(lib, "bpf_map_delete_elem", i, i, vp)
        _proto(lib, "bpf_map_get_next_key", i, i, vp, vp)
        _proto(lib, "bpf_map_freeze", i, i)
        _proto(lib, "bpf_obj_get_info_by_fd", i, i, vp, ctypes.POINTER(ctypes.c_uint32))
        _proto(lib, "bpf_object__find_map_by_name", vp, vp, cp)
        _proto(lib, "bpf_map__reuse_fd", i, vp, i)
        _proto(lib, "bpf_link__fd", i, vp)
        _proto(lib, "bpf_program__fd", i, vp)
        _proto(lib, "ring_buffer__new", vp, i, SAMPLE_FN, vp, vp)
        _proto(lib, "ring_buffer__poll", i, vp, i)
        _proto(lib, "ring_buffer__free", None, vp)
        lib.libbpf_set_print(_print_cb)
        _lib = lib
        return lib


def take_log() -> str:
    """libbpf's messages since the last call (warnings and info)."""
    with _lock:
        text = "\n".join(_log_lines)
        _log_lines.clear()
    return text


def _ptr_error(ptr: int | None) -> int:
    """0 when ptr is valid; else the positive errno (NULL + errno, or an ERR_PTR from libbpf 0.x)."""
    if not ptr:
        return ctypes.get_errno() or errno_mod.EINVAL
    if ptr & _PTR_MASK > _PTR_MASK - _MAX_ERRNO:
        return _PTR_MASK + 1 - (ptr & _PTR_MASK)
    return 0


def _raise_rc(op: str, rc: int) -> None:
    if rc < 0:
        raise BpfError(op, -rc, take_log())


def raise_memlock_rlimit() -> None:
    """Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK (libbpf 0.x does not raise it)."""
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


class BpfLink:
    def __init__(self, ptr: int) -> None:
        self._ptr: int | None = ptr

    def destroy(self) -> None:
        if self._ptr:
            library().bpf_link__destroy(self._ptr)
            self._ptr = None

    def pin(self, path: Path) -> None:
        """Pin in a BPF filesystem: the program stays attached after this process exits, until unlinked."""
        _raise_rc(f"pinning a link at {path}", library().bpf_link__pin(self._ptr, os.fsencode(str(path))))

    @property
    def fd(self) -> int:
        return library().bpf_link__fd(self._ptr) if self._ptr else -1


class BpfObject:
    """An opened (and after `load()`, loaded) BPF object file. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        lib = library()
        self.path = Path(path)
        self._links: List[BpfLink] = []
        take_log()
        ctypes.set_errno(0)
        ptr = lib.bpf_object__open_file(os.fsencode(str(self.path)), None)
        err = _ptr_error(ptr)
        if err:
            raise BpfError(f"opening {self.path}", err, take_log())
        self._ptr: int | None = ptr

    def skip(self, program: str) -> None:
        """Do not load `program` (before load(): e.g. its attach point is missing from this kernel)."""
        prog = library().bpf_object__find_program_by_name(self._ptr, program.encode())
        if not prog:
            raise BpfError(f"finding program {program} in {self.path.name}", errno_mod.ENOENT)
        _raise_rc(f"not loading {program}", library().bpf_program__set_autoload(prog, False))

    def load(self) -> None:
        raise_memlock_rlimit()
        _raise_rc(f"loading {self.path.name}", library().bpf_object__load(self._ptr))

    def set_autoload(self, program: str, autoload: bool) -> None:
        """Before load(): whether `program` is loaded with the object (off: a program this kernel cannot take)."""
        lib = library()
        prog = lib.bpf_object__find_program_by_name(self._ptr, program.encode())
        if not prog:
            raise BpfError(f"finding program {program} in {self.path.name}", errno_mod.ENOENT)
        _raise_rc(f"setting autoload of {program}", lib.bpf_program__set_autoload(prog, autoload))

    def attach(self, program: str) -> BpfLink:
        lib = library()
        prog = lib.bpf_object__find_program_by_name(self._ptr, program.encode())
        if not prog:
            raise BpfError(f"finding program {program} in {self.path.name}", errno_mod.ENOENT)
        ctypes.set_errno(0)
        ptr = lib.bpf_program__attach(prog)
        err = _ptr_error(ptr)
        if err:
            raise BpfError(f"attaching {program}", err, take_log())
        link = BpfLink(ptr)
        self._links.append(link)
        return link

    def reuse_map_fd(self, name: str, fd: int) -> None:
        """Before load(): use an existing map (e.g. the ring buffer of an earlier copy) instead of a new one."""
        ptr = library().bpf_object__find_map_by_name(self._ptr, name.encode())
        if not ptr:
            raise BpfError(f"finding map {name} in {self.path.name}", errno_mod.ENOENT)
        _raise_rc(f"reusing map {name}", library().bpf_map__reuse_fd(ptr, fd))

    def program_fd(self, name: str) -> int:
        prog = library().bpf_object__find_program_by_name(self._ptr, name.encode())
        return library().bpf_program__fd(prog) if prog else -1

    def map_fd(self, name: str) -> int:
        fd = library().bpf_object__find_map_fd_by_name(self._ptr, name.encode())
        if fd < 0:
            raise BpfError(f"finding map {name} in {self.path.name}", -fd)
        return fd

    def close(self) -> None:
        for link in self._links:
            link.destroy()
        self._links.clear()
        if self._ptr:
            library().bpf_object__close(self._ptr)
            self._ptr = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()




def obj_pin(fd: int, path: Path) -> None:
    """Pin a map (or any BPF object fd) in a BPF filesystem."""
    ctypes.set_errno(0)
    rc = library().bpf_obj_pin(fd, os.fsencode(str(path)))
    if rc < 0:
        raise BpfError(f"pinning {path}", ctypes.get_errno() or -rc)


def obj_get(path: Path) -> int:
    """An fd for an object pinned in a BPF filesystem (the caller closes it)."""
    ctypes.set_errno(0)
    fd = library().bpf_obj_get(os.fsencode(str(path)))
    if fd < 0:
        raise BpfError(f"opening the pinned {path}", ctypes.get_errno() or -fd)
    return fd


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    ctypes.set_errno(0)
    kbuf, vbuf = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    rc = library().bpf_map_update_elem(fd, kbuf, vbuf, flags)
    if rc < 0:  # libbpf 0.x returns -1 and sets errno; 1.x returns -errno
        raise BpfError("updating a map element", ctypes.get_errno() if rc == -1 and ctypes.get_errno() else -rc)


def map_delete(fd: int, key: bytes) -> bool:
    """Delete one element; False when it was not there."""
    ctypes.set_errno(0)
    kbuf = ctypes.create_string_buffer(key, len(key))
    rc = library().bpf_map_delete_elem(fd, kbuf)
    if rc < 0:
        err = ctypes.get_errno() if rc == -1 and ctypes.get_errno() else -rc
        if err == errno_mod.ENOENT:
            return False
        raise BpfError("deleting a map element", err)
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    ctypes.set_errno(0)
    kbuf, vbuf = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
    rc = library().bpf_map_lookup_elem(fd, kbuf, vbuf)
    if rc < 0:
        err = ctypes.get_errno() if rc == -1 and ctypes.get_errno() else -rc
        if err == errno_mod.ENOENT:
            return None
        raise BpfError("looking up a map element", err)
    return vbuf.raw


def map_keys(fd: int, key_size: int) -> List[bytes]:
    """Every key of a map (hash, LPM trie, array), by BPF_MAP_GET_NEXT_KEY."""
    lib = library()
    keys: List[bytes] = []
    prev = None
    nxt = ctypes.create_string_buffer(key_size)
    while True:
        ctypes.set_errno(0)
        rc = lib.bpf_map_get_next_key(fd, prev, nxt)
        if rc < 0:
            err = ctypes.get_errno() if rc == -1 and ctypes.get_errno() else -rc
            if err == errno_mod.ENOENT:
                return keys
            raise BpfError("listing the keys of a map", err)
        keys.append(nxt.raw)
        prev = ctypes.create_string_buffer(nxt.raw, key_size)
        if len(keys) > 1 << 20:
            raise BpfError("listing the keys of a map (no end)", errno_mod.ELOOP)


def map_freeze(fd: int) -> None:
    """BPF_MAP_FREEZE: no bpf() call (by anyone, this process included) may change the map from now on."""
    ctypes.set_errno(0)
    rc = library().bpf_map_freeze(fd)
    if rc < 0:
        raise BpfError("freezing a map", ctypes.get_errno() if rc == -1 and ctypes.get_errno() else -rc)


def obj_info(fd: int, size: int = 256) -> bytes:
    """BPF_OBJ_GET_INFO_BY_FD: the raw struct bpf_{map,prog,link}_info (first `size` bytes)."""
    buf = ctypes.create_string_buffer(size)
    length = ctypes.c_uint32(size)
    ctypes.set_errno(0)
    rc = library().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(length))
    if rc < 0:
        raise BpfError("reading BPF object info", ctypes.get_errno() if rc == -1 and ctypes.get_errno() else -rc)
    return buf.raw


def obj_id(fd: int) -> int:
    """The kernel id of a map, program or link (the second u32 of every bpf_*_info)."""
    return int.from_bytes(obj_info(fd, 16)[4:8], "little")


def link_prog_id(fd: int) -> int:
    """struct bpf_link_info.prog_id (0 for a link whose program is gone)."""
    return int.from_bytes(obj_info(fd, 16)[8:12], "little")


def map_flags(fd: int) -> int:
    """struct bpf_map_info.map_flags."""
    return int.from_bytes(obj_info(fd, 64)[20:24], "little")


def map_frozen(fd: int) -> bool:
    """Whether BPF_MAP_FREEZE was applied (the kernel's fdinfo says so; not in bpf_map_info)."""
    try:
        text = Path(f"/proc/self/fdinfo/{fd}").read_text()
    except OSError:
        return False
    return any(line.split() == ["frozen:", "1"] for line in text.splitlines())


def possible_cpus() -> int:
    n = library().libbpf_num_possible_cpus()
    if n <= 0:
        raise BpfError("counting possible CPUs", -n)
    return n


class RingBuffer:
    """Consume a BPF ring buffer map from `poll()`.

    Default: `callback(bytes)` for each record, from libbpf's sample callback. With `batch=True` the
    sample callback only copies the record (a ctypes callback per record is the expensive part; the
    less Python it runs the better) and `poll()` hands them over at once: `callback([bytes, ...])`, at
    most `batch_max` records per call (libbpf stops consuming when the callback says so; the rest stay
    in the ring for the next poll).
    """

    def __init__(self, map_fd: int, callback: Callable, *, batch: bool = False, batch_max: int = 4096) -> None:
        self._callback = callback
        self.error: BaseException | None = None
        self._batch: List[bytes] | None = None
        if batch:
            pending: List[bytes] = []
            self._batch = pending
            append, string_at = pending.append, ctypes.string_at

            def _sample(_ctx, data, size):
                append(string_at(data, size))  # this record is consumed whatever we return
                return _BATCH_FULL if len(pending) >= batch_max else 0
        else:
            def _sample(_ctx, data, size):
                try:
                    callback(ctypes.string_at(data, size))
                    return 0
                except BaseException as exc:  # noqa: BLE001 - re-raised from poll()
                    self.error = exc
                    return -1

        self._sample = SAMPLE_FN(_sample)  # keep a reference: libbpf calls it later
        ctypes.set_errno(0)
        ptr = library().ring_buffer__new(map_fd, self._sample, None, None)
        err = _ptr_error(ptr)
        if err:
            raise BpfError("creating a ring buffer consumer", err, take_log())
        self._ptr: int | None = ptr

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms; return the number of records consumed."""
        rc = library().ring_buffer__poll(self._ptr, timeout_ms)
        if self._batch:
            records = self._batch[:]
            self._batch.clear()
            self._callback(records)
            if rc == _BATCH_FULL or rc >= 0:
                return len(records)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if rc == -errno_mod.EINTR:
            return 0
        _raise_rc("polling the ring buffer", rc)
        return rc

    def free(self) -> None:
        if self._ptr:
            library().ring_buffer__free(self._ptr)
            self._ptr = None
