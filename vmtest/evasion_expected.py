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
        'sed-i-rename-over':           ('blocked', True),
        'renameat2-exchange':          ('blocked', True),
        'rename-away':                 ('blocked', True),
        'mv-into-dir':                 ('blocked', True),
        'ln-into-dir':                 ('blocked', True),
        'hardlink-then-write':         ('blocked', True),
        'symlink-then-write':          ('blocked', True),
        'unlink':                      ('blocked', True),
        'truncate-path':               ('blocked', True),
        'create-not-yet-existing':     ('blocked', True),
        'create-in-protected-dir':     ('blocked', True),
        'replaced-then-write':         ('blocked', True),
        'inode-reuse':                 ('ok', True),
        'io-uring-openat':             ('blocked', True),
        'io-uring-connect':            ('blocked', True),
        'openat2':                     ('blocked', True),
        'creat':                       ('blocked', True),
        'v4-mapped-v6-connect':        ('blocked', True),
        'open-by-handle-at':           ('blocked', True),
        'udp-sendto':                  ('blocked', True),
        'udp-sendmsg':                 ('blocked', True),
        'udp-sendmmsg':                ('blocked', True),
        'udp-connect-send':            ('blocked', True),
        'tcp-fastopen':                ('blocked', True),
        'o-trunc-open':                ('blocked', True),
        'fd-opened-before-start':      ('blocked', True),
        'clone-files-parent-writes':   ('blocked', True),
        'sh-script':                   ('blocked', True),
        'shebang-script':              ('blocked', True),
        'execveat-o-path':             ('blocked', True),
        'hardlink-exec':               ('blocked', True),
        'renamed-exec':                ('blocked', True),
        'ldso-payload':                ('blocked', True),
        'memfd-fexecve':               ('blocked', True),
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
        'ptrace-sensor':               ('blocked', True),
        'sigstop-sensor':              ('blocked', True),
        'bpf-direct':                  ('blocked', True),
        'bpf-map-delete-clone-files':  ('blocked', True),
        'join-sensor-cgroup':          ('blocked', True),
        'pins-removed-after-kill9':    ('evaded', True),
    },
    # 6.1.0-50-cloud-amd64 (x86_64)
    'fentry': {
        'file-write-direct':           ('blocked', True),
        'exec-direct':                 ('blocked', True),
        'tcp-connect':                 ('blocked', True),
        'sed-i-rename-over':           ('blocked', True),
        'renameat2-exchange':          ('blocked', True),
        'rename-away':                 ('blocked', True),
        'mv-into-dir':                 ('blocked', True),
        'ln-into-dir':                 ('blocked', True),
        'hardlink-then-write':         ('blocked', True),
        'symlink-then-write':          ('blocked', True),
        'unlink':                      ('blocked', True),
        'truncate-path':               ('blocked', True),
        'create-not-yet-existing':     ('blocked', True),
        'create-in-protected-dir':     ('blocked', True),
        'replaced-then-write':         ('blocked', True),
        'inode-reuse':                 ('ok', True),
        'io-uring-openat':             ('blocked', True),
        'io-uring-connect':            ('blocked', True),
        'openat2':                     ('blocked', True),
        'creat':                       ('blocked', True),
        'v4-mapped-v6-connect':        ('blocked', True),
        'open-by-handle-at':           ('blocked', True),
        'udp-sendto':                  ('blocked', True),
        'udp-sendmsg':                 ('blocked', True),
        'udp-sendmmsg':                ('blocked', True),
        'udp-connect-send':            ('blocked', True),
        'tcp-fastopen':                ('blocked', True),
        'o-trunc-open':                ('blocked', True),
        'fd-opened-before-start':      ('blocked', True),
        'clone-files-parent-writes':   ('blocked', True),
        'sh-script':                   ('blocked', True),
        'shebang-script':              ('blocked', True),
        'execveat-o-path':             ('blocked', True),
        'hardlink-exec':               ('blocked', True),
        'renamed-exec':                ('blocked', True),
        'ldso-payload':                ('blocked', True),
        'memfd-fexecve':               ('blocked', True),
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
        'ptrace-sensor':               ('blocked', True),
        'sigstop-sensor':              ('blocked', True),
        'bpf-direct':                  ('blocked', True),
        'bpf-map-delete-clone-files':  ('blocked', True),
        'join-sensor-cgroup':          ('blocked', True),
        'pins-removed-after-kill9':    ('evaded', True),
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
        'pins-removed-after-kill9':    ('evaded', True),
    },
}

#: why a case is evaded (or a false positive) on a tier: one line each, for docs/evasion.md.
#: (tier, case) overrides case.
REASONS: Dict[object, str] = {
    # the tracepoint tier: it can only kill, after the call returned (or at its entry, and the call still runs)
    "tcp-connect": "the kill is delivered when connect() returns; on loopback the handshake completes inside it",
    "v4-mapped-v6-connect": "the kill is delivered when connect() returns; on loopback the handshake completes inside it",
    "creat": "creat(2) truncates the file inside the call; the kill comes at its return",
    "o-trunc-open": "O_TRUNC empties the file inside open(); the kill comes at its return (the lsm and fentry tiers "
                    "refuse the open first)",
    "create-in-protected-dir": "O_CREAT creates the file inside open(); the kill comes at its return",
    "create-not-yet-existing": "the protected name is matched (names map), but O_CREAT created the file inside "
                               "open(); the kill comes at its return",
    "udp-sendto": "sys_enter kills the sender, but sendto() still runs: one datagram leaves",
    "udp-sendmsg": "sys_enter kills the sender, but sendmsg() still runs: one datagram leaves",
    "udp-sendmmsg": "sys_enter kills the sender, but sendmmsg() still runs: its datagrams leave",
    "tcp-fastopen": "sys_enter kills the sender, but sendto(MSG_FASTOPEN) still runs: the SYN leaves",
    "int80-connect": "decoded as i386 connect, but the kill comes when the call returns (handshake done)",
    "sed-i-rename-over": "rename(2) is a syscall this tier cannot refuse; a deep path is not resolved in BPF (only "
                         "single-component names), so it is not even killed; the new file at the name is protected "
                         "at once (names map)",
    "renameat2-exchange": "rename(2) is not refused on this tier, and deep paths are not resolved in BPF",
    "rename-away": "rename(2) is not refused on this tier, and deep paths are not resolved in BPF",
    "mv-into-dir": "rename(2) is not refused on this tier, and deep paths are not resolved in BPF",
    "ln-into-dir": "link(2) is not refused on this tier, and deep paths are not resolved in BPF",
    "unlink": "unlink(2) is not refused on this tier; ext4's tracepoint kills it on ext4, this case runs on tmpfs",
    "truncate-path": "truncate(2) is not refused on this tier; ext4's tracepoint kills it on ext4, this case runs on "
                     "tmpfs",
    "fd-opened-before-start": "write(2) on an fd the tier never saw opened is not checked (the lsm and fentry tiers "
                              "check every write: file_permission)",
    "sha256-copy-elsewhere": "sha256 rules resolve to the inodes found in their search dirs; a copy elsewhere is "
                             "another inode (deny writable places with dir rules)",
    "sha256-copy-in-search-dir": "a new copy in a search dir is hashed only at the next re-resolve (5 s)",
    "ptrace-sensor": "ptrace(2) is not hooked on this tier (the lsm and fentry tiers refuse it: sensor rule)",
    "sigstop-sensor": "the sender is killed (signal_generate), but the signal still arrives; the watchdog restarts "
                      "a stopped sensor and status says STOPPED",
    "bpf-direct": "bpf() runs before the kill (delivered at its return); the rule maps are frozen",
    "bpf-map-delete-clone-files": "each bpf() runs before its caller is killed, but the maps are frozen: the "
                                  "delete fails and the rules stay",
    "int80-init-module": "decoded as i386 init_module; the call runs before the kill",
    "int80-bpf": "decoded as i386 bpf; the call runs before the kill (the maps are frozen)",
    "join-sensor-cgroup": "joining gains nothing (only members placed by init are exempt); the joiner's bpf() runs "
                          "before the kill",
    "pins-removed-after-kill9": "with the sensor dead nothing runs to refuse it: enforcement stops; the next start "
                                "reports the removed pins (enforcement_tampered, status exits 4); the unit "
                                "restarts a killed sensor at once",
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
