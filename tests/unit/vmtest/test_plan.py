"""vmtest.plan: jobs, sharding, kernel command lines and the qemu argv (pure functions)."""
from __future__ import annotations

from pathlib import Path

import pytest

from toolbox.errors import EnduraError
from vmtest import plan


def _spec(**kw) -> plan.VmSpec:
    base = dict(kernel=Path("/k/vmlinuz"), initrd=Path("/w/d12.cpio"), cmdline="console=ttyS0",
                console_log=Path("/w/c.log"), results_log=Path("/w/r.jsonl"))
    base.update(kw)
    return plan.VmSpec(**base)


def test_qemu_argv_is_the_measured_tcg_recipe():
    argv = plan.qemu_argv(_spec())
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-cpu") + 1] == "max,-cx16"
    for flag in ("-nodefaults", "-no-reboot"):
        assert flag in argv
    assert argv[argv.index("-smp") + 1] == "1" and argv[argv.index("-m") + 1] == "1024"
    assert argv[argv.index("-kernel") + 1] == "/k/vmlinuz"
    assert argv[argv.index("-initrd") + 1] == "/w/d12.cpio"
    serials = [argv[i + 1] for i, a in enumerate(argv) if a == "-serial"]
    assert serials == ["file:/w/c.log", "file:/w/r.jsonl"]  # ttyS0 console, ttyS1 results


def test_qemu_argv_kvm_uses_the_host_cpu():
    argv = plan.qemu_argv(_spec(accel="kvm"))
    assert argv[argv.index("-accel") + 1] == "kvm" and argv[argv.index("-cpu") + 1] == "host"


@pytest.mark.parametrize("bad", [dict(accel="hvf"), dict(console_log=Path("/w/a,b.log"))])
def test_qemu_argv_rejects_bad_input(bad):
    with pytest.raises(EnduraError):
        plan.qemu_argv(_spec(**bad))


def test_cmdline_lsm_on_keeps_the_default_list_when_bpf_is_in_it():
    line = plan.kernel_cmdline(plan.BOOTS["lsm-on"], bpf_lsm_default=True)
    assert "lsm=" not in line
    for arg in ("console=ttyS0", "panic=-1", "reboot=t", "endura_vmtest=lsm-on"):
        assert arg in line.split()


def test_cmdline_lsm_on_adds_bpf_when_the_kernel_lacks_it_by_default():
    line = plan.kernel_cmdline(plan.BOOTS["lsm-on"], bpf_lsm_default=False)
    lsm = [a for a in line.split() if a.startswith("lsm=")]
    assert lsm and lsm[0].split("=")[1].split(",")[-1] == "bpf"


@pytest.mark.parametrize("default", [True, False])
def test_cmdline_lsm_off_lists_lsms_without_bpf(default):
    line = plan.kernel_cmdline(plan.BOOTS["lsm-off"], bpf_lsm_default=default)
    lsm = [a for a in line.split() if a.startswith("lsm=")]
    assert len(lsm) == 1 and "bpf" not in lsm[0].split("=")[1].split(",")
    assert "endura_vmtest=lsm-off" in line.split()


def test_boots_cover_every_scenario_of_the_issue():
    on = [s.name for s in plan.BOOTS["lsm-on"].scenarios]
    off = [s.name for s in plan.BOOTS["lsm-off"].scenarios]
    assert on[0] == off[0] == "check" and on[-1] == off[-1] == "stopped"
    assert {"lsm", "tracepoint", "audit"} <= set(on) and {"fentry", "tracepoint"} <= set(off)
    assert plan.LSM.terminate is False  # the caller must see EPERM, not be killed
    assert plan.TRACEPOINT.tier == "tracepoint" and plan.AUDIT.enforcement == "audit"


def test_expand_is_target_major():
    jobs = plan.expand(["debian-12", "debian-13"])
    assert [j.name for j in jobs] == ["debian-12/lsm-on", "debian-12/lsm-off", "debian-13/lsm-on",
                                      "debian-13/lsm-off"]
    with pytest.raises(EnduraError, match="unknown boot"):
        plan.expand(["debian-12"], ["lsm-maybe"])


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_partition_the_jobs(count):
    jobs = plan.expand([f"t{i}" for i in range(5)])
    shards = [plan.shard(jobs, i, count) for i in range(1, count + 1)]
    flat = [j for s in shards for j in s]
    assert sorted(flat, key=jobs.index) == jobs and len(flat) == len(jobs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_two_shards_split_the_boots_of_a_target():
    jobs = plan.expand(["debian-12"])
    assert plan.shard(jobs, 1, 2) == [jobs[0]] and plan.shard(jobs, 2, 2) == [jobs[1]]


@pytest.mark.parametrize("text,expected", [("1/1", (1, 1)), ("3/4", (3, 4))])
def test_parse_shard(text, expected):
    assert plan.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2", "1/2/3"])
def test_parse_shard_rejects(text):
    with pytest.raises(EnduraError, match="--shard"):
        plan.parse_shard(text)
