"""What release/stage.py generates into every package, so it cannot drift from its source:
- the sensor's libbpf answer, from the catalog (release/distro_data.py), read by sensor/endura_sensor/libbpf.py:
  no second table;
- endura-sensor(1), from the staged sensor's own --help (release/manpage.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distros import load_catalog
from release import distro_data, stage

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sensor"))
from endura_sensor import libbpf  # noqa: E402

CATALOG = load_catalog()
HOSTS = distro_data.libbpf_packages(CATALOG)["hosts"]


@pytest.mark.parametrize("target", CATALOG.target_ids)
def test_the_sensor_names_the_catalogs_libbpf_package_for_every_target(target):
    t = CATALOG.target(target)
    os_id = distro_data.OS_RELEASE_ID.get(t.distro, t.distro)
    install = distro_data.INSTALL[t.package_manager].format(t.libbpf_package)
    expected = f"{t.libbpf_package} ({install})"
    versions = [{}] if t.version == "rolling" else [{"VERSION_ID": t.version}, {"VERSION_ID": f"{t.version}.1"}]
    for version in versions:
        assert libbpf.libbpf_package({"ID": os_id, **version}, HOSTS) == expected, (target, version)


def test_ubuntu_22_04_is_told_libbpf0():
    assert CATALOG.target("ubuntu-22.04").libbpf_package == "libbpf0"
    assert libbpf.libbpf_package({"ID": "ubuntu", "VERSION_ID": "22.04"}, HOSTS) == "libbpf0 (apt-get install libbpf0)"


def test_the_staged_sensor_reads_the_generated_file(tmp_path):
    objects = []
    for name in stage.BPF_OBJECTS:
        (tmp_path / name).write_bytes(b"\x7fELF")
        objects.append(tmp_path / name)
    root = tmp_path / "root"
    entries = stage.stage("amd64", "1.2.3", objects, root, 1700000000)
    dst = f"{stage.LIBDIR}/endura_sensor/{distro_data.FILE_NAME}"
    [entry] = [e for e in entries if e.dst == dst]
    assert json.loads(entry.src.read_text()) == distro_data.libbpf_packages(CATALOG)
    # the packaged modules, on their own (no source checkout on the path), answer from the staged file
    code = ("from endura_sensor import libbpf; "
            "print(libbpf.libbpf_package({'ID': 'ubuntu', 'VERSION_ID': '22.04'}))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(root / stage.LIBDIR.lstrip('/'))!r}); {code}"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "libbpf0 (apt-get install libbpf0)"


def test_same_host_different_packages_is_refused():
    import dataclasses

    from toolbox.errors import EnduraError

    t = CATALOG.target("oracle-9-uek")
    clash = dataclasses.replace(CATALOG, targets=(*CATALOG.targets, dataclasses.replace(t, id="oracle-9-x",
                                                                                          libbpf_package="libbpf9")))
    with pytest.raises(EnduraError, match="oracle-9-x"):
        distro_data.libbpf_packages(clash)


def test_the_manual_page_is_the_staged_sensors_own_help(tmp_path):
    """endura-sensor(1) is generated from the staged sensor's --help (release/manpage.py): every subcommand is in it."""
    import gzip

    from release import manpage

    objects = []
    for name in stage.BPF_OBJECTS:
        (tmp_path / name).write_bytes(b"\x7fELF")
        objects.append(tmp_path / name)
    root = tmp_path / "root"
    entries = stage.stage("amd64", "1.2.3", objects, root, 1700000000)
    [entry] = [e for e in entries if e.dst == manpage.MAN_PATH]
    raw = entry.src.read_bytes()
    assert raw[4:8] == (1700000000).to_bytes(4, "little")  # gzip mtime: SOURCE_DATE_EPOCH, so builds repeat
    page = gzip.decompress(raw).decode()
    assert page.startswith('.TH ENDURA\\-SENSOR 1 "2023-11-14" "endura\\-sensor 1.2.3"')
    helps = manpage.collect(root / stage.LIBDIR.lstrip("/"))
    assert set(helps["commands"]) >= {"check", "check-config", "run", "release", "status"}
    for command in helps["commands"]:
        assert f".SS {manpage._escape(command)}\n" in page
    # the installed default, not the source checkout's
    assert manpage._escape(f"{stage.BPF_DIR}") in page
    assert not list(root.rglob("__pycache__")), "running the staged sensor for its help left bytecode in the tree"


def test_roff_escaping():
    from release import manpage

    assert manpage._escape(".hidden -x \\n") == "\\&.hidden \\-x \\en"
    assert manpage._escape("'quote") == "\\&'quote"
