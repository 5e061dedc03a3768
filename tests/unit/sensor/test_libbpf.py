import errno

import pytest
from endura_sensor import libbpf

#: rows as release/distro_data.py generates them from the catalog (tests/unit/release/test_generated.py checks the real ones)
HOSTS = [
    {"id": "debian", "version": "11", "package": "libbpf0", "install": "apt-get install libbpf0"},
    {"id": "debian", "version": "12", "package": "libbpf1", "install": "apt-get install libbpf1"},
    {"id": "ubuntu", "version": "22.04", "package": "libbpf0", "install": "apt-get install libbpf0"},
    {"id": "ubuntu", "version": "24.04", "package": "libbpf1", "install": "apt-get install libbpf1"},
    {"id": "rocky", "version": "9", "package": "libbpf", "install": "dnf install libbpf"},
    {"id": "opensuse-leap", "version": "15", "package": "libbpf1", "install": "zypper install libbpf1"},
    {"id": "alpine", "version": "3.20", "package": "libbpf", "install": "apk add libbpf"},
    {"id": "arch", "version": "rolling", "package": "libbpf", "install": "pacman -S libbpf"},
]


@pytest.mark.parametrize("os_release, package", [
    ({"ID": "debian", "VERSION_ID": "12"}, "libbpf1 (apt-get install libbpf1)"),
    ({"ID": "debian", "VERSION_ID": "11"}, "libbpf0 (apt-get install libbpf0)"),
    ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}, "libbpf0 (apt-get install libbpf0)"),
    ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.04"}, "libbpf1 (apt-get install libbpf1)"),
    ({"ID": "rocky", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.4"}, "libbpf (dnf install libbpf)"),
    ({"ID": "opensuse-leap", "ID_LIKE": "suse opensuse", "VERSION_ID": "15.6"}, "libbpf1 (zypper install libbpf1)"),
    ({"ID": "alpine", "VERSION_ID": "3.20.3"}, "libbpf (apk add libbpf)"),
    ({"ID": "arch"}, "libbpf (pacman -S libbpf)"),
    # a release newer than the catalog's: the newest one the catalog knows
    ({"ID": "debian", "VERSION_ID": "14"}, "libbpf1 (apt-get install libbpf1)"),
    # older than every release in the catalog, or a distribution it does not list: the generic answer
    ({"ID": "debian", "VERSION_ID": "10"}, libbpf.GENERIC_PACKAGE),
    ({"ID": "gentoo"}, libbpf.GENERIC_PACKAGE),
])
def test_libbpf_package_per_distro(os_release, package):
    assert libbpf.libbpf_package(os_release, HOSTS) == package


def test_libbpf_package_from_the_generated_file_or_generic_without_it(tmp_path, monkeypatch):
    import json

    path = tmp_path / "libbpf_packages.json"
    monkeypatch.setattr(libbpf, "PACKAGES_FILE", path)
    ubuntu = {"ID": "ubuntu", "VERSION_ID": "22.04"}
    assert libbpf.libbpf_package(ubuntu) == libbpf.GENERIC_PACKAGE  # a source checkout: no generated file
    path.write_text(json.dumps({"schema": 1, "hosts": HOSTS}))
    assert libbpf.libbpf_package(ubuntu) == "libbpf0 (apt-get install libbpf0)"
    path.write_text("{not json")
    assert libbpf.libbpf_package(ubuntu) == libbpf.GENERIC_PACKAGE


def test_os_release_parsing(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('# c\nID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    assert libbpf.os_release(tmp_path) == {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12"}


def test_missing_library_names_the_package(monkeypatch):
    monkeypatch.setattr(libbpf, "_lib", None)
    monkeypatch.setattr(libbpf, "os_release", lambda root=None: {"ID": "debian", "VERSION_ID": "12"})
    monkeypatch.setattr(libbpf, "_load_packages", lambda path: HOSTS)
    with pytest.raises(libbpf.LibbpfMissing) as info:
        libbpf.library(names=("libbpf-does-not-exist.so.9",))
    assert "install libbpf1 (apt-get install libbpf1)" in str(info.value)
    assert info.value.exit_code == 2


def test_errno_names_and_err_ptr_decoding():
    assert libbpf.errno_name(-errno.EPERM) == "EPERM" and libbpf.errno_name(524) == "ENOTSUPP"
    assert libbpf.errno_name(4007) == "LIBBPF_ERRNO_4007"
    mask = libbpf._PTR_MASK
    assert libbpf._ptr_error(mask + 1 - errno.EPERM) == errno.EPERM  # ERR_PTR(-EPERM) from libbpf 0.x
    assert libbpf._ptr_error(0x7F0000001000) == 0
    err = libbpf.BpfError("loading x.bpf.o", -errno.EPERM, "libbpf: refused")
    assert str(err) == "loading x.bpf.o: EPERM (Operation not permitted)" and err.detail == "libbpf: refused"
