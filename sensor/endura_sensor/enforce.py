"""Load one enforcement tier, fill its maps from a policy, swap policies in place, stream events."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

from . import events, libbpf
from . import policy as policy_mod
from .errors import SensorError


@dataclass(frozen=True)
class Program:
    name: str
    kinds: Tuple[str, ...]  # rule types it enforces; attached only while the policy has such rules
    #: optional programs: a name the kernel's BTF must hold for their attach point (bpf_lsm_path_rename,
    #: security_file_truncate, btf_trace_ext4_unlink_enter). Missing (path_* without CONFIG_SECURITY_PATH,
    #: file_truncate before 6.2, no ext4) -> not loaded, a warning names it; the tier still loads
    target: str = ""


@dataclass(frozen=True)
class Tier:
    name: str  # on-disk/JSON string: lsm, fentry, tracepoint
    object_name: str
    programs: Tuple[Program, ...]  # the exec program first: always attached (the canary proves it)
    can_block: bool

    @property
    def program(self) -> str:
        return self.programs[0].name


def _programs(prefix: str, *specs: Tuple[str, ...]) -> Tuple[Program, ...]:
    return tuple(Program(f"{prefix}_{spec[0]}", tuple(spec[1].split()), *spec[2:]) for spec in specs)


_BTF_BLOBS: Dict[Path, bytes] = {}  # one read per file and process: the Enforcer of every reload asks again


def _btf_blob(path: Path) -> bytes:
    if path not in _BTF_BLOBS:
        try:
            _BTF_BLOBS[path] = path.read_bytes()
        except OSError:
            _BTF_BLOBS[path] = b""
    return _BTF_BLOBS[path]


def kernel_has_btf_type(name: str, btf_dir: Path = Path("/sys/kernel/btf")) -> bool:
    """Whether the kernel's BTF (vmlinux or a loaded module's) names `name` (e.g. a tracepoint's btf_trace_ type).
    vmlinux first: the modules' BTF (one file per loaded module) is read only for a name vmlinux lacks."""
    needle = b"\0" + name.encode() + b"\0"
    if needle in _btf_blob(btf_dir / "vmlinux"):
        return True
    modules = sorted(p for p in btf_dir.glob("*") if p.name != "vmlinux") if btf_dir.is_dir() else []
    return any(needle in _btf_blob(path) for path in modules)


#: self-protection (bpf/include/endura_self.bpf.h): who joins the service cgroup (its exemption from the bpf and
#: sensor rules must not be joinable), then what the sensor rule refuses on each tier
_CGROUP_WATCH = (("cgroup_attach", "cgroup"), ("task_newtask", "cgroup"), ("member_exit", "cgroup"))  # see apply()
_SELF_HOOKS = (("task_kill", "sensor"), ("ptrace_access_check", "sensor"), ("pin_unlink", "sensor"),
               ("pin_rename", "sensor"))

#: the effect hooks (bpf/include/endura_fileops.bpf.h) of the lsm and fentry tiers: (LSM hook, kinds)
EFFECT_HOOKS = (
    ("path_rename", "file"), ("path_link", "file"), ("path_unlink", "file"), ("path_rmdir", "file"),
    ("path_truncate", "file"), ("file_truncate", "file"), ("path_mknod", "file"), ("path_mkdir", "file"),
    ("path_symlink", "file"), ("file_permission", "file"), ("mmap_file", "exec file"), ("file_mprotect", "exec"),
    ("socket_sendmsg", "connect"))


def _hooks(prefix: str, function_prefix: str) -> Tuple[Program, ...]:
    """The optional effect hooks, attached to `function_prefix + hook` (bpf_lsm_* / security_*)."""
    return tuple(Program(f"{prefix}_{hook}", tuple(kinds.split()), function_prefix + hook) for hook, kinds in EFFECT_HOOKS)


TIERS = (
    Tier("lsm", "sensor_lsm.bpf.o", _programs(
        "endura_lsm", ("bprm_check", "exec fileless_exec"), ("file_open", "file"), ("file_open_interp", "interpreted"), ("socket_connect", "connect"),
        ("kernel_read_file", "module_load"), ("kernel_load_data", "module_load"),
        ("kernel_module_request", "module_load"), ("bpf", "bpf"), *_CGROUP_WATCH, *_SELF_HOOKS)
         + _hooks("endura_lsm", "bpf_lsm_"), True),
    # fmod_ret on security_*(): refuses like the LSM tier, also where bpf is not in the LSM list
    Tier("fentry", "sensor_fentry.bpf.o", _programs(
        "endura_fentry", ("bprm_check", "exec fileless_exec"), ("file_open", "file"), ("file_open_interp", "interpreted"),
        ("socket_connect", "connect"), ("kernel_read_file", "module_load"), ("kernel_load_data", "module_load"),
        ("bpf", "bpf"), *_CGROUP_WATCH, *_SELF_HOOKS) + _hooks("endura_fentry", "security_"), True),
    # raw syscall tracepoints cost every syscall ~10 % on a syscall-bound loop: attached only when needed.
    # sys_enter with file rules too: it kills the processes sharing a killed opener's fd table
    Tier("tracepoint", "sensor_tp.bpf.o", _programs(
        "endura_tp", ("exec", "exec fileless_exec"), ("sys_exit", "file"),
        ("sys_enter", "file connect module_load bpf io_uring"), ("sys_exit_interp", "interpreted"),
        *_CGROUP_WATCH, ("signal_generate", "sensor"),
        # ext4's tracepoints: unlink and truncate by any path (where the kernel has ext4)
        ("ext4_unlink", "file", "btf_trace_ext4_unlink_enter"),
        ("ext4_truncate", "file", "btf_trace_ext4_truncate_enter")), False),
)
TIER_BY_NAME = {t.name: t for t in TIERS}
MAPS = ("endura_exec", "endura_files", "endura_net", "endura_exec_names", "endura_file_names", "endura_interpreters")
#: read-only for BPF programs (BPF_F_RDONLY_PROG) and frozen once filled (BPF_MAP_FREEZE): nobody changes them
FROZEN_MAPS = MAPS + ("endura_tamper", "endura_config")
#: one ring buffer, drop counter and member record for every copy of the object (a reload loses nothing)
MEMBERS = "endura_members"
SHARED_MAPS = ("endura_events", "endura_drops", MEMBERS)
KEY_SIZES = {"endura_exec": events.FILE_KEY.size, "endura_files": events.FILE_KEY.size,
             "endura_net": events.NET_KEY.size, "endura_exec_names": events.NAME_KEY.size,
             "endura_file_names": events.NAME_KEY.size, "endura_interpreters": events.FILE_KEY.size,
             "endura_tamper": 4, "endura_config": 4}
VALUE_SIZES = {"endura_exec": events.FILE_RULE.size, "endura_files": events.FILE_RULE.size,
               "endura_net": events.RULE.size, "endura_exec_names": events.FILE_RULE.size,
               "endura_file_names": events.FILE_RULE.size, "endura_interpreters": 4,
               "endura_tamper": events.RULE.size, "endura_config": events.CONFIG.size}
BPF_F_RDONLY_PROG = 1 << 7  # include/uapi/linux/bpf.h
TMP_PIN_PREFIX = "tmp-"  # a pin being replaced: renamed over the old one (never matches endura_*)
CONFIG_MARKER = "endura_config"  # pinned config map: the sensor that left these pins marks its bpf rule
BPF_GUARD_MARKER = "endura_guard_bpf"  # pinned tamper map, present while a bpf rule is enforced
#: the ring buffer and drop counter, so that a successor reads what this sensor's programs report while no
#: sensor runs (a restart); versioned: a successor decodes only the event layout it knows
RING_MARKER = f"endura_ring_v{events.ABI_VERSION}"
DROPS_MARKER = f"endura_drops_v{events.ABI_VERSION}"
#: the processes the service manager placed in the service cgroup (bpf/include/endura_members.bpf.h): pinned while
#: a cgroup is exempt, reused by the successor (which is one of them)
MEMBERS_MARKER = f"endura_members_v{events.ABI_VERSION}"
MANAGER_KEY = b"\xff\xff\xff\xff"  # ENDURA_MANAGER_KEY in endura_members: a service manager other than init


def service_manager_pid(env=os.environ) -> int:
    """$ENDURA_SERVICE_MANAGER_PID: the process that starts the service when it is not init (PID 1), trusted like
    init to place processes in the service cgroup and to signal the sensor; 0 = init only."""
    value = env.get("ENDURA_SERVICE_MANAGER_PID", "")
    return int(value) if value.isdigit() else 0
MARKERS = (CONFIG_MARKER, BPF_GUARD_MARKER, RING_MARKER, DROPS_MARKER, MEMBERS_MARKER)
ZERO = b"\0\0\0\0"
NO_RULE = events.RULE.pack(0, events.RULE_NONE)
#: access -> struct endura_file_rule slot, per map
SLOTS = {"endura_exec": {"exec": events.SLOT_EXEC},
         "endura_files": {"read": events.SLOT_READ, "write": events.SLOT_WRITE}}
SLOTS["endura_exec_names"], SLOTS["endura_file_names"] = SLOTS["endura_exec"], SLOTS["endura_files"]
#: singleton rule type -> index of the endura_tamper array (enum endura_tamper_index)
SINGLETON_INDEX = {"module_load": events.TAMPER_MODULE_LOAD, "bpf": events.TAMPER_BPF,
                   "fileless_exec": events.TAMPER_FILELESS_EXEC, "io_uring": events.TAMPER_IO_URING,
                   "sensor": events.TAMPER_SENSOR}
INTERPRETER = (1).to_bytes(4, "little")


def file_rule_value(entry: policy_mod.Entry, slots: Dict[str, int],
                    rule_id: Callable[[policy_mod.Rule], int], generation: int = 0) -> bytes:
    """The struct endura_file_rule of one inode: per slot, the strictest of the rules that match it."""
    verdicts: Dict[str, List[events.Verdict]] = {}
    for scope in ("self", "below"):
        verdicts[scope] = [(0, events.RULE_NONE)] * events.SLOTS
        for access, slot in slots.items():
            rule = entry.verdict(scope, access)
            if rule is not None:
                verdicts[scope][slot] = (rule_id(rule), events.RULE_ACTIONS[rule.action])
    return events.pack_file_rule(verdicts["self"], verdicts["below"], generation)


def file_map_values(resolved: policy_mod.Resolved, rule_id: Callable[[policy_mod.Rule], int]
                    ) -> Dict[str, Dict[bytes, bytes]]:
    """The entries of the exec and files maps, key (dev, ino), and of their names maps, key (directory dev,
    directory inode, name): merged verdicts (never "first rule wins"); plus the interpreters."""
    values = {name: {events.FILE_KEY.pack(dev, ino): file_rule_value(entry, SLOTS[name], rule_id,
                                                                     resolved.generations.get((dev, ino), 0))
                     for (dev, ino), entry in table.items()}
              for name, table in (("endura_exec", resolved.exec_files), ("endura_files", resolved.protected_files))}
    values.update({name: {events.NAME_KEY.pack(dev, ino, raw): file_rule_value(entry, SLOTS[name], rule_id)
                          for (dev, ino, raw), entry in table.items()}
                   for name, table in (("endura_exec_names", resolved.exec_names),
                                       ("endura_file_names", resolved.protected_names))})
    values["endura_interpreters"] = {events.FILE_KEY.pack(dev, ino): INTERPRETER for dev, ino in resolved.interpreters}
    return values


@dataclass(frozen=True)
class ServiceCgroup:
    """The cgroup (v2) the sensor runs in, when it is a cgroup of its own (a last path component naming
    endura: endura-sensor.service, OpenRC's openrc.endura-sensor); id 0 otherwise."""
    id: int = 0
    path: str = ""
    parent_id: int = 0  # the parent's id: a restart's successor runs in a new cgroup of the same name there

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1] if self.id else ""


def service_cgroup(proc: Path = Path("/proc/self")) -> ServiceCgroup:
    try:
        path = next(line[3:] for line in (proc / "cgroup").read_text().splitlines() if line.startswith("0::"))
        mount = next(fields[4] for fields in (line.split() for line in (proc / "mountinfo").read_text().splitlines())
                     if "cgroup2" in fields[fields.index("-") + 1:][:1])
    except (OSError, StopIteration, ValueError):
        return ServiceCgroup()
    leaf = path.rstrip("/").rsplit("/", 1)[-1]
    if "endura" not in leaf or len(leaf.encode()) >= events.CGROUP_NAME_LEN:
        return ServiceCgroup(path=path)
    try:
        own = os.stat(mount + path).st_ino
    except OSError:
        return ServiceCgroup(path=path)
    try:
        parent = os.stat(os.path.dirname(mount + path.rstrip("/"))).st_ino
    except OSError:
        parent = 0
    return ServiceCgroup(own, path, parent)


def own_service_cgroup(proc: Path = Path("/proc/self")) -> Tuple[int, str]:
    """(cgroup v2 id, path) of this process when it runs in a cgroup of its own, else (0, path)."""
    cg = service_cgroup(proc)
    return cg.id, cg.path


def drops_in(fd: int) -> int:
    """The endura_drops per-CPU counter behind fd, summed over CPUs."""
    raw = libbpf.map_lookup(fd, ZERO, 8 * libbpf.possible_cpus()) or b""
    return sum(int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8))


@dataclass
class Predecessor:
    """What an earlier sensor left: its pid, an fd of its ring buffer, of its drop counter (-1: none)."""
    pid: int
    ring_fd: int
    drops_fd: int

    def drain(self, callback: Callable[[List[bytes]], None]) -> int:
        """Every record left in its ring buffer, to callback (in batches); returns how many."""
        total = 0
        ring = libbpf.RingBuffer(self.ring_fd, callback, batch=True)
        try:
            while True:
                n = ring.poll(0)
                total += n
                if n <= 0:
                    return total
        finally:
            ring.free()

    def drops(self) -> int:
        return drops_in(self.drops_fd) if self.drops_fd >= 0 else 0

    def close(self) -> None:
        for fd in (self.ring_fd, self.drops_fd):
            if fd >= 0:
                os.close(fd)


class _Copy:
    """One loaded copy of the tier's object: its rule maps (filled once, then frozen) and its links.

    Frozen maps cannot be changed by bpf() (by anyone: an attacker who got a map fd by its id, or this
    sensor), so a new policy is a new copy: filled, frozen, attached, then the old copy is detached.
    """

    def __init__(self, path: Path, shared: Dict[str, int], unavailable=()) -> None:
        self.obj = libbpf.BpfObject(path)
        self.links: Dict[str, libbpf.BpfLink] = {}
        try:
            for name in unavailable:  # optional programs whose kernel function is missing
                self.obj.set_autoload(name, False)
            for name, fd in shared.items():
                self.obj.reuse_map_fd(name, fd)
            self.obj.load()
            self.fds = {name: self.obj.map_fd(name) for name in FROZEN_MAPS + SHARED_MAPS}
        except BaseException:
            self.obj.close()
            raise

    def fill(self, entries: Dict[str, Dict[bytes, bytes]], tamper: Dict[int, bytes], config: bytes) -> None:
        for name in MAPS:
            for key, value in entries[name].items():
                libbpf.map_update(self.fds[name], key, value)
        for index, value in tamper.items():
            libbpf.map_update(self.fds["endura_tamper"], index.to_bytes(4, "little"), value)
        libbpf.map_update(self.fds["endura_config"], ZERO, config)
        for name in FROZEN_MAPS:
            libbpf.map_freeze(self.fds[name])

    def close(self) -> None:
        self.obj.close()  # destroys the links: detached unless pinned


@dataclass
class Applied:
    """What one `apply()` put into the kernel."""
    counts: Dict[str, int]  # map entries: exec, files, net, tamper
    warnings: List[str] = field(default_factory=list)
    changed: int = 0  # entries added, changed or removed
    new_collisions: List[str] = field(default_factory=list)  # rules naming one file, not seen at the last apply()


class Enforcer:
    """One loaded and attached tier. `with Enforcer(tier, bpf_dir, policy=p) as e: e.poll(...)`.

    The maps are filled *before* attaching. `apply()` later swaps in a new policy without a moment
    where nothing is enforced: new and changed entries are written first (the union of both
    policies is enforced meanwhile), then stale entries are deleted; each element update is atomic.
    """

    def __init__(self, tier: Tier, bpf_dir: Path, *, enforce: bool, terminate: bool,
                 deny: Iterable[str] = (), attach: bool = True, attach_all: bool = False,
                 policy: policy_mod.Policy | None = None, pin_dir: Path | None = None) -> None:
        self.tier = tier
        self.path = Path(bpf_dir) / tier.object_name
        if not self.path.is_file():
            raise SensorError(f"BPF object {self.path} is missing; build it with 'python3 -m bpf.build' "
                              "(nox -s bpf) or reinstall endura-sensor")
        self._copy: _Copy | None = None
        self._shared: Dict[str, int] = {}  # our own fds of the ring buffer and drop counter (SHARED_MAPS)
        self.swaps = 0  # copies loaded after the first (policy changes)
        self.last_swap_ms = 0.0  # what the last one cost: load + fill + freeze + attach + pin
        self._ring: libbpf.RingBuffer | None = None
        self._entries: Dict[str, Dict[bytes, bytes]] = {name: {} for name in MAPS}
        self._tamper: Dict[int, bytes] = {}
        self._config = events.CONFIG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"", 0, 0, 0)
        self.cgroup = service_cgroup()
        self.cgroup_id, self.cgroup_path = self.cgroup.id, self.cgroup.path
        self._ids: Dict[Tuple, int] = {}
        self.collisions: List[str] = []  # contradictory rules that resolve to one file (strictest enforced)
        self.rule_by_id: Dict[int, policy_mod.Rule] = {}
        self.rules: List[str] = []  # the --deny paths (kept for the CLI's "started" record)
        self.pin_dir = Path(pin_dir) if pin_dir else None
        self.pin_problem = ""  # why pinning is off, when it failed
        self._attach = attach
        self._attach_all = attach_all
        self._kinds: set = set()
        self._bpf_guard = False  # a bpf rule is enforced: pinned as BPF_GUARD_MARKER for a successor to see
        #: optional programs whose kernel function is missing: never loaded nor attached
        self.unavailable = {p.name: p for p in tier.programs if p.target and not kernel_has_btf_type(p.target)}
        try:
            self._reuse_members()
            self.apply(policy or policy_mod.Policy(), enforce=enforce, terminate=terminate, extra_exec=list(deny))
        except BaseException:
            self.close()
            raise

    def _reuse_members(self) -> None:
        """A predecessor's record of who the service manager placed in the service cgroup (same layout only):
        this sensor (placed while the predecessor's programs ran) is one of them."""
        if self.pin_dir is None or not self.cgroup.id or not self._attach:
            return
        for path in sorted(self.pin_dir.glob(f"{MEMBERS_MARKER}-*"), key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                self._shared[MEMBERS] = libbpf.obj_get(path)
                return
            except (OSError, libbpf.BpfError):
                continue

    @property
    def _fds(self) -> Dict[str, int]:
        assert self._copy is not None
        return {**self._copy.fds, **self._shared}

    @property
    def _links(self) -> Dict[str, libbpf.BpfLink]:
        return self._copy.links if self._copy is not None else {}

    # ------------------------------------------------------------ policy -> maps

    def _rule_id(self, rule: policy_mod.Rule) -> int:
        ident = (rule.match, rule.name)
        rule_id = self._ids.get(ident)
        if rule_id is None:
            rule_id = self._ids[ident] = len(self._ids) + 1
        self.rule_by_id[rule_id] = rule
        return rule_id

    def _value(self, rule: policy_mod.Rule) -> bytes:
        return events.RULE.pack(self._rule_id(rule), events.RULE_ACTIONS[rule.action])

    def desired(self, policy: policy_mod.Policy, extra_exec: Sequence[str] = ()
                ) -> Tuple[Dict[str, Dict[bytes, bytes]], Dict[int, bytes], List[str], List[str]]:
        """(map entries, tamper entries, warnings, collisions) for the policy as the files are now."""
        resolved = policy_mod.resolve(policy, extra_exec)
        want: Dict[str, Dict[bytes, bytes]] = {name: {} for name in MAPS}
        want.update(file_map_values(resolved, self._rule_id))
        for rule in resolved.networks:
            want["endura_net"][events.net_key(rule.network, rule.port)] = self._value(rule)
        tamper = {index: self._value(resolved.tamper[name]) for name, index in SINGLETON_INDEX.items()
                  if name in resolved.tamper}
        for name, entries in want.items():
            if len(entries) > events.MAX_RULES:
                raise SensorError(f"the policy needs {len(entries)} entries in {name} (limit {events.MAX_RULES}); "
                                  "use directory rules or CIDRs")
        # load_dir() refuses these; they appear when the files change later (a hard link, a new copy of a hash)
        collisions = [f"{c} (meanwhile the strictest of them is enforced)" for c in resolved.collisions]
        return want, tamper, resolved.warnings + collisions, resolved.collisions

    @property
    def attached(self) -> List[str]:
        return [p.name for p in self.tier.programs if p.name in self._links]

    def _swap(self, entries: Dict[str, Dict[bytes, bytes]], tamper: Dict[int, bytes], config: bytes,
              kinds: set) -> None:
        """Load a new copy holding exactly this state, freeze its maps, attach the programs the rule kinds need
        (the exec one always), pin them over the old copy's pins, then detach the old copy. Both copies enforce
        for a moment (their union); never neither."""
        started = time.monotonic()
        new = _Copy(self.path, self._shared, self.unavailable)
        try:
            new.fill(entries, tamper, config)
            for name in SHARED_MAPS:
                if name not in self._shared:
                    if name == MEMBERS:  # key 0: the overflow flag, cleared; then only programs write it
                        libbpf.map_update(new.fds[name], ZERO, bytes(8))
                        libbpf.map_update(new.fds[name], MANAGER_KEY, service_manager_pid().to_bytes(8, "little"))
                        libbpf.map_freeze(new.fds[name])
                    self._shared[name] = os.dup(new.fds[name])
            if self._attach:
                for program in self.tier.programs:
                    if program.name in self.unavailable:
                        continue
                    if program is self.tier.programs[0] or kinds & set(program.kinds):
                        new.links[program.name] = new.obj.attach(program.name)
        except BaseException:
            new.close()
            raise
        old, self._copy = self._copy, new
        if old is not None:
            self.swaps += 1
        self._entries = {name: dict(entries[name]) for name in MAPS}
        self._tamper, self._config, self._kinds = dict(tamper), config, set(kinds)
        for name, link in new.links.items():
            self._pin(name, link)
        if old is not None:
            for name in old.links:
                if name not in new.links:
                    self._unpin(name)
            old.close()
        self.last_swap_ms = (time.monotonic() - started) * 1000

    # ------------------------------------------------------------ pinning (enforcement outlives the process)

    def _pin_path(self, program: str, pid: int | None = None) -> Path:
        assert self.pin_dir is not None
        return self.pin_dir / f"{program}-{pid or os.getpid()}"  # bpffs refuses names with a '.' (EPERM)

    def _pin(self, program: str, link: libbpf.BpfLink) -> None:
        """Pin at a temporary name, then rename over the current pin: the pinned name never goes missing."""
        if self.pin_dir is None:
            return
        path = self._pin_path(program)
        tmp = path.with_name(TMP_PIN_PREFIX + path.name)
        try:
            self.pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.path.lexists(tmp):
                os.unlink(tmp)
            libbpf.obj_pin(link.fd, tmp)  # not bpf_link__pin(): libbpf refuses a second pin of a link (EBUSY)
            os.rename(tmp, path)
        except (OSError, libbpf.BpfError) as exc:
            self.pin_problem = (f"cannot pin in {self.pin_dir} ({exc}); enforcement stops if the sensor dies. "
                                "Mount the BPF filesystem: mount -t bpf bpf /sys/fs/bpf")
            self.pin_dir = None

    def _sync_markers(self) -> None:
        """Pins that tell a successor what this sensor left enforcing, readable without a bpf() call (a call
        its bpf rule could kill): `endura_config-<pid>` always, `endura_guard_bpf-<pid>` (the tamper map)
        while a bpf rule is enforced."""
        if self.pin_dir is None or not self._attach:
            return
        for name, map_name, wanted in self._markers():
            path = self._pin_path(name)
            if wanted and not self._pinned_is(path, self._fds[map_name]):
                tmp = path.with_name(TMP_PIN_PREFIX + path.name)
                try:
                    self.pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    if os.path.lexists(tmp):
                        os.unlink(tmp)
                    libbpf.obj_pin(self._fds[map_name], tmp)
                    os.rename(tmp, path)  # over the previous copy's map
                except (OSError, libbpf.BpfError):
                    pass  # reported by the program pins, which fail the same way
            elif not wanted:
                try:
                    path.unlink()
                except OSError:
                    pass

    def _markers(self):
        """(marker, map, wanted) for each map pinned for a successor."""
        return ((CONFIG_MARKER, "endura_config", True), (BPF_GUARD_MARKER, "endura_tamper", self._bpf_guard),
                (RING_MARKER, "endura_events", True), (DROPS_MARKER, "endura_drops", True),
                (MEMBERS_MARKER, MEMBERS, bool(self.cgroup.id)))

    @staticmethod
    def _pinned_is(path: Path, fd: int) -> bool:
        """Whether the object pinned at path is the one behind fd (same kernel id)."""
        try:
            pinned = libbpf.obj_get(path)
        except libbpf.BpfError:
            return False
        try:
            return libbpf.obj_id(pinned) == libbpf.obj_id(fd)
        except libbpf.BpfError:
            return False
        finally:
            os.close(pinned)

    def _unpin(self, program: str) -> None:
        if self.pin_dir is not None:
            try:
                self._pin_path(program).unlink()
            except OSError:
                pass

    @property
    def pinned(self) -> List[str]:
        return [str(self._pin_path(name)) for name in self._links] if self.pin_dir else []

    def open_predecessors(self) -> List[Predecessor]:
        """The ring buffers and drop counters earlier sensors left pinned (same event layout only), opened
        before remove_stale_pins() takes their last pinned reference: drain() them afterwards."""
        if self.pin_dir is None:
            return []
        found = []
        for path in sorted(self.pin_dir.glob(f"{RING_MARKER}-*")):
            pid = path.name.rsplit("-", 1)[1]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                ring = libbpf.obj_get(path)
            except libbpf.BpfError:
                continue
            try:
                drops = libbpf.obj_get(self.pin_dir / f"{DROPS_MARKER}-{pid}")
            except libbpf.BpfError:
                drops = -1
            found.append(Predecessor(int(pid), ring, drops))
        return found

    def remove_stale_pins(self) -> List[str]:
        """Detach what an earlier sensor left pinned (it died or was stopped fail-closed): call once this
        instance is attached, so the old programs go only after the new ones enforce."""
        if self.pin_dir is None:
            return []
        mine = {p.name for p in map(Path, self.pinned)} | {self._pin_path(m).name for m in MARKERS}
        removed = []
        for path in sorted(self.pin_dir.glob("endura_*")):
            if path.name not in mine:
                try:
                    path.unlink()  # the last reference to the old link: the kernel detaches it
                    removed.append(path.name)
                except OSError:
                    pass
        return removed

    def _config_bytes(self, enforce: bool, terminate: bool, want: Dict[str, Dict[bytes, bytes]]) -> bytes:
        exec_, files = ([events.unpack_file_rule(v) for v in want[name].values()]
                        for name in ("endura_exec", "endura_files"))
        below = lambda entries: sum(1 for _, under in entries if any(action for _, action in under))  # noqa: E731
        names = [events.unpack_file_rule(v) for v in want["endura_file_names"].values()]
        reads = sum(1 for own, under in files + names if own[events.SLOT_READ][1] or under[events.SLOT_READ][1])
        n_names = len(names) + len(want["endura_exec_names"])
        # interpreters matter only while something denies exec
        interpreters = len(want["endura_interpreters"]) if want["endura_exec"] or want["endura_exec_names"] else 0
        return events.CONFIG.pack(events.ENFORCEMENT_ENFORCE if enforce else events.ENFORCEMENT_AUDIT, int(terminate),
                                  os.getpid(), below(exec_), len(files) + len(names), below(files),
                                  len(want["endura_net"]), reads, self.cgroup.id, self.cgroup.parent_id,
                                  self.cgroup.name.encode(), interpreters, n_names, 0)

    def _changes(self, want: Dict[str, Dict[bytes, bytes]], tamper: Dict[int, bytes], config: bytes) -> int:
        """Entries added, changed or removed compared with the loaded copy (+1 for a changed config)."""
        changed = 0
        for name in MAPS:
            current = self._entries[name]
            changed += sum(1 for key, value in want[name].items() if current.get(key) != value)
            changed += sum(1 for key in current if key not in want[name])
        for index in set(tamper) | set(self._tamper):
            changed += tamper.get(index, NO_RULE) != self._tamper.get(index, NO_RULE)
        return changed + (config != self._config and self._copy is not None)

    def apply(self, policy: policy_mod.Policy, *, enforce: bool, terminate: bool,
              extra_exec: Sequence[str] = ()) -> Applied:
        """Make the kernel enforce exactly `policy` (+ exec denials of extra_exec), never less meanwhile: when
        anything differs, a new copy with frozen maps is attached before the old one is detached."""
        want, tamper, warnings, collisions = self.desired(policy, extra_exec)
        config = self._config_bytes(enforce, terminate, want)
        kinds = {kind for kind, entries in (("exec", want["endura_exec"]), ("exec", want["endura_exec_names"]),
                                            ("file", want["endura_files"]), ("file", want["endura_file_names"]),
                                            ("connect", want["endura_net"])) if entries}
        if "exec" in kinds and want["endura_interpreters"]:
            kinds.add("interpreted")  # the open hooks see an interpreter reading an exec-denied file
        kinds |= {name for name, index in SINGLETON_INDEX.items() if index in tamper}
        if self.cgroup.id and kinds & {"bpf", "sensor"}:
            kinds.add("cgroup")  # the service cgroup is exempt from these: watch who joins it
        if self._attach_all:
            kinds = {kind for program in self.tier.programs for kind in program.kinds}
        missing = sorted(p.target for p in self.unavailable.values() if kinds & set(p.kinds)
                         and not p.name.endswith("_file_truncate")  # before 6.2 path_truncate covers it
                         and not p.target.startswith("btf_trace_ext4"))  # not an ext4 host: nothing to see
        if missing:
            warnings.append(f"tier {self.tier.name}: this kernel lacks {', '.join(missing)} (path hooks need "
                            "CONFIG_SECURITY_PATH; file_truncate came in 6.2): what they check is not enforced here")
        changed = self._changes(want, tamper, config)
        if self._copy is None or changed or kinds != self._kinds:
            self._swap(want, tamper, config, kinds)
        bpf_rule = tamper.get(events.TAMPER_BPF)
        self._bpf_guard = bool(enforce and bpf_rule and events.RULE.unpack(bpf_rule)[1] != events.RULE_ACTIONS["audit"])
        self._sync_markers()
        self.rules = [os.path.abspath(p) for p in extra_exec]
        counts = {"exec": len(want["endura_exec"]), "files": len(want["endura_files"]),
                  "net": len(want["endura_net"]), "tamper": len(tamper), "exec_names": len(want["endura_exec_names"]),
                  "file_names": len(want["endura_file_names"])}
        new_collisions = [c for c in collisions if c not in self.collisions]
        self.collisions = collisions
        return Applied(counts, warnings, changed, new_collisions)

    def deny(self, path: str) -> int:
        """Deny executing `path` (by device and inode) on top of what is loaded; return its rule id.
        A stricter rule already on that inode stays in force."""
        try:
            key = events.file_key(path)
        except OSError as exc:
            raise SensorError(f"cannot deny {path}: {exc.strerror}") from None
        rule = policy_mod.Rule("exec", "block", "--deny", f"--deny {os.path.abspath(path)}", path=os.path.abspath(path))
        rule_id = self._rule_id(rule)
        current = self._entries["endura_exec"].get(key)
        own, below = (events.unpack_file_rule(current) if current
                      else ([(0, events.RULE_NONE)] * events.SLOTS, [(0, events.RULE_NONE)] * events.SLOTS))
        if own[events.SLOT_EXEC][1] < events.RULE_BLOCK:
            own[events.SLOT_EXEC] = (rule_id, events.RULE_BLOCK)
        value = events.pack_file_rule(own, below)
        entries = {name: dict(self._entries[name]) for name in MAPS}
        entries["endura_exec"][key] = value
        self._swap(entries, self._tamper, self._config, self._kinds | {"exec"})
        self.rules.append(os.path.abspath(path))
        return rule_id

    # ------------------------------------------------------------ verification (tampering)

    def expected(self) -> Dict[str, Dict[bytes, bytes]]:
        """What each frozen map must hold, key -> value (arrays: every index)."""
        want: Dict[str, Dict[bytes, bytes]] = {name: dict(self._entries[name]) for name in MAPS}
        want["endura_tamper"] = {i.to_bytes(4, "little"): self._tamper.get(i, NO_RULE)
                                 for i in range(events.TAMPER_COUNT)}
        want["endura_config"] = {ZERO: self._config}
        return want

    def _check_maps(self, copy: _Copy) -> List[str]:
        problems = []
        for name, want in self.expected().items():
            fd = copy.fds[name]
            if not libbpf.map_frozen(fd):
                problems.append(f"map {name} is not frozen")
            if not libbpf.map_flags(fd) & BPF_F_RDONLY_PROG:
                problems.append(f"map {name} is writable by BPF programs")
            keys = libbpf.map_keys(fd, KEY_SIZES[name])
            have = set(keys)
            missing = sum(1 for key in want if key not in have)
            extra = sum(1 for key in have if key not in want)
            changed = sum(1 for key in keys if key in want and
                          libbpf.map_lookup(fd, key, VALUE_SIZES[name]) != want[key])
            if missing or extra or changed:
                problems.append(f"map {name} holds {len(keys)} entries, {len(want)} were written: {missing} missing, "
                                f"{extra} added, {changed} changed")
        return problems

    def verify(self, restore: bool = True) -> Tuple[List[str], List[str]]:
        """Compare the kernel with what this sensor loaded: the rule maps (frozen, read-only for programs, exactly
        the entries written), every program still attached (its link runs our program) and pinned, every marker
        pinned. With restore, put back what differs: a new copy of the object for maps or links, pins again.
        Returns (problems, restored), sentences; ([], []) when everything matches."""
        copy = self._copy
        if copy is None:
            return [], []
        problems, restored = [], []
        try:
            problems += self._check_maps(copy)
        except libbpf.BpfError as exc:
            problems.append(f"cannot read the rule maps: {exc}")
        try:
            overflow = libbpf.map_lookup(self._shared[MEMBERS], ZERO, 8) if MEMBERS in self._shared else None
        except libbpf.BpfError:
            overflow = None
        if overflow and any(overflow):
            problems.append(f"{MEMBERS} is full ({MEMBERS} holds at most 4096 members of the service cgroup): new "
                            "members are not exempt; restart the service to start a new record")
        for name, link in copy.links.items():
            try:
                if libbpf.link_prog_id(link.fd) != libbpf.obj_id(copy.obj.program_fd(name)):
                    problems.append(f"program {name} is detached")
            except libbpf.BpfError as exc:
                problems.append(f"program {name}: its link cannot be read ({exc})")
        if problems and restore:
            self._swap(self._entries, self._tamper, self._config, self._kinds)
            restored.append(f"loaded the policy into a new copy (maps frozen, programs attached: "
                            f"{', '.join(self.attached) or 'none'})")
        if self.pin_dir is not None and self._attach:
            for name, link in self._links.items():
                if self.pin_dir is None:
                    break
                path = self._pin_path(name)
                if not self._pinned_is(path, link.fd):
                    problems.append(f"pin {path} was removed or replaced")
                    if restore:
                        self._pin(name, link)
                        if self._pinned_is(path, link.fd):
                            restored.append(f"pinned {path} again")
            if self.pin_dir is None:  # pinning failed above: pin_problem says why
                problems.append(self.pin_problem)
                return problems, restored
            missing = [(self._pin_path(name), self._fds[map_name]) for name, map_name, wanted in self._markers()
                       if wanted and not self._pinned_is(self._pin_path(name), self._fds[map_name])]
            problems += [f"pin {path} was removed or replaced" for path, _ in missing]
            if missing and restore:
                self._sync_markers()
                restored += [f"pinned {path} again" for path, fd in missing if self._pinned_is(path, fd)]
        return problems, restored

    def pin_names(self) -> List[str]:
        """The names of everything this sensor pinned (programs and markers)."""
        if self.pin_dir is None or not self._attach:
            return []
        return [self._pin_path(name).name for name in self._links] + [
            self._pin_path(name).name for name, _, wanted in self._markers() if wanted]

    # ------------------------------------------------------------ events

    def drops(self) -> int:
        """Events lost because the ring buffer was full (sum over CPUs)."""
        return drops_in(self._fds["endura_drops"])

    def poll(self, callback: Callable[[events.Event], None], timeout_ms: int) -> int:
        """`callback(Event)` for each event record (`check`, tests)."""
        return self.poll_records(lambda records: [callback(events.decode(data)) for data in records], timeout_ms)

    def poll_records(self, callback: Callable[[List[bytes]], None], timeout_ms: int) -> int:
        """`callback([raw record, ...])` once per poll with what the ring buffer held (the daemon's path)."""
        self._on_records = callback
        if self._ring is None:
            self._ring = libbpf.RingBuffer(self._fds["endura_events"],
                                           lambda records: self._on_records(records), batch=True)
        return self._ring.poll(timeout_ms)

    def close(self, keep_pinned: bool = False) -> None:
        """Detach and free; with keep_pinned, pinned programs stay attached (with their maps) after exit."""
        if self._ring is not None:
            self._ring.free()
            self._ring = None
        if not keep_pinned:
            for name in [*self._links, *MARKERS]:
                self._unpin(name)
        if self._copy is not None:
            self._copy.close()
            self._copy = None
        for fd in self._shared.values():
            os.close(fd)
        self._shared = {}

    def __enter__(self) -> Enforcer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
