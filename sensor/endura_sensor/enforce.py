"""Load one enforcement tier, fill its maps from a policy, swap policies in place, stream events."""
from __future__ import annotations

import os
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


_BTF_NAMES: Dict[str, bytes] = {}


def kernel_has_btf_type(name: str, btf_dir: Path = Path("/sys/kernel/btf")) -> bool:
    """Whether the kernel's BTF (vmlinux or a loaded module's) names `name` (e.g. a tracepoint's btf_trace_ type)."""
    if str(btf_dir) not in _BTF_NAMES:
        blobs = []
        for path in sorted(btf_dir.glob("*")) if btf_dir.is_dir() else []:
            try:
                blobs.append(path.read_bytes())
            except OSError:
                pass
        _BTF_NAMES[str(btf_dir)] = b"\0".join(blobs)
    return b"\0" + name.encode() + b"\0" in _BTF_NAMES[str(btf_dir)]


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
        "endura_lsm", ("bprm_check", "exec fileless_exec"), ("file_open", "file interpreted"), ("socket_connect", "connect"),
        ("kernel_read_file", "module_load"), ("kernel_load_data", "module_load"),
        ("kernel_module_request", "module_load"), ("bpf", "bpf")) + _hooks("endura_lsm", "bpf_lsm_"), True),
    # fmod_ret on security_*(): refuses like the LSM tier, also where bpf is not in the LSM list
    Tier("fentry", "sensor_fentry.bpf.o", _programs(
        "endura_fentry", ("bprm_check", "exec fileless_exec"), ("file_open", "file interpreted"),
        ("socket_connect", "connect"), ("kernel_read_file", "module_load"), ("kernel_load_data", "module_load"),
        ("bpf", "bpf")) + _hooks("endura_fentry", "security_"), True),
    # raw syscall tracepoints cost every syscall ~10 % on a syscall-bound loop: attached only when needed.
    # sys_enter with file rules too: it kills the processes sharing a killed opener's fd table
    Tier("tracepoint", "sensor_tp.bpf.o", _programs(
        "endura_tp", ("exec", "exec fileless_exec"), ("sys_exit", "file"),
        ("sys_enter", "file connect module_load bpf io_uring"), ("sys_exit_interp", "interpreted"),
        # ext4's tracepoints: unlink and truncate by any path (where the kernel has ext4)
        ("ext4_unlink", "file", "btf_trace_ext4_unlink_enter"),
        ("ext4_truncate", "file", "btf_trace_ext4_truncate_enter")), False),
)
TIER_BY_NAME = {t.name: t for t in TIERS}
MAPS = ("endura_exec", "endura_files", "endura_net", "endura_exec_names", "endura_file_names", "endura_interpreters")
CONFIG_MARKER = "endura_config"  # pinned config map: the sensor that left these pins marks its bpf rule
BPF_GUARD_MARKER = "endura_guard_bpf"  # pinned tamper map, present while a bpf rule is enforced
#: the ring buffer and drop counter, so that a successor reads what this sensor's programs report while no
#: sensor runs (a restart); versioned: a successor decodes only the event layout it knows
RING_MARKER = f"endura_ring_v{events.ABI_VERSION}"
DROPS_MARKER = f"endura_drops_v{events.ABI_VERSION}"
MARKERS = (CONFIG_MARKER, BPF_GUARD_MARKER, RING_MARKER, DROPS_MARKER)
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
        self._obj = libbpf.BpfObject(self.path)
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
        self._links: Dict[str, libbpf.BpfLink] = {}
        self.pin_dir = Path(pin_dir) if pin_dir else None
        self.pin_problem = ""  # why pinning is off, when it failed
        self._attach = False
        self._kinds: set = set()
        self._bpf_guard = False  # a bpf rule is enforced: pinned as BPF_GUARD_MARKER for a successor to see
        #: optional programs whose kernel function is missing: never loaded nor attached
        self.unavailable = {p.name: p for p in tier.programs if p.target and not kernel_has_btf_type(p.target)}
        try:
            for name in self.unavailable:
                self._obj.set_autoload(name, False)
            self._obj.load()
            self._fds = {name: self._obj.map_fd(name) for name in MAPS + ("endura_tamper", "endura_config",
                                                                          "endura_events", "endura_drops")}
            self.apply(policy or policy_mod.Policy(), enforce=enforce, terminate=terminate, extra_exec=list(deny))
            self._attach = attach
            if attach_all:
                self._kinds = {kind for program in tier.programs for kind in program.kinds}
            self._sync_programs(detach=False)
            self._sync_markers()
        except BaseException:
            self.close()
            raise

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

    def _sync_programs(self, detach: bool) -> None:
        """Attach the programs the rule kinds need (the exec one always); with detach, drop the others."""
        if not self._attach:
            return
        for program in self.tier.programs:
            if program.name in self.unavailable:
                continue
            needed = program is self.tier.programs[0] or bool(self._kinds & set(program.kinds))
            if needed and program.name not in self._links:
                self._links[program.name] = link = self._obj.attach(program.name)
                self._pin(program.name, link)
            elif not needed and detach and program.name in self._links:
                self._unpin(program.name)
                self._links.pop(program.name).destroy()

    # ------------------------------------------------------------ pinning (enforcement outlives the process)

    def _pin_path(self, program: str, pid: int | None = None) -> Path:
        assert self.pin_dir is not None
        return self.pin_dir / f"{program}-{pid or os.getpid()}"  # bpffs refuses names with a '.' (EPERM)

    def _pin(self, program: str, link: libbpf.BpfLink) -> None:
        if self.pin_dir is None:
            return
        try:
            self.pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            link.pin(self._pin_path(program))
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
        for name, map_name, wanted in ((CONFIG_MARKER, "endura_config", True),
                                       (BPF_GUARD_MARKER, "endura_tamper", self._bpf_guard),
                                       (RING_MARKER, "endura_events", True), (DROPS_MARKER, "endura_drops", True)):
            path = self._pin_path(name)
            if wanted and not path.exists():
                try:
                    self.pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    libbpf.obj_pin(self._fds[map_name], path)
                except (OSError, libbpf.BpfError):
                    pass  # reported by the program pins, which fail the same way
            elif not wanted:
                try:
                    path.unlink()
                except OSError:
                    pass

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
                                  self.cgroup.name.encode(), interpreters, n_names, self._tainted_files())

    def _tainted_files(self) -> int:
        """config.tainted_files as the kernel has it: the tracepoint tier sets it when it marks an fd table
        (endura_tainted), and a rewrite of the config must not make it stop checking the marked ones."""
        raw = libbpf.map_lookup(self._fds["endura_config"], ZERO, events.CONFIG.size)
        return events.CONFIG.unpack(raw)[13] if raw else 0

    def apply(self, policy: policy_mod.Policy, *, enforce: bool, terminate: bool,
              extra_exec: Sequence[str] = ()) -> Applied:
        """Make the maps hold exactly `policy` (+ exec denials of extra_exec), never enforcing less meanwhile."""
        want, tamper, warnings, collisions = self.desired(policy, extra_exec)
        final_config = self._config_bytes(enforce, terminate, want)
        union = {name: {**self._entries[name], **want[name]} for name in MAPS}
        changed = 0
        for name in MAPS:
            if len(union[name]) > events.MAX_RULES:  # old + new do not fit: make room first
                warnings.append(f"{name}: the old and new policies together exceed {events.MAX_RULES} entries; "
                                "stale entries were removed before the new ones were added")
                for key in [k for k in self._entries[name] if k not in want[name]]:
                    libbpf.map_delete(self._fds[name], key)
                    del self._entries[name][key]
                    changed += 1
        # 1. gates open for the union of old and new rules, with the new enforcement settings
        libbpf.map_update(self._fds["endura_config"], ZERO, self._config_bytes(enforce, terminate, union))
        # 2. new and changed entries
        for name in MAPS:
            current = self._entries[name]
            for key, value in want[name].items():
                if current.get(key) != value:
                    libbpf.map_update(self._fds[name], key, value)
                    current[key] = value
                    changed += 1
        for index in SINGLETON_INDEX.values():
            value = tamper.get(index, NO_RULE)
            if self._tamper.get(index, NO_RULE) != value:
                libbpf.map_update(self._fds["endura_tamper"], index.to_bytes(4, "little"), value)
                self._tamper[index] = value
                changed += 1
        kinds = {kind for kind, entries in (("exec", want["endura_exec"]), ("exec", want["endura_exec_names"]),
                                            ("file", want["endura_files"]), ("file", want["endura_file_names"]),
                                            ("connect", want["endura_net"])) if entries}
        if "exec" in kinds and want["endura_interpreters"]:
            kinds.add("interpreted")  # the open hooks see an interpreter reading an exec-denied file
        kinds |= {name for name, index in SINGLETON_INDEX.items() if index in tamper}
        missing = sorted(p.target for p in self.unavailable.values() if kinds & set(p.kinds)
                         and not p.name.endswith("_file_truncate")  # before 6.2 path_truncate covers it
                         and not p.target.startswith("btf_trace_ext4"))  # not an ext4 host: nothing to see
        if missing:
            warnings.append(f"tier {self.tier.name}: this kernel lacks {', '.join(missing)} (path hooks need "
                            "CONFIG_SECURITY_PATH; file_truncate came in 6.2): what they check is not enforced here")
        self._kinds |= kinds
        self._sync_programs(detach=False)  # programs for new kinds, now that their maps are filled
        # 3. stale entries
        for name in MAPS:
            current = self._entries[name]
            for key in [k for k in current if k not in want[name]]:
                libbpf.map_delete(self._fds[name], key)
                del current[key]
                changed += 1
        # 4. gates for exactly the new rules
        libbpf.map_update(self._fds["endura_config"], ZERO, final_config)
        self._config = final_config
        self._kinds = kinds
        self._sync_programs(detach=True)
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
        libbpf.map_update(self._fds["endura_exec"], key, value)
        self._entries["endura_exec"][key] = value
        self.rules.append(os.path.abspath(path))
        return rule_id

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
        self._obj.close()

    def __enter__(self) -> Enforcer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
