"""lintian and rpmlint on every deb and rpm we build (the sensor's and the archive keyring's): no error and
no warning, except those overridden with a reason in sensor/packaging/lint/ (the deb ships its lintian
overrides; rpmlint reads rpmlint.toml). A finding fails the test with the tool's own lines."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from families import FAMILIES
from release import nfpm
from tests.integration.pkgtools import REPO
from toolbox.run import run
from toolbox.tools import require

LINT = nfpm.LINT_DIR
RPMLINT_CONFIG = nfpm.RPMLINT_CONFIG


@pytest.fixture(scope="session")
def keyring_packages(tmp_path_factory) -> dict[str, Path]:
    """endura-archive-keyring as a publish builds it (repo/keyring.py), signed with the repository keys."""
    from release.signing import resolve_repo_keys
    from repo import keyring

    keys = resolve_repo_keys()
    built = keyring.build_packages(keyring.export_key_set(keys), keys.primary, tmp_path_factory.mktemp("keyring"))
    return {family: path for family, (path, _how) in built.items()}


@pytest.fixture(scope="session")
def rpm_home(tmp_path_factory, dist_v1) -> Path:
    """A HOME whose ~/.rpmmacros points rpm at a database holding our signing key: rpmlint runs `rpm -Kv`,
    which then checks the signatures (instead of reporting unknown-key)."""
    require("rpm")
    home = tmp_path_factory.mktemp("rpm-home")
    (home / "db").mkdir()
    (home / ".rpmmacros").write_text(f"%_dbpath {home / 'db'}\n")
    run(["rpmkeys", "--import", str(dist_v1 / "signing-key.asc")], extra_env={"HOME": str(home)})
    return home


def findings(output: str, tool: str) -> list[str]:
    """The error and warning lines of lintian (`E: pkg: tag`) or rpmlint (`pkg.arch: E: tag`)."""
    pattern = r"^[EW]: " if tool == "lintian" else r"^\S+: [EW]: "
    return [line for line in output.splitlines() if re.match(pattern, line)]


def lintian(deb: Path) -> list[str]:
    require("lintian")
    # the overrides the package ships count, not a developer's ~/.config/lintian
    proc = run(FAMILIES["deb"].lint_argv(deb, None), check=False, timeout=600)
    assert proc.returncode == 0, f"lintian could not check {deb.name} ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return findings(proc.stdout, "lintian")


def rpmlint(rpm: Path, home: Path) -> list[str]:
    require("rpmlint")
    proc = run(FAMILIES["rpm"].lint_argv(rpm, RPMLINT_CONFIG), check=False, timeout=600, extra_env={"HOME": str(home)})
    # exit 64 = errors found, 66 = badness over the threshold: the findings say which
    assert proc.returncode in (0, 64, 66), f"rpmlint could not check {rpm.name} ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return findings(proc.stdout, "rpmlint")


def sensor_packages(dist: Path, ext: str) -> list[Path]:
    found = sorted(dist.glob(f"*{ext}"))
    assert len(found) == 2, f"expected an amd64 and an arm64 {ext} in {dist}: {found}"
    return found


def test_lintian_finds_nothing_unoverridden_in_the_debs(dist_v1, keyring_packages):
    report = {deb.name: lintian(deb) for deb in [*sensor_packages(dist_v1, ".deb"), keyring_packages["deb"]]}
    bad = {name: lines for name, lines in report.items() if lines}
    assert not bad, "lintian (fix it, or override it with a reason in sensor/packaging/lint/):\n" + "\n".join(
        f"{name}:\n  " + "\n  ".join(lines) for name, lines in bad.items())


def test_rpmlint_finds_nothing_unfiltered_in_the_rpms(dist_v1, keyring_packages, rpm_home):
    report = {rpm.name: rpmlint(rpm, rpm_home) for rpm in [*sensor_packages(dist_v1, ".rpm"), keyring_packages["rpm"]]}
    bad = {name: lines for name, lines in report.items() if lines}
    assert not bad, f"rpmlint (fix it, or filter it with a reason in {RPMLINT_CONFIG.relative_to(REPO)}):\n" + "\n".join(
        f"{name}:\n  " + "\n  ".join(lines) for name, lines in bad.items())


def test_every_override_and_filter_has_a_reason():
    """Each rule has a reason on the line above it (consecutive rules may share one) and no reason is left
    without its rule. The rules: the overrides files after their header, rpmlint.toml's Filters."""
    files = sorted(LINT.glob("*.lintian-overrides"))
    assert {f.name for f in files} == {"endura-sensor.lintian-overrides", "endura-archive-keyring.lintian-overrides"}
    for path in [*files, RPMLINT_CONFIG]:
        text = path.read_text()
        body = (text.split("\n\n", 1)[1] if path.suffix != ".toml"
                else text[text.index("Filters = [") + len("Filters = ["):text.rindex("]")])
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        # a reason first; every reason followed by its rule (rules that follow one another share a reason)
        assert lines and lines[0].startswith("#"), f"{path.name}: the first rule has no reason above it"
        for line, after in zip(lines, [*lines[1:], ""]):
            if line.startswith("#"):
                assert after and not after.startswith("#"), f"{path.name}: a reason with no rule under it: {line}"


def test_apk_and_pacman_descriptions_are_one_line(dist_v1):
    """apk and pacman keep the first line of a description only: they get the one-line summary."""
    for pattern in ("*.apk", "*.pkg.tar.zst"):
        [package, *_] = sorted(dist_v1.glob(pattern))
        # an apk is concatenated gzip'd tar segments (signature, control, data): read past their ends
        how = ["--ignore-zeros", "-xzOf"] if pattern == "*.apk" else ["--zstd", "-xOf"]
        info = run(["tar", *how, str(package), ".PKGINFO"]).stdout
        lines = info.splitlines()
        desc = [i for i, line in enumerate(lines) if line.startswith("pkgdesc = ")]
        assert [lines[i] for i in desc] == [f"pkgdesc = {nfpm.SUMMARY}"], info
        assert not lines[desc[0] + 1].startswith(" "), f"{package.name}: pkgdesc continues:\n{info}"
