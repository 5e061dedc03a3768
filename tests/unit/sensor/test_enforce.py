"""Pure parts of enforce.py: the tier table and finding the service cgroup (no BPF needed)."""
import os

from endura_sensor import enforce

MOUNTINFO = ("25 30 0:22 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"
             "26 30 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")


def fake_proc(tmp_path, cgroup_path, cgroup_root):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(f"9:name=systemd:/\n0::{cgroup_path}\n")
    (proc / "mountinfo").write_text(MOUNTINFO.replace("/sys/fs/cgroup/unified", str(cgroup_root)))
    return proc


def test_a_service_cgroup_named_endura_is_exempt_by_its_inode(tmp_path):
    root = tmp_path / "cg"
    (root / "system.slice" / "endura-sensor.service").mkdir(parents=True)
    proc = fake_proc(tmp_path, "/system.slice/endura-sensor.service", root)
    ino = os.stat(root / "system.slice" / "endura-sensor.service").st_ino
    assert enforce.own_service_cgroup(proc) == (ino, "/system.slice/endura-sensor.service")
    cg = enforce.service_cgroup(proc)  # and by name below the same parent: a restart's new cgroup
    assert (cg.name, cg.parent_id) == ("endura-sensor.service", os.stat(root / "system.slice").st_ino)


def test_a_cgroup_name_too_long_for_the_kernel_check_is_not_exempt(tmp_path):
    name = "endura-" + "x" * 60 + ".service"
    root = tmp_path / "cg"
    (root / name).mkdir(parents=True)
    assert enforce.service_cgroup(fake_proc(tmp_path, f"/{name}", root)).id == 0


def test_other_cgroups_are_not_exempt(tmp_path):
    root = tmp_path / "cg"
    (root / "user.slice").mkdir(parents=True)
    assert enforce.own_service_cgroup(fake_proc(tmp_path, "/user.slice", root)) == (0, "/user.slice")
    assert enforce.own_service_cgroup(tmp_path / "missing") == (0, "")


def test_every_tier_attaches_its_exec_program_first_and_covers_every_rule_type():
    for tier in enforce.TIERS:
        assert tier.programs[0].kinds[0] == "exec" and tier.program == tier.programs[0].name
        kinds = {k for p in tier.programs for k in p.kinds}
        # "sensor": the self-protection singleton; "cgroup": who joins the exempt service cgroup, watched while a
        # bpf or sensor rule is loaded; io_uring: only the tracepoint tier needs a program for it
        assert kinds - {"io_uring"} == {"exec", "file", "connect", "module_load", "bpf", "fileless_exec",
                                         "interpreted", "sensor", "cgroup"}, tier.name
        assert all(p.name.startswith(f"endura_{tier.object_name.split('_')[1].split('.')[0]}_") for p in tier.programs)


def test_the_blocking_tiers_have_the_same_effect_hooks_and_only_they_are_optional():
    """lsm and fentry: the same effect hooks (bpf/include/endura_fileops.bpf.h), each attached to its kernel
    function (bpf_lsm_<hook> / security_<hook>); the programs every tier needs have no target (never skipped)."""
    lsm, fentry = enforce.TIER_BY_NAME["lsm"], enforce.TIER_BY_NAME["fentry"]
    assert lsm.can_block and fentry.can_block and not enforce.TIER_BY_NAME["tracepoint"].can_block
    for tier, prefix in ((lsm, "bpf_lsm_"), (fentry, "security_")):
        optional = {p.name.split("_", 2)[2]: p for p in tier.programs if p.target}
        assert list(optional) == [hook for hook, _ in enforce.EFFECT_HOOKS]
        assert all(p.target == prefix + hook for hook, p in optional.items())
        assert optional["socket_sendmsg"].kinds == ("connect",) and optional["file_mprotect"].kinds == ("exec",)
        assert set(optional["mmap_file"].kinds) == {"exec", "file"} and optional["path_rename"].kinds == ("file",)
    # the tracepoint tier's optional programs are ext4's tracepoints
    assert {p.name: p.target for p in enforce.TIER_BY_NAME["tracepoint"].programs if p.target} == {
        "endura_tp_ext4_unlink": "btf_trace_ext4_unlink_enter", "endura_tp_ext4_truncate": "btf_trace_ext4_truncate_enter"}


def test_a_kernel_function_or_type_is_found_by_its_whole_name_in_the_btf(tmp_path):
    (tmp_path / "vmlinux").write_bytes(b"\x9f\xeb\x01\0...\0security_path_rename\0bpf_lsm_path_rename\0"
                                       b"security_file_truncate_x\0")
    (tmp_path / "ext4").write_bytes(b"\0task_struct\0btf_trace_ext4_unlink_enter\0")  # a module's BTF
    assert enforce.kernel_has_btf_type("security_path_rename", tmp_path)
    assert enforce.kernel_has_btf_type("bpf_lsm_path_rename", tmp_path)
    assert enforce.kernel_has_btf_type("btf_trace_ext4_unlink_enter", tmp_path)
    assert not enforce.kernel_has_btf_type("security_file_truncate", tmp_path)  # only a longer name has it as prefix
    assert not enforce.kernel_has_btf_type("path_rename", tmp_path)  # nor as a suffix
    assert not enforce.kernel_has_btf_type("task", tmp_path / "missing")
    assert enforce.SINGLETON_INDEX["io_uring"] == enforce.events.TAMPER_IO_URING


def test_every_singleton_rule_type_has_its_tamper_index():
    from endura_sensor import policy

    assert set(enforce.SINGLETON_INDEX) == set(policy.SINGLETONS)
    assert sorted(enforce.SINGLETON_INDEX.values()) == list(range(enforce.events.TAMPER_COUNT))
