import gzip
from pathlib import Path

from endura_sensor import probe
from endura_sensor.enforce import TIER_BY_NAME, TIERS
from endura_sensor.probe import HostFacts, TierResult

LSM, FENTRY, TP = (TIER_BY_NAME[n] for n in ("lsm", "fentry", "tracepoint"))


def facts(lsm_list=("lockdown", "capability", "bpf"), **kw):
    base = dict(kernel="6.1.0", machine="x86_64", arch="amd64", btf=True,
                lsm_list=None if lsm_list is None else list(lsm_list), euid=0)
    base.update(kw)
    return HostFacts(**base)


def result(tier, res="ok", canary="not run"):
    return TierResult(tier.name, f"/x/{tier.object_name}", res, canary=canary)


def test_host_facts_from_a_fake_sys_tree(fake_root):
    (fake_root / "sys/kernel/security/lsm").write_text("lockdown,capability,yama,apparmor\n")
    (fake_root / "sys/kernel/security/lockdown").write_text("[none] integrity confidentiality\n")
    (fake_root / "boot").mkdir()
    (fake_root / "boot/config-6.1.0-50-amd64").write_text("CONFIG_BPF=y\nCONFIG_BPF_LSM=y\n")
    f = probe.host_facts(fake_root, machine="aarch64")
    assert (f.kernel, f.arch, f.btf) == ("6.1.0-50-amd64", "arm64", True)
    assert f.lsm_list == ["lockdown", "capability", "yama", "apparmor"] and f.bpf_lsm_active is False
    assert f.lockdown == "none" and f.config_bpf_lsm is True


def test_missing_btf_securityfs_and_config_gz(fake_root):
    (fake_root / "sys/kernel/btf/vmlinux").unlink()
    (fake_root / "proc/config.gz").write_bytes(gzip.compress(b"# CONFIG_BPF_LSM is not set\n"))
    f = probe.host_facts(fake_root)
    assert f.btf is False and f.lsm_list is None and f.bpf_lsm_active is None
    assert "securityfs" in f.lsm_list_note and f.config_bpf_lsm is False


def test_lsm_not_in_active_list_is_unusable_even_if_it_loads():
    r = probe.evaluate(facts(["lockdown", "capability", "apparmor"]), LSM, result(LSM, "ok"))
    assert not r.usable and "never run" in r.reason
    assert "lsm=lockdown,capability,apparmor,bpf" in r.fix


def test_lsm_fix_when_kernel_lacks_config_bpf_lsm():
    r = probe.evaluate(facts(["capability"], config_bpf_lsm=False), LSM, result(LSM, "ok"))
    assert "CONFIG_BPF_LSM" in r.fix


def test_eperm_as_root_vs_not_root_and_no_btf():
    as_root = probe.evaluate(facts(lockdown="integrity"), FENTRY, result(FENTRY, "EPERM"))
    assert not as_root.usable and "lockdown: integrity" in as_root.fix and "trampolines" in as_root.fix
    user = probe.evaluate(facts(euid=1000), TP, result(TP, "EPERM"))
    assert "run as root" in user.fix
    no_btf = probe.evaluate(facts(btf=False), TP, result(TP, "ENOENT"))
    assert "no BTF" in no_btf.fix
    arm = probe.evaluate(facts(), FENTRY, result(FENTRY, "ENOTSUPP"))
    assert "arm64 >= 6.0" in arm.fix


def test_canary_outcome_decides():
    assert probe.evaluate(facts(), LSM, result(LSM, canary="blocked")).usable
    assert not probe.evaluate(facts(), LSM, result(LSM, canary="not enforced (exit code 0)")).usable
    assert probe.evaluate(facts(), TP, result(TP, canary="killed")).usable
    assert not probe.evaluate(facts(), TP, result(TP, canary="error: boom")).usable
    # without a canary, an LSM program is only trusted when bpf is known to be active
    assert probe.evaluate(facts(), LSM, result(LSM)).usable
    assert not probe.evaluate(facts(lsm_list=None), LSM, result(LSM)).usable
    assert probe.evaluate(facts(lsm_list=None), FENTRY, result(FENTRY)).usable


def _check(fake_root, outcomes, lsm="lockdown,capability,bpf"):
    (fake_root / "sys/kernel/security/lsm").write_text(lsm)
    calls = []

    def loader(tier, bpf_dir, canary):
        calls.append((tier.name, canary))
        res, can = outcomes[tier.name]
        return TierResult(tier.name, str(Path(bpf_dir) / tier.object_name), res, canary=can if canary else "not run")

    return probe.check(fake_root, Path("/objs"), canary=True, loader=loader), calls


def test_check_exit_codes_and_chosen_tier(fake_root):
    full, _ = _check(fake_root, {"lsm": ("ok", "blocked"), "fentry": ("ok", "killed"), "tracepoint": ("ok", "killed")})
    assert (full.tier, full.exit_code) == ("lsm", probe.EXIT_FULL)
    # this development host: LSM and fentry EPERM, tracepoint works
    dev, _ = _check(fake_root, {"lsm": ("EPERM", ""), "fentry": ("EPERM", ""), "tracepoint": ("ok", "killed")})
    assert (dev.tier, dev.exit_code) == ("tracepoint", probe.EXIT_DEGRADED)
    none, _ = _check(fake_root, {t.name: ("missing", "") for t in TIERS})
    assert (none.tier, none.exit_code) == (None, probe.EXIT_NONE)
    assert "nox -s bpf" in none.tiers[0].fix
    data = dev.to_dict()
    assert data["tier"] == "tracepoint" and data["exit_code"] == 10 and data["bpf_lsm_active"] is True
    assert [t["result"] for t in data["tiers"]] == ["EPERM", "EPERM", "ok"]
    text = probe.format_text(dev)
    assert "would use tier tracepoint" in text and "bpf LSM:     active" in text
    # what the chosen tier cannot do is said, in the text and per tier in the JSON
    assert "what tier tracepoint cannot guarantee" in text and "io_uring" in text
    assert [t["limits"][0].startswith("kill only") for t in data["tiers"]] == [False, False, True]


def test_check_skips_the_lsm_canary_when_bpf_is_inactive(fake_root):
    report, calls = _check(fake_root, {t.name: ("ok", "blocked" if t.can_block else "killed") for t in TIERS},
                           lsm="capability,apparmor")
    assert calls[0] == ("lsm", False)
    assert (report.tier, report.exit_code) == ("fentry", probe.EXIT_DEGRADED)
    assert "lsm=capability,apparmor,bpf" in probe.format_text(report)


def test_check_states_what_the_chosen_tier_cannot_guarantee():
    from endura_sensor import limits

    assert limits.limits("lsm") == limits.COMMON
    tracepoint = limits.limits("tracepoint")
    assert tracepoint[: len(limits.TIER_LIMITS["tracepoint"])] == limits.TIER_LIMITS["tracepoint"]
    assert any("io_uring" in line for line in tracepoint) and any("kill only" in line for line in tracepoint)
    assert set(limits.TIER_LIMITS) == {"lsm", "fentry", "tracepoint"}
