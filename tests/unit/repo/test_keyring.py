"""repo.keyring's pure parts: the version from a key set, its order, the nfpm configs, the channel entries."""
from __future__ import annotations

from families.deb import repository as debrepo
from families.rpm import repository as rpmrepo
from repo import keyring, layout

DAY = 86400
OLD, NEW = 1_700_000_000, 1_760_000_000  # creation times of two keys


def test_version_is_readable_and_moves_forward_through_a_rotation():
    alone = keyring.version_of([OLD], OLD)
    assert alone == "20231114221320.20231114221320.20231114221320"
    extended = keyring.version_of([OLD], OLD + 30 * DAY)          # the old key's expiry extended (new self-signature)
    both = keyring.version_of([OLD, NEW], OLD + 30 * DAY)         # rotation starts: a newer key joins
    new_alone = keyring.version_of([NEW], NEW)                    # the old key leaves
    renewed = keyring.version_of([NEW], NEW + DAY)                # the new key re-signed later
    steps = [alone, extended, both, new_alone, renewed]
    assert [keyring.version_key(v) for v in steps] == sorted(keyring.version_key(v) for v in steps)
    assert len(set(steps)) == len(steps)
    # the same keys give the same version, whatever order they come in
    assert keyring.version_of([NEW, OLD], OLD + 30 * DAY) == both


def test_parse_key_listing():
    listing = "\n".join([
        "pub:-:255:22:C57A577E7F4CB95E:1700000000:1827446968::-:::scSC:::::ed25519:::0:",
        "fpr:::::::::0758553ECC58F22A3459150BC57A577E7F4CB95E:",
        "uid:-::::1700000000::5430BC1D::A <a@x>::::::::::0:",
        "sig:!::22:C57A577E7F4CB95E:1710000000::::A <a@x>:13x::0758553ECC58F22A3459150BC57A577E7F4CB95E:::8:",
        "pub:-:255:22:0172A896A18D93D6:1760000000:1827446968::-:::scSC:::::ed25519:::0:",
        "fpr:::::::::8DB03E36C02B04A39847AB780172A896A18D93D6:",
        "sub:-:255:18:1111111111111111:1765000000::::::e:::::cv25519::",
        "fpr:::::::::AAAA1111111111111111111111111111111111111:",
    ])
    fprs, created, newest = keyring.parse_key_listing(listing)
    assert fprs == ["0758553ECC58F22A3459150BC57A577E7F4CB95E", "8DB03E36C02B04A39847AB780172A896A18D93D6"]
    assert created == [1700000000, 1760000000] and newest == 1765000000


def test_nfpm_configs_install_the_files_the_client_configs_name(tmp_path):
    key = tmp_path / "k.asc"
    deb = keyring.nfpm_config("deb", "1.2.3", key, OLD)
    rpm = keyring.nfpm_config("rpm", "1.2.3", key, OLD)
    assert deb["arch"] == "all" and rpm["arch"] == "noarch" and deb["release"] == rpm["release"] == "1"
    [d], [r] = ([c for c in cfg["contents"] if c["dst"] in (debrepo.APT_KEYRING, rpmrepo.RPM_KEYRING)] for cfg in (deb, rpm))
    assert d["dst"] == debrepo.APT_KEYRING and f"Signed-By: {d['dst']}" in debrepo.apt_sources("latest", "https://r.test")
    assert r["dst"] == rpmrepo.RPM_KEYRING and f"gpgkey=file://{r['dst']}" in rpmrepo.dnf_repo("latest", "https://r.test")
    # plain files, not conffiles: an upgrade replaces them (a dropped key stops being trusted)
    assert d["type"] == r["type"] == "file" and d["file_info"]["mode"] == 0o644
    assert keyring.file_names("1.2.3") == {"deb": "endura-archive-keyring_1.2.3-1_all.deb",
                                           "rpm": "endura-archive-keyring-1.2.3-1.noarch.rpm"}


def test_channel_entries_list_the_one_file_for_every_arch_of_the_channel():
    record = {"version": "1.2.3", "files": {
        f: {"file": n, "sha256": "ab" * 32, "size": 10, "signature": "x"} for f, n in keyring.file_names("1.2.3").items()}}
    sensor = [{"family": "deb", "arch": "amd64"}, {"family": "rpm", "arch": "amd64"}]
    entries = keyring.channel_entries(record, sensor)
    debs = [e for e in entries if e["family"] == "deb"]
    rpms = [e for e in entries if e["family"] == "rpm"]
    assert [e["arch"] for e in debs] == ["amd64"]  # only the suite's own arches: verification downloads each
    assert sorted(e["package_arch"] for e in rpms) == ["aarch64", "x86_64"]
    paths = sorted(p for e in rpms for p in layout.artifact_paths("stable", e))
    assert paths == ["rpm/stable/aarch64/packages/endura-archive-keyring-1.2.3-1.noarch.rpm",
                     "rpm/stable/x86_64/packages/endura-archive-keyring-1.2.3-1.noarch.rpm"]
    assert layout.artifact_paths("stable", debs[0]) == [
        "apt/pool/main/e/endura-archive-keyring/endura-archive-keyring_1.2.3-1_all.deb"]
    assert sorted(e["arch"] for e in keyring.channel_entries(record, []) if e["family"] == "deb") == ["amd64", "arm64"]
