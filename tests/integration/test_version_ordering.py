"""Prove with the real tools that each package format orders versions exactly as semver does.

dpkg (`dpkg --compare-versions`), rpm (its own `rpm.vercmp` through `rpm --eval` lua), pacman
(`alpm_pkg_vercmp` from the real libalpm.so, through ctypes) and apk (`apk version -t` of apk-tools 2.14
and 3.0, built from source by families.apk.apktools: not packaged for Debian) compare every pair of a list
of tricky versions. A missing tool fails the test with the apt package that provides it; nothing is skipped.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import itertools
import os
import re

import pytest

from release.version import FORMATTERS, Version
from tests.version_cases import ASCENDING
from toolbox.errors import ToolMissing
from toolbox.run import ensure_tool, run

VERSIONS = [Version.parse(text) for text in ASCENDING]
PAIRS = list(itertools.combinations(VERSIONS, 2))


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def _require(tool: str) -> None:
    try:
        ensure_tool(tool)
    except ToolMissing as exc:
        pytest.fail(str(exc))


def _mismatches(fmt: str, compare) -> list[str]:
    """Pairs (lower, higher) where the tool does not say lower < higher, or a version != itself."""
    bad = []
    for low, high in PAIRS:
        a, b = FORMATTERS[fmt](low), FORMATTERS[fmt](high)
        if compare(a, b) != -1 or compare(b, a) != 1:
            bad.append(f"{low} -> {a!r} should sort before {high} -> {b!r}")
    for v in VERSIONS:
        s = FORMATTERS[fmt](v)
        if compare(s, s) != 0:
            bad.append(f"{s!r} does not compare equal to itself")
    return bad


def test_the_list_is_strictly_ascending_in_semver():
    for low, high in zip(VERSIONS, VERSIONS[1:]):
        assert low < high, f"{low} should be < {high}"


def test_dpkg_orders_deb_versions_like_semver():
    _require("dpkg")

    def compare(a: str, b: str) -> int:
        if run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0:
            return -1
        if run(["dpkg", "--compare-versions", a, "eq", b], check=False).returncode == 0:
            return 0
        return 1

    assert _mismatches("deb", compare) == []


def test_every_deb_version_is_valid_for_dpkg():
    _require("dpkg")
    for v in VERSIONS:
        proc = run(["dpkg", "--validate-version", FORMATTERS["deb"](v)], check=False)
        assert proc.returncode == 0, f"{v}: {proc.stderr}"


def _rpm_vercmp_batch(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """rpm's own rpmvercmp for many pairs in one `rpm --eval` (lua `rpm.vercmp`)."""
    for a, b in pairs:
        assert re.fullmatch(r"[0-9A-Za-z.~_+^]+", a + b), (a, b)  # safe inside a lua string literal
    # rpm's lua print() adds no newline inside a macro: separate the results with ','
    chunk = " ".join(f'print(rpm.vercmp("{a}", "{b}") .. ",")' for a, b in pairs)
    out = run(["rpm", "--eval", f"%{{lua: {chunk}}}"],
              hint="rpm must be built with lua (Debian's rpm package is)").stdout.strip().rstrip(",").split(",")
    assert len(out) == len(pairs), f"rpm printed {len(out)} results for {len(pairs)} comparisons"
    return {pair: _sign(int(result)) for pair, result in zip(pairs, out)}


def test_rpm_orders_rpm_versions_like_semver():
    _require("rpm")
    strings = [FORMATTERS["rpm"](v) for v in VERSIONS]
    wanted = [(a, b) for a in strings for b in strings]
    results = _rpm_vercmp_batch(wanted)
    assert _mismatches("rpm", lambda a, b: results[(a, b)]) == []


def test_rpm_versions_never_contain_a_hyphen_or_caret():
    # '-' separates Version from Release; '^' needs rpm >= 4.15 (RHEL 8 and SLES 15 have 4.14)
    for v in VERSIONS:
        assert re.fullmatch(r"[0-9A-Za-z._+~]+", FORMATTERS["rpm"](v)), v


def _libalpm() -> ctypes.CDLL:
    name = ctypes.util.find_library("alpm")
    if not name:
        pytest.fail("libalpm.so not found; install it with 'apt-get install pacman-package-manager' (libalpm13)")
    lib = ctypes.CDLL(name)
    lib.alpm_pkg_vercmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.alpm_pkg_vercmp.restype = ctypes.c_int
    return lib


def test_libalpm_orders_arch_pkgvers_like_semver():
    lib = _libalpm()
    assert _mismatches("arch", lambda a, b: _sign(lib.alpm_pkg_vercmp(a.encode(), b.encode()))) == []


def test_libalpm_full_version_with_pkgrel_keeps_the_order():
    """pacman compares `pkgver-pkgrel`; the `-1` that nfpm appends must not change anything."""
    lib = _libalpm()
    for low, high in PAIRS:
        a, b = f"{FORMATTERS['arch'](low)}-1", f"{FORMATTERS['arch'](high)}-1"
        assert _sign(lib.alpm_pkg_vercmp(a.encode(), b.encode())) == -1, (a, b)


def test_deb_and_rpm_with_release_suffix_keep_the_order():
    """Packages carry a revision/release (`-1`); the upstream order must survive it."""
    _require("dpkg")
    _require("rpm")
    for low, high in PAIRS:
        a, b = FORMATTERS["deb"](low) + "-1", FORMATTERS["deb"](high) + "-1"
        assert run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0, (a, b)
    # rpm compares Version first and Release only on a tie: covered by the Version test above


def _apk_vercmp(apk, a: str, b: str) -> int:
    """`apk version -t A B` prints `<`, `=` or `>`."""
    result = run([str(apk), "version", "-t", a, b]).stdout.strip()
    assert result in ("<", "=", ">"), f"apk version -t {a} {b} printed {result!r}"
    return {"<": -1, "=": 0, ">": 1}[result]


def _apk_vercmp_all(apk, strings: list[str]) -> dict[tuple[str, str], int]:
    """Every ordered pair (one process each: `apk version -t` takes two versions), a few at a time."""
    wanted = [(a, b) for a in strings for b in strings]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        return dict(zip(wanted, pool.map(lambda pair: _apk_vercmp(apk, *pair), wanted)))


@pytest.mark.parametrize("major", ["2", "3"])
def test_apk_orders_apk_versions_like_semver(major, apk_clients):
    apk = apk_clients.by_major()[major]
    results = _apk_vercmp_all(apk, [FORMATTERS["apk"](v) for v in VERSIONS])
    assert _mismatches("apk", lambda a, b: results[(a, b)]) == []


@pytest.mark.parametrize("major", ["2", "3"])
def test_every_apk_version_with_its_release_is_valid_and_keeps_the_order(major, apk_clients):
    """apk compares `pkgver-rN`; the `-r0` that nfpm appends must be valid (`apk version -c`) and change nothing."""
    apk = apk_clients.by_major()[major]
    full = [f"{FORMATTERS['apk'](v)}-r0" for v in VERSIONS]
    proc = run([str(apk), "version", "-c", *full], check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), f"apk version -c printed invalid versions: {proc.stdout}"
    for low, high in zip(full, full[1:]):
        assert _apk_vercmp(apk, low, high) == -1 and _apk_vercmp(apk, high, low) == 1, (low, high)


@pytest.mark.parametrize("fmt", ["deb", "rpm", "apk", "arch"])
def test_every_format_is_injective_on_the_list(fmt):
    strings = [FORMATTERS[fmt](v) for v in VERSIONS]
    assert len(set(strings)) == len(strings)
