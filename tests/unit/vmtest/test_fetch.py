"""vmtest.kernels (apt metadata, private apt config, cache verification) and runner.find_package."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from distros import load_catalog
from toolbox.errors import EnduraError
from vmtest import kernels, runner

SHOW_META = """Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.176+1)
Version: 6.1.176-1
Installed-Size: 13
Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)
Description: Linux for x86-64 cloud (meta-package)
 This package depends on the latest Linux kernel
 and modules for use on cloud platforms.
SHA256: 0123

Package: linux-image-cloud-amd64
Version: 6.1.170-1
"""
SHOW_IMAGE = """Package: linux-image-6.1.0-50-cloud-amd64
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb
SHA256: efe19f605b6f54a8352e68d85a629abb2d30b72a085faef603a9152590baa791
"""
SHOW_619 = """Package: linux-image-6.19.3+deb14-amd64
Version: 6.19.3-1
Depends: linux-binary-6.19.3+deb14-amd64 (= 6.19.3-1)
"""


def test_parse_control_reads_the_first_stanza():
    fields = kernels.parse_control(SHOW_META)
    assert fields["Version"] == "6.1.176-1"
    assert fields["Description"].endswith("on cloud platforms.")


@pytest.mark.parametrize("text,expected", [
    (SHOW_META, "linux-image-6.1.0-50-cloud-amd64"),  # meta -> versioned image
    (SHOW_IMAGE, None),  # the image itself
    (SHOW_619, "linux-binary-6.19.3+deb14-amd64"),  # 6.19+: the image lives in linux-binary-*
])
def test_next_image_package(text, expected):
    assert kernels.next_image_package(kernels.parse_control(text)) == expected


def test_dependency_names():
    assert kernels.dependency_names("a (>= 1) | b, c:any [amd64],, d") == ["a", "b", "c", "d"]


def test_private_apt_config_confines_apt(tmp_path):
    text = kernels.apt_config_text(tmp_path, "amd64")
    for key in ('Dir::Etc "', 'Dir::Etc::Parts "apt.conf.d"', 'Dir::State::status "', 'Dir::Cache "'):
        assert key in text
    assert "/etc/apt" not in text and str(tmp_path) in text
    line = kernels.sources_line("http://deb.debian.org/debian", "trixie")
    assert line == "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n"
    root = kernels.AptRoot(tmp_path / "apt", "http://deb.debian.org/debian", "trixie", "amd64")
    root.setup()
    assert (tmp_path / "apt" / "state" / "status").read_text() == ""
    assert root.env["APT_CONFIG"] == str(tmp_path / "apt" / "etc" / "apt.conf")


def _image(tmp_path: Path, data: bytes, recorded: bytes) -> kernels.KernelImage:
    vmlinuz = tmp_path / "vmlinuz-6.1"
    vmlinuz.write_bytes(data)
    return kernels.KernelImage(vmlinuz, None, "6.1", "linux-image-6.1", "1", "x", hashlib.sha256(recorded).hexdigest())


def test_verify_cached_accepts_an_intact_kernel(tmp_path):
    kernels.verify_cached(_image(tmp_path, b"kernel", b"kernel"))


def test_verify_cached_names_a_corrupt_kernel(tmp_path):
    with pytest.raises(EnduraError, match="is corrupt: sha256 .* expected"):
        kernels.verify_cached(_image(tmp_path, b"kernel, one bit flipped", b"kernel"))


def test_cache_root_follows_endura_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_CACHE_DIR", str(tmp_path))
    assert kernels.cache_root() == tmp_path / "vmtest"


# ---------------------------------------------------------------- the package under test

def _dist(tmp_path: Path, data: bytes = b"deb", sha: str | None = None, targets=("debian-12",)) -> Path:
    d = tmp_path / "dist" / "1.0.0"
    d.mkdir(parents=True)
    (d / "endura-sensor_1.0.0_amd64.deb").write_bytes(data)
    manifest = {"artifacts": [{"family": "deb", "arch": "amd64", "file": "endura-sensor_1.0.0_amd64.deb",
                               "sha256": sha or hashlib.sha256(data).hexdigest(), "targets": list(targets)}]}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def test_find_package_in_dist_or_its_version_dir(tmp_path):
    version_dir = _dist(tmp_path)
    target = load_catalog().target("debian-12")
    assert runner.find_package(version_dir.parent, target) == version_dir / "endura-sensor_1.0.0_amd64.deb"
    assert runner.find_package(version_dir, target) == version_dir / "endura-sensor_1.0.0_amd64.deb"


def test_find_package_errors_say_how_to_build(tmp_path):
    target = load_catalog().target("debian-12")
    with pytest.raises(EnduraError, match="no built packages in .*nox -s package -- --format deb --arch amd64"):
        runner.find_package(tmp_path, target)
    d = _dist(tmp_path, sha="0" * 64)
    with pytest.raises(EnduraError, match="does not match the sha256"):
        runner.find_package(d, target)


def test_find_package_without_a_package_for_the_target(tmp_path):
    d = _dist(tmp_path, targets=("ubuntu-24.04",))
    with pytest.raises(EnduraError, match="no deb package for amd64 serving debian-12"):
        runner.find_package(d, load_catalog().target("debian-12"))


def test_unobtainable_targets_are_not_available_here():
    catalog = load_catalog()
    assert runner.unavailable_reason(catalog.target("debian-12")) is None
    reason = runner.unavailable_reason(catalog.target("rhel-9"))
    assert reason and "kernel-core" in reason


def test_userspace_suite():
    assert runner.userspace_suite("bookworm-backports") == "bookworm"
    assert runner.userspace_suite("trixie") == "trixie"
