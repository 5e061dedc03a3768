"""Pure parts of the package build: nfpm configs, signing-key checks, file names, SBOM helpers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from families import FAMILIES
from release import nfpm, stage
from release.package import _split
from release.sbom import dependency_names
from release.signing import ApkKey
from toolbox import gpg as signing
from toolbox.errors import EnduraError

COLONS = """sec:u:4096:1:C5ECB44FCD095B88:1577836800:1830000000::u:::scESC:::+:::23::0:
fpr:::::::::0E49BDF1B83E3FF26EA26108C5ECB44FCD095B88:
grp:::::::::1111:
uid:u::::1577836800::HASH::Endura Runtime Sensor DEVELOPMENT <dev-signing@localhost>::::::::::0:
"""


def test_parse_secret_key_reads_the_primary_key():
    info = signing.parse_secret_key(COLONS, "C5ECB44FCD095B88")
    assert info["fpr"] == "0E49BDF1B83E3FF26EA26108C5ECB44FCD095B88"
    assert (info["bits"], info["algo"], info["expires"]) == (4096, "1", 1830000000)
    assert signing.parse_secret_key(COLONS, "DEADBEEF") is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"validity": "r"}, "is revoked"),
        ({"expires": 1000}, "expired on 1970-01-01"),
        ({"bits": 2048}, "use RSA >= 3072 or Ed25519"),
        ({"algo": "17", "bits": 3072}, "algorithm 17"),
        ({"caps": "e"}, "cannot sign"),
    ],
)
def test_check_key_refuses_bad_keys(change, expected):
    info = {**signing.parse_secret_key(COLONS, "C5ECB44FCD095B88"), **change}
    with pytest.raises(EnduraError) as exc:
        signing.check_key(info, "FPR", "/home", now=1800000000)
    assert expected in exc.value.message


def test_check_key_warns_when_expiry_is_near(capsys):
    info = signing.parse_secret_key(COLONS, "C5ECB44FCD095B88")
    signing.check_key(info, "FPR", "/home", now=info["expires"] - 10 * 86400)
    assert "signing key FPR expires in 10 days" in capsys.readouterr().err


def test_ed25519_is_accepted():
    info = {**signing.parse_secret_key(COLONS, "C5ECB44FCD095B88"), "algo": "22", "bits": 255}
    signing.check_key(info, "FPR", "/home", now=1800000000)


def _entries(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    return [
        stage.Entry("/etc/endura/sensor.conf", f, 0o640, "config"),
        stage.Entry("/etc/init.d/endura-sensor", f, 0o755, "file", init="openrc"),
        stage.Entry("/usr/lib/systemd/system/endura-sensor.service", f, 0o644, "file", init="systemd"),
        stage.Entry("/var/lib/endura", None, 0o750, "dir"),
    ]


@pytest.mark.parametrize("family", ["deb", "rpm", "apk", "arch"])
def test_nfpm_config_per_family(tmp_path, family):
    apk_key = ApkKey(tmp_path / "k.rsa", tmp_path / "k.rsa.pub", "k.rsa.pub", True)
    cfg = nfpm.config(family=FAMILIES[family], arch_name="x86_64", version="1.2.3", depends=["a | b"],
                      entries=_entries(tmp_path), scripts_dir=tmp_path, epoch=0, apk_key=apk_key)
    dsts = {c["dst"]: c for c in cfg["contents"]}
    assert dsts["/etc/endura/sensor.conf"]["type"] == "config|noreplace"
    assert dsts["/var/lib/endura"]["type"] == "dir" and dsts["/var/lib/endura"]["file_info"]["mode"] == 0o750
    if family == "apk":
        assert "/etc/init.d/endura-sensor" in dsts and "/usr/lib/systemd/system/endura-sensor.service" not in dsts
        assert cfg["apk"]["signature"]["key_name"] == "k.rsa.pub"
    else:
        assert "/etc/init.d/endura-sensor" not in dsts and "/usr/lib/systemd/system/endura-sensor.service" in dsts
    assert cfg["version_schema"] == "none" and cfg["mtime"] == "1970-01-01T00:00:00Z"
    script = (tmp_path / f"{family}-postinstall.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and script.rstrip().endswith(f'endura_hook {family} postinstall "$@"')
    assert nfpm.package_argv(tmp_path / "c.json", FAMILIES[family], tmp_path / "o")[:4] == ["nfpm", "package", "--config", str(tmp_path / "c.json")]


@pytest.mark.parametrize("family", ["deb", "rpm", "apk", "arch"])
def test_nfpm_descriptions_docs_changelog_and_lint_overrides_per_family(tmp_path, family):
    doc = tmp_path / "README.md"
    doc.write_text("x")
    entries = [*_entries(tmp_path), stage.Entry("/usr/share/doc/endura-sensor/README.md", doc, 0o644, "file")]
    apk_key = ApkKey(tmp_path / "k.rsa", tmp_path / "k.rsa.pub", "k.rsa.pub", True)
    cfg = nfpm.config(family=FAMILIES[family], arch_name="x86_64", version="1.2.3", depends=[], entries=entries,
                      scripts_dir=tmp_path, epoch=0, apk_key=apk_key)
    lines = cfg["description"].splitlines()
    assert all(len(line) <= 80 for line in lines)  # lintian and rpmlint refuse longer lines
    if family in ("apk", "arch"):
        assert lines == [nfpm.SUMMARY]  # apk and pacman keep one line (pkgdesc)
    elif family == "deb":
        assert lines[0] == nfpm.SUMMARY and len(lines) > 2  # the synopsis, then the long description
    else:
        assert nfpm.SUMMARY not in lines and len(lines) > 1 and cfg["rpm"]["summary"] == nfpm.SUMMARY
    dsts = {c["dst"]: c for c in cfg["contents"]}
    # rpm: %doc; nfpm drops a `doc` entry from the other formats altogether
    assert dsts["/usr/share/doc/endura-sensor/README.md"]["type"] == ("doc" if family == "rpm" else "file")
    overrides = dsts.get("/usr/share/lintian/overrides/endura-sensor")
    assert (overrides is not None) == (family == "deb")
    if overrides:
        assert Path(overrides["src"]).is_file()
    if family in ("deb", "rpm"):
        [entry] = json.loads(Path(cfg["changelog"]).read_text())
        assert entry["semver"] == "1.2.3-1" and entry["date"] == "1970-01-01T00:00:00Z"
        assert entry["packager"] == nfpm.MAINTAINER and entry["changes"] == [{"note": "Endura Runtime Sensor 1.2.3."}]
    else:
        assert "changelog" not in cfg


def test_file_names_follow_each_format():
    names = {f: FAMILIES[f].file_name for f in FAMILIES}
    assert names["deb"]("endura-sensor", "1.0.0~rc.1", "arm64") == "endura-sensor_1.0.0~rc.1_arm64.deb"
    assert names["rpm"]("endura-sensor", "1.0.0", "aarch64") == "endura-sensor-1.0.0-1.aarch64.rpm"
    assert names["apk"]("endura-sensor", "1.0.0_rc1", "aarch64") == "endura-sensor-1.0.0_rc1-r0.aarch64.apk"
    assert names["arch"]("endura-sensor", "1.0.0rc1", "x86_64") == "endura-sensor-1.0.0rc1-1-x86_64.pkg.tar.zst"
    assert names["tgz"]("endura-sensor", "1.0.0", "amd64") == "endura-sensor-1.0.0-amd64.tar.gz"


def test_split_rejects_unknown_values():
    assert _split("deb, rpm,deb", ("deb", "rpm"), "format") == ("deb", "rpm")
    with pytest.raises(EnduraError, match="unknown format msi; choose from deb,rpm"):
        _split("msi", ("deb", "rpm"), "format")


def test_dependency_names_from_deb_and_rpm_expressions():
    assert dependency_names(["python3 (>= 3.9) | python3.9", "(libbpf or libbpf1)"]) == ["python3", "python3.9", "libbpf", "libbpf1"]
    assert dependency_names(["(python3 >= 3.9 or python311)"]) == ["python3", "python311"]
