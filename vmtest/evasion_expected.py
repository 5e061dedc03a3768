"""What the evasion suite (vmtest/evasion.py) measures today, per tier: case -> (outcome, event logged).

The truth as measured, not a wish: a case that gets better (another lane's hook landed) fails the suite
until this table is updated deliberately, and one that gets worse fails as a regression. The host runs
the tracepoint tier (tests/integration/test_evasion.py); the LSM and fentry tiers run inside the kernel
test VM (Debian 12, 6.1; vmtest/evasion_vm.py). `python3 -m vmtest.evasion --table` renders
docs/evasion.md from this file.
"""
from __future__ import annotations

from typing import Dict, Tuple

#: from better to worse, to say in which direction a case moved
RANK = {"blocked": 0, "ok": 0, "killed-before-effect": 1, "killed": 2, "killed-after-effect": 3, "refused-after-effect": 3, "evaded": 4,
        "false-positive": 4, "failed": 5, "n/a": 6, "error": 7}

EXPECTED: Dict[str, Dict[str, Tuple[str, bool]]] = {
    # the kernel test VM (vmtest.evasion_vm), measured 2026-12-02
    # 6.1.0-50-cloud-amd64 (x86_64)
    'lsm': {
        'file-write-direct':           ('blocked', True),
        'exec-direct':                 ('blocked', True),
        'tcp-connect':                 ('blocked', True),
        'sed-i-rename-over':           ('evaded', False),
        'renameat2-exchange':          ('evaded', False),
        'rename-away':                 ('evaded', False),
        'mv-into-dir':                 ('evaded', False),
        'ln-into-dir':                 ('evaded', False),
        'hardlink-then-write':         ('blocked', True),
        'symlink-then-write':          ('blocked', True),
        'unlink':                      ('evaded', False),
        'truncate-path':               ('evaded', False),
        'create-not-yet-existing':     ('evaded', False),
        'create-in-protected-dir':     ('refused-after-effect', True),
        'replaced-then-write':         ('evaded', False),
        'inode-reuse':                 ('n/a', False),
        'io-uring-openat':             ('blocked', True),
        'io-uring-connect':            ('blocked', True),
        'openat2':                     ('blocked', True),
        'creat':                       ('blocked', True),
        'v4-mapped-v6-connect':        ('blocked', True),
        'open-by-handle-at':           ('blocked', True),
        'udp-sendto':                  ('evaded', False),
        'udp-sendmsg':                 ('evaded', False),
        'udp-sendmmsg':                ('evaded', False),
        'udp-connect-send':            ('blocked', True),
        'tcp-fastopen':                ('evaded', False),
        'o-trunc-open':                ('blocked', True),
        'fd-opened-before-start':      ('evaded', False),
        'clone-files-parent-writes':   ('blocked', True),
        'sh-script':                   ('evaded', False),
        'shebang-script':              ('blocked', True),
        'execveat-o-path':             ('blocked', True),
        'hardlink-exec':               ('blocked', True),
        'renamed-exec':                ('blocked', True),
        'ldso-payload':                ('evaded', False),
        'memfd-fexecve':               ('evaded', False),
        'bind-mount':                  ('blocked', True),
        'userns-bind-mount':           ('blocked', True),
        'sha256-copy-elsewhere':       ('evaded', False),
        'sha256-copy-in-search-dir':   ('evaded', False),
        'int80-open':                  ('blocked', True),
        'int80-connect':               ('blocked', True),
        'int80-init-module':           ('blocked', True),
        'int80-bpf':                   ('blocked', True),
        'fp-read-protected':           ('ok', False),
        'fp-write-sibling':            ('ok', False),
        'fp-exec-allowed':             ('ok', False),
        'fp-connect-allowed':          ('ok', False),
        'fp-int80-ordinary':           ('ok', False),
        'fp-int80-rt-sigprocmask':     ('ok', False),
        'fp-int80-splice':             ('ok', False),
        'fp-int80-signalfd':           ('ok', False),
        'ptrace-sensor':               ('evaded', False),
        'sigstop-sensor':              ('evaded', False),
        'bpf-direct':                  ('blocked', True),
        'bpf-map-delete-clone-files':  ('blocked', True),
        'join-sensor-cgroup':          ('evaded', False),
        'pins-removed-after-kill9':    ('evaded', False),
    },
    # 6.1.0-50-cloud-amd64 (x86_64)
    'fentry': {
        'file-write-direct':           ('killed-before-effect', True),
        'exec-direct':                 ('killed-before-effect', True),
        'tcp-connect':                 ('killed-after-effect', True),
        'sed-i-rename-over':           ('evaded', False),
        'renameat2-exchange':          ('evaded', False),
        'rename-away':                 ('evaded', False),
        'mv-into-dir':                 ('evaded', False),
        'ln-into-dir':                 ('evaded', False),
        'hardlink-then-write':         ('killed-before-effect', True),
        'symlink-then-write':          ('killed-before-effect', True),
        'unlink':                      ('evaded', False),
        'truncate-path':               ('evaded', False),
        'create-not-yet-existing':     ('evaded', False),
        'create-in-protected-dir':     ('killed-after-effect', True),
        'replaced-then-write':         ('evaded', False),
        'inode-reuse':                 ('n/a', False),
        'io-uring-openat':             ('killed-before-effect', True),
        'io-uring-connect':            ('killed-after-effect', True),
        'openat2':                     ('killed-before-effect', True),
        'creat':                       ('killed-after-effect', True),
        'v4-mapped-v6-connect':        ('killed-after-effect', True),
        'open-by-handle-at':           ('killed-before-effect', True),
        'udp-sendto':                  ('evaded', False),
        'udp-sendmsg':                 ('evaded', False),
        'udp-sendmmsg':                ('evaded', False),
        'udp-connect-send':            ('killed-before-effect', True),
        'tcp-fastopen':                ('evaded', False),
        'o-trunc-open':                ('killed-after-effect', True),
        'fd-opened-before-start':      ('evaded', False),
        'clone-files-parent-writes':   ('killed-after-effect', True),
        'sh-script':                   ('evaded', False),
        'shebang-script':              ('killed-before-effect', True),
        'execveat-o-path':             ('killed-before-effect', True),
        'hardlink-exec':               ('killed-before-effect', True),
        'renamed-exec':                ('killed-before-effect', True),
        'ldso-payload':                ('evaded', False),
        'memfd-fexecve':               ('evaded', False),
        'bind-mount':                  ('killed-before-effect', True),
        'userns-bind-mount':           ('killed-before-effect', True),
        'sha256-copy-elsewhere':       ('evaded', False),
        'sha256-copy-in-search-dir':   ('evaded', False),
        'int80-open':                  ('killed-before-effect', True),
        'int80-connect':               ('killed-after-effect', True),
        'int80-init-module':           ('killed', True),
        'int80-bpf':                   ('killed', True),
        'fp-read-protected':           ('ok', False),
        'fp-write-sibling':            ('ok', False),
        'fp-exec-allowed':             ('ok', False),
        'fp-connect-allowed':          ('ok', False),
        'fp-int80-ordinary':           ('ok', False),
        'fp-int80-rt-sigprocmask':     ('ok', False),
        'fp-int80-splice':             ('ok', False),
        'fp-int80-signalfd':           ('ok', False),
        'ptrace-sensor':               ('evaded', False),
        'sigstop-sensor':              ('evaded', False),
        'bpf-direct':                  ('killed', True),
        'bpf-map-delete-clone-files':  ('killed-after-effect', True),
        'join-sensor-cgroup':          ('evaded', False),
        'pins-removed-after-kill9':    ('evaded', False),
    },
    # host: Debian 12 userspace, measured 2026-12-02
    # 6.18.44-fc-v1045 (x86_64)
    'tracepoint': {
        'file-write-direct':           ('killed-before-effect', True),
        'exec-direct':                 ('killed-before-effect', True),
        'tcp-connect':                 ('killed-after-effect', True),
        'sed-i-rename-over':           ('evaded', False),
        'renameat2-exchange':          ('evaded', False),
        'rename-away':                 ('evaded', False),
        'mv-into-dir':                 ('evaded', False),
        'ln-into-dir':                 ('evaded', False),
        'hardlink-then-write':         ('killed-before-effect', True),
        'symlink-then-write':          ('killed-before-effect', True),
        'unlink':                      ('evaded', False),
        'truncate-path':               ('evaded', False),
        'create-not-yet-existing':     ('killed-after-effect', True),
        'create-in-protected-dir':     ('killed-after-effect', True),
        'replaced-then-write':         ('killed-before-effect', True),
        'inode-reuse':                 ('ok', True),
        'io-uring-openat':             ('killed-before-effect', True),
        'io-uring-connect':            ('killed-before-effect', True),
        'openat2':                     ('killed-before-effect', True),
        'creat':                       ('killed-after-effect', True),
        'v4-mapped-v6-connect':        ('killed-after-effect', True),
        'open-by-handle-at':           ('killed-before-effect', True),
        'udp-sendto':                  ('killed-after-effect', True),
        'udp-sendmsg':                 ('killed-after-effect', True),
        'udp-sendmmsg':                ('killed-after-effect', True),
        'udp-connect-send':            ('killed-before-effect', True),
        'tcp-fastopen':                ('killed-after-effect', True),
        'o-trunc-open':                ('killed-after-effect', True),
        'fd-opened-before-start':      ('evaded', False),
        'clone-files-parent-writes':   ('killed-before-effect', True),
        'sh-script':                   ('killed-before-effect', True),
        'shebang-script':              ('killed-before-effect', True),
        'execveat-o-path':             ('killed-before-effect', True),
        'hardlink-exec':               ('killed-before-effect', True),
        'renamed-exec':                ('killed-before-effect', True),
        'ldso-payload':                ('killed-before-effect', True),
        'memfd-fexecve':               ('killed-before-effect', True),
        'bind-mount':                  ('killed-before-effect', True),
        'userns-bind-mount':           ('killed-before-effect', True),
        'sha256-copy-elsewhere':       ('evaded', False),
        'sha256-copy-in-search-dir':   ('evaded', False),
        'int80-open':                  ('killed-before-effect', True),
        'int80-connect':               ('killed-after-effect', True),
        'int80-init-module':           ('killed', True),
        'int80-bpf':                   ('killed', True),
        'fp-read-protected':           ('ok', False),
        'fp-write-sibling':            ('ok', False),
        'fp-exec-allowed':             ('ok', False),
        'fp-connect-allowed':          ('ok', False),
        'fp-int80-ordinary':           ('ok', False),
        'fp-int80-rt-sigprocmask':     ('ok', False),
        'fp-int80-splice':             ('ok', False),
        'fp-int80-signalfd':           ('ok', False),
        'ptrace-sensor':               ('evaded', False),
        'sigstop-sensor':              ('killed-after-effect', True),
        'bpf-direct':                  ('killed', True),
        'bpf-map-delete-clone-files':  ('killed-before-effect', True),
        'join-sensor-cgroup':          ('killed', True),
        'pins-removed-after-kill9':    ('evaded', False),
    },
}

#: why a case is evaded (or a false positive) on a tier: one line each, for docs/evasion.md.
#: (tier, case) overrides case.
REASONS: Dict[object, str] = {
    "tcp-connect": "the kill is delivered when connect() returns; on loopback the handshake completes inside it",
    "sed-i-rename-over": "file rules check open() only: rename(2) over the path is not checked, and the new inode "
                         "is not in the rule map until the next re-resolve",
    "renameat2-exchange": "the rename family is not hooked; the exchanged-in inode is not in the rule map",
    "rename-away": "rename(2) is not hooked: the protected file leaves its path",
    "mv-into-dir": "rename(2) is not hooked; a dir rule checks opens of files already below it",
    "ln-into-dir": "link(2) is not hooked; a dir rule checks opens of files already below it",
    "unlink": "unlink(2) is not hooked",
    "truncate-path": "truncate(2) by path is not hooked (only open)",
    "create-not-yet-existing": "rules are keyed by inode: a rule on a path that does not exist yet is inactive",
    "create-in-protected-dir": "O_CREAT creates the file inside open(); the kill comes at its return",
    "replaced-then-write": "after a rename over the path the new inode is unprotected until the next re-resolve "
                           "(resolve_interval, 5 s)",
    "inode-reuse": "rules are keyed by (dev, inode): a new file reusing a deleted protected file's number matches "
                   "the stale rule (and the event names it)",
    "io-uring-openat": "IORING_OP_OPENAT runs in the kernel (io-wq), not through the openat syscall; no io_uring "
                       "rule type yet",
    "io-uring-connect": "IORING_OP_CONNECT runs in the kernel (io-wq), not through the connect syscall; no "
                        "io_uring rule type yet",
    "open-by-handle-at": "open_by_handle_at(2) is not among the hooked syscalls",
    "creat": "creat(2) truncates the file inside the call; the kill comes at its return",
    "v4-mapped-v6-connect": "the kill is delivered when connect() returns; on loopback the handshake completes inside it",
    "udp-sendmmsg": "connect rules hook connect(); sendmmsg() with a destination in each msghdr never calls it",
    "udp-sendto": "connect rules hook connect(); a datagram with a destination address never calls it",
    "udp-sendmsg": "connect rules hook connect(); sendmsg() with msg_name never calls it",
    "tcp-fastopen": "sendto(MSG_FASTOPEN) connects without connect() (no socket_connect call either): the connect "
                    "rule never sees it",
    "o-trunc-open": "O_TRUNC empties the file inside open(); the kill comes at its return",
    "fd-opened-before-start": "files are checked at open; an fd opened before the sensor started is never seen",
    "clone-files-parent-writes": "the opener is killed, but the fd lives on in the parent sharing its fd table",
    "sh-script": "exec rules check the executed binary (the shell), not the script it reads",
    "shebang-script": "for a #! script the exec hook sees the interpreter (binfmt_script replaced the file)",
    "ldso-payload": "ld.so maps the payload with mmap(); only execve'd files are checked",
    "memfd-fexecve": "a memfd is a new inode no rule names; no fileless_exec rule type yet",
    "sha256-copy-elsewhere": "sha256 rules resolve to the inodes found in their search dirs; a copy elsewhere is "
                             "another inode",
    "sha256-copy-in-search-dir": "a new copy in a search dir is hashed only at the next re-resolve (5 s)",
    "int80-open": "the raw sys_enter hook reads i386 numbers as x86_64 ones: i386 open (5) is x86_64 fstat",
    "int80-connect": "i386 connect (362) is not decoded (x86_64 362 does not exist)",
    "int80-init-module": "i386 init_module (128) is x86_64 rt_sigtimedwait: not decoded",
    "int80-bpf": "i386 bpf (357) is not decoded (x86_64 357 does not exist)",
    "fp-int80-rt-sigprocmask": "i386 rt_sigprocmask (175) is read as x86_64 init_module",
    "fp-int80-splice": "i386 splice (313) is read as x86_64 finit_module",
    "fp-int80-signalfd": "i386 signalfd (321) is read as x86_64 bpf",
    "ptrace-sensor": "nothing protects the sensor's process (no sensor rule type yet)",
    "sigstop-sensor": "nothing protects the sensor's process: it stops, events pile up, status says running",
    "bpf-direct": "bpf() runs before the kill (delivered at its return)",
    "bpf-map-delete-clone-files": "each bpf() runs before its caller is killed; CLONE_FILES children hand the map "
                                  "fds to a parent that never calls bpf() itself: the rules are deleted",
    "join-sensor-cgroup": "the bpf rule exempts the sensor's cgroup by id, and any root process can join it",
    "pins-removed-after-kill9": "pins are plain bpffs files: nothing watches them after the sensor died, and the "
                                "next start does not report their absence",
    ("lsm", "create-in-protected-dir"): "file_open refuses the open, but O_CREAT has already created the file (no "
                                        "inode_create hook yet)",
    ("fentry", "io-uring-connect"): "the connect hook kills the submitter, but the handshake completes first",
    ("fentry", "int80-connect"): "decoded (the hook is on the kernel function), but the kill comes after the handshake",
    ("fentry", "int80-bpf"): "decoded (the hook is on the kernel function); bpf() runs before the kill",
    ("fentry", "int80-init-module"): "decoded (the hook is on the kernel function); the call runs before the kill",
}


def judge(tier: str, cases: Dict[str, dict]) -> list:
    """Problems of a run against EXPECTED[tier]: each case that moved, saying whether for better or worse."""
    expected = EXPECTED.get(tier)
    if expected is None:
        return [f"no expected outcomes for tier {tier!r} in vmtest/evasion_expected.py"]
    problems = []
    for case_id, want in expected.items():
        got = cases.get(case_id)
        if got is None:
            problems.append(f"{case_id}: no result (expected {want[0]})")
            continue
        have = (got["outcome"], bool(got.get("event")))
        if have == tuple(want):
            continue
        better = (RANK.get(have[0], 9), not have[1]) < (RANK.get(want[0], 9), not want[1])
        direction = ("better: update vmtest/evasion_expected.py (and docs/evasion.md: python3 -m vmtest.evasion "
                     "--table) deliberately" if better else "WORSE: a regression")
        problems.append(f"{case_id}: expected {want[0]}{' + event' if want[1] else ''}, got {have[0]}"
                        f"{' + event' if have[1] else ''} ({direction}; status {got.get('status')}, notes "
                        f"{got.get('notes')})")
    for case_id in cases:
        if case_id not in expected:
            problems.append(f"{case_id}: not in EXPECTED[{tier!r}]; got {cases[case_id]['outcome']}")
    return problems
