"""The evasion suite: attacks on the sensor's rules, per tier (stdlib only, Python >= 3.9: runs on the host
and on the kernel test VM's python3).

Each case sets up files under a scratch root, needs some rules (our policy language), runs one attack in a
forked child (the attacker) and then inspects the world: did the file change, did the datagram arrive,
did the program run. Outcome per case:

  blocked               refused (EPERM/EACCES), no effect
  killed-before-effect  the attacker (or a process of it) was SIGKILLed and the effect did not happen
  killed-after-effect   SIGKILLed, but the effect happened anyway
  refused-after-effect  the call failed (EPERM), but part of its effect happened (a denied create left the file)
  killed                SIGKILLed; whether the call ran cannot be seen from outside (bpf(), init_module())
  evaded                the effect happened and nobody was killed
  failed                no effect, no kill, no refusal: the attack itself did not work here (detail says why)
  n/a                   not applicable here (an x86-only case on another machine, a missing tool)
False-positive cases (harmless operations): `ok` or `false-positive`.
`event`: the sensor logged an event for the case's rule (or a tamper event from the attacker's comm).

    python3 -m vmtest.evasion --tier tracepoint            run on this host, print the table
    python3 -m vmtest.evasion --tier tracepoint --json F   also write the results
    python3 -m vmtest.evasion --table                      render docs/evasion.md from build/evasion/*.json

Cases run in groups, one sensor each (`endura-sensor run` with the group's rules): `main` (file, exec,
connect rules), `module` (module_load), `bpf` (a bpf rule: every other process's bpf() is killed while it
runs; kept short), `cgroup` (the sensor in a cgroup of its own), `pins` (pinned in a private bpffs, kill -9).
Expected outcomes per tier: vmtest/evasion_expected.py. The runner (sensors, groups, the command line, the
guest driver) is vmtest/evasion_run.py; this module is the catalog.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MACHINE = os.uname().machine
X86_64 = MACHINE == "x86_64"
CLASSES = ("path-not-inode", "other-entry-points", "kill-after-effect", "exec", "32-bit", "self-protection",
           "false-positive")
OUTCOMES = ("blocked", "killed-before-effect", "killed-after-effect", "refused-after-effect", "killed", "evaded", "failed", "n/a",
            "ok", "false-positive", "error")
GROUPS = ("main", "module", "bpf", "cgroup", "pins")
TIERS = ("lsm", "fentry", "tracepoint")
BASE_PORT = 40500
CONTENT = b"original content\n"
START_TIMEOUT = 90.0
ATTACK_TIMEOUT = 30.0
SENSOR_DURATION = 1200  # a backstop: a group's sensor that cannot be stopped (self-protection) still ends

# syscall numbers this file needs that Python lacks (x86_64, aarch64)
NR = {"x86_64": {"clone": 56, "bpf": 321, "io_uring_setup": 425, "io_uring_enter": 426, "renameat2": 316,
                 "openat2": 437, "creat": 85, "sendmmsg": 307},
      "aarch64": {"clone": 220, "bpf": 280, "io_uring_setup": 425, "io_uring_enter": 426, "renameat2": 276,
                  "openat2": 437, "sendmmsg": 269}
      }.get(MACHINE, {})
CLONE_FILES, CLONE_NEWNS, CLONE_NEWUSER = 0x400, 0x20000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
libc = ctypes.CDLL(None, use_errno=True)


class Case:
    def __init__(self, id, cls, attack, effect=None, rules=(), setup=None, group="main", x86=False,
                 inline=False, fp=False, note="", disk=False):
        self.id, self.cls, self.attack, self.effect, self.rules = id, cls, attack, effect, list(rules)
        self.setup, self.group, self.x86, self.inline, self.fp, self.note = setup, group, x86, inline, fp, note
        #: False: under the scratch tmpfs (no inode number is reused there, so a case's stale rule cannot hit
        #: another case's file); True: on the disk filesystem of the scratch root (inode-reuse needs that)
        self.disk = disk


class Ctx:
    """What one case sees: its scratch dir, a port, the sensor, the helper, notes its processes leave."""

    def __init__(self, root, case, port, runner):
        self.case, self.port, self.runner = case, port, runner
        self.dir = os.path.join(root, "disk" if case.disk else "fs", case.id)
        self.notes_path = os.path.join(root, ".notes", case.id)
        self.comm = "ev%02d" % port_index(port)
        self.state = {}
        self.pid = 0

    def p(self, *parts):
        return os.path.join(self.dir, *parts)

    def note(self, word):
        with open(self.notes_path, "a") as fh:
            fh.write(word + "\n")

    def notes(self):
        try:
            with open(self.notes_path) as fh:
                return fh.read().split()
        except OSError:
            return []


def port_index(port):
    return port - BASE_PORT


# ------------------------------------------------------------------ small tools

def write(path, data=CONTENT, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def changed(path):
    return lambda ctx: read(path) != CONTENT


def exists(path):
    return lambda ctx: os.path.lexists(path)


def tool(name):
    return shutil.which(name) or "/bin/" + name


def copy_tool(dst, name="touch", extra=b""):
    """A copy of `touch` (writes the marker named on its command line): a denied program with an effect."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(tool(name), dst)
    if extra:
        with open(dst, "ab") as fh:
            fh.write(extra)
    os.chmod(dst, 0o755)


def try_run(argv):
    """A program's exit code; a refused exec (the LSM tier's EPERM) is -1000."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=ATTACK_TIMEOUT).returncode
    except OSError:
        return -1000


def check_errno(ret, what):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))
    return ret


def run_argv(ctx, argv):
    """Run a program from the attacker; a SIGKILL of it is noted (the attacker itself goes on)."""
    code = try_run(argv)
    if code == -signal.SIGKILL:
        ctx.note("killed")
    elif code in (100 + errno.EPERM, 100 + errno.EACCES, 126, -1000):
        ctx.note("refused")
    return code


def clone_files(fn):
    """Run fn() in a child sharing our fd table (clone(CLONE_FILES)); returns its wait status."""
    pid = libc.syscall(NR["clone"], CLONE_FILES | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        code = 0
        try:
            fn()
        except OSError as exc:
            code = 100 + (exc.errno or 0) if (exc.errno or 0) < 150 else 99
        except BaseException:
            code = 98
        os._exit(code)
    check_errno(pid, "clone")
    return os.waitpid(pid, 0)[1]


def fd_links():
    """{fd: readlink} of this process (the listing's own fd is gone by the time it is read: skipped)."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass
    return out


def listener(kind, port):
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(16)
    sock.setblocking(False)
    return sock


def arrived(ctx):
    """The TCP handshake completed (a connection waits in the backlog) or the UDP datagram arrived."""
    sock = ctx.state["listener"]
    if not select.select([sock], [], [], 0.5)[0]:
        return False
    try:
        if sock.type == socket.SOCK_STREAM:
            sock.accept()[0].close()
        else:
            sock.recv(64)
    except OSError:
        pass
    return True


def tcp_listener(ctx):
    ctx.state["listener"] = listener(socket.SOCK_STREAM, ctx.port)


def udp_listener(ctx):
    ctx.state["listener"] = listener(socket.SOCK_DGRAM, ctx.port)


def file_rule(path, **keys):
    return dict({"type": "file", "path": path}, **keys)


def connect_rule(port):
    return {"type": "connect", "address": "127.0.0.1", "port": port}


# ------------------------------------------------------------------ io_uring (raw syscalls, no liburing)

IORING_OP_CONNECT, IORING_OP_OPENAT = 16, 18
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000


def io_uring_one(opcode, fd, addr, length, off, op_flags):
    """Submit one SQE and wait for its CQE; returns cqe.res (a negative errno or the result)."""
    params = ctypes.create_string_buffer(120)
    ring = libc.syscall(NR["io_uring_setup"], 4, params)
    check_errno(ring, "io_uring_setup")
    sq_entries, cq_entries = struct.unpack_from("II", params, 0)
    sq_off = struct.unpack_from("7I", params, 40)  # head tail ring_mask ring_entries flags dropped array
    cq_off = struct.unpack_from("6I", params, 80)  # head tail ring_mask ring_entries overflow cqes
    sq = mmap.mmap(ring, sq_off[6] + sq_entries * 4, offset=IORING_OFF_SQ_RING)
    cq = mmap.mmap(ring, cq_off[5] + cq_entries * 16, offset=IORING_OFF_CQ_RING)
    sqes = mmap.mmap(ring, sq_entries * 64, offset=IORING_OFF_SQES)
    sqe = struct.pack("<BBHiQQIIQ", opcode, 0, 0, fd, off, addr, length, op_flags, 0x5EED).ljust(64, b"\0")
    sqes[0:64] = sqe
    tail = struct.unpack_from("I", sq, sq_off[1])[0]
    mask = struct.unpack_from("I", sq, sq_off[2])[0]
    struct.pack_into("I", sq, sq_off[6] + 4 * (tail & mask), 0)
    struct.pack_into("I", sq, sq_off[1], tail + 1)
    check_errno(libc.syscall(NR["io_uring_enter"], ring, 1, 1, 1, None, 0), "io_uring_enter")
    head = struct.unpack_from("I", cq, cq_off[0])[0]
    cmask = struct.unpack_from("I", cq, cq_off[2])[0]
    _, res, _ = struct.unpack_from("<QiI", cq, cq_off[5] + 16 * (head & cmask))
    return res


def uring_open_write(path):
    name = ctypes.create_string_buffer(path.encode())
    res = io_uring_one(IORING_OP_OPENAT, -100, ctypes.addressof(name), 0, 0, os.O_WRONLY)
    if res < 0:
        raise OSError(-res, "io_uring openat: " + os.strerror(-res))
    os.write(res, b"TAMPERED")


def uring_connect(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sin = ctypes.create_string_buffer(struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton("127.0.0.1")))
    sin.raw = struct.pack("=H", socket.AF_INET) + sin.raw[2:]  # sin_family in host order
    res = io_uring_one(IORING_OP_CONNECT, sock.fileno(), ctypes.addressof(sin), 0, 16, 0)
    if res < 0:
        raise OSError(-res, "io_uring connect: " + os.strerror(-res))


# ------------------------------------------------------------------ the cases: path, not inode

def setup_protected(ctx):
    write(ctx.p("protected"))


def a_sed_i(ctx):  # what sed -i, editors and package managers do: a new file renamed over the old one
    write(ctx.p("protected.tmp"), b"TAMPERED\n")
    os.rename(ctx.p("protected.tmp"), ctx.p("protected"))


def a_rename_into_dir(ctx):
    os.rename(ctx.state["prepared"], ctx.p("dir", "dropped"))


def a_link_into_dir(ctx):
    os.link(ctx.state["prepared"], ctx.p("dir", "linked"))


def setup_dir_and_prepared(ctx):
    write(ctx.p("dir", "existing"))
    ctx.state["prepared"] = ctx.p("prepared")
    write(ctx.state["prepared"], b"payload\n")


def a_renameat2_exchange(ctx):
    write(ctx.p("other"), b"TAMPERED\n")
    src, dst = ctypes.c_char_p(ctx.p("other").encode()), ctypes.c_char_p(ctx.p("protected").encode())
    check_errno(libc.syscall(NR["renameat2"], -100, src, -100, dst, 2), "renameat2(RENAME_EXCHANGE)")


def a_rename_away(ctx):
    os.rename(ctx.p("protected"), ctx.p("moved"))


def a_unlink(ctx):
    os.unlink(ctx.p("protected"))


def a_truncate(ctx):
    os.truncate(ctx.p("protected"), 0)


def a_open_trunc(ctx):
    os.close(os.open(ctx.p("protected"), os.O_WRONLY | os.O_TRUNC))


def a_create(name):
    def attack(ctx):
        fd = os.open(ctx.p(*name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"created\n")
    return attack


def a_replaced_then_write(ctx):
    """After a rename over the protected path (by anyone, e.g. a package upgrade), write to the new file."""
    write(ctx.p("protected.new"), CONTENT)
    os.rename(ctx.p("protected.new"), ctx.p("protected"))
    fd = os.open(ctx.p("protected"), os.O_WRONLY)
    os.write(fd, b"TAMPERED")


def a_write_direct(ctx):
    fd = os.open(ctx.p("protected"), os.O_WRONLY)
    os.write(fd, b"TAMPERED")


def a_inode_reuse(ctx):
    """Delete the protected file, then find a new file that reuses its inode number and write that one:
    harmless, unless a rule still matches the number."""
    ino = os.stat(ctx.p("protected")).st_ino
    if subprocess.run(["rm", "-f", ctx.p("protected")]).returncode != 0 or os.path.exists(ctx.p("protected")):
        ctx.note("unlink-denied")  # the rule protects the file from deletion: nothing to reuse
        return
    for i in range(300):
        path = ctx.p("fresh-%d" % i)
        write(path, b"")
        if os.stat(path).st_ino == ino:
            ctx.note("reused")
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b"harmless")
            os.close(fd)
            return
    ctx.note("n/a")  # this filesystem did not hand the number out again (tmpfs, ramfs): nothing to measure


def e_inode_reuse(ctx):
    return bool({"reused", "n/a", "unlink-denied"} & set(ctx.notes()))


# ------------------------------------------------------------------ other entry points

def a_open_by_handle(ctx):
    buf = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("I", buf, 0, 128)
    mount_id = ctypes.c_int()
    check_errno(libc.name_to_handle_at(-100, ctx.p("protected").encode(), buf, ctypes.byref(mount_id), 0),
                "name_to_handle_at")
    mount_fd = os.open(ctx.dir, os.O_RDONLY | os.O_DIRECTORY)
    fd = check_errno(libc.open_by_handle_at(mount_fd, buf, os.O_WRONLY), "open_by_handle_at")
    os.write(fd, b"TAMPERED")


def a_udp_sendto(ctx):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"exfil", ("127.0.0.1", ctx.port))


def a_udp_sendmsg(ctx):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendmsg([b"exfil"], [], 0, ("127.0.0.1", ctx.port))


def a_openat2(ctx):
    how = struct.pack("QQQ", os.O_WRONLY, 0, 0)  # struct open_how
    fd = check_errno(libc.syscall(NR["openat2"], -100, ctx.p("protected").encode(), how, len(how)), "openat2")
    os.write(fd, b"TAMPERED")


def a_creat(ctx):
    """creat(2), the old open(O_CREAT|O_WRONLY|O_TRUNC) of its own (x86_64 85): empties the protected file."""
    fd = check_errno(libc.syscall(NR["creat"], ctx.p("protected").encode(), 0o644), "creat")
    os.write(fd, b"TAMPERED")


def a_hardlink_write(ctx):
    os.link(ctx.p("protected"), ctx.p("alias"))
    fd = os.open(ctx.p("alias"), os.O_WRONLY)
    os.write(fd, b"TAMPERED")


def a_symlink_write(ctx):
    os.symlink(ctx.p("protected"), ctx.p("alias"))
    fd = os.open(ctx.p("alias"), os.O_WRONLY)
    os.write(fd, b"TAMPERED")


def a_v4_mapped_connect(ctx):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(("::ffff:127.0.0.1", ctx.port))


def a_udp_sendmmsg(ctx):
    """sendmmsg(2) with a destination in the msghdr: no connect(), no sendto()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sin = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET) + struct.pack("!H", ctx.port)
                                      + socket.inet_aton("127.0.0.1") + b"\0" * 8)
    data = ctypes.create_string_buffer(b"exfil")
    iov = ctypes.create_string_buffer(struct.pack("QQ", ctypes.addressof(data), 5))
    msg = ctypes.create_string_buffer(struct.pack("QI4xQQQQi4xI4x", ctypes.addressof(sin), 16, ctypes.addressof(iov),
                                                  1, 0, 0, 0, 0))  # struct mmsghdr: msghdr + msg_len
    check_errno(libc.syscall(NR["sendmmsg"], sock.fileno(), msg, 1, 0), "sendmmsg")


def a_udp_connect_send(ctx):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", ctx.port))
    sock.send(b"exfil")


def a_tcp_fastopen(ctx):
    """TCP Fast Open: sendto(MSG_FASTOPEN) connects without a connect() call."""
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).sendto(b"hello", socket.MSG_FASTOPEN, ("127.0.0.1", ctx.port))


def a_tcp_connect(ctx):
    socket.create_connection(("127.0.0.1", ctx.port), timeout=5).close()


# ------------------------------------------------------------------ kill after effect

def setup_prior_fd(ctx):
    """An fd opened for write before the sensor starts (kept by the runner, inherited by the attacker)."""
    setup_protected(ctx)
    ctx.state["fd"] = os.open(ctx.p("protected"), os.O_WRONLY)


def a_prior_fd(ctx):
    os.write(ctx.state["fd"], b"TAMPERED")


def a_clone_files(ctx):
    """A CLONE_FILES child opens the file (and may die for it); the parent writes through the shared fd."""
    status = clone_files(lambda: os.open(ctx.p("protected"), os.O_WRONLY))
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        ctx.note("killed")
    for fd, target in fd_links().items():
        if target == ctx.p("protected"):
            ctx.note("fd-survived")
            os.write(fd, b"TAMPERED")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (100 + errno.EPERM, 100 + errno.EACCES):
        raise PermissionError(os.WEXITSTATUS(status) - 100, "the child's open was refused")


# ------------------------------------------------------------------ exec

def setup_denied_tool(ctx):
    copy_tool(ctx.p("denied"))


def marker(ctx):
    return exists(ctx.p("marker"))(ctx)


def a_exec_direct(ctx):
    os.execv(ctx.p("denied"), [ctx.p("denied"), ctx.p("marker")])


def a_execveat_o_path(ctx):
    """execveat(fd, "", AT_EMPTY_PATH) of an O_PATH fd (what fexecve does): no path at exec time."""
    fd = os.open(ctx.p("denied"), os.O_PATH)
    os.execve(fd, ["denied", ctx.p("marker")], dict(os.environ))


def a_hardlink_exec(ctx):
    os.link(ctx.p("denied"), ctx.p("innocent"))
    os.execv(ctx.p("innocent"), ["innocent", ctx.p("marker")])


def a_renamed_exec(ctx):
    os.rename(ctx.p("denied"), ctx.p("renamed"))
    os.execv(ctx.p("renamed"), ["renamed", ctx.p("marker")])


def setup_denied_scripts(ctx):
    os.makedirs(ctx.p("denied-dir"), exist_ok=True)
    write(ctx.p("denied-dir", "x.sh"), ("#!/bin/sh\ntouch %s\n" % ctx.p("marker")).encode(), 0o755)


def a_sh_script(ctx):
    sh = tool("sh")
    os.execv(sh, [sh, ctx.p("denied-dir", "x.sh")])


def a_shebang(ctx):
    os.execv(ctx.p("denied-dir", "x.sh"), [ctx.p("denied-dir", "x.sh")])


def ldso():
    for path in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/ld-linux-x86-64.so.2"):
        if os.path.exists(path):
            return path
    return ""


def a_ldso(ctx):
    os.execv(ldso(), [ldso(), ctx.p("denied"), ctx.p("marker")])


def a_memfd(ctx):
    fd = os.memfd_create("payload", 0)
    with open(ctx.p("denied"), "rb") as fh:
        os.write(fd, fh.read())
    os.execve(fd, ["payload", ctx.p("marker")], dict(os.environ))


def setup_bind(ctx):
    os.makedirs(ctx.p("denied-dir"), exist_ok=True)
    copy_tool(ctx.p("denied-dir", "tool"))
    os.makedirs(ctx.p("elsewhere"), exist_ok=True)
    os.makedirs(ctx.p("out"), exist_ok=True)
    os.chmod(ctx.p("out"), 0o777)
    os.chmod(ctx.dir, 0o755)


def mount(src, dst, flags):
    check_errno(libc.mount(src and src.encode(), dst.encode(), None, flags, None), "mount %s" % dst)


def a_bind_mount(ctx):
    check_errno(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")  # never touch the host's mount table
    mount(None, "/", MS_REC | MS_PRIVATE)
    mount(ctx.p("denied-dir"), ctx.p("elsewhere"), MS_BIND)
    os.execv(ctx.p("elsewhere", "tool"), ["tool", ctx.p("out", "marker")])


def a_userns_bind_mount(ctx):
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: a setuid() from root cleared it, /proc/self would stay root's
    check_errno(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
    for name, text in (("setgroups", "deny"), ("uid_map", "0 65534 1"), ("gid_map", "0 65534 1")):
        with open("/proc/self/" + name, "w") as fh:
            fh.write(text)
    mount(None, "/", MS_REC | MS_PRIVATE)
    mount(ctx.p("denied-dir"), ctx.p("elsewhere"), MS_BIND)
    os.execv(ctx.p("elsewhere", "tool"), ["tool", ctx.p("out", "marker")])


def bind_marker(ctx):
    return os.path.exists(ctx.p("out", "marker"))


def setup_hashed(ctx):
    copy_tool(ctx.p("hashed-dir", "hashed"), extra=b"\0endura evasion sha256 case " + ctx.case.id.encode())
    with open(ctx.p("hashed-dir", "hashed"), "rb") as fh:
        ctx.state["sha256"] = hashlib.sha256(fh.read()).hexdigest()


def a_hash_copy(dest):
    def attack(ctx):
        path = ctx.p(*dest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(ctx.p("hashed-dir", "hashed"), path)
        os.execv(path, [path, ctx.p("marker")])
    return attack


def hash_rule(ctx):
    return {"type": "exec", "sha256": ctx.state["sha256"], "search": [ctx.p("hashed-dir")]}


# ------------------------------------------------------------------ 32-bit (x86: vmtest/evasion_int80.c)

def a_int80(*args):
    def attack(ctx):
        helper = ctx.runner.int80_copy(ctx)
        code = run_argv(ctx, [helper] + [a.format(p=ctx.p("protected"), port=ctx.port) for a in args])
        if code not in (0, -signal.SIGKILL, 100 + errno.EPERM, 100 + errno.EACCES):
            ctx.note("exit:%d" % code)
        if code == 0:
            ctx.note("ran")
    return attack


def ran(ctx):
    return "ran" in ctx.notes()


def ran_unknown(ctx):
    """The call's effect cannot be seen from outside: None when the caller died (outcome `killed`)."""
    return True if "ran" in ctx.notes() else None


# ------------------------------------------------------------------ self-protection

BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_PROG_GET_NEXT_ID, BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = \
    3, 4, 11, 14, 15


class SharedBpf:
    """bpf() calls made by short-lived CLONE_FILES children, as an attacker would against a post-hoc kill:
    each child may die after its call, but fds land in the shared table and results in shared memory."""

    def __init__(self, ctx):
        self.ctx, self.mem = ctx, mmap.mmap(-1, 8192)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.calls = 0

    def call(self, cmd, attr):
        self.mem[0:len(attr)] = attr
        struct.pack_into("q", self.mem, 8000, -999999)
        self.calls += 1

        def child():
            ret = libc.syscall(NR["bpf"], cmd, ctypes.c_void_p(self.base), len(attr))
            struct.pack_into("q", self.mem, 8000, ret if ret >= 0 else -ctypes.get_errno())
        status = clone_files(child)
        if os.WIFSIGNALED(status):
            self.ctx.note("killed")
        ret = struct.unpack_from("q", self.mem, 8000)[0]
        if ret in (-errno.EPERM, -errno.EACCES):
            raise PermissionError(-ret, "bpf(%d) refused" % cmd)
        return ret


def sensor_map_ids(pid):
    ids = []
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as fh:
                for line in fh:
                    if line.startswith("map_id:"):
                        ids.append(int(line.split()[1]))
        except OSError:
            pass
    return sorted(set(ids))


def a_bpf_map_delete(ctx):
    """Find the sensor's maps through /proc/<pid>/fdinfo, open them by id and delete every key."""
    b = SharedBpf(ctx)
    deleted = 0
    for map_id in sensor_map_ids(ctx.runner.sensor_pid):
        before = set(fd_links().items())
        b.call(BPF_MAP_GET_FD_BY_ID, struct.pack("III", map_id, 0, 0))
        new = [fd for fd, link in set(fd_links().items()) - before if link.startswith("anon_inode:bpf-map")]
        if not new:
            continue
        fd = new[0]
        struct.pack_into("I" * 20, b.mem, 1024, *([0] * 20))
        b.call(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, 80, b.base + 1024))
        map_type, _, key_size = struct.unpack_from("III", b.mem, 1024)
        if map_type not in (1, 5, 9, 10, 11) or not 0 < key_size <= 256:  # hash kinds and the LPM trie
            continue
        keys, key_ptr = [], 0
        while len(keys) < 64:
            b.mem[2048:2048 + key_size] = b"\xa5" * key_size
            b.call(BPF_MAP_GET_NEXT_KEY, struct.pack("IIQQ", fd, 0, key_ptr, b.base + 2048))
            key = bytes(b.mem[2048:2048 + key_size])
            if key == b"\xa5" * key_size or key in keys:
                break
            keys.append(key)
            b.mem[3072:3072 + key_size] = key
            key_ptr = b.base + 3072
        for key in keys:
            b.mem[4096:4096 + key_size] = key
            b.call(BPF_MAP_DELETE_ELEM, struct.pack("IIQ", fd, 0, b.base + 4096))
            deleted += 1
    ctx.note("deleted:%d" % deleted)
    ctx.note("calls:%d" % b.calls)


def e_bpf_map_delete(ctx):
    """Enforcement gone: the program the policy denies now runs."""
    try_run([ctx.p("denied"), ctx.p("marker")])
    return marker(ctx)


def a_bpf_direct(ctx):
    attr = ctypes.create_string_buffer(8)
    ret = libc.syscall(NR["bpf"], BPF_PROG_GET_NEXT_ID, attr, 8)
    if ret < 0 and ctypes.get_errno() in (errno.EPERM, errno.EACCES):
        raise PermissionError(ctypes.get_errno(), "bpf refused")
    ctx.note("ran")


def a_join_cgroup(ctx):
    with open("/proc/%d/cgroup" % ctx.runner.sensor_pid) as fh:
        path = fh.read().strip().split("::", 1)[-1]
    with open(os.path.join(ctx.runner.cgroup_root, path.lstrip("/"), "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    a_bpf_direct(ctx)


def a_sigstop(ctx):
    os.kill(ctx.runner.sensor_pid, signal.SIGSTOP)


def e_sigstop(ctx):
    time.sleep(0.2)
    with open("/proc/%d/stat" % ctx.runner.sensor_pid) as fh:
        state = fh.read().rsplit(")", 1)[1].split()[0]
    ctx.runner.signal_sensor(signal.SIGCONT)
    return state in ("T", "t")


def a_ptrace(ctx):
    check_errno(libc.ptrace(0x4206, ctx.runner.sensor_pid, None, None), "ptrace(PTRACE_SEIZE)")  # SEIZE
    ctx.note("attached")


def a_kill9_remove_pins(ctx):
    """Inline: kill -9 the sensor (its pinned programs go on enforcing), then remove the pins."""
    ctx.runner.kill_sensor()
    if try_run([ctx.p("denied"), ctx.p("marker-before")]) == 0:
        ctx.note("not-enforcing-after-kill9")
    for name in os.listdir(ctx.runner.pin_dir):
        os.unlink(os.path.join(ctx.runner.pin_dir, name))
    return "ok"


def e_pins(ctx):
    """Enforcement gone: the denied program runs. Programs detach asynchronously once their last pin is gone
    (RCU), so a few tries over up to 3 s."""
    for _ in range(15):
        try_run([ctx.p("denied"), ctx.p("marker")])
        if marker(ctx):
            return True
        time.sleep(0.2)
    return False


# ------------------------------------------------------------------ false positives

def a_fp_read(ctx):
    with open(ctx.p("protected"), "rb") as fh:
        fh.read()
    ctx.note("ran")


def a_fp_sibling(ctx):
    write(ctx.p("sibling"), b"fine\n")
    ctx.note("ran")


def a_fp_exec(ctx):
    if run_argv(ctx, [ctx.p("allowed"), ctx.p("marker")]) == 0:
        ctx.note("ran")


def a_fp_connect(ctx):
    socket.create_connection(("127.0.0.1", ctx.port), timeout=5).close()
    ctx.note("ran")


# ------------------------------------------------------------------ the catalog

def P(ctx):
    return ctx.p("protected")


CASES = [
    # baselines: the direct forms every tier must stop
    Case("file-write-direct", "path-not-inode", a_write_direct, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("exec-direct", "exec", a_exec_direct, marker, [lambda c: {"type": "exec", "path": c.p("denied")}],
         setup_denied_tool),
    Case("tcp-connect", "kill-after-effect", a_tcp_connect, arrived, [lambda c: connect_rule(c.port)], tcp_listener),
    # protecting a path, not an inode
    Case("sed-i-rename-over", "path-not-inode", a_sed_i, lambda c: changed(P(c))(c), [lambda c: file_rule(P(c))],
         setup_protected),
    Case("renameat2-exchange", "path-not-inode", a_renameat2_exchange, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("rename-away", "path-not-inode", a_rename_away, lambda c: not os.path.exists(P(c)),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("mv-into-dir", "path-not-inode", a_rename_into_dir, lambda c: exists(c.p("dir", "dropped"))(c),
         [lambda c: {"type": "file", "dir": c.p("dir")}], setup_dir_and_prepared),
    Case("ln-into-dir", "path-not-inode", a_link_into_dir, lambda c: exists(c.p("dir", "linked"))(c),
         [lambda c: {"type": "file", "dir": c.p("dir")}], setup_dir_and_prepared),
    Case("hardlink-then-write", "path-not-inode", a_hardlink_write, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("symlink-then-write", "path-not-inode", a_symlink_write, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("unlink", "path-not-inode", a_unlink, lambda c: not os.path.exists(P(c)), [lambda c: file_rule(P(c))],
         setup_protected),
    Case("truncate-path", "path-not-inode", a_truncate, lambda c: changed(P(c))(c), [lambda c: file_rule(P(c))],
         setup_protected),
    Case("create-not-yet-existing", "path-not-inode", a_create(("rc.local",)), lambda c: exists(c.p("rc.local"))(c),
         [lambda c: file_rule(c.p("rc.local"))], lambda c: os.makedirs(c.dir, exist_ok=True)),
    Case("create-in-protected-dir", "path-not-inode", a_create(("dir", "new.conf")),
         lambda c: exists(c.p("dir", "new.conf"))(c), [lambda c: {"type": "file", "dir": c.p("dir")}],
         setup_dir_and_prepared),
    Case("replaced-then-write", "path-not-inode", a_replaced_then_write, lambda c: b"TAMPERED" in (read(P(c)) or b""),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("inode-reuse", "false-positive", a_inode_reuse, e_inode_reuse, [lambda c: file_rule(P(c))],
         setup_protected, fp=True, note="a new file reusing a deleted protected file's inode number must be writable",
         disk=True),
    # other entry points
    Case("io-uring-openat", "other-entry-points", lambda c: uring_open_write(P(c)), lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c)), lambda c: {"type": "io_uring"}], setup_protected),
    Case("io-uring-connect", "other-entry-points", lambda c: uring_connect(c.port), arrived,
         [lambda c: connect_rule(c.port), lambda c: {"type": "io_uring"}], tcp_listener),
    Case("openat2", "other-entry-points", a_openat2, lambda c: changed(P(c))(c), [lambda c: file_rule(P(c))],
         setup_protected),
    Case("creat", "other-entry-points", a_creat, lambda c: changed(P(c))(c), [lambda c: file_rule(P(c))],
         setup_protected, x86=True),
    Case("v4-mapped-v6-connect", "other-entry-points", a_v4_mapped_connect, arrived, [lambda c: connect_rule(c.port)],
         tcp_listener),
    Case("open-by-handle-at", "other-entry-points", a_open_by_handle, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_protected),
    Case("udp-sendto", "other-entry-points", a_udp_sendto, arrived, [lambda c: connect_rule(c.port)], udp_listener),
    Case("udp-sendmsg", "other-entry-points", a_udp_sendmsg, arrived, [lambda c: connect_rule(c.port)], udp_listener),
    Case("udp-sendmmsg", "other-entry-points", a_udp_sendmmsg, arrived, [lambda c: connect_rule(c.port)], udp_listener),
    Case("udp-connect-send", "other-entry-points", a_udp_connect_send, arrived, [lambda c: connect_rule(c.port)],
         udp_listener),
    Case("tcp-fastopen", "other-entry-points", a_tcp_fastopen, arrived, [lambda c: connect_rule(c.port)], tcp_listener),
    # the kill comes after the effect
    Case("o-trunc-open", "kill-after-effect", a_open_trunc, lambda c: changed(P(c))(c), [lambda c: file_rule(P(c))],
         setup_protected),
    Case("fd-opened-before-start", "kill-after-effect", a_prior_fd, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_prior_fd),
    Case("clone-files-parent-writes", "kill-after-effect", a_clone_files, lambda c: changed(P(c))(c),
         [lambda c: file_rule(P(c))], setup_protected),
    # exec
    Case("sh-script", "exec", a_sh_script, marker, [lambda c: {"type": "exec", "dir": c.p("denied-dir")}],
         setup_denied_scripts),
    Case("shebang-script", "exec", a_shebang, marker, [lambda c: {"type": "exec", "dir": c.p("denied-dir")}],
         setup_denied_scripts),
    Case("execveat-o-path", "exec", a_execveat_o_path, marker, [lambda c: {"type": "exec", "path": c.p("denied")}],
         setup_denied_tool),
    Case("hardlink-exec", "exec", a_hardlink_exec, marker, [lambda c: {"type": "exec", "path": c.p("denied")}],
         setup_denied_tool),
    Case("renamed-exec", "exec", a_renamed_exec, marker, [lambda c: {"type": "exec", "path": c.p("denied")}],
         setup_denied_tool),
    Case("ldso-payload", "exec", a_ldso, marker, [lambda c: {"type": "exec", "path": c.p("denied")}],
         setup_denied_tool),
    Case("memfd-fexecve", "exec", a_memfd, marker,
         [lambda c: {"type": "exec", "path": c.p("denied")}, lambda c: {"type": "fileless_exec"}], setup_denied_tool),
    Case("bind-mount", "exec", a_bind_mount, bind_marker, [lambda c: {"type": "exec", "dir": c.p("denied-dir")}],
         setup_bind),
    Case("userns-bind-mount", "exec", a_userns_bind_mount, bind_marker,
         [lambda c: {"type": "exec", "dir": c.p("denied-dir")}], setup_bind),
    Case("sha256-copy-elsewhere", "exec", a_hash_copy(("elsewhere", "copy")), marker, [hash_rule], setup_hashed),
    Case("sha256-copy-in-search-dir", "exec", a_hash_copy(("hashed-dir", "fresh-copy")), marker, [hash_rule],
         setup_hashed),
    # 32-bit (int 0x80)
    Case("int80-open", "32-bit", a_int80("open", "{p}"), lambda c: changed(P(c))(c), [lambda c: file_rule(P(c))],
         setup_protected, x86=True),
    Case("int80-connect", "32-bit", a_int80("connect", "{port}"), arrived, [lambda c: connect_rule(c.port)],
         tcp_listener, x86=True),
    Case("int80-init-module", "32-bit", a_int80("init_module"), ran_unknown, [lambda c: {"type": "module_load"}],
         group="module", x86=True),
    Case("int80-bpf", "32-bit", a_int80("bpf"), ran_unknown, [lambda c: {"type": "bpf"}], group="bpf", x86=True),
    # false positives
    Case("fp-read-protected", "false-positive", a_fp_read, ran, [lambda c: file_rule(P(c))], setup_protected, fp=True),
    Case("fp-write-sibling", "false-positive", a_fp_sibling, ran, [lambda c: file_rule(c.p("protected"))],
         setup_protected, fp=True),
    Case("fp-exec-allowed", "false-positive", a_fp_exec, ran, [lambda c: {"type": "exec", "path": c.p("denied")}],
         lambda c: (setup_denied_tool(c), copy_tool(c.p("allowed"))), fp=True),
    Case("fp-connect-allowed", "false-positive", a_fp_connect, ran, [lambda c: connect_rule(c.port + 1000)],
         tcp_listener, fp=True),
    Case("fp-int80-ordinary", "false-positive", a_int80("ordinary"), ran, [], x86=True, fp=True),
    Case("fp-int80-rt-sigprocmask", "false-positive", a_int80("sigprocmask"), ran, [lambda c: {"type": "module_load"}],
         group="module", x86=True, fp=True, note="i386 175 = x86_64 init_module"),
    Case("fp-int80-splice", "false-positive", a_int80("splice"), ran, [lambda c: {"type": "module_load"}],
         group="module", x86=True, fp=True, note="i386 313 = x86_64 finit_module"),
    Case("fp-int80-signalfd", "false-positive", a_int80("signalfd"), ran, [lambda c: {"type": "bpf"}], group="bpf",
         x86=True, fp=True, note="i386 321 = x86_64 bpf"),
    # self-protection
    Case("ptrace-sensor", "self-protection", a_ptrace, lambda c: "attached" in c.notes(),
         [lambda c: {"type": "sensor"}]),
    Case("sigstop-sensor", "self-protection", a_sigstop, e_sigstop, [lambda c: {"type": "sensor"}]),
    Case("bpf-direct", "self-protection", a_bpf_direct, ran_unknown, [lambda c: {"type": "bpf"}], group="bpf"),
    Case("bpf-map-delete-clone-files", "self-protection", a_bpf_map_delete, e_bpf_map_delete,
         [lambda c: {"type": "bpf"}, lambda c: {"type": "exec", "path": c.p("denied")}], setup_denied_tool,
         group="bpf"),
    Case("join-sensor-cgroup", "self-protection", a_join_cgroup, ran_unknown, [lambda c: {"type": "bpf"}],
         group="cgroup"),
    Case("pins-removed-after-kill9", "self-protection", a_kill9_remove_pins, e_pins,
         [lambda c: {"type": "exec", "path": c.p("denied")}], setup_denied_tool, group="pins", inline=True),
]
CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS)
SINGLETONS = ("module_load", "bpf", "fileless_exec", "io_uring", "sensor")
TAMPER_EVENTS = ("sensor_tamper_denied",)


def outcome(case, status, notes, effect):
    """The outcome from the attacker's exit (`forked`), the notes its processes left and the effect check."""
    if "n/a" in notes:
        return "n/a"
    killed = status == "killed" or "killed" in notes
    refused = status in ("eperm", "eacces") or "refused" in notes
    if case.fp:
        return "ok" if effect and status == "ok" and not killed else "false-positive"
    if effect is None:
        return "killed" if killed else "blocked" if refused else "failed"
    if effect:
        return "killed-after-effect" if killed else "refused-after-effect" if refused else "evaded"
    if killed:
        return "killed-before-effect"
    return "blocked" if refused else "failed"


if __name__ == "__main__":  # the command line lives in evasion_run (the runner); the catalog stays importable alone
    from vmtest import evasion_run

    sys.exit(evasion_run.main())
