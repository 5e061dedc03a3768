"""Pure parts of the repository publisher: paths, client files, Release fields, argvs, channel merges."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from channels.command import check_target
from channels.publish import parser
from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import layout
from toolbox import dates
from toolbox.errors import EnduraError

RELEASE = """Acquire-By-Hash: yes
Architectures: amd64 arm64
Date: Sat, 28 Nov 2026 22:00:00 UTC
Suite: latest
Valid-Until: Sat, 05 Dec 2026 22:00:00 UTC
SHA256:
 aaaa              767 main/binary-amd64/Packages
 bbbb              521 main/binary-amd64/Packages.gz
SHA512:
 cccc              767 main/binary-amd64/Packages
"""


def _artifact(family="deb", arch="amd64", file="endura-sensor_1.0.0_amd64.deb", sha="11", **kw):
    return {"file": file, "family": family, "arch": arch, "package_arch": kw.pop("package_arch", arch),
            "package_version": "1.0.0", "version": "1.0.0", "sha256": sha, "size": 3, "signature": kw.pop("signature", ""),
            "sbom": "x.cdx.json", "targets": ["debian-12"], **kw}


def test_rfc2822_round_trip_and_format():
    assert dates.rfc2822(1795903200) == "Sat, 28 Nov 2026 22:00:00 UTC"
    assert dates.parse_rfc2822("Sat, 28 Nov 2026 22:00:00 UTC") == 1795903200


@pytest.mark.parametrize("now,previous,expected", [(100.7, None, 100), (100, 99, 100), (100, 100, 101), (100, 500, 501)])
def test_date_only_moves_forward(now, previous, expected):
    assert layout.next_date(now, previous) == expected


def test_release_fields_and_checksums():
    fields = debrepo.release_fields("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + RELEASE +
                                   "-----BEGIN PGP SIGNATURE-----\nX: y\n")
    assert fields["Suite"] == "latest" and fields["Valid-Until"].startswith("Sat, 05 Dec")
    assert "X" not in fields and "SHA256" not in fields
    assert debrepo.release_checksums(RELEASE, "SHA256") == [("aaaa", 767, "main/binary-amd64/Packages"),
                                                          ("bbbb", 521, "main/binary-amd64/Packages.gz")]
    assert debrepo.release_checksums(RELEASE, "SHA512") == [("cccc", 767, "main/binary-amd64/Packages")]
    assert debrepo.link_targets(RELEASE) == ["main/binary-amd64/by-hash/SHA256/aaaa", "main/binary-amd64/by-hash/SHA256/bbbb",
                                         "main/binary-amd64/by-hash/SHA512/cccc"]


def test_release_argv_sets_hashes_window_and_by_hash():
    argv = debrepo.release_argv("latest", date=1795903200, valid_until=1795903200 + 7 * 86400, arches=["arm64", "amd64"])
    assert argv[0] == "apt-ftparchive" and argv[-2:] == ["release", "dists/latest"]
    opts = dict(a.split("=", 1) for a in argv[1:-2] if a != "-o")
    assert opts["APT::FTPArchive::MD5"] == "false" and opts["APT::FTPArchive::SHA1"] == "false"
    assert opts["APT::FTPArchive::SHA512"] == "true"
    assert opts["APT::FTPArchive::Release::Acquire-By-Hash"] == "yes"
    assert opts["APT::FTPArchive::Release::Date"] == "Sat, 28 Nov 2026 22:00:00 UTC"
    assert opts["APT::FTPArchive::Release::Valid-Until"] == "Sat, 05 Dec 2026 22:00:00 UTC"
    assert opts["APT::FTPArchive::Release::Architectures"] == "amd64 arm64"
    assert debrepo.packages_argv("arm64")[-4:] == ["--arch", "arm64", "packages", "pool/main"]


def test_createrepo_argv_is_reproducible():
    assert rpmrepo.createrepo_argv("/r/rpm/latest/x86_64", revision=42) == [
        "createrepo_c", "--quiet", "--no-database", "--revision", "42", "--set-timestamp-to-revision", "/r/rpm/latest/x86_64"]


def test_artifact_paths_per_family():
    assert layout.artifact_paths("latest", _artifact()) == ["apt/pool/main/e/endura-sensor/endura-sensor_1.0.0_amd64.deb"]
    rpm = _artifact("rpm", file="endura-sensor-1.0.0-1.x86_64.rpm", package_arch="x86_64")
    assert layout.artifact_paths("testing", rpm) == ["rpm/testing/x86_64/packages/endura-sensor-1.0.0-1.x86_64.rpm"]
    tgz = _artifact("tgz", file="e-1.0.0-amd64.tar.gz", signature="detached:e-1.0.0-amd64.tar.gz.sig")
    assert layout.artifact_paths("latest", tgz) == ["tarball/latest/e-1.0.0-amd64.tar.gz", "tarball/latest/e-1.0.0-amd64.tar.gz.sig"]
    with pytest.raises(EnduraError, match="family 'msi', which is not published"):
        layout.artifact_paths("latest", _artifact("msi"))


def test_client_files():
    sources = debrepo.apt_sources("latest", "https://repo.example.test/")
    assert sources == ("Types: deb\nURIs: https://repo.example.test/apt\nSuites: latest\nComponents: main\n"
                       "Signed-By: /etc/apt/keyrings/endura-archive-keyring.asc\n")
    for text in (rpmrepo.dnf_repo("stable", "https://r.test"), rpmrepo.zypper_repo("stable", "https://r.test")):
        assert "[endura-stable]" in text and "baseurl=https://r.test/rpm/stable/$basearch" in text
        assert "gpgcheck=1" in text and "repo_gpgcheck=1" in text
        # the keys endura-archive-keyring installs (bootstrapped by hand from keys/), never fetched from the server
        assert "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-endura\n" in text and "/keys/" not in text
    assert "type=rpm-md" in rpmrepo.zypper_repo("stable", "https://r.test")


def test_point_at_rewrites_only_the_base_url():
    assert "URIs: http://127.0.0.1:8/apt\n" in debrepo.point_at(debrepo.apt_sources("latest", "https://r.test"), "http://127.0.0.1:8")
    repo = rpmrepo.point_at(rpmrepo.dnf_repo("latest", "https://r.test"), "http://127.0.0.1:8")
    assert "baseurl=http://127.0.0.1:8/rpm/latest/$basearch" in repo
    assert "gpgkey=http://127.0.0.1:8/keys/endura-archive-keyring.asc" in repo and "r.test" not in repo
    in_root = rpmrepo.point_at(rpmrepo.dnf_repo("latest", "https://r.test"), "http://127.0.0.1:8", root=Path("/tmp/c"))
    assert "gpgkey=file:///tmp/c/etc/pki/rpm-gpg/RPM-GPG-KEY-endura\n" in in_root


def test_pacman_paths_and_conf():
    from families.arch import repository as pacman

    pkg = _artifact("arch", file="e-1.0.0-1-x86_64.pkg.tar.zst", package_arch="x86_64",
                    signature="detached:e-1.0.0-1-x86_64.pkg.tar.zst.sig")
    assert layout.artifact_paths("latest", pkg) == ["arch/latest/x86_64/e-1.0.0-1-x86_64.pkg.tar.zst",
                                                    "arch/latest/x86_64/e-1.0.0-1-x86_64.pkg.tar.zst.sig"]
    snippet = pacman.pacman_conf_snippet("latest", "https://r.test/")
    assert snippet == "[endura]\nServer = https://r.test/arch/latest/$arch\nSigLevel = Required\n"
    assert "Server = http://127.0.0.1:8/arch/latest/$arch" in pacman.point_at(snippet, "http://127.0.0.1:8")


def _build(*artifacts: dict):
    from pathlib import Path

    from release.manifest import Build, BuiltArtifact

    return Build(Path("dist"), "1.0.0", "FPR", "00", tuple(BuiltArtifact.from_manifest(a) for a in artifacts))


def test_merge_build_adds_publishable_artifacts_once():
    manifest = _build(_artifact(), _artifact("rpm", file="e-1.0.0-1.x86_64.rpm", package_arch="x86_64"))
    merged, added = layout.merge_build([], manifest)
    assert [a["file"] for a in added] == ["endura-sensor_1.0.0_amd64.deb", "e-1.0.0-1.x86_64.rpm"]
    assert "targets" not in merged[0] and "sbom" not in merged[0]
    again, added_again = layout.merge_build(merged, manifest)
    assert again == merged and added_again == []
    newer = _build(_artifact(file="endura-sensor_1.0.1_amd64.deb", sha="22"))
    merged2, added2 = layout.merge_build(merged, newer)
    assert len(merged2) == 3 and [a["file"] for a in added2] == ["endura-sensor_1.0.1_amd64.deb"]


def test_merge_build_refuses_changed_bytes_for_a_published_file():
    merged, _ = layout.merge_build([], _build(_artifact()))
    with pytest.raises(EnduraError, match="already published with sha256 11.*immutable"):
        layout.merge_build(merged, _build(_artifact(sha="99")))


@pytest.mark.parametrize("numbers,current,keep,expected", [
    ([1, 2, 3, 4, 5, 6], 6, 3, {4, 5, 6}),
    ([1, 2, 3], 1, 2, {1, 2, 3}),  # the current one is always kept
    ([1], 1, 5, {1}),
    ([], None, 5, set()),
])
def test_generations_to_keep(numbers, current, keep, expected):
    assert layout.generations_to_keep(numbers, current, keep) == expected


def test_generation_names():
    assert layout.generation_name(7) == "000007"
    assert layout.parse_generation_name("000007") == 7
    assert layout.parse_generation_name(".building-000007") is None and layout.parse_generation_name("12") is None


def test_check_channel():
    assert layout.check_channel("stable") == "stable"
    with pytest.raises(EnduraError, match="unknown channel 'beta'; use one of latest, testing, stable"):
        layout.check_channel("beta")


def test_filter_packages_keeps_the_channel_stanzas_sorted():
    listing = ("Package: e\nVersion: 2\nFilename: pool/main/e/e/e_2_amd64.deb\n\n"
               "Package: e\nVersion: 1\nFilename: pool/main/e/e/e_1_amd64.deb\n\n"
               "Package: e\nVersion: 3\nFilename: pool/main/e/e/e_3_amd64.deb\n")
    out = debrepo.filter_packages(listing, {"pool/main/e/e/e_2_amd64.deb", "pool/main/e/e/e_1_amd64.deb"})
    assert out == ("Package: e\nVersion: 1\nFilename: pool/main/e/e/e_1_amd64.deb\n\n"
                   "Package: e\nVersion: 2\nFilename: pool/main/e/e/e_2_amd64.deb\n")
    assert debrepo.filter_packages("", set()) == ""


def test_gzip_is_deterministic():
    assert debrepo.gzip_bytes(b"abc") == debrepo.gzip_bytes(b"abc")
    assert gzip.decompress(debrepo.gzip_bytes(b"abc")) == b"abc"


def test_remote_target_with_development_key_is_refused():
    from toolbox.gpg import SigningKey

    dev = SigningKey("ABCD", None, "dev", "RSA", 4096, 0, None, True)
    with pytest.raises(EnduraError, match="refusing to publish to u@h:/srv with the DEVELOPMENT key ABCD"):
        check_target("u@h:/srv", dev)
    release = SigningKey("ABCD", None, "rel", "RSA", 4096, 0, None, False)
    assert str(check_target("u@h:/srv", release)) == "ssh://u@h/srv"
    assert check_target(None, dev) is None


def test_parser_defaults():
    args = parser().parse_args([])
    assert args.channel == "latest" and args.verify and args.keep == layout.DEFAULT_KEEP
    assert str(args.repo_root).endswith("build/repo") and args.base_url == layout.DEFAULT_BASE_URL
    with pytest.raises(SystemExit):
        parser().parse_args(["--rollback", "--refresh"])


def test_signing_argv_single_and_rotation():
    from pathlib import Path

    from toolbox.gpg import Keys as RepoKeys
    from toolbox.gpg import SigningKey, signing_argv

    old = SigningKey("OLD", Path("/g"), "o", "RSA", 4096, 0, None, False)
    new = SigningKey("NEW", Path("/g"), "n", "Ed25519", 0, 0, None, False)
    one = signing_argv(old, Path("Release"), Path("InRelease"), epoch=5, mode="clearsign")
    assert one[:3] == ["gpg", "--homedir", "/g"] and "--faked-system-time" in one and "5!" in one
    assert one.count("--local-user") == 1 and one[-2:] == ["--clearsign", "Release"]
    two = signing_argv(RepoKeys(old, (new,)), Path("repomd.xml"), Path("repomd.xml.asc"), epoch=5, mode="armor")
    assert [two[i + 1] for i, a in enumerate(two) if a == "--local-user"] == ["OLD", "NEW"]
    assert two[-3:] == ["--armor", "--detach-sign", "repomd.xml"] and "SHA256" in two
    assert signing_argv(old, Path("db"), Path("db.sig"), epoch=5, mode="binary")[-2:] == ["--detach-sign", "db"]
