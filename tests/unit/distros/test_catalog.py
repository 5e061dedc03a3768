"""distros: the real catalog (every spec target, facts over spec, rendered depends) and validation errors."""
from __future__ import annotations

import dataclasses
import re

import pytest

from distros import FAMILIES, Dependency, load_catalog
from distros.model import DEFAULT_PATH
from release.version import Version, format_version
from toolbox.errors import EnduraError

#: every target of deployment-overview.txt (Ubuntu: the LTS and current releases; Oracle: RHCK + UEK)
SPEC_TARGETS = [
    "rhel-8", "rhel-9", "rhel-10", "alma-8", "alma-9", "alma-10", "rocky-8", "rocky-9", "rocky-10",
    "oracle-8", "oracle-9", "oracle-10", "oracle-8-uek", "oracle-9-uek", "oracle-10-uek",
    "centos-stream-8", "centos-stream-9", "fedora-43", "sles-15", "sles-16", "opensuse-leap-15", "opensuse-leap-16",
    "debian-11", "debian-12", "debian-13", "ubuntu-20.04", "ubuntu-22.04", "ubuntu-24.04", "ubuntu-25.10",
    "alpine-3.22", "amazonlinux-2023", "arch",
]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


# -- the real catalog --------------------------------------------------------------------------
def test_loads_into_frozen_dataclasses(catalog):
    assert catalog.path == DEFAULT_PATH
    assert isinstance(catalog.targets, tuple) and isinstance(catalog.builds, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.targets[0].family = "rpm"  # type: ignore[misc]


def test_every_spec_target_is_present(catalog):
    missing = [t for t in SPEC_TARGETS if t not in catalog.target_ids]
    assert missing == []


def test_ids_are_unique_and_lowercase(catalog):
    ids = catalog.target_ids
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.-]*", i) for i in ids)
    assert len({b.id for b in catalog.builds}) == len(catalog.builds)


def test_every_target_is_served_by_a_native_build_of_its_family(catalog):
    for t in catalog.targets:
        build = catalog.build(t.build)
        assert build.family == t.family and not build.all_targets
        assert set(t.arches) <= set(build.arches)
        assert t in catalog.targets_for_build(t.build)
        assert t in catalog.targets_for_build("tgz")  # every target can also use the tarball


def _names_in(rendered: list[str]) -> set[str]:
    """Package names in rendered dependency lines, without operators, versions and parentheses."""
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9.+_-]*", " ".join(rendered)))
    return words - {"or"}


def test_each_targets_interpreter_and_libbpf_are_in_its_builds_depends(catalog):
    for t in catalog.targets:
        names = _names_in(catalog.build(t.build).depends(catalog))
        assert t.python_package in names, (t.id, t.python_package)
        assert t.libbpf_package in names, (t.id, t.libbpf_package)


def test_rendered_depends_per_family(catalog):
    assert catalog.build("deb").depends(catalog) == ["python3 (>= 3.9) | python3.9", "libbpf1 | libbpf0"]
    assert catalog.build("rpm").depends(catalog) == [
        "(python3 >= 3.9 or python3.11 or python311)", "(libbpf or libbpf1)",
    ]
    assert catalog.build("apk").depends(catalog) == ["python3", "libbpf"]
    assert catalog.build("arch").depends(catalog) == ["python", "libbpf"]
    assert catalog.build("tgz").depends(catalog) == []


def test_depends_are_deterministic(catalog):
    again = load_catalog()
    for b in catalog.builds:
        assert b.depends(catalog) == again.build(b.id).depends(again)


@pytest.mark.parametrize(
    "target_id, package, command",
    [
        ("rhel-8", "python3.11", "python3.11"), ("alma-8", "python3.11", "python3.11"),
        ("centos-stream-8", "python3.11", "python3.11"), ("oracle-8-uek", "python3.11", "python3.11"),
        ("sles-15", "python311", "python3.11"), ("opensuse-leap-15", "python311", "python3.11"),
        ("ubuntu-20.04", "python3.9", "python3.9"), ("rhel-9", "python3", "python3"),
        ("debian-11", "python3", "python3"), ("amazonlinux-2023", "python3", "python3"),
        ("alpine-3.22", "python3", "python3"), ("arch", "python", "python3"),
    ],
)
def test_interpreter(catalog, target_id, package, command):
    t = catalog.target(target_id)
    assert (t.python_package, t.python_command) == (package, command)


@pytest.mark.parametrize(
    "target_id, libbpf",
    [
        ("debian-11", "libbpf0"), ("debian-12", "libbpf1"), ("debian-13", "libbpf1"), ("ubuntu-22.04", "libbpf0"),
        ("ubuntu-24.04", "libbpf1"), ("ubuntu-25.10", "libbpf1"), ("rhel-8", "libbpf"), ("fedora-43", "libbpf"),
        ("amazonlinux-2023", "libbpf"), ("arch", "libbpf"), ("alpine-3.22", "libbpf"), ("sles-15", "libbpf1"),
        ("opensuse-leap-16", "libbpf1"),
    ],
)
def test_libbpf_package(catalog, target_id, libbpf):
    assert catalog.target(target_id).libbpf_package == libbpf


def test_bpf_lsm_facts_win_over_the_spec(catalog):
    off = {t.id for t in catalog.targets if not t.bpf_lsm_default}
    assert {"debian-11", "oracle-8-uek", "oracle-9-uek", "oracle-10-uek", "alpine-3.22"} <= off
    assert {t.id for t in catalog.targets if t.distro == "ubuntu"} <= off
    on = {t.id for t in catalog.targets if t.bpf_lsm_default}
    assert {"rhel-8", "alma-8", "oracle-8", "debian-12", "fedora-43", "amazonlinux-2023", "arch", "sles-15"} <= on
    assert "8.5" in catalog.target("rhel-8").bpf_lsm_note


def test_every_missing_bpf_lsm_has_a_fix(catalog):
    for t in catalog.targets:
        if t.bpf_lsm_default:
            assert t.bpf_lsm_fix == "", t.id
            continue
        if t.distro == "alpine":
            assert "custom kernel with CONFIG_BPF_LSM=y" in t.bpf_lsm_fix
            continue
        lsm = re.search(r"lsm=([a-z,]+)", t.bpf_lsm_fix)
        assert lsm, f"{t.id}: no lsm= in {t.bpf_lsm_fix!r}"
        names = lsm[1].split(",")
        assert names[-1] == "bpf" and len(names) > 2 and len(set(names)) == len(names), t.id


def test_test_vm_kernels(catalog):
    for t in catalog.targets:
        if t.distro == "debian":
            assert t.kernel.source == "apt" and t.kernel.obtainable and t.kernel.suite
            assert t.kernel.mirror == "http://deb.debian.org/debian"
        else:
            assert not t.kernel.obtainable, t.id
    assert catalog.target("debian-12").kernel.suite == "bookworm"
    assert catalog.target("debian-13").kernel.suite == "trixie"
    assert catalog.target("debian-12").kernel_package("amd64") == "linux-image-cloud-amd64"
    assert catalog.target("debian-12").kernel_package("arm64") == "linux-image-cloud-arm64"
    assert "/x86_64/" in catalog.target("alma-9").kernel_mirror("amd64")
    assert "/aarch64/" in catalog.target("alpine-3.22").kernel_mirror("arm64")


def test_init_and_package_managers(catalog):
    assert catalog.target("alpine-3.22").init == "openrc"
    assert all(t.init == "systemd" for t in catalog.targets if t.distro != "alpine")
    assert catalog.target("sles-16").package_manager == "zypper"
    assert catalog.target("arch").package_manager == "pacman"


def test_unknown_target_suggests_close_matches_and_the_nox_hint(catalog):
    with pytest.raises(EnduraError) as err:
        catalog.target("debain-12")
    message = err.value.message
    assert "'debain-12'" in message and "did you mean 'debian-12'" in message
    assert "nox -s vmtest -- debian-12" in message and str(DEFAULT_PATH) in message
    with pytest.raises(EnduraError, match=r"did you mean 'ubuntu-24.04'"):
        catalog.target("Ubuntu-24.04")
    with pytest.raises(EnduraError, match=r"unknown build 'debs'.*did you mean 'deb'"):
        catalog.build("debs")


# -- families ----------------------------------------------------------------------------------
def test_family_arch_names():
    table = {f: (FAMILIES[f].arch_name("amd64"), FAMILIES[f].arch_name("arm64")) for f in ("deb", "rpm", "apk", "arch")}
    assert table == {"deb": ("amd64", "arm64"), "rpm": ("x86_64", "aarch64"),
                     "apk": ("x86_64", "aarch64"), "arch": ("x86_64", "aarch64")}
    with pytest.raises(EnduraError, match=r"unknown architecture 'riscv64' for rpm; use one of amd64, arm64"):
        FAMILIES["rpm"].arch_name("riscv64")


def test_family_extensions_and_versions():
    assert {n: f.extension for n, f in FAMILIES.items()} == {
        "deb": ".deb", "rpm": ".rpm", "apk": ".apk", "arch": ".pkg.tar.zst", "tgz": ".tar.gz"}
    rc = Version.parse("1.0.0-rc.1")
    assert {n: format_version(rc, n) for n in FAMILIES} == {
        "deb": "1.0.0~rc.1", "rpm": "1.0.0~rc.1", "apk": "1.0.0_rc1", "arch": "1.0.0rc1", "tgz": "1.0.0-rc.1"}


def test_family_rendering():
    alts = [Dependency("python3", "3.9"), Dependency("python3.11")]
    assert FAMILIES["deb"].render_alternatives(alts) == "python3 (>= 3.9) | python3.11"
    assert FAMILIES["rpm"].render_alternatives(alts) == "(python3 >= 3.9 or python3.11)"
    assert FAMILIES["rpm"].render_alternatives([Dependency("libbpf")]) == "libbpf"
    assert FAMILIES["apk"].render_alternatives([Dependency("python3", "3.9")]) == "python3"
    with pytest.raises(EnduraError, match="apk packages cannot express alternatives"):
        FAMILIES["apk"].render_alternatives(alts)


# -- validation of bad catalogs ------------------------------------------------------------------
MINIMAL = """\
[python]
min_version = "3.9"
generic_packages = ["python3"]

[build.deb]
family = "deb"
arches = ["amd64", "arm64"]
description = "debs"

[target.demo-1]
name = "Demo 1"
distro = "demo"
version = "1"
family = "deb"
build = "deb"
arches = ["amd64"]
package_manager = "apt"
init = "systemd"
python_package = "python3"
python_command = "python3"
libbpf_package = "libbpf1"
bpf_lsm_default = true
[target.demo-1.kernel]
package = "linux-image-cloud-{arch}"
source = "apt"
suite = "bookworm"
mirror = "http://deb.debian.org/debian"
obtainable = true
"""

SECOND_TARGET = MINIMAL[MINIMAL.index("[target.demo-1]"):].replace("demo-1", "demo-2").replace('version = "1"', 'version = "2"')


def _load(tmp_path, text: str):
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return load_catalog(path), path


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    with pytest.raises(EnduraError) as err:
        load_catalog(path)
    assert str(path) in err.value.message, "every catalog error names the file"
    return err.value.message


def test_minimal_catalog_loads(tmp_path):
    catalog, _ = _load(tmp_path, MINIMAL + SECOND_TARGET)
    assert catalog.target_ids == ("demo-1", "demo-2")
    assert catalog.build("deb").depends(catalog) == ["python3 (>= 3.9)", "libbpf1"]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('init = "systemd"', 'init = "systemd"\ncolour = "red"',
         r"target 'demo-1': key 'colour': unknown key; remove it"),
        ('python_package = "python3"', 'pyhton_package = "python3"',
         r"key 'pyhton_package': unknown key; .*did you mean 'python_package'"),
        ('family = "deb"\nbuild', 'family = "msi"\nbuild',
         r"target 'demo-1': key 'family': unknown value 'msi'; use one of deb, rpm, apk, arch"),
        ('init = "systemd"', 'init = "upstart"', r"key 'init': unknown value 'upstart'; use one of systemd, openrc"),
        ('arches = ["amd64"]', 'arches = ["amd64", "riscv64"]', r"key 'arches': unknown value 'riscv64'; use one of amd64, arm64"),
        ('arches = ["amd64"]', 'arches = []', r"key 'arches': is empty"),
        ('build = "deb"', 'build = "debs"', r"key 'build': names unknown build 'debs'; use one of deb or add a \[build.debs\]"),
        ('libbpf_package = "libbpf1"\n', '', r"target 'demo-1': key 'libbpf_package': missing required key; add libbpf_package ="),
        ('bpf_lsm_default = true', 'bpf_lsm_default = "yes"', r"key 'bpf_lsm_default': is 'yes', not true or false"),
        ('bpf_lsm_default = true', 'bpf_lsm_default = false', r"key 'bpf_lsm_fix': missing: BPF LSM is not active"),
        ('bpf_lsm_default = true', 'bpf_lsm_default = true\nbpf_lsm_fix = "x"', r"key 'bpf_lsm_fix': given although"),
        ('package_manager = "apt"', 'package_manager = "dnf"',
         r"key 'package_manager': 'dnf' does not install deb packages; use one of apt"),
        ('suite = "bookworm"\n', '', r"key 'kernel.suite': missing for an apt kernel source"),
        ('source = "apt"', 'source = "ftp"', r"key 'kernel.source': unknown value 'ftp'; use one of apt, url"),
        ('obtainable = true', 'obtainable = true\nsize = 3', r"key 'kernel.size': unknown key"),
        ('package = "linux-image-cloud-{arch}"', 'package = "linux-{version}"',
         r"key 'kernel.package': unknown placeholder\(s\) \['version'\]"),
        ('[target.demo-1', '[target.Demo-1', r"target 'Demo-1': id 'Demo-1' is not lowercase"),
        ('min_version = "3.9"', 'min_version = "three"', r"key 'python.min_version': 'three' is not a Python 3 version"),
        ('[python]', '[pythn]', r"key 'pythn': unknown key; .*did you mean 'python'"),
    ],
)
def test_validation_errors_name_file_target_key_and_fix(tmp_path, old, new, expected):
    assert old in MINIMAL
    assert re.search(expected, _error(tmp_path, MINIMAL.replace(old, new)))


def test_unknown_build_family(tmp_path):
    text = MINIMAL.replace('[build.deb]\nfamily = "deb"', '[build.deb]\nfamily = "msi"')
    assert re.search(r"build 'deb': key 'family': unknown value 'msi'; use one of deb, rpm, apk, arch, tgz",
                     _error(tmp_path, text))


def test_build_whose_family_differs_from_its_targets(tmp_path):
    text = MINIMAL + '\n[build.rpm]\nfamily = "rpm"\narches = ["amd64"]\ndescription = "rpms"\n'
    text = text.replace('build = "deb"', 'build = "rpm"')
    message = _error(tmp_path, text)
    assert re.search(r"target 'demo-1': key 'build': build 'rpm' makes rpm packages but the target's family is 'deb'",
                     message)


def test_target_arch_missing_from_its_build(tmp_path):
    text = MINIMAL.replace('arches = ["amd64", "arm64"]\ndescription', 'arches = ["arm64"]\ndescription')
    assert re.search(r"key 'arches': build 'deb' is not made for amd64; add amd64 to \[build.deb\]",
                     _error(tmp_path, text))


def test_duplicate_target_id(tmp_path):
    message = _error(tmp_path, MINIMAL + MINIMAL[MINIMAL.index("[target.demo-1]"):])
    assert "duplicate id" in message and "demo-1" in message and "rename or merge" in message


def test_two_ids_for_the_same_release(tmp_path):
    text = MINIMAL + SECOND_TARGET.replace('version = "2"', 'version = "1"')
    assert re.search(r"target 'demo-2': describes the same distro/version/variant .* as target 'demo-1'",
                     _error(tmp_path, text))


def test_unquoted_dotted_id_is_explained(tmp_path):
    text = MINIMAL.replace("demo-1", "demo-1.0")
    assert re.search(r"""TOML split the id 'demo-1.0' at its dot; quote ids that contain dots: \[target."demo-1.0"\]""",
                     _error(tmp_path, text))


def test_apk_build_cannot_carry_alternatives(tmp_path):
    apk = MINIMAL.replace('[build.deb]\nfamily = "deb"', '[build.apk]\nfamily = "apk"')
    apk = apk.replace('family = "deb"\nbuild = "deb"', 'family = "apk"\nbuild = "apk"')
    apk = apk.replace('package_manager = "apt"', 'package_manager = "apk"').replace('init = "systemd"', 'init = "openrc"')
    second = apk[apk.index("[target.demo-1]"):].replace("demo-1", "demo-2").replace('version = "1"', 'version = "2"')
    second = second.replace('libbpf_package = "libbpf1"', 'libbpf_package = "libbpf"')
    message = _error(tmp_path, apk + second)
    assert "build 'apk': apk packages cannot express alternatives (libbpf or libbpf1)" in message


def test_build_without_targets(tmp_path):
    text = MINIMAL + '\n[build.rpm]\nfamily = "rpm"\narches = ["amd64"]\ndescription = "rpms"\n'
    assert re.search(r"build 'rpm': serves no target; remove \[build.rpm\]", _error(tmp_path, text))


def test_missing_file_and_bad_syntax(tmp_path):
    with pytest.raises(EnduraError, match=r"catalog .*nope.toml does not exist"):
        load_catalog(tmp_path / "nope.toml")
    assert "not valid TOML" in _error(tmp_path, MINIMAL + "\n[target.x\n")
