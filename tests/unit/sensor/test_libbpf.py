import errno

import pytest
from endura_sensor import libbpf


@pytest.mark.parametrize("os_release, package", [
    ({"ID": "debian", "VERSION_ID": "12"}, "libbpf1 (apt-get install libbpf1)"),
    ({"ID": "debian", "VERSION_ID": "11"}, "libbpf0 (apt-get install libbpf0)"),
    ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "20.04"}, "libbpf0 (apt-get install libbpf0)"),
    ({"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.04"}, "libbpf1 (apt-get install libbpf1)"),
    ({"ID": "rocky", "ID_LIKE": "rhel centos fedora", "VERSION_ID": "9.4"}, "libbpf (dnf install libbpf)"),
    ({"ID": "amzn", "ID_LIKE": "fedora", "VERSION_ID": "2023"}, "libbpf (dnf install libbpf)"),
    ({"ID": "opensuse-leap", "ID_LIKE": "suse opensuse", "VERSION_ID": "15.6"}, "libbpf1 (zypper install libbpf1)"),
    ({"ID": "alpine", "VERSION_ID": "3.20.0"}, "libbpf (apk add libbpf)"),
    ({"ID": "arch"}, "libbpf (pacman -S libbpf)"),
])
def test_libbpf_package_per_distro(os_release, package):
    assert libbpf.libbpf_package(os_release) == package


def test_os_release_parsing(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('# c\nID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    assert libbpf.os_release(tmp_path) == {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12"}


def test_missing_library_names_the_package(monkeypatch):
    monkeypatch.setattr(libbpf, "_lib", None)
    monkeypatch.setattr(libbpf, "os_release", lambda root=None: {"ID": "debian", "VERSION_ID": "12"})
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
