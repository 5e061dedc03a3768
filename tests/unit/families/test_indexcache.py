"""The checks that keep the index caches honest (`repo.indexcache`), on real index texts."""
from __future__ import annotations

import gzip

from families import indexcache
from repo.generations import RepoRoot

PACKAGES = """Package: endura-sensor
Version: 1.0.0-1
Architecture: amd64
Filename: pool/main/e/endura-sensor/endura-sensor_1.0.0_amd64.deb
Size: 1332
SHA256: 6b1270b9276101426b4b734c7c840603567550e3a3da0a06c1c8d49c21b93afa
SHA512: 00

Package: endura-sensor
Version: 1.0.1-1
Architecture: amd64
Filename: pool/main/e/endura-sensor/endura-sensor_1.0.1_amd64.deb
Size: 1400
SHA256: b406bff0369e53884987fb26013e4fc747f005d99bbb038569e823be5dd62964
"""

ENTRIES = [
    {"file": "endura-sensor_1.0.0_amd64.deb", "family": "deb", "arch": "amd64", "size": 1332,
     "sha256": "6b1270b9276101426b4b734c7c840603567550e3a3da0a06c1c8d49c21b93afa"},
    {"file": "endura-sensor_1.0.1_amd64.deb", "family": "deb", "arch": "amd64", "size": 1400,
     "sha256": "b406bff0369e53884987fb26013e4fc747f005d99bbb038569e823be5dd62964"},
    {"file": "endura-sensor-1.0.0-1.x86_64.rpm", "family": "rpm", "arch": "amd64", "package_arch": "x86_64",
     "size": 2000, "sha256": "aa" * 32},
]


def test_packages_agree_with_the_manifests():
    wanted = indexcache.expected(ENTRIES, "deb", "pool/main/e/endura-sensor/")
    assert indexcache.differences(indexcache.packages_listed(PACKAGES), wanted) == []


def test_differences_name_the_file_and_both_checksums():
    wanted = indexcache.expected(ENTRIES, "deb", "pool/main/e/endura-sensor/")
    stale = PACKAGES.replace("b406bff0", "00000000")
    [problem] = indexcache.differences(indexcache.packages_listed(stale), wanted)
    assert problem.startswith("pool/main/e/endura-sensor/endura-sensor_1.0.1_amd64.deb has sha256 00000000")
    assert "the manifest b406bff0369e5388" in problem
    missing = indexcache.differences(indexcache.packages_listed(PACKAGES.split("\n\n")[0]), wanted)
    assert missing == ["pool/main/e/endura-sensor/endura-sensor_1.0.1_amd64.deb is missing"]
    extra = indexcache.differences(indexcache.packages_listed(PACKAGES), {})
    assert len(extra) == 2 and all(p.endswith("is not published here") for p in extra)


def test_repodata_primary_is_read(tmp_path):
    repodata = tmp_path / "repodata"
    repodata.mkdir()
    (repodata / "repomd.xml").write_text(
        '<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="primary">'
        '<location href="repodata/abc-primary.xml.gz"/></data></repomd>')
    (repodata / "abc-primary.xml.gz").write_bytes(gzip.compress(
        b'<metadata xmlns="http://linux.duke.edu/metadata/common" packages="1"><package type="rpm">'
        b'<name>endura-sensor</name><checksum type="sha256" pkgid="YES">' + b"aa" * 32 + b'</checksum>'
        b'<size package="2000" installed="10" archive="20"/><location href="packages/endura-sensor-1.0.0-1.x86_64.rpm"/>'
        b'</package></metadata>'))
    wanted = indexcache.expected(ENTRIES, "rpm", "packages/", package_arch="x86_64")
    assert indexcache.differences(indexcache.repodata_listed(tmp_path), wanted) == []
    assert indexcache.expected(ENTRIES, "rpm", "packages/", package_arch="aarch64") == {}


def test_without_a_cache_directory_there_is_no_db():
    with indexcache.apt_db(None) as db:
        assert db is None


def test_the_apt_db_is_replaced_only_when_the_build_succeeds(tmp_path):
    gen = tmp_path / "cache"  # the engine hands in <repo-root>/cache
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / indexcache.APT_DB).write_text("old")
    try:
        with indexcache.apt_db(gen) as db:
            db.write_text("half-written")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert (tmp_path / "cache" / indexcache.APT_DB).read_text() == "old"
    assert indexcache.abandoned(tmp_path) == []
    with indexcache.apt_db(gen) as db:
        assert db.read_text() == "old"
        db.write_text("new")
    assert (tmp_path / "cache" / indexcache.APT_DB).read_text() == "new"
    # a copy left by a killed publisher is removed by the next run
    (tmp_path / "cache" / f"{indexcache.APT_DB}{indexcache.TMP_MARK}99").write_text("x")
    assert [p.name for p in RepoRoot(tmp_path).remove_abandoned()] == [f"{indexcache.APT_DB}{indexcache.TMP_MARK}99"]


def test_repodata_scan_reads_what_an_xml_parser_reads(tmp_path):
    """The scan of primary.xml agrees with ElementTree: escaped hrefs, an xml:base, other checksum types,
    and `<package` text inside the <format> part (escaped in XML, so never a tag)."""
    import xml.etree.ElementTree as ET

    packages = [
        ('<location href="packages/a&amp;b-1.0-1.x86_64.rpm"/>', "sha256", "11" * 32, 100),
        ('<location xml:base="http://mirror.example.test/" href="packages/c-1.0-1.x86_64.rpm"/>', "sha256", "22" * 32, 200),
        ('<location href="packages/d-1.0-1.x86_64.rpm"/>', "sha1", "33" * 20, 300),
    ]
    body = "".join(
        f'<package type="rpm"><name>x</name><checksum type="{kind}" pkgid="YES">{digest}</checksum>'
        f'<description>not a tag: &lt;package type="rpm"&gt;</description><size package="{size}" installed="1" archive="2"/>'
        f'{location}<format><rpm:provides><rpm:entry name="x"/></rpm:provides><file>/usr/share/x</file></format></package>'
        for location, kind, digest, size in packages)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" '
           f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="3">{body}</metadata>')
    (tmp_path / "repodata").mkdir()
    (tmp_path / "repodata" / "repomd.xml").write_text('<repomd><data type="primary"><location href="repodata/p-primary.xml.gz"/>'
                                                      "</data></repomd>")
    (tmp_path / "repodata" / "p-primary.xml.gz").write_bytes(gzip.compress(xml.encode()))
    ns = "{http://linux.duke.edu/metadata/common}"
    parsed = {}
    for pkg in ET.fromstring(xml.encode()).iter(f"{ns}package"):
        checksum = pkg.find(f"{ns}checksum")
        parsed[pkg.find(f"{ns}location").get("href")] = (checksum.text if checksum.get("type") == "sha256" else "",
                                                         int(pkg.find(f"{ns}size").get("package")))
    assert indexcache.repodata_listed(tmp_path) == parsed
    assert parsed["packages/a&b-1.0-1.x86_64.rpm"] == ("11" * 32, 100) and parsed["packages/d-1.0-1.x86_64.rpm"] == ("", 300)
