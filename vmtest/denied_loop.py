"""A loop that tries denied operations of every rule type until a stop file appears (run as a script).

    python3 denied_loop.py STOP_FILE DENIED_EXEC PROTECTED_FILE DENIED_PORT [PAUSE_S]

Each operation runs in a forked child: the policy under test kills it (exec of DENIED_EXEC, open of
PROTECTED_FILE for write, connect to 127.0.0.1:DENIED_PORT, bpf(), finit_module()); a child that is not
killed is a window in enforcement. Prints one JSON object at the end: per type, attempts and windows
(children that were not killed), and the longest run of consecutive windows in milliseconds.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import time

NR = {"x86_64": {"bpf": 321, "finit_module": 313}, "aarch64": {"bpf": 280, "finit_module": 273}}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)


def main(stop_file: str, denied: str, protected: str, port: int, pause: float = 0.0) -> None:
    def op_exec():
        os.execv(denied, [denied])

    def op_file():
        os.open(protected, os.O_WRONLY)  # no O_TRUNC: the content must survive a kill at open's exit

    def op_connect():
        s = socket.socket()
        s.settimeout(1)
        s.connect_ex(("127.0.0.1", port))

    def op_bpf():
        libc.syscall(NR["bpf"], 11, None, 0)  # BPF_PROG_GET_NEXT_ID: harmless

    module = os.open(denied, os.O_RDONLY)  # not a module: the kernel would refuse it after reading it

    def op_module():
        # finit_module: the LSM hook (kernel_read_file) runs before the file is read; the kernel's own checks
        # would refuse this file after. (init_module with a bad buffer fails before any LSM hook is reached.)
        libc.syscall(NR["finit_module"], module, b"", 0)

    ops = {"exec": op_exec, "file": op_file, "connect": op_connect, "bpf": op_bpf, "module_load": op_module}
    stats = {name: {"attempts": 0, "windows": 0} for name in ops}
    window_start = None
    longest = 0.0
    while not os.path.exists(stop_file):
        if pause:
            time.sleep(pause)  # a pause per round leaves CPU to what is being restarted (1-vCPU guests)
        for name, op in ops.items():
            pid = os.fork()
            if pid == 0:
                try:
                    op()
                except BaseException:
                    pass
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            stats[name]["attempts"] += 1
            killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            now = time.monotonic()
            if killed:
                if window_start is not None:
                    longest = max(longest, now - window_start)
                window_start = None
            else:
                stats[name]["windows"] += 1
                window_start = window_start if window_start is not None else now
    if window_start is not None:
        longest = max(longest, time.monotonic() - window_start)
    print(json.dumps({"ops": stats, "longest_window_ms": round(longest * 1000)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
