"""Every artifact of `nox -s package` is signed the native way for its format, checked by the real
verifier: gpgv, rpm -K, debsig-verify, openssl (apk), and a flipped byte makes each one fail."""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import zlib
from pathlib import Path

import pytest

from families.deb import debsig_dirs
from toolbox.files import sha256_file
from toolbox.run import CommandFailed, run
from toolbox.tools import require


def _artifacts(dist: Path, family: str) -> list[Path]:
    manifest = json.loads((dist / "manifest.json").read_text())
    found = [dist / a["file"] for a in manifest["artifacts"] if a["family"] == family]
    assert {a["arch"] for a in manifest["artifacts"] if a["family"] == family} == {"amd64", "arm64"}
    return found


def _flip(path: Path, tmp_path: Path, offset_from_end: int = 200) -> Path:
    bad = tmp_path / f"tampered-{path.name}"
    shutil.copyfile(path, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) - offset_from_end] ^= 0x01
    bad.write_bytes(bytes(data))
    return bad


def test_manifest_lists_every_artifact_with_size_and_sha256(dist_v1):
    manifest = json.loads((dist_v1 / "manifest.json").read_text())
    assert manifest["version"] == "1.0.0"
    fpr = manifest["signing_key"]["fingerprint"]
    families = {(a["family"], a["arch"]) for a in manifest["artifacts"]}
    assert families == {(f, a) for f in ("deb", "rpm", "apk", "arch", "tgz") for a in ("amd64", "arm64")}
    for a in manifest["artifacts"]:
        path = dist_v1 / a["file"]
        assert path.stat().st_size == a["size"]
        assert sha256_file(path) == a["sha256"]
        assert a["signing_key_fingerprint"] == fpr
        assert (dist_v1 / a["sbom"]).exists()
        assert a["targets"], a


def test_sha256sums_and_its_signature_verify(dist_v1, tmp_path):
    require("gpgv")
    run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=dist_v1)
    listed = {line.split()[1] for line in (dist_v1 / "SHA256SUMS").read_text().splitlines()}
    assert listed == {p.name for p in dist_v1.iterdir() if not p.name.startswith("SHA256SUMS")}
    keyring = tmp_path / "keyring.gpg"
    run(["gpg", "--dearmor", "--output", str(keyring), str(dist_v1 / "signing-key.asc")])
    run(["gpgv", "--keyring", str(keyring), str(dist_v1 / "SHA256SUMS.asc"), str(dist_v1 / "SHA256SUMS")])
    bad = _flip(dist_v1 / "SHA256SUMS", tmp_path, 10)
    with pytest.raises(CommandFailed):
        run(["gpgv", "--keyring", str(keyring), str(dist_v1 / "SHA256SUMS.asc"), str(bad)])


def test_rpm_header_signatures_check_with_rpm_K(dist_v1, tmp_path):
    require("rpm")
    dbpath = tmp_path / "rpmdb"
    rpms = _artifacts(dist_v1, "rpm")
    # Without the key imported, rpm must not call the package trusted.
    unknown = run(["rpm", "--dbpath", str(dbpath), "-Kv", str(rpms[0])], check=False)
    assert unknown.returncode != 0 and "NOKEY" in (unknown.stdout + unknown.stderr)
    run(["rpm", "--dbpath", str(dbpath), "--import", str(dist_v1 / "signing-key.asc")])
    for rpm in rpms:
        out = run(["rpm", "--dbpath", str(dbpath), "-Kv", str(rpm)]).stdout
        assert "Header V4 RSA/SHA256 Signature" in out and ": OK" in out, out
        assert "NOKEY" not in out and "BAD" not in out
    bad = run(["rpm", "--dbpath", str(dbpath), "-K", str(_flip(rpms[0], tmp_path))], check=False)
    assert bad.returncode != 0


def test_deb_origin_signatures_check_with_debsig_verify(dist_v1, tmp_path):
    require("debsig-verify")
    policies, keyrings = debsig_dirs(tmp_path, dist_v1 / "signing-key.asc")  # the deb family's private policy
    for deb in _artifacts(dist_v1, "deb"):
        run(["debsig-verify", "--policies-dir", str(policies), "--keyrings-dir", str(keyrings), str(deb)])
        run(["dpkg-deb", "--info", str(deb)])  # still a valid .deb with the _gpgorigin member
    bad = _flip(_artifacts(dist_v1, "deb")[0], tmp_path)
    proc = run(["debsig-verify", "--policies-dir", str(policies), "--keyrings-dir", str(keyrings), str(bad)], check=False)
    assert proc.returncode != 0


def _gzip_streams(data: bytes) -> list[bytes]:
    streams, raw, i = [], [], 0
    while i < len(data):
        d = zlib.decompressobj(31)
        out = d.decompress(data[i:])
        used = len(data) - i - len(d.unused_data)
        streams.append(data[i:i + used])
        raw.append(out)
        i += used
    return streams


def test_apk_rsa_signature_checks_with_openssl(dist_v1, tmp_path):
    """apk v2: stream 1 is a tar holding .SIGN.RSA.<key name>, the RSA/SHA-1 signature of stream 2
    (the control tar.gz). openssl checks it against the public key shipped next to the packages."""
    require("openssl")
    manifest = json.loads((dist_v1 / "manifest.json").read_text())
    pub = dist_v1 / manifest["signing_key"]["apk_public_key"]
    for apk in _artifacts(dist_v1, "apk"):
        streams = _gzip_streams(apk.read_bytes())
        assert len(streams) == 3, "signature, control, data"
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(streams[0]))) as tar:
            (member,) = tar.getmembers()
            assert member.name == f".SIGN.RSA.{pub.name}"
            signature = tar.extractfile(member).read()
        (tmp_path / "sig").write_bytes(signature)
        (tmp_path / "control.tar.gz").write_bytes(streams[1])
        run(["openssl", "dgst", "-sha1", "-verify", str(pub), "-signature", str(tmp_path / "sig"),
             str(tmp_path / "control.tar.gz")])
        (tmp_path / "control.tar.gz").write_bytes(streams[1][:-9] + bytes([streams[1][-9] ^ 1]) + streams[1][-8:])
        bad = run(["openssl", "dgst", "-sha1", "-verify", str(pub), "-signature", str(tmp_path / "sig"),
                   str(tmp_path / "control.tar.gz")], check=False)
        assert bad.returncode != 0
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(streams[1]))) as tar:
            pkginfo = tar.extractfile(".PKGINFO").read().decode()
        datahash = next(line.split(" = ")[1] for line in pkginfo.splitlines() if line.startswith("datahash"))
        import hashlib

        assert hashlib.sha256(streams[2]).hexdigest() == datahash


@pytest.mark.parametrize("family", ["arch", "tgz"])
def test_detached_signatures_of_arch_packages_and_tarballs(dist_v1, tmp_path, family):
    require("gpgv")
    keyring = tmp_path / "keyring.gpg"
    run(["gpg", "--dearmor", "--output", str(keyring), str(dist_v1 / "signing-key.asc")])
    for path in _artifacts(dist_v1, family):
        run(["gpgv", "--keyring", str(keyring), f"{path}.sig", str(path)])
        packets = run(["gpg", "--list-packets", f"{path}.sig"]).stdout
        assert "digest algo 8" in packets  # SHA-256
    bad = _flip(_artifacts(dist_v1, family)[0], tmp_path)
    assert run(["gpgv", "--keyring", str(keyring), f"{_artifacts(dist_v1, family)[0]}.sig", str(bad)],
               check=False).returncode != 0


def test_sboms_are_valid_cyclonedx_for_their_artifact(dist_v1):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    validator = JsonStrictValidator(SchemaVersion.V1_6)
    manifest = json.loads((dist_v1 / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        text = (dist_v1 / a["sbom"]).read_text()
        errors = validator.validate_str(text)
        assert errors is None, errors
        doc = json.loads(text)
        component = doc["metadata"]["component"]
        assert component["hashes"][0]["content"] == a["sha256"]
        files = {c["name"] for c in doc["components"] if c["type"] == "file"}
        assert "/usr/lib/endura-sensor/bpf/sensor_lsm.bpf.o" in files


@pytest.mark.parametrize("family", ["deb", "rpm", "apk", "arch", "tgz"])
def test_each_family_checks_its_packages_with_its_own_tool(family, dist_v1, tmp_path, apk_clients):
    """`Family.check_signature` (debsig-verify, rpm -K, apk verify, gpgv) accepts every package of the build
    against the build's key only, and refuses a copy with one flipped byte (its detached signature beside it)."""
    from families import FAMILIES
    from toolbox.errors import EnduraError

    manifest = json.loads((dist_v1 / "manifest.json").read_text())
    key = dist_v1 / (manifest["signing_key"]["apk_public_key"] if family == "apk" else "signing-key.asc")
    checker = FAMILIES[family]
    packages = _artifacts(dist_v1, family)
    for package in packages:
        checker.check_signature(package, key)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = bad_dir / packages[0].name
    shutil.move(_flip(packages[0], tmp_path), bad)
    sig = packages[0].with_name(packages[0].name + ".sig")
    if sig.exists():
        shutil.copyfile(sig, bad_dir / sig.name)
    with pytest.raises(EnduraError):
        checker.check_signature(bad, key)
