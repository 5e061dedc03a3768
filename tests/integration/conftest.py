"""Fixtures that build real packages and real Debian roots once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.guidetools import extract_root, stop_gpg_agents_in, without_network_sources
from tests.integration.pkgtools import build_dist
from toolbox.files import cache_dir
from toolbox.run import run
from toolbox.tools import require


@pytest.fixture(scope="session")
def dist_v1(tmp_path_factory) -> Path:
    """Every format for amd64 and arm64, version 1.0.0."""
    path, _ = build_dist(tmp_path_factory.mktemp("dist-v1"), "1.0.0")
    return path


@pytest.fixture(scope="session")
def dist_v2(tmp_path_factory) -> Path:
    """A newer build (1.0.1) for the upgrade tests."""
    path, _ = build_dist(tmp_path_factory.mktemp("dist-v2"), "1.0.1", "--format", "deb,rpm,tgz", "--arch", "amd64")
    return path


@pytest.fixture(scope="session")
def apk_clients():
    """Alpine's apk-tools 2.14 and 3.0, built once into the cache from the vendored source (.ci/run builds them
    first; see families.apk.apktools)."""
    from families.apk import apktools

    return apktools.clients()


@pytest.fixture(scope="session")
def release_apk_env(tmp_path_factory) -> dict[str, str]:
    """`ENDURA_APK_SIGNING_KEY` for tests that publish with a release gpg key: every generation signs its apk
    indexes, and a release gpg key refuses the development apk key (`release.signing.resolve_apk_key`)."""
    directory = tmp_path_factory.mktemp("release-apk-key")
    private, public = directory / "endura-test-release.rsa", directory / "endura-test-release.rsa.pub"
    run(["openssl", "genrsa", "-out", str(private), "2048"])
    run(["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(public)])
    return {"ENDURA_APK_SIGNING_KEY": str(private)}


@pytest.fixture(scope="session")
def debian_rootfs_tar() -> Path:
    """A Debian 12 minbase root with python3 and libbpf1 (mmdebstrap, cached between runs)."""
    require("mmdebstrap")
    cached = cache_dir() / "test-roots" / "bookworm-python3-libbpf1-v2.tar"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        run(["mmdebstrap", "--variant=minbase", "--format=tar", "--include=python3,libbpf1",
             "bookworm", str(tmp)], timeout=900)
        os.replace(tmp, cached)
    return cached


@pytest.fixture(scope="session")
def guide_rootfs_tar() -> Path:
    """A Debian 12 minbase root for following the install guides verbatim: python3 and libbpf1 (the sensor's
    dependencies), curl and ca-certificates (what the guides fetch with), dnf and rpm (the dnf guide runs
    inside it: the same dnf 4 as the host's, with the root as its system), zypper (the SUSE guides run
    inside it the same way: see test_zypper). Cached between runs."""
    require("mmdebstrap")
    cached = cache_dir() / "test-roots" / "bookworm-guides-curl-dnf-zypper-v2.tar"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        run(["mmdebstrap", "--variant=minbase", "--format=tar",
             "--include=python3,libbpf1,curl,ca-certificates,dnf,rpm,zypper", "bookworm", str(tmp)], timeout=900)
        os.replace(tmp, cached)
    return cached


@pytest.fixture
def debian_root(tmp_path, debian_rootfs_tar) -> Path:
    """A fresh, writable Debian 12 root for one test (chroot into it as root)."""
    root = tmp_path / "root"
    root.mkdir()
    run(["tar", "-C", str(root), "-xf", str(debian_rootfs_tar)])
    return root


@pytest.fixture
def host(tmp_path, guide_rootfs_tar) -> Path:
    """A fresh root from the guides' tar with no network apt source: the host a guide is followed on."""
    root = extract_root(guide_rootfs_tar, tmp_path / "host")
    without_network_sources(root)
    yield root
    stop_gpg_agents_in(root)
