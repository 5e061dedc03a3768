"""The evasion suite's runner: one sensor per group of cases, each case's attack in a forked child, the
outcome and whether an event named the case's rule; the command line (`python3 -m vmtest.evasion`) and the
driver inside the kernel test VM (`python3 /vmtest/evasion_run.py --guest`). Stdlib only, Python >= 3.9.
The cases are vmtest/evasion.py.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    from vmtest.evasion import (
        ATTACK_TIMEOUT,
        BASE_PORT,
        CASE_IDS,
        CASES,
        GROUPS,
        HERE,
        MACHINE,
        SENSOR_DURATION,
        SINGLETONS,
        START_TIMEOUT,
        TAMPER_EVENTS,
        TIERS,
        X86_64,
        Ctx,
        a_ldso,
        ldso,
        libc,
        outcome,
    )
except ImportError:  # in the test VM: /vmtest/evasion_run.py next to /vmtest/evasion.py
    from evasion import (  # type: ignore[no-redef]
        ATTACK_TIMEOUT,
        BASE_PORT,
        CASE_IDS,
        CASES,
        GROUPS,
        HERE,
        MACHINE,
        SENSOR_DURATION,
        SINGLETONS,
        START_TIMEOUT,
        TAMPER_EVENTS,
        TIERS,
        X86_64,
        Ctx,
        a_ldso,
        ldso,
        libc,
        outcome,
    )

# ------------------------------------------------------------------ running a group under one sensor

def forked(action, ctx) -> str:
    """Run action(ctx) in a forked child with the case's comm: 'ok', 'killed', 'signal:N', 'eperm', 'eacces',
    'errno:NAME', 'exit:N' or 'error:timeout'."""
    pid = os.fork()
    ctx.pid = pid
    if pid == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        libc.prctl(15, ctx.comm.encode(), 0, 0, 0)  # PR_SET_NAME: events are matched to cases by comm
        code = 0
        try:
            action(ctx)
        except OSError as exc:
            code = 100 + exc.errno if exc.errno and exc.errno < 150 else 99
            try:
                ctx.note("oserror:" + errno.errorcode.get(exc.errno or 0, str(exc.errno)))
            except OSError:
                pass
        except BaseException as exc:
            try:
                ctx.note("exception:" + type(exc).__name__)
            except OSError:
                pass
            code = 98
        os._exit(code)
    deadline = time.monotonic() + ATTACK_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "error:timeout"
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        return "killed" if os.WTERMSIG(status) == signal.SIGKILL else "signal:%d" % os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    if code == 0:
        return "ok"
    if 100 < code < 250:
        return {errno.EPERM: "eperm", errno.EACCES: "eacces"}.get(code - 100, "errno:" + errno.errorcode.get(
            code - 100, str(code - 100)))
    return "exit:%d" % code


def rule_text(rules):
    out = []
    for r in rules:
        out.append("[[rule]]\n" + "".join("%s = %s\n" % (k, json.dumps(v)) for k, v in r.items()))
    return "\n".join(out)


def known_rule_types(sensor_path):
    """RULE_TYPES of the sensor under test (rules of types it does not know yet are left out, and noted)."""
    for path in sensor_path:
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)
    try:
        from endura_sensor import policy
        return tuple(policy.RULE_TYPES)
    except ImportError:
        return ("exec", "file", "connect", "module_load", "bpf")


class SensorKilled(Exception):
    pass


class Runner:
    def __init__(self, tier, root, sensor_cmd, env=None, int80=None, sensor_path=(), log=sys.stderr):
        self.tier, self.root, self.sensor_cmd, self.env, self.int80 = tier, root, sensor_cmd, env, int80
        self.log = log
        self.rule_types = known_rule_types(sensor_path)
        self.sensor = None
        self.sensor_pid = 0
        self.pin_dir = ""
        self.cgroup_root = ""
        self.timings = {}

    def say(self, text):
        print(text, file=self.log, flush=True)

    def int80_copy(self, ctx):
        """The helper under the case's comm, so its events are matched to the case."""
        path = ctx.p(ctx.comm)
        if not os.path.exists(path):
            os.makedirs(ctx.dir, exist_ok=True)
            shutil.copy(self.int80, path)
            os.chmod(path, 0o755)
        return path

    # --------------------------------------------------------- the sensor
    def start_sensor(self, name, rules_text, pin_dir="", cgroup=""):
        """Start a sensor for a group; a start SIGKILLed before "started" is retried (on a shared host another
        sensor's bpf rule kills every other bpf() caller, ours included, while it runs)."""
        for attempt in range(8):
            try:
                return self._start_sensor(name, rules_text, pin_dir, cgroup)
            except SensorKilled:
                self.say("evasion: the sensor was SIGKILLed while starting (another sensor's bpf rule?); retrying")
                time.sleep(1 + attempt)
        return self._start_sensor(name, rules_text, pin_dir, cgroup)

    def _start_sensor(self, name, rules_text, pin_dir="", cgroup=""):
        gdir = os.path.join(self.root, ".sensor-" + name)
        os.makedirs(os.path.join(gdir, "policies"), exist_ok=True)
        with open(os.path.join(gdir, "policies", "50-evasion.toml"), "w") as fh:
            fh.write(rules_text)
        with open(os.path.join(gdir, "sensor.conf"), "w") as fh:
            fh.write('mode = "standalone"\nterminate_process = %s\n' % ("true" if self.tier == "tracepoint" else "false"))
        self.out_path = os.path.join(gdir, "out-%d.jsonl" % int(time.time() * 1000))
        # a successor ("<group>-next") shares its predecessor's log dir, as on a host (/var/log/endura): that is
        # where a sensor leaves what its successor checks (the pins it held)
        owner = os.path.join(self.root, ".sensor-" + name[: -len("-next")]) if name.endswith("-next") else gdir
        log_dir = os.path.join(owner, "log")
        argv = list(self.sensor_cmd) + ["run", "--config", os.path.join(gdir, "sensor.conf"), "--policy-dir",
                                        os.path.join(gdir, "policies"), "--log-dir", log_dir,
                                        "--tier", self.tier, "--pin-dir", pin_dir, "--duration", str(SENSOR_DURATION)]
        if cgroup:
            argv = ["sh", "-c", 'echo $$ > %s/cgroup.procs && exec "$@"' % cgroup, "sh"] + argv
        with open(self.out_path, "w") as out, open(self.out_path + ".err", "w") as err:
            # this runner stands in for the service manager: the one process (besides init) a sensor rule
            # lets stop the sensor; attacks run in forked children, which it does not trust
            env = dict(self.env or os.environ, ENDURA_SERVICE_MANAGER_PID=str(os.getpid()))
            self.sensor = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        self.sensor_pid = self.sensor.pid
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.sensor.poll() is None:
            started = [r for r in self.records() if r.get("type") == "started"]
            if started:
                return started[0]
            time.sleep(0.05)
        self.stop_sensor()
        if self.sensor.returncode == -signal.SIGKILL:
            raise SensorKilled()
        with open(self.out_path + ".err") as fh:
            raise RuntimeError("the sensor did not start (exit %s): %s" % (self.sensor.returncode, fh.read()[-2000:]))

    def records(self):
        out = []
        try:
            with open(self.out_path) as fh:
                for line in fh:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        except OSError:
            pass
        return out

    def signal_sensor(self, sig):
        """Signal the sensor as its service manager ($ENDURA_SERVICE_MANAGER_PID is this runner): a sensor rule
        refuses (lsm, fentry) or kills (tracepoint) any other sender."""
        try:
            os.kill(self.sensor.pid, sig)
        except OSError:
            return 1
        return 0

    def stop_sensor(self):
        """SIGTERM (and SIGKILL after 60 s); a sensor that refuses both ends at its --duration."""
        if self.sensor is None:
            return
        if self.sensor.poll() is None:
            self.signal_sensor(signal.SIGCONT)
            self.signal_sensor(signal.SIGTERM)
            try:
                self.sensor.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.signal_sensor(signal.SIGKILL)
                self.sensor.wait()

    def kill_sensor(self):
        self.signal_sensor(signal.SIGKILL)
        self.sensor.wait()

    # --------------------------------------------------------- one group
    def run_group(self, group, cases):
        results = {}
        todo = []
        for case in cases:
            if case.x86 and not X86_64:
                results[case.id] = {"outcome": "n/a", "detail": "x86_64 only"}
            elif case.cls == "32-bit" or case.id.startswith("fp-int80"):
                if not self.int80:
                    results[case.id] = {"outcome": "n/a", "detail": "needs the int80 helper (clang)"}
                else:
                    todo.append(case)
            elif case.attack is a_ldso and not ldso():
                results[case.id] = {"outcome": "n/a", "detail": "no ld.so found"}
            else:
                todo.append(case)
        if not todo:
            return results
        ctxs, rules, names, skipped = {}, [], {}, {}
        seen_singletons = {}
        for case in todo:
            ctx = Ctx(self.root, case, BASE_PORT + CASES.index(case), self)
            os.makedirs(ctx.dir, exist_ok=True)
            os.makedirs(os.path.dirname(ctx.notes_path), exist_ok=True)
            if case.setup:
                case.setup(ctx)
            ctxs[case.id] = ctx
            own = []
            for i, make in enumerate(case.rules):
                r = make(ctx)
                if r["type"] not in self.rule_types:
                    skipped.setdefault(case.id, []).append(r["type"])
                    continue
                if r["type"] in SINGLETONS:
                    name = "ev-" + r["type"].replace("_", "-")
                    if r["type"] not in seen_singletons:
                        seen_singletons[r["type"]] = name
                        rules.append(dict({"name": name}, **r))
                    own.append(name)
                else:
                    name = "ev-%s-%d" % (case.id, i)
                    rules.append(dict({"name": name}, **r))
                    own.append(name)
            names[case.id] = own
        cgroup = ""
        if group == "cgroup":
            cgroup = self.make_cgroup()
        if group == "pins":
            self.pin_dir = self.mount_bpffs()
        t0 = time.monotonic()
        try:
            started = self.start_sensor(group, rule_text(rules), pin_dir=self.pin_dir if group == "pins" else "",
                                        cgroup=cgroup)
            self.say("evasion: group %s: sensor %d started (tier %s, %d rules) in %.1fs" % (
                group, self.sensor_pid, started.get("tier"), len(rules), time.monotonic() - t0))
            if started.get("tier") != self.tier:
                raise RuntimeError("asked for tier %s, the sensor started %s" % (self.tier, started.get("tier")))
            for case in todo:
                ctx = ctxs[case.id]
                status = case.attack(ctx) if case.inline else forked(case.attack, ctx)
                try:
                    effect = case.effect(ctx)
                except OSError as exc:
                    effect = None
                    ctx.note("effect-check:" + str(exc))
                res = {"outcome": outcome(case, status, ctx.notes(), effect), "status": status,
                       "notes": ctx.notes(), "rules": names[case.id]}
                if case.id in skipped:
                    res["rules_not_supported"] = skipped[case.id]
                results[case.id] = res
                if "fd" in ctx.state:
                    os.close(ctx.state.pop("fd"))
            time.sleep(0.5)  # the sensor polls its ring buffer every 100 ms
            if group == "pins":  # the next start must say the pins were removed
                self.start_sensor(group + "-next", rule_text(rules), pin_dir=self.pin_dir)
                time.sleep(0.5)
        finally:
            self.stop_sensor()
            if cgroup:
                self.remove_cgroup(cgroup)
            if group == "pins":
                subprocess.run(["umount", "-l", os.path.dirname(self.pin_dir)], check=False)
        records = self.records() if group != "pins" else self.group_records(group)
        for case in todo:
            res = results[case.id]
            res["event"] = has_event(records, names[case.id], ctxs[case.id], case)
            if res["outcome"] == "failed" and res["event"] and res["status"] not in ("ok", "killed"):
                # no effect, and the program that was refused reported it its own way (sh: "can't open",
                # exit 2; ld.so: exit 127) while the sensor logged the refusal: blocked
                res["outcome"] = "blocked"
        self.timings[group] = round(time.monotonic() - t0, 1)
        return results

    def group_records(self, group):
        out = []
        gdirs = [os.path.join(self.root, ".sensor-" + g) for g in (group, group + "-next")]
        for gdir in gdirs:
            for name in sorted(os.listdir(gdir)):
                if name.endswith(".jsonl"):
                    self.out_path = os.path.join(gdir, name)
                    out.extend(self.records())
        return out

    def mount_bpffs(self):
        mnt = os.path.join(self.root, ".bpffs")
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", mnt], check=True)
        return os.path.join(mnt, "endura")

    def make_cgroup(self):
        root = ""
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                f = line.split()
                if f[f.index("-") + 1] == "cgroup2":
                    root = f[4]
                    break
        if not root:
            root = "/sys/fs/cgroup"
            subprocess.run(["mount", "-t", "cgroup2", "none", root], check=True)
        self.cgroup_root = root
        path = os.path.join(root, "endura-evasion-%d" % os.getpid())
        os.makedirs(path, exist_ok=True)
        return path

    def remove_cgroup(self, path):
        for _ in range(100):
            try:
                os.rmdir(path)
                return
            except OSError:
                time.sleep(0.1)

    def run(self, case_ids=None):
        """Every group under its own sensor; the cases' files on a tmpfs mounted over <root>/fs."""
        fs = os.path.join(self.root, "fs")
        os.makedirs(fs, exist_ok=True)
        os.makedirs(os.path.join(self.root, "disk"), exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "evasion", fs], check=True)
        try:
            return self._run(case_ids)
        finally:
            subprocess.run(["umount", "-l", fs], check=False)

    def _run(self, case_ids):
        wanted = [c for c in CASES if case_ids is None or c.id in case_ids]
        results = {}
        for group in GROUPS:
            cases = [c for c in wanted if c.group == group]
            if cases:
                try:
                    results.update(self.run_group(group, cases))
                except Exception as exc:  # the other groups still run; these cases say why they have no outcome
                    self.say("evasion: group %s failed: %s: %s" % (group, type(exc).__name__, exc))
                    for c in cases:
                        results[c.id] = {"outcome": "error", "detail": "%s: %s" % (type(exc).__name__, exc)}
        return {"tier": self.tier, "kernel": os.uname().release, "machine": MACHINE, "timings": self.timings,
                "cases": {c.id: results[c.id] for c in wanted if c.id in results}}


def has_event(records, names, ctx, case):
    """An event naming one of the case's rules caused by the case's processes (its comm, or the attacker's
    pid or parent pid: inode numbers are reused, and a stale rule can name another case's file), a tamper
    event from them, or for the pins case the next start reporting removed pins."""
    for r in records:
        kind = r.get("type")
        ours = case.inline or r.get("comm") == ctx.comm or ctx.pid in (r.get("pid"), r.get("ppid"))
        if not ours:
            continue
        if r.get("rule") in names or kind in TAMPER_EVENTS:
            return True
        if case.group == "pins" and (kind == "enforcement_tampered" or "pin" in (kind or "") or any(
                "pin" in w and any(x in w for x in ("removed", "missing")) for w in r.get("warnings", ()))):
            return True
    return False


# ------------------------------------------------------------------ output

def table(result):
    rows = [("case", "class", "outcome", "event")]
    for cid, res in result["cases"].items():
        case = CASES[CASE_IDS.index(cid)]
        rows.append((cid, case.cls, res["outcome"], "yes" if res.get("event") else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = {}
    for res in result["cases"].values():
        counts[res["outcome"]] = counts.get(res["outcome"], 0) + 1
    lines.append("tier %s (%s): %s" % (result["tier"], result["kernel"],
                                       ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    return "\n".join(lines)


def build_int80(out):
    """Compile the 32-bit probe with clang (host only); None when clang cannot."""
    if not X86_64:
        return None
    os.makedirs(os.path.dirname(out), exist_ok=True)
    proc = subprocess.run(["clang", "-m32", "-nostdlib", "-static", "-ffreestanding", "-fno-pic", "-fno-builtin",
                           "-fno-stack-protector", "-O1", "-o", out, os.path.join(HERE, "evasion_int80.c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("clang could not build the int 0x80 helper: " + proc.stderr[-500:])
    return out


#: kernel test VM boots (vmtest.plan) -> the tier the guest measures there
GUEST_TIERS = {"lsm-on": "lsm", "lsm-off": "fentry"}
GUEST_INT80 = "/vmtest/int80"


def guest_main():
    """Inside the kernel test VM (vmtest/evasion_vm.py boots it): the boot's tier, every case, one JSON line
    per case to /dev/ttyS1, then {"type": "done"}; the host judges."""
    tty = open("/dev/ttyS1", "w")

    def emit(obj):
        tty.write(json.dumps(obj, sort_keys=True) + "\n")
        tty.flush()

    with open("/proc/cmdline") as fh:
        boot = next((w.split("=", 1)[1] for w in fh.read().split() if w.startswith("endura_vmtest=")), "")
    tier = GUEST_TIERS.get(boot)
    emit({"type": "hello", "boot": boot, "tier": tier, "kernel": os.uname().release})
    if tier is None:
        emit({"type": "error", "message": "unknown boot %r" % boot})
        return 1
    import compileall

    compileall.compile_dir("/usr/lib/endura-sensor", quiet=2)  # the launcher runs python -B
    root = tempfile.mkdtemp(prefix="endura-evasion-", dir="/var/tmp")
    os.chmod(root, 0o755)
    start = time.monotonic()
    try:
        runner = Runner(tier, root, ["endura-sensor"], int80=GUEST_INT80 if os.path.exists(GUEST_INT80) else None,
                        sensor_path=["/usr/lib/endura-sensor"])
        result = runner.run()
    except Exception as exc:
        emit({"type": "error", "message": "%s: %s" % (type(exc).__name__, exc)})
        return 1
    for case_id, res in result["cases"].items():
        emit(dict(res, type="case", id=case_id))
    emit({"type": "done", "tier": tier, "kernel": result["kernel"], "timings": result["timings"],
          "seconds": round(time.monotonic() - start, 1)})
    print(table(result), file=sys.stderr)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m vmtest.evasion", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tier", choices=TIERS)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--cases", help="comma-separated case ids (default: all)")
    ap.add_argument("--sensor", help="the sensor command (default: this tree's, python3 -m endura_sensor)")
    ap.add_argument("--int80", help="the built 32-bit helper (default: build it with clang)")
    ap.add_argument("--root", help="scratch directory (default: a new one under /var/tmp, removed after)")
    ap.add_argument("--table", action="store_true", help="render docs/evasion.md from build/evasion/*.json")
    ap.add_argument("--expected-from", metavar="JSON", help="print the EXPECTED entry for a measured run")
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)  # inside the test VM
    args = ap.parse_args(argv)
    if args.guest:
        return guest_main()
    if args.expected_from:
        from vmtest import evasion_doc
        with open(args.expected_from) as fh:
            print(evasion_doc.expected_block(json.load(fh)))
        return 0
    repo = os.path.dirname(HERE)
    if args.table:
        from vmtest import evasion_doc
        path = evasion_doc.write(repo)
        print(path)
        return 0
    if not args.tier:
        ap.error("--tier or --table is required")
    env = dict(os.environ)
    sensor_path = ["/usr/lib/endura-sensor"]
    if args.sensor:
        sensor_cmd = args.sensor.split()
    else:
        sensor_cmd = [sys.executable, "-m", "endura_sensor"]
        env["PYTHONPATH"] = os.path.join(repo, "sensor")
        env.setdefault("ENDURA_BPF_DIR", os.path.join(repo, "build", "bpf", {"x86_64": "amd64"}.get(MACHINE, "arm64")))
        sensor_path = [os.path.join(repo, "sensor")]
    int80 = args.int80
    if int80 is None and X86_64:
        int80 = build_int80(os.path.join(repo, "build", "evasion", "int80"))
    root = args.root or tempfile.mkdtemp(prefix="endura-evasion-", dir="/var/tmp")
    os.chmod(root, 0o755)
    try:
        runner = Runner(args.tier, root, sensor_cmd, env=env, int80=int80, sensor_path=sensor_path)
        start = time.monotonic()
        result = runner.run(args.cases.split(",") if args.cases else None)
        result["seconds"] = round(time.monotonic() - start, 1)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, sort_keys=True)
    print(table(result))
    print("%d cases in %.1fs (%s)" % (len(result["cases"]), result["seconds"],
                                      ", ".join("%s %ss" % kv for kv in result["timings"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
