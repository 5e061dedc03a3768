"""The apk repository's pure parts: paths, argv builders, the signature segment's bytes, the guide steps."""
from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from families.apk import apktools
from families.apk import repository as apkrepo
from release.version import Version
from toolbox.errors import EnduraError

ENTRY = {"file": "endura-sensor-1.0.0_rc1_git3-r0.x86_64.apk", "family": "apk", "arch": "amd64",
         "package_arch": "x86_64", "package_version": "1.0.0_rc1_git3"}


def test_layout_paths():
    assert apkrepo.channel_dir("latest", "aarch64") == "apk/latest/aarch64"
    assert apkrepo.repository_path("stable") == "apk/stable"
    assert apkrepo.repository_url("https://repo.example/", "testing") == "https://repo.example/apk/testing"
    assert apkrepo.key_path("endura-dev.rsa.pub") == "keys/endura-dev.rsa.pub"


def test_the_published_name_is_what_apk_fetches():
    # apk fetches <repository>/<arch>/<name>-<version>.apk: the arch leaves the file name
    assert apkrepo.published_name(ENTRY) == "endura-sensor-1.0.0_rc1_git3-r0.apk"
    assert apkrepo.artifact_path("latest", ENTRY) == "apk/latest/x86_64/endura-sensor-1.0.0_rc1_git3-r0.apk"


@pytest.mark.parametrize("bad", [{**ENTRY, "family": "deb"}, {**ENTRY, "package_arch": "aarch64"}])
def test_a_file_that_is_no_apk_build_artifact_is_refused(bad):
    with pytest.raises(EnduraError, match="not an apk build artifact"):
        apkrepo.artifact_path("latest", bad)


@pytest.mark.parametrize("name", ["endura-dev.pub", "keys/endura-dev.rsa.pub", "endura.asc"])
def test_a_key_name_apk_cannot_look_up_is_refused(name):
    with pytest.raises(EnduraError, match="ENDURA_APK_KEY_NAME"):
        apkrepo.key_path(name)


def test_package_version_is_the_apk_version_with_its_release():
    assert apkrepo.package_version(Version.parse("1.0.0")) == "1.0.0-r0"
    assert apkrepo.package_version(Version.parse("1.2.3-rc.2.dev.5+gabc1234")) == "1.2.3_rc2_git5-r0"
    assert apkrepo.fetched_version("endura-sensor-1.2.3_rc2_git5-r0.apk") == "1.2.3_rc2_git5-r0"
    with pytest.raises(EnduraError):
        apkrepo.fetched_version("other-1.0-r0.apk")


def test_index_argv_checks_packages_with_only_our_keys():
    argv = apkrepo.index_argv(Path("/c/2/apk"), root=Path("/t/root"), keys_dir=Path("/t/keys"), output="APKINDEX.u.tar.gz",
                              channel="latest", packages=["a-1-r0.apk", "b-2-r0.apk"])
    assert argv[:5] == ["/c/2/apk", "--root", "/t/root", "--keys-dir", "/t/keys"]
    assert "--allow-untrusted" not in argv
    i = argv.index("index")
    assert argv[i:] == ["index", "--no-warnings", "--description", "Endura Runtime Sensor (latest)", "-o",
                        "APKINDEX.u.tar.gz", "a-1-r0.apk", "b-2-r0.apk"]


def test_sign_argv_is_abuild_signs_openssl_call():
    assert apkrepo.sign_argv(Path("k.rsa"), Path("APKINDEX.tar.gz"), Path("sig")) == [
        "openssl", "dgst", "-sha256", "-sign", "k.rsa", "-out", "sig", "APKINDEX.tar.gz"]
    assert apkrepo.sign_argv(Path("k.rsa"), Path("i"), Path("s"), "RSA")[2] == "-sha1"
    assert apkrepo.signature_name("endura-dev.rsa.pub") == ".SIGN.RSA256.endura-dev.rsa.pub"
    with pytest.raises(EnduraError, match="unknown apk signature type"):
        apkrepo.signature_name("k.rsa.pub", "DSA")


def test_client_argvs_never_allow_untrusted():
    client = apkrepo.client_argv(Path("/c/3/apk"), Path("/w/root"), arch="aarch64", keys_dir=Path("/w/keys"),
                                 repositories_file=Path("/w/repositories"))
    assert client == ["/c/3/apk", "--root", "/w/root", "--arch", "aarch64", "--keys-dir", "/w/keys",
                      "--repositories-file", "/w/repositories", "--no-progress", "--no-interactive"]
    assert apkrepo.initdb_argv(client)[-2:] == ["add", "--initdb"]
    assert apkrepo.update_argv(client)[-1] == "update"
    assert apkrepo.fetch_argv(client, Path("/w/out"))[-4:] == ["fetch", "--output", "/w/out", "endura-sensor"]
    assert apkrepo.verify_argv(Path("/c/3/apk"), Path("/w/root"), Path("/w/keys"), [Path("/w/out/p.apk")]) == [
        "/c/3/apk", "--root", "/w/root", "--keys-dir", "/w/keys", "verify", "/w/out/p.apk"]
    for argv in (client, apkrepo.fetch_argv(client, Path("o"))):
        assert "--allow-untrusted" not in argv


def test_the_signature_segment_is_one_tar_entry_without_end_blocks():
    signature = bytes(range(256)) * 2  # a 4096-bit RSA signature is 512 bytes
    segment = apkrepo.signature_segment(".SIGN.RSA256.k.rsa.pub", signature, mtime=1764000000)
    assert segment[:3] == b"\x1f\x8b\x08"  # a gzip member of its own
    assert segment[4:8] == b"\0\0\0\0"  # gzip -n: no time in the header
    tar = gzip.decompress(segment)
    assert len(tar) == 512 + 512  # header + data; no two zero blocks after it
    info = tarfile.TarInfo.frombuf(tar[:512], "utf-8", "strict")
    assert (info.name, info.size, info.mtime, info.mode, info.uid, info.gid) == (
        ".SIGN.RSA256.k.rsa.pub", 512, 1764000000, 0o644, 0, 0)
    assert info.type == tarfile.REGTYPE and tar[257:262] == b"ustar"  # what apk's tar reader checks
    assert tar[512:] == signature
    assert apkrepo.read_signature_tar(tar) == (".SIGN.RSA256.k.rsa.pub", signature)


def test_a_short_signature_is_padded_to_a_block():
    tar = gzip.decompress(apkrepo.signature_segment(".SIGN.RSA.k.rsa.pub", b"x" * 256, mtime=0))
    assert len(tar) == 1024 and tar[512 + 256:] == b"\0" * 256
    assert apkrepo.read_signature_tar(tar)[1] == b"x" * 256


def test_the_segment_is_the_same_bytes_for_the_same_input():
    a = apkrepo.signature_segment(".SIGN.RSA256.k.rsa.pub", b"s" * 512, mtime=5)
    assert a == apkrepo.signature_segment(".SIGN.RSA256.k.rsa.pub", b"s" * 512, mtime=5)
    assert a != apkrepo.signature_segment(".SIGN.RSA256.k.rsa.pub", b"s" * 512, mtime=6)


def test_split_signed_separates_the_segment_from_the_signed_bytes():
    index = gzip.compress(b"index tar bytes", mtime=0)
    segment = apkrepo.signature_segment(".SIGN.RSA256.k.rsa.pub", b"s" * 512, mtime=0)
    tar, rest = apkrepo.split_signed(segment + index)
    assert rest == index
    assert apkrepo.read_signature_tar(tar) == (".SIGN.RSA256.k.rsa.pub", b"s" * 512)
    with pytest.raises(EnduraError, match="end blocks"):
        apkrepo.read_signature_tar(tar + b"\0" * 1024)


def test_guide_steps_over_http():
    assert apkrepo.guide_steps("stable", "https://repo.example/", "endura-dev.rsa.pub") == [
        "wget -q -O /etc/apk/keys/endura-dev.rsa.pub https://repo.example/keys/endura-dev.rsa.pub",
        "echo https://repo.example/apk/stable >> /etc/apk/repositories",
        "apk update",
        "apk add endura-sensor",
    ]


def test_guide_steps_from_an_offline_mirror():
    steps = apkrepo.guide_steps("latest", "file:///srv/endura", "endura.rsa.pub")
    assert steps[:2] == ["install -D -m 0644 /srv/endura/keys/endura.rsa.pub /etc/apk/keys/endura.rsa.pub",
                         "echo /srv/endura/apk/latest >> /etc/apk/repositories"]


def test_problem_line_is_the_clients_own_complaint():
    class Proc:
        returncode, stdout = 2, "fetch http://x/apk/latest/x86_64/APKINDEX.tar.gz\n2 unavailable, 0 stale\n"
        stderr = "WARNING: updating and opening http://x/apk/latest: UNTRUSTED signature\n"

    assert apkrepo.problem_line(Proc()) == "WARNING: updating and opening http://x/apk/latest: UNTRUSTED signature"


def test_apktools_paths_and_build_argv(monkeypatch, tmp_path):
    monkeypatch.setenv("ENDURA_CACHE_DIR", str(tmp_path / "cache"))
    assert apktools.tools_dir() == tmp_path / "cache" / "apk-tools"
    assert apktools.wrapper(apktools.tools_dir(), "3") == tmp_path / "cache" / "apk-tools" / "3" / "apk"
    assert apktools.build_argv(Path("/v/build.sh"), Path("/p"), "2") == ["bash", "/v/build.sh", "/p", "2"]
    monkeypatch.delenv(apktools.SRC_ENV, raising=False)
    assert apktools.source_dir() == apktools.REPO_TOP.parent / "shared" / "vendor" / "apk-tools"
    monkeypatch.setenv(apktools.SRC_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(EnduraError, match=f"set {apktools.SRC_ENV} to the directory holding build.sh"):
        apktools.build_script()
