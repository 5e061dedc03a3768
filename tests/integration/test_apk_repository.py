"""The signed apk repository, proven with Alpine's own clients (apk-tools 2.14 and 3.0, built from source).

A generation holding channel `latest` (the real .apk packages of the session's build, x86_64 and aarch64) and
an empty channel `stable` is built with `families.apk.repository.build_channel` and served on 127.0.0.1.
Both clients, each in its own fresh `--root` with a keys directory holding only the published key, update,
fetch and verify it. Each tamper test first passes the unmodified copy (the control), then shows that both
clients refuse the tampered one, and with which message.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from distros import load_catalog
from families.apk import repository as apkrepo
from families.apk.apktools import version as client_version
from families.guidetext import Source, sh_blocks
from release.manifest import load
from release.signing import ApkKey, resolve_apk_key, resolve_key
from release.version import Version
from repo import guides
from repo.verify import serve
from toolbox.errors import EnduraError
from toolbox.run import run

pytestmark = pytest.mark.slow

DATE = 1764000000
VERSION = "1.0.0"  # dist_v1's version
CHANNEL = "latest"
REFUSALS = Path(os.environ.get("ENDURA_APK_REFUSALS_LOG", "")) if os.environ.get("ENDURA_APK_REFUSALS_LOG") else None


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def apk_key() -> ApkKey:
    """The RSA key the session's build signed its .apk packages with (the development key unless configured)."""
    return resolve_apk_key(resolve_key())


def new_rsa_key(directory: Path, name: str) -> ApkKey:
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name.removesuffix(".pub")
    run(["openssl", "genrsa", "-out", str(private), "2048"])
    run(["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(directory / name)])
    return ApkKey(private, directory / name, name, True)


def apk_entries(dist: Path) -> list[dict]:
    return [a for a in load(dist)["artifacts"] if a["family"] == "apk"]


def build_generation(gen: Path, dist: Path, key: ApkKey, apk: Path, *, date: int = DATE) -> dict[str, float]:
    """`latest` with the build's packages placed at `artifact_path`, `stable` empty; returns the seconds each took."""
    entries = apk_entries(dist)
    for entry in entries:
        dest = gen / apkrepo.artifact_path(CHANNEL, entry)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dist / entry["file"], dest)
    took = {}
    for channel, listed in ((CHANNEL, entries), ("stable", [])):
        started = time.monotonic()
        apkrepo.build_channel(gen, channel, listed, key, date=date, apk=apk)
        took[channel] = time.monotonic() - started
    return took


@pytest.fixture(scope="session")
def apk_generation(tmp_path_factory, dist_v1, apk_key, apk_clients) -> Path:
    gen = tmp_path_factory.mktemp("apk-gen") / "gen"
    took = build_generation(gen, dist_v1, apk_key, apk_clients.v2)
    print(f"build_channel: {', '.join(f'{c} {s:.2f}s' for c, s in took.items())}")
    return gen


def refusals(gen: Path, clients, workdir: Path) -> dict[str, str]:
    """Run each client alone against `gen` (served on loopback); {client: its refusal message, or "" if it passed}."""
    out = {}
    keys = workdir / "keys"
    apkrepo.published_keys(gen, keys)
    with serve(gen) as url:
        for major, apk in clients.by_major().items():
            label = f"apk-tools {client_version(apk)}"
            try:
                apkrepo.verify_client(apk, label, gen, CHANNEL, url, workdir / f"apk{major}", keys,
                                      apkrepo.package_version(Version.parse(VERSION)))
                out[label] = ""
            except EnduraError as exc:
                out[label] = exc.message
    return out


# --- success ----------------------------------------------------------------------------------------------


def test_both_clients_update_fetch_and_verify_every_arch(apk_generation, apk_clients, tmp_path):
    gen = apk_generation
    with serve(gen) as url:
        started = time.monotonic()
        latest = apkrepo.verify_channel(gen, CHANNEL, url, tmp_path / "latest",
                                        expected_version=apkrepo.package_version(Version.parse(VERSION)), clients=apk_clients)
        took = time.monotonic() - started
        stable = apkrepo.verify_channel(gen, "stable", url, tmp_path / "stable", expected_version=None, clients=apk_clients)
        again = apkrepo.verify_channel(gen, CHANNEL, url, tmp_path / "latest",
                                       expected_version=apkrepo.package_version(Version.parse(VERSION)), clients=apk_clients)
    assert again == latest  # the same workdir again: fresh roots
    print(f"verify_channel latest: {took:.2f}s; {json.dumps(latest)}")
    assert latest == {"apk2": {"client": "2.14.10", "aarch64": "1.0.0-r0", "x86_64": "1.0.0-r0"},
                      "apk3": {"client": "3.0.6", "aarch64": "1.0.0-r0", "x86_64": "1.0.0-r0"}}
    # an arch (or channel) without packages still has a signed index the clients load
    assert stable == {"apk2": {"client": "2.14.10", "aarch64": None, "x86_64": None},
                      "apk3": {"client": "3.0.6", "aarch64": None, "x86_64": None}}
    for arch in apkrepo.ARCHES:
        for channel in (CHANNEL, "stable"):
            size = (gen / apkrepo.channel_dir(channel, arch) / apkrepo.INDEX).stat().st_size
            print(f"{channel}/{arch}/APKINDEX.tar.gz: {size} bytes")


def test_the_index_is_signed_like_abuild_sign_does(apk_generation, apk_key, tmp_path):
    index = apk_generation / apkrepo.channel_dir(CHANNEL, "x86_64") / apkrepo.INDEX
    tar, signed = apkrepo.split_signed(index.read_bytes())
    name, signature = apkrepo.read_signature_tar(tar)
    assert name == f".SIGN.RSA256.{apk_key.name}"
    (tmp_path / "signed").write_bytes(signed)
    (tmp_path / "sig").write_bytes(signature)
    run(["openssl", "dgst", "-sha256", "-verify", str(apk_key.public), "-signature", str(tmp_path / "sig"),
         str(tmp_path / "signed")])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(signed))) as t:
        assert t.getnames() == ["DESCRIPTION", "APKINDEX"]
        assert all(m.mtime == DATE for m in t.getmembers())
        text = t.extractfile("APKINDEX").read().decode()
    assert "P:endura-sensor\nV:1.0.0-r0\nA:x86_64\n" in text
    assert (apk_generation / "keys" / apk_key.name).read_bytes() == apk_key.public.read_bytes()


def test_build_channel_is_reproducible(apk_generation, dist_v1, apk_key, apk_clients, tmp_path):
    again = tmp_path / "gen"
    build_generation(again, dist_v1, apk_key, apk_clients.v2)
    for channel in (CHANNEL, "stable"):
        for arch in apkrepo.ARCHES:
            rel = f"{apkrepo.channel_dir(channel, arch)}/{apkrepo.INDEX}"
            assert (again / rel).read_bytes() == (apk_generation / rel).read_bytes(), rel
    later = tmp_path / "later"
    build_generation(later, dist_v1, apk_key, apk_clients.v2, date=DATE + 1)
    rel = f"{apkrepo.channel_dir(CHANNEL, 'x86_64')}/{apkrepo.INDEX}"
    assert (later / rel).read_bytes() != (apk_generation / rel).read_bytes()


def test_a_package_signed_by_another_key_is_not_indexed(apk_generation, apk_clients, tmp_path):
    gen = tmp_path / "gen"
    shutil.copytree(apk_generation, gen)
    other = new_rsa_key(tmp_path / "other", "other.rsa.pub")
    entry = next(e for e in apk_entries_from(gen) if e["package_arch"] == "x86_64")
    with pytest.raises(EnduraError) as err:
        apkrepo.build_channel(gen, CHANNEL, [entry], other, date=DATE, apk=apk_clients.v2)
    assert "UNTRUSTED signature" in str(err.value)


def apk_entries_from(gen: Path) -> list[dict]:
    """Manifest-like entries of the packages placed in `gen`'s channel `latest`."""
    out = []
    for arch in apkrepo.ARCHES:
        for p in (gen / apkrepo.channel_dir(CHANNEL, arch)).glob("*.apk"):
            out.append({"family": "apk", "package_arch": arch, "file": p.name.removesuffix(".apk") + f".{arch}.apk"})
    return out


# --- tampering: each refused by both clients, after the unmodified copy passed --------------------------------


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def gzip_members(data: bytes) -> list[bytes]:
    """The raw bytes of each concatenated gzip member."""
    members = []
    while data:
        d = zlib.decompressobj(wbits=31)
        d.decompress(data)
        size = len(data) - len(d.unused_data)
        members.append(data[:size])
        data = d.unused_data
    return members


def index_flipped_byte(d: Path, other: ApkKey) -> None:
    """One bit flipped in the middle of the signed index (the signature segment untouched)."""
    index = d / apkrepo.INDEX
    _, signed = apkrepo.split_signed(index.read_bytes())
    flip(index, index.stat().st_size - len(signed) // 2)


def index_altered(d: Path, other: ApkKey) -> None:
    """The index's text changed (a valid gzip again), the original signature kept."""
    index = d / apkrepo.INDEX
    data = index.read_bytes()
    _, signed = apkrepo.split_signed(data)
    text = gzip.decompress(signed)
    assert b"V:1.0.0-r0" in text
    index.write_bytes(data[:len(data) - len(signed)] + gzip.compress(text.replace(b"V:1.0.0-r0", b"V:1.0.9-r0"), mtime=0))


def signature_removed(d: Path, other: ApkKey) -> None:
    index = d / apkrepo.INDEX
    index.write_bytes(apkrepo.split_signed(index.read_bytes())[1])


def resigned(d: Path, key: ApkKey) -> None:
    index = d / apkrepo.INDEX
    unsigned = d / "unsigned.tar.gz"
    unsigned.write_bytes(apkrepo.split_signed(index.read_bytes())[1])
    apkrepo.sign_index(unsigned, index, key, date=DATE)
    unsigned.unlink()


def signed_by_another_key(d: Path, other: ApkKey) -> None:
    """Signed by a key the client does not have (`.SIGN.RSA256.other.rsa.pub`)."""
    resigned(d, other)


def signed_by_another_key_under_our_name(d: Path, other: ApkKey) -> None:
    """Signed by another key that claims our key's name (`.SIGN.RSA256.endura-dev.rsa.pub`)."""
    ours = next(p.name for p in (d.parents[2] / "keys").glob("*.rsa.pub"))
    resigned(d, ApkKey(other.private, other.public, ours, True))


def package_flipped_byte(d: Path, other: ApkKey) -> None:
    package = next(d.glob("*.apk"))
    flip(package, package.stat().st_size // 2)


def package_file_altered(d: Path, other: ApkKey) -> None:
    """A byte of a file inside the package changed, its data member re-compressed: a valid .apk again,
    whose signature and index entry no longer match."""
    package = next(d.glob("*.apk"))
    members = gzip_members(package.read_bytes())
    assert len(members) == 3  # signature, control, data
    data = bytearray(gzip.decompress(members[2]))
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as t:
        member = next(m for m in t.getmembers() if m.isfile() and m.size > 16)
    data[member.offset_data + 8] ^= 0x01
    package.write_bytes(members[0] + members[1] + gzip.compress(bytes(data), mtime=0))


TAMPERS = {
    "index-flipped-byte": (index_flipped_byte, "update"),
    "index-altered-signature-kept": (index_altered, "update"),
    "signature-removed": (signature_removed, "update"),
    "signed-by-another-key": (signed_by_another_key, "update"),
    "signed-by-another-key-under-our-name": (signed_by_another_key_under_our_name, "update"),
    "package-flipped-byte": (package_flipped_byte, "fetch"),
    "package-file-altered": (package_file_altered, "fetch"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_both_clients_refuse_a_tampered_repository(tamper, apk_generation, apk_clients, tmp_path):
    mutate, step = TAMPERS[tamper]
    control, tampered = tmp_path / "control", tmp_path / "tampered"
    shutil.copytree(apk_generation, control)
    shutil.copytree(apk_generation, tampered)
    mutate(tampered / apkrepo.channel_dir(CHANNEL, "x86_64"), new_rsa_key(tmp_path / "other", "other.rsa.pub"))

    passed = refusals(control, apk_clients, tmp_path / "w-control")
    assert passed == {label: "" for label in passed}, passed
    refused = refusals(tampered, apk_clients, tmp_path / "w-tampered")
    print(f"{tamper}: {json.dumps(refused, indent=1)}")
    if REFUSALS:
        with REFUSALS.open("a") as fh:
            fh.write(json.dumps({"tamper": tamper, "refused": refused}) + "\n")
    assert len(refused) == 2
    for label, message in refused.items():
        assert message, f"{label} accepted the repository after {tamper}"
        assert f"{label} {step}" in message and "(x86_64)" in message, message


def test_the_aarch64_index_is_checked_too(apk_generation, apk_clients, tmp_path):
    gen = tmp_path / "gen"
    shutil.copytree(apk_generation, gen)
    signature_removed(gen / apkrepo.channel_dir(CHANNEL, "aarch64"), None)
    refused = refusals(gen, apk_clients, tmp_path / "w")
    assert len(refused) == 2
    for message in refused.values():
        assert "UNTRUSTED signature" in message and "(aarch64)" in message, message


# --- the Alpine install guide, followed in an apk root --------------------------------------------------------

STANDIN = "alpine-standin"
#: what the sensor's apk depends on (release.package's depends for Alpine), provided with versions: apk does not
#: pick an unversioned (virtual) provider on its own
STANDIN_PROVIDES = ("python3=3.12.12-r0", "libbpf=1.5.0-r0")


def standin_repository(directory: Path, key: ApkKey, apk: Path) -> str:
    """A second, local repository standing in for Alpine's own `main`: one file-less package, signed by its own
    key, that only *provides* python3 and libbpf (Alpine's packages cannot be fetched here). Returns the
    repository line for /etc/apk/repositories."""
    work = directory / "build"
    work.mkdir(parents=True)
    name = f"{STANDIN}-1.0.0-r0.x86_64.apk"
    config = {"name": STANDIN, "arch": "x86_64", "platform": "linux", "version": "1.0.0", "release": "0",
              "version_schema": "none", "maintainer": "Endura tests <tests@localhost>",
              "description": "test stand-in for Alpine's python3 and libbpf", "license": "Apache-2.0",
              "provides": list(STANDIN_PROVIDES), "contents": [],
              "apk": {"signature": {"key_file": str(key.private), "key_name": key.name}}}
    (work / "nfpm.json").write_text(json.dumps(config))
    run(["nfpm", "package", "--config", str(work / "nfpm.json"), "--packager", "apk", "--target", str(work / name)],
        cwd=work, extra_env={"SOURCE_DATE_EPOCH": str(DATE)})
    entry = {"family": "apk", "file": name, "package_arch": "x86_64"}
    repo = directory / "repo"
    dest = repo / apkrepo.artifact_path("main", entry)
    dest.parent.mkdir(parents=True)
    shutil.copyfile(work / name, dest)
    apkrepo.build_channel(repo, "main", [entry], key, date=DATE, apk=apk)
    return str(repo / apkrepo.repository_path("main"))


def apk_wrapper(bin_dir: Path, apk: Path, root: Path) -> None:
    """`apk` on PATH for the guide's commands: the built client working on `root`. `apk add` gets --no-scripts:
    the package's scripts (OpenRC service registration) run with the root's /bin/sh, and an apk root made here
    has no shell (Alpine's busybox cannot be fetched)."""
    bin_dir.mkdir(parents=True)
    script = bin_dir / "apk"
    script.write_text("#!/bin/sh\n"
                      f'if [ "$1" = add ]; then shift; exec {apk} --root {root} --no-progress add --no-scripts "$@"; fi\n'
                      f'exec {apk} --root {root} --no-progress "$@"\n')
    script.chmod(0o755)


def in_root(command: str, root: Path) -> str:
    """The guide's command with its absolute /etc/apk paths moved under `root`."""
    return command.replace(f" {apkrepo.APK_KEYS}/", f" {root}{apkrepo.APK_KEYS}/").replace(
        f" {apkrepo.APK_REPOSITORIES}", f" {root}{apkrepo.APK_REPOSITORIES}")


def alpine_host(tmp_path: Path, apk: Path, builder: Path) -> tuple[Path, dict[str, str]]:
    """An `apk --root ... --initdb` root standing in for an Alpine host (its own repository and key: the
    stand-in), and the environment whose PATH has `apk` working on it."""
    root = tmp_path / "root"
    standin_key = new_rsa_key(tmp_path / "standin-key", "alpine-standin.rsa.pub")
    line = standin_repository(tmp_path / "standin", standin_key, builder)
    (root / "etc/apk/keys").mkdir(parents=True)
    shutil.copyfile(standin_key.public, root / "etc/apk/keys" / standin_key.name)
    (root / "etc/apk/repositories").write_text(line + "\n")
    run([str(apk), "--root", str(root), "--arch", "x86_64", "--no-progress", "add", "--initdb"])
    apk_wrapper(tmp_path / "bin", apk, root)
    return root, {"PATH": f"{tmp_path / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}


def follow_steps(steps: list[str], root: Path, env: dict[str, str]) -> list[str]:
    """Run each step with `sh -e`; returns the output of each; raises AssertionError on the first failure."""
    outputs = []
    for step in steps:
        proc = run(["sh", "-e", "-c", in_root(step, root)], env=env, check=False, timeout=300)
        out = proc.stdout + proc.stderr
        print(f"$ {step}\n{out}")
        assert proc.returncode == 0 and "WARNING" not in out, f"{step} (exit code {proc.returncode})\n{out}"
        outputs.append(out)
    return outputs


def generated_guide_steps(url: str, key_name: str) -> list[str]:
    """The commands of the generated Alpine guide's "Add the key and the repository" and "Install" sections
    (`repo.guides.guide` for alpine-3.20 with the apk key published), one line each, as written. Only
    `endura-sensor --version` is left out: it runs the sensor on Alpine's python3, which the stand-in only
    *provides* (an empty package)."""
    src = Source(url, CHANNEL, ("0" * 40,), None, (key_name,))
    text = guides.guide(load_catalog().target("alpine-3.20"), src)
    assert "## 1. Add the key and the repository" in text and "## 2. Install" in text, text
    repository, install = sh_blocks(text)[:2]
    steps = [line for block in (repository, install) for line in block.splitlines() if line.strip()]
    assert steps[-1] == "endura-sensor --version", steps
    return steps[:-1]


@pytest.mark.parametrize("major", ["2", "3"])
def test_alpine_guide_steps_install_the_sensor(major, apk_generation, apk_clients, apk_key, tmp_path):
    """The generated Alpine guide's steps (see generated_guide_steps), each run with `sh -e` as written, on a
    host stood in for by an `apk --root ... --initdb` root: /etc/apk paths are prefixed with the root and `apk`
    is the built client with `--root` (and `--no-scripts` for `apk add`: see apk_wrapper). Alpine's own
    repository, which the guide expects on the host for python3 and libbpf, is a local stand-in repository
    (see standin_repository) whose key is already trusted, as alpine-keys' are on Alpine."""
    apk = apk_clients.by_major()[major]
    root, env = alpine_host(tmp_path, apk, apk_clients.v2)
    with serve(apk_generation) as url:
        steps = generated_guide_steps(url, apk_key.name)
        assert steps == apkrepo.guide_steps(CHANNEL, url, apk_key.name)
        follow_steps(steps, root, env)

    assert (root / "etc/apk/keys" / apk_key.name).read_bytes() == apk_key.public.read_bytes()
    assert f"{url}/apk/{CHANNEL}" in (root / "etc/apk/repositories").read_text()
    assert os.access(root / "usr/bin/endura-sensor", os.X_OK)
    installed = run([str(apk), "--root", str(root), "info", "-v"]).stdout.split()
    assert "endura-sensor-1.0.0-r0" in installed and f"{STANDIN}-1.0.0-r0" in installed, installed


@pytest.mark.parametrize("major", ["2", "3"])
def test_alpine_guide_without_the_key_step_is_refused(major, apk_generation, apk_clients, apk_key, tmp_path):
    """The control of the guide test: the same steps without the key download, and apk refuses our index."""
    apk = apk_clients.by_major()[major]
    root, env = alpine_host(tmp_path, apk, apk_clients.v2)
    with serve(apk_generation) as url:
        steps = apkrepo.guide_steps(CHANNEL, url, apk_key.name)
        assert steps[0].endswith(f"/keys/{apk_key.name}")
        follow_steps(steps[1:2], root, env)
        with pytest.raises(AssertionError, match="UNTRUSTED signature"):
            follow_steps(steps[2:3], root, env)
    assert not (root / "usr/bin/endura-sensor").exists()
