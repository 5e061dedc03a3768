"""release.version: parsing, the semver → format table, ordering rules and errors (no external tools)."""
from __future__ import annotations

import itertools
import re
from itertools import zip_longest

import pytest

from release import version as rv
from release.version import PreRelease, Version, format_version, main, source_date_epoch, version_from_git
from tests.version_cases import ASCENDING
from toolbox.errors import EnduraError

VERSIONS = [Version.parse(text) for text in ASCENDING]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("ENDURA_VERSION", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


# -- parsing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ASCENDING + ["0.0.0", "1.2.3-alpha.0", "123.456.789"])
def test_accepted_forms_round_trip(text):
    assert Version.parse(text).semver == text
    assert str(Version.parse(text)) == text


def test_parse_fields():
    v = Version.parse("1.2.3-rc.2.dev.5+gabc1234")
    assert (v.major, v.minor, v.patch, v.pre, v.dev, v.commit) == (1, 2, 3, PreRelease("rc", 2), 5, "abc1234")
    assert v.is_dev and not v.is_release and not v.is_prerelease and not v.is_dev_after_release
    assert v.tag_version == Version(1, 2, 3, PreRelease("rc", 2))
    d = Version.parse("1.2.4-0.dev.5+gabc1234")
    assert d.is_dev_after_release and d.tag_version == Version(1, 2, 3)
    assert Version.parse("1.2.3").is_release and Version.parse("1.2.3-beta.1").is_prerelease


@pytest.mark.parametrize(
    "text",
    [
        "", "1.2", "1", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-foo", "1.2.3-rc", "1.2.3-rc.01", "1.2.3-RC.1",
        "1.2.3-gamma.1", "1.2.3-rc.1.2", "1.2.3-rc-1", "1.2.3-0.dev.0", "1.2.3-rc.1.dev.0",
        "1.2.0-0.dev.3+gabc1234",  # a dev build after a release always has patch >= 1
        "1.2.3+gabc1234",  # a release carries no commit
        "1.2.3-0.dev.3+gABC1234", "1.2.3-0.dev.3+gabc", "1.2.3-0.dev.3+abc1234", "1.2.3-dev.3",
        " 1.2.3-", "1.2.3 4", "1.2.3-alpha.1-beta.2", "-1.2.3",
    ],
)
def test_rejected_forms_name_the_value_and_the_accepted_forms(text):
    with pytest.raises(EnduraError) as err:
        Version.parse(text, source="tag")
    assert repr(text) in err.value.message or repr(text.strip()) in err.value.message
    assert "X.Y.Z" in err.value.message and "rc.N" in err.value.message


def test_whitespace_around_a_version_is_tolerated():
    assert Version.parse(" 1.2.3\n").semver == "1.2.3"


def test_leading_v_gets_a_specific_hint():
    with pytest.raises(EnduraError, match=r"drop the leading 'v': '1\.2\.3'"):
        Version.parse("v1.2.3")


def test_constructor_validates_too():
    with pytest.raises(EnduraError, match="only dev builds carry a commit"):
        Version(1, 2, 3, commit="abc1234")
    with pytest.raises(EnduraError, match="alpha.N, beta.N or rc.N"):
        Version(1, 2, 3, PreRelease("gamma", 1))


# -- semver precedence -------------------------------------------------------------------------
def _semver_compare(a: str, b: str) -> int:
    """Reference comparison straight from semver 2.0.0 §11 on the strings (build metadata ignored)."""

    def split(s: str):
        s = s.split("+", 1)[0]
        core, _, pre = s.partition("-")
        return [int(x) for x in core.split(".")], (pre.split(".") if pre else [])

    (ca, pa), (cb, pb) = split(a), split(b)
    if ca != cb:
        return -1 if ca < cb else 1
    if not pa or not pb:
        return (not pa) - (not pb)  # a pre-release has lower precedence than the release
    for x, y in zip_longest(pa, pb):
        if x is None:
            return -1
        if y is None:
            return 1
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1  # numeric identifiers sort before alphanumeric ones
        return -1 if x < y else 1
    return 0


def test_precedence_agrees_with_the_semver_spec_on_every_pair():
    for a, b in itertools.product(VERSIONS, repeat=2):
        expected = _semver_compare(a.semver, b.semver)
        got = (a > b) - (a < b)
        assert got == expected, (a.semver, b.semver)


def test_the_shared_list_is_strictly_ascending():
    assert all(x < y for x, y in zip(VERSIONS, VERSIONS[1:]))
    assert sorted(reversed(VERSIONS)) == VERSIONS


def test_build_metadata_does_not_change_precedence():
    a, b = Version.parse("1.0.1-0.dev.3+gaaaaaaa"), Version.parse("1.0.1-0.dev.3+gbbbbbbb")
    assert not a < b and not b < a and a <= b and a >= b and a != b


# -- the format table --------------------------------------------------------------------------
TABLE = {
    # semver: (deb, rpm, apk, arch, tgz)
    "1.2.3": ("1.2.3", "1.2.3", "1.2.3", "1.2.3", "1.2.3"),
    "1.2.3-alpha.1": ("1.2.3~alpha.1", "1.2.3~alpha.1", "1.2.3_alpha1", "1.2.3alpha1", "1.2.3-alpha.1"),
    "1.2.3-beta.10": ("1.2.3~beta.10", "1.2.3~beta.10", "1.2.3_beta10", "1.2.3beta10", "1.2.3-beta.10"),
    "1.2.3-rc.1": ("1.2.3~rc.1", "1.2.3~rc.1", "1.2.3_rc1", "1.2.3rc1", "1.2.3-rc.1"),
    "1.2.4-0.dev.5+gabc1234": (
        "1.2.4~~dev.5.gabc1234", "1.2.4~~dev.5.gabc1234", "1.2.3_git5", "1.2.3.r5.gabc1234", "1.2.4-0.dev.5+gabc1234",
    ),
    "1.2.3-rc.2.dev.5+gabc1234": (
        "1.2.3~rc.2.dev.5.gabc1234", "1.2.3~rc.2.dev.5.gabc1234", "1.2.3_rc2_git5", "1.2.3rc2.r5.gabc1234",
        "1.2.3-rc.2.dev.5+gabc1234",
    ),
    "1.2.4-0.dev.5": ("1.2.4~~dev.5", "1.2.4~~dev.5", "1.2.3_git5", "1.2.3.r5", "1.2.4-0.dev.5"),
    "0.0.1-0.dev.7+g0123456": (
        "0.0.1~~dev.7.g0123456", "0.0.1~~dev.7.g0123456", "0.0.0_git7", "0.0.0.r7.g0123456", "0.0.1-0.dev.7+g0123456",
    ),
}


@pytest.mark.parametrize("text", TABLE)
def test_format_table(text):
    v = Version.parse(text)
    assert tuple(format_version(v, fmt) for fmt in ("deb", "rpm", "apk", "arch", "tgz")) == TABLE[text]


def test_unknown_format_names_it_and_the_choices():
    with pytest.raises(EnduraError, match=r"unknown package format 'msi'; use one of deb, rpm, apk, arch, tgz"):
        format_version(VERSIONS[0], "msi")


@pytest.mark.parametrize("v", VERSIONS, ids=str)
def test_strings_respect_each_format_grammar(v):
    # Debian policy upstream_version without '-' (the revision is added by the packager)
    assert re.fullmatch(r"[0-9][A-Za-z0-9.+~]*", rv.FORMATTERS["deb"](v))
    # rpm Version: no '-' (separates Release), no '^' (needs rpm >= 4.15)
    assert re.fullmatch(r"[0-9][A-Za-z0-9._+~]*", rv.FORMATTERS["rpm"](v))
    # apk: digits, dots, then _suffixN groups
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)*(_(alpha|beta|rc|git)[0-9]+)*", rv.FORMATTERS["apk"](v))
    # makepkg: pkgver may not contain colons, slashes, hyphens or whitespace
    assert re.fullmatch(r"[0-9][A-Za-z0-9._+]*", rv.FORMATTERS["arch"](v))


# apk-tools is not packaged for Debian 12, so apk ordering is checked against this model of apk's
# documented version rules (Gentoo style): numeric components compare as numbers; suffixes rank
# _alpha < _beta < _pre < _rc < (end) < _cvs < _svn < _git < _hg < _p, then compare their numbers;
# where one version has a further numeric component and the other a suffix, the number wins.
_APK_SUFFIX_RANK = {"alpha": -4, "beta": -3, "pre": -2, "rc": -1, "cvs": 0, "svn": 1, "git": 2, "hg": 3, "p": 4}


def _apk_tokens(text: str) -> list[tuple]:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)*)((?:_[a-z]+[0-9]*)*)", text)
    assert match, f"{text!r} is not an apk version"
    tokens: list[tuple] = [("num", int(part)) for part in match[1].split(".")]
    for name, number in re.findall(r"_([a-z]+)([0-9]*)", match[2]):
        tokens.append(("suffix", _APK_SUFFIX_RANK[name], int(number or 0)))
    return tokens


def _apk_compare(a: str, b: str) -> int:
    for x, y in zip_longest(_apk_tokens(a), _apk_tokens(b)):
        if x == y:
            continue
        if x is None:  # a ended: b is newer unless its next token is a pre-release suffix
            return 1 if y[0] == "suffix" and y[1] < 0 else -1
        if y is None:
            return -1 if x[0] == "suffix" and x[1] < 0 else 1
        if x[0] != y[0]:
            return 1 if x[0] == "num" else -1
        return -1 if x < y else 1
    return 0


def test_apk_model_matches_known_apk_results():
    # documented apk orderings, to keep the model honest
    assert _apk_compare("1.0_alpha1", "1.0_beta1") == -1
    assert _apk_compare("1.0_rc1", "1.0") == -1
    assert _apk_compare("1.0", "1.0_git1") == -1
    assert _apk_compare("1.0_git1", "1.0_p1") == -1
    assert _apk_compare("1.0_rc9", "1.0_rc10") == -1
    assert _apk_compare("1.0.1", "1.0_p5") == 1
    assert _apk_compare("1.9", "1.10") == -1


def test_apk_versions_order_like_semver_under_apk_rules():
    bad = []
    for low, high in itertools.combinations(VERSIONS, 2):
        a, b = rv.FORMATTERS["apk"](low), rv.FORMATTERS["apk"](high)
        if _apk_compare(a, b) != -1 or _apk_compare(b, a) != 1:
            bad.append(f"{low} -> {a} should sort before {high} -> {b}")
    assert bad == []


# -- environment overrides (no git needed) -----------------------------------------------------
def test_endura_version_overrides_git(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_VERSION", "2.0.0-rc.1")
    assert version_from_git(tmp_path) == Version(2, 0, 0, PreRelease("rc", 1))  # tmp_path is no repository


def test_invalid_endura_version_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_VERSION", "2.0")
    with pytest.raises(EnduraError, match=r"ENDURA_VERSION '2\.0' is not a valid version"):
        version_from_git(tmp_path)


def test_source_date_epoch_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch(tmp_path) == 1700000000
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(EnduraError, match=r"SOURCE_DATE_EPOCH='yesterday' is not a Unix timestamp"):
        source_date_epoch(tmp_path)


def test_main_prints_the_requested_format(monkeypatch, capsys):
    monkeypatch.setenv("ENDURA_VERSION", "1.2.3-rc.2.dev.5+gabc1234")
    assert main(["--format", "apk"]) == 0
    assert capsys.readouterr().out == "1.2.3_rc2_git5\n"


def test_main_turns_errors_into_exit_codes(monkeypatch, capsys):
    monkeypatch.setenv("ENDURA_VERSION", "1.2")
    assert main(["--format", "deb"]) == 1
    assert "error: ENDURA_VERSION '1.2' is not a valid version" in capsys.readouterr().err
