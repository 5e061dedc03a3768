"""The install guides (pure text) and the offline bundle's pure parts."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from channels import mirror
from distros import load_catalog
from repo import guides

FPR = "0E49BDF1B83E3FF26EA26108C5ECB44FCD095B88"
ONLINE = guides.Source("https://repo.example.test/", "stable", (FPR,), "1.2.3")
OFFLINE = guides.Source("file:///srv/endura", "stable", (FPR,), "1.2.3")
CATALOG = load_catalog()


@pytest.mark.parametrize("target", CATALOG.target_ids)
def test_every_target_gets_a_runnable_guide(target):
    text = guides.guide(CATALOG.target(target), ONLINE)
    blocks = guides.sh_blocks(text)
    assert blocks and "endura-sensor check\n" in blocks
    assert "repo.example.test//" not in text and "stable" in text and FPR in text
    assert "## Uninstall" in text
    offline = "\n".join(guides.sh_blocks(guides.guide(CATALOG.target(target), OFFLINE)))
    assert "curl" not in offline and "https://" not in offline, "an air-gapped host needs no network tool"


@pytest.mark.parametrize("target", CATALOG.target_ids)
def test_guides_print_no_internal_catalog_note(target):
    t = CATALOG.target(target)
    text = guides.guide(t, ONLINE)
    assert "the spec" not in text.lower(), "an internal catalog note (internal_notes) reached a guide"
    assert not [n for n in t.internal_notes if n in text]
    # the printed fields are user-facing: remarks about the spec or our research go to internal_notes
    for note in (t.bpf_lsm_note, *t.notes):
        assert "spec" not in note and "in fact" not in note, f"{target}: move {note!r} to internal_notes"


def test_the_internal_notes_that_used_to_be_printed_are_internal_now():
    for target in ("alpine-3.20", "alpine-3.21", "alpine-3.22", "debian-11"):
        t = CATALOG.target(target)
        assert any("the spec says" in n for n in t.internal_notes) and "spec" not in t.bpf_lsm_note
        assert "the spec says" not in guides.guide(t, ONLINE)


def test_the_tarball_guide_says_what_install_sh_does():
    """A tarball has no package scripts: its guide describes sensor/packaging/tarball/install.sh."""
    text = guides.tarball_guide(ONLINE)
    assert "The package enables" not in text
    start = text[text.index("Start the sensor"):]
    assert "`install.sh` enables the service without starting it" in start
    assert "--no-enable" in start and "rc-update add endura-sensor default" in start
    install_sh = (Path(__file__).resolve().parents[3] / "sensor/packaging/tarball/install.sh").read_text()
    for command in ("systemctl enable endura-sensor.service", "rc-update add endura-sensor default", "--no-enable"):
        assert command in install_sh  # the guide quotes what the script really runs


@pytest.mark.parametrize("target", CATALOG.target_ids)
def test_start_says_who_enables_the_service(target):
    """A guide that installs a package says the package enables the service; one that installs the tarball (its
    family's repository not published, e.g. apk without its RSA key) says what install.sh does."""
    text = guides.guide(CATALOG.target(target), ONLINE)
    start = text[text.index("Start the sensor"):]
    if "Install from the tarball" in text:
        assert "`install.sh` enables the service" in start and "The package enables" not in text
    else:
        assert start.split("\n\n")[1].startswith("The package enables the service")


def test_fetch_is_curl_online_and_install_offline():
    assert ONLINE.fetch("keys/k.asc", "/etc/apt/keyrings/k.asc") == \
        "curl -fsSL --create-dirs -o /etc/apt/keyrings/k.asc https://repo.example.test/keys/k.asc"
    assert OFFLINE.fetch("keys/k.asc", "/etc/apt/keyrings/k.asc") == \
        "install -D -m 0644 /srv/endura/keys/k.asc /etc/apt/keyrings/k.asc"


def test_apt_guide_commands_in_order():
    blocks = guides.sh_blocks(guides.guide(CATALOG.target("debian-12"), ONLINE))
    assert blocks[0] == "apt-get update\napt-get install -y ca-certificates curl\n"
    assert "https://repo.example.test/apt/endura-stable.sources" in blocks[1]
    assert blocks[2].startswith("apt-get update\napt-get install -y endura-archive-keyring endura-sensor")
    assert blocks[-1].startswith("apt-get remove -y endura-sensor")


def test_lsm_fix_commands_follow_the_catalog():
    ubuntu = guides.sh_blocks(guides.lsm_section(CATALOG.target("ubuntu-24.04")))
    assert ubuntu == ["sed -i 's/^GRUB_CMDLINE_LINUX=\"/&lsm=landlock,lockdown,yama,integrity,apparmor,bpf /' "
                      "/etc/default/grub\nupdate-grub\nreboot\n"]
    focal = guides.sh_blocks(guides.lsm_section(CATALOG.target("ubuntu-20.04")))[0]
    assert focal.startswith("apt-get install -y linux-generic-hwe-20.04\n")
    uek = guides.sh_blocks(guides.lsm_section(CATALOG.target("oracle-9-uek")))[0]
    assert uek.startswith('grubby --update-kernel=ALL --args="lsm=lockdown,') and ",bpf\"" in uek
    assert guides.sh_blocks(guides.lsm_section(CATALOG.target("alpine-3.22"))) == [], "no boot argument helps there"
    assert guides.sh_blocks(guides.lsm_section(CATALOG.target("debian-12"))) == []


def test_apk_guide_says_the_index_is_not_published_and_uses_the_tarball():
    text = guides.guide(CATALOG.target("alpine-3.22"), ONLINE)
    assert "apk repository is not published yet" in text
    assert "gpgv --keyring ./endura-archive-keyring.gpg SHA256SUMS.asc SHA256SUMS" in text
    assert "VERSION=1.2.3" in text


def test_rpm_uninstall_names_the_imported_key():
    text = guides.guide(CATALOG.target("rhel-9"), ONLINE)
    assert "rpm -e gpg-pubkey-cd095b88" in text and "repo_gpgcheck=1" in text


def test_channel_without_tarball_says_so():
    src = guides.Source("https://r.test", "testing", (FPR,), None)
    assert "holds no tarball yet" in guides.tarball_guide(src)
    assert "tarball.md" not in guides.guide(CATALOG.target("debian-12"), src)


def test_newest_tarball_version_uses_semver_order():
    entries = [{"family": "tgz", "version": v} for v in ("1.0.10", "1.0.9", "1.1.0-rc.1")] + [{"family": "deb", "version": "9.9.9"}]
    assert guides.newest_tarball_version(entries) == "1.1.0-rc.1"


def test_write_makes_a_guide_per_target_and_indexes(tmp_path):
    written = guides.write(tmp_path, [ONLINE], CATALOG)
    assert len(written) == len(CATALOG.targets) + 3
    index = (tmp_path / "stable/index.md").read_text()
    assert all(f"({t}.md)" in index for t in CATALOG.target_ids) and "(tarball.md)" in index
    assert "[stable](stable/index.md)" in (tmp_path / "index.md").read_text()


def test_install_md_blocks_check_then_copy():
    info = {"version": "1.2.3", "channel": "stable", "date": "d", "generation": 4, "source_base_url": "https://r.test",
            "base_url": "file:///srv/endura", "valid_until": "u", "valid_days": 365, "key_fingerprints": [FPR]}
    name = mirror.bundle_name("stable", "1.2.3")
    [block] = guides.sh_blocks(mirror.install_text(name, info))
    lines = block.splitlines()
    assert lines[:3] == ["cd /var/tmp", f"tar -xf {name}.tar", f"cd {name}"]
    assert lines.index("gpgv --keyring ./keys/endura-archive-keyring.gpg SHA256SUMS.asc SHA256SUMS") < \
        lines.index("cp -a . /srv/endura/")


def test_bundle_tar_is_reproducible(tmp_path):
    tree = tmp_path / "endura-stable-1.2.3-offline"
    (tree / "a").mkdir(parents=True)
    (tree / "a/x").write_text("x")
    mirror.write_tar(tree, tmp_path / "one.tar", 1795903200)
    (tree / "a/x").touch()
    mirror.write_tar(tree, tmp_path / "two.tar", 1795903200)
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with tarfile.open(tmp_path / "one.tar") as t:
        assert t.getnames() == ["endura-stable-1.2.3-offline", "endura-stable-1.2.3-offline/a",
                                "endura-stable-1.2.3-offline/a/x"]
        assert {m.uname for m in t.getmembers()} == {"root"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endura-stable-1.2.3-offline", "one.tar", "two.tar"]


@pytest.mark.parametrize("argv,message", [
    (["latest", "--base-url", "/srv/endura"], "is not a file:/// or http(s):// URL"),
    (["latest", "--valid-days", "0"], "must be positive"),
])
def test_mirror_cli_refuses_bad_options(argv, message, capsys):
    assert mirror.main(argv) == 1
    assert message in capsys.readouterr().err
