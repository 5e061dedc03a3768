"""The Alpine (apk) repository: per channel and arch, the .apk files and a signed `APKINDEX.tar.gz`.

Layout in a generation (what `apk` expects below a repository URL `<base>/apk/<channel>`)::

    apk/<channel>/<x86_64|aarch64>/endura-sensor-<pkgver>-r0.apk   (apk fetches `<arch>/<name>-<version>.apk`)
    apk/<channel>/<x86_64|aarch64>/APKINDEX.tar.gz                   signed index (also when empty)
    keys/<keyname>.rsa.pub                                           the RSA public key, by the name the signature uses

On a client (Alpine), `guide_steps`::

    wget -q -O /etc/apk/keys/endura-dev.rsa.pub https://repo.endurasecurity.com/keys/endura-dev.rsa.pub
    echo https://repo.endurasecurity.com/apk/latest >> /etc/apk/repositories
    apk update
    apk add endura-sensor

The index is made by apk-tools' own `apk index` (v2, the format both apk 2 and apk 3 read; it checks
every package's signature against our key while reading it) and signed the way abuild-sign does: the
RSA signature of the whole gzip'ed index goes into a one-entry tar (`.SIGN.RSA256.<keyname>`, no
end-of-archive blocks), gzip'ed on its own, and prepended to the index: two concatenated gzip members.
apk verifies the signature over the bytes of the members that follow the first one. RSA256 (SHA-256)
is read by apk-tools >= 2.7 (2017) and by 3.x; abuild's default is still `RSA` (SHA-1).

`verify_channel` proves it with both real clients (apk-tools 2.14 and 3.0, see `families.apk.apktools`),
each with a fresh `--root` and a keys directory holding only the published key, never `--allow-untrusted`.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from families.base import PACKAGE, machine_arches
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.run import run

PACKAGE_NAME = PACKAGE
#: the package arches of the catalog, in apk's names: every channel has both
ARCHES = tuple(machine_arches())
#: the package release of our builds (`-r0`)
RELEASE = "0"
INDEX = "APKINDEX.tar.gz"
UNSIGNED_INDEX = "APKINDEX.unsigned.tar.gz"
#: `.SIGN.<type>.<keyname>`: RSA256 = RSA PKCS#1 v1.5 over SHA-256 (`RSA` would be SHA-1)
SIGNATURE_TYPE = "RSA256"
DIGEST = {"RSA": "-sha1", "RSA256": "-sha256", "RSA512": "-sha512"}
KEYS_DIR = "keys"
TAR_BLOCK = 512
CLIENT_TIMEOUT = 300


# --- paths -----------------------------------------------------------------------------------------


def channel_dir(channel: str, package_arch: str) -> str:
    """`apk/<channel>/<arch>`: the directory of one arch; the repository URL is its parent."""
    return f"apk/{channel}/{package_arch}"


def repository_path(channel: str) -> str:
    """What a client's /etc/apk/repositories line points at, below the base URL."""
    return f"apk/{channel}"


def repository_url(base_url: str, channel: str) -> str:
    return f"{base_url.rstrip('/')}/{repository_path(channel)}"


def key_path(key_name: str) -> str:
    """`keys/<keyname>.rsa.pub`: the public key, by the file name the signatures name."""
    if not key_name.endswith(".rsa.pub") or "/" in key_name:
        raise EnduraError(f"apk key name {key_name!r} must be a plain file name ending in .rsa.pub "
                          "(apk looks the signature's key up by that name in /etc/apk/keys/); set ENDURA_APK_KEY_NAME")
    return f"{KEYS_DIR}/{key_name}"


def published_name(entry: dict) -> str:
    """The file name apk fetches: `<name>-<pkgver>-r0.apk` (the build's file name without the arch)."""
    file, arch = entry["file"], entry["package_arch"]
    suffix = f".{arch}.apk"
    if entry.get("family") != "apk" or not file.endswith(suffix):
        raise EnduraError(f"{file} is not an apk build artifact named <name>-<version>-r<N>.{arch}.apk; "
                          "rebuild it with 'nox -s package -- --format apk'")
    return file[: -len(suffix)] + ".apk"


def artifact_path(channel: str, entry: dict) -> str:
    """Relative path of a manifest artifact (family apk) in a generation. Its file name is not the build's:
    apk fetches `<arch>/<name>-<version>.apk`, so the `.x86_64`/`.aarch64` of the build's name goes."""
    return f"{channel_dir(channel, entry['package_arch'])}/{published_name(entry)}"


def pkgver(version) -> str:
    """apk pkgver: `1.2.3`, `1.2.3_rc1`, dev after 1.2.3 → `1.2.3_git5`, after rc.2 → `1.2.3_rc2_git5`."""
    base = version.tag_version
    text = base.core
    if base.pre is not None:
        text += f"_{base.pre.kind}{base.pre.number}"
    if version.dev is not None:
        text += f"_git{version.dev}"
    return text


def package_version(version) -> str:
    """The apk version of a build as apk prints it (`1.2.3_rc1-r0`), from its `release.version.Version`
    (handed in: families import nothing above toolbox)."""
    return f"{pkgver(version)}-r{RELEASE}"


# --- building and signing the index --------------------------------------------------------------------


def description(channel: str) -> str:
    return f"Endura Runtime Sensor ({channel})"


def index_argv(apk: Path, *, root: Path, keys_dir: Path, output: str, channel: str, packages: list[str]) -> list[str]:
    """`apk index` (v2) over the package files of one directory (run there), checking each package's
    signature with only our key (`--keys-dir`); no warnings about python3/libbpf, which Alpine provides."""
    return [str(apk), "--root", str(root), "--keys-dir", str(keys_dir), "--no-progress", "index", "--no-warnings",
            "--description", description(channel), "-o", output, *packages]


def signature_name(key_name: str, sig_type: str = SIGNATURE_TYPE) -> str:
    """The tar entry apk reads the signature from: `.SIGN.RSA256.endura-dev.rsa.pub`."""
    if sig_type not in DIGEST:
        raise EnduraError(f"unknown apk signature type {sig_type!r}; use one of {', '.join(DIGEST)}")
    return f".SIGN.{sig_type}.{key_name}"


def sign_argv(private_key: Path, data: Path, out: Path, sig_type: str = SIGNATURE_TYPE) -> list[str]:
    """abuild-sign's `openssl dgst -sha256 -sign KEY -out SIG INDEX` (RSA PKCS#1 v1.5, deterministic)."""
    return ["openssl", "dgst", DIGEST[sig_type], "-sign", str(private_key), "-out", str(out), str(data)]


def signature_segment(name: str, signature: bytes, *, mtime: int) -> bytes:
    """The gzip member abuild-sign prepends: a ustar entry `name` holding `signature` (root:root, 0644,
    `mtime`), padded to 512 bytes, WITHOUT the two end-of-archive blocks (apk reads the index's tar
    on from there), compressed alone (gzip -n: no name, no time in the gzip header)."""
    info = tarfile.TarInfo(name)
    info.size = len(signature)
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    body = signature + b"\0" * (-len(signature) % TAR_BLOCK)
    return gzip.compress(header + body, compresslevel=9, mtime=0)


def split_signed(data: bytes) -> tuple[bytes, bytes]:
    """(the first gzip member, decompressed: the signature tar; the rest: the signed index's bytes)."""
    member = zlib.decompressobj(wbits=31)
    tar = member.decompress(data)
    if not member.eof:
        raise EnduraError("the signed APKINDEX.tar.gz ends inside its first gzip member; rebuild the index")
    return tar, member.unused_data


def read_signature_tar(tar: bytes) -> tuple[str, bytes]:
    """(entry name, signature) of a signature segment's tar; it must hold exactly one entry and no end blocks."""
    info = tarfile.TarInfo.frombuf(tar[:TAR_BLOCK], "utf-8", "strict")
    padded = TAR_BLOCK + info.size + (-info.size % TAR_BLOCK)
    if len(tar) != padded:
        raise EnduraError(f"the signature segment is {len(tar)} bytes, expected {padded} (one entry, no end blocks)")
    return info.name, tar[TAR_BLOCK:TAR_BLOCK + info.size]


def sign_index(unsigned: Path, signed: Path, apk_key, *, date: int, sig_type: str = SIGNATURE_TYPE) -> None:
    """Write `signed` = signature segment + `unsigned`'s bytes (abuild-sign's result)."""
    sig = unsigned.with_name(unsigned.name + ".sig")
    try:
        run(sign_argv(apk_key.private, unsigned, sig, sig_type),
            hint=f"the apk RSA private key {apk_key.private} must be an unencrypted PEM RSA key")
        segment = signature_segment(signature_name(apk_key.name, sig_type), sig.read_bytes(), mtime=date)
    finally:
        sig.unlink(missing_ok=True)
    tmp = signed.with_name(f".{signed.name}.tmp")
    tmp.write_bytes(segment + unsigned.read_bytes())
    os.chmod(tmp, 0o644)
    os.utime(tmp, (date, date))
    os.replace(tmp, signed)


def publish_key(gen: Path, apk_key) -> Path:
    """Copy the RSA public key to `keys/<keyname>` of the generation (what clients download)."""
    dest = gen / key_path(apk_key.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        shutil.copyfile(apk_key.public, dest)
        os.chmod(dest, 0o644)
    return dest


def build_channel(gen: Path, channel: str, entries: list[dict], apk_key, *, date: int, apk: Path | None = None) -> list[Path]:
    """Index and sign `apk/<channel>/<arch>/` for every catalog arch; the packages are already placed there
    (`artifact_path`). An arch without a package gets an empty, still signed, index. Output is the same
    bytes for the same packages, key and `date` (the tar entries' mtime)."""
    if apk is None:
        from families.apk import apktools

        apk = apktools.build("2")
    publish_key(gen, apk_key)
    dirs = []
    with tempfile.TemporaryDirectory(prefix="endura-apk-index-") as tmp:
        keys_dir, root = Path(tmp) / "keys", Path(tmp) / "root"
        keys_dir.mkdir()
        root.mkdir()
        shutil.copyfile(apk_key.public, keys_dir / apk_key.name)
        for arch in ARCHES:
            directory = gen / channel_dir(channel, arch)
            directory.mkdir(parents=True, exist_ok=True)
            packages = sorted(published_name(e) for e in entries if e["family"] == "apk" and e["package_arch"] == arch)
            missing = [p for p in packages if not (directory / p).is_file()]
            if missing:
                raise EnduraError(f"{', '.join(missing)} not placed in {directory}; place each package at "
                                  "families.apk.repository.artifact_path(channel, entry) before building the index")
            run(index_argv(apk, root=root, keys_dir=keys_dir, output=UNSIGNED_INDEX, channel=channel, packages=packages),
                cwd=directory, extra_env={"SOURCE_DATE_EPOCH": str(date)}, timeout=600,
                hint=f"every package must be a valid .apk signed by {apk_key.name}")
            sign_index(directory / UNSIGNED_INDEX, directory / INDEX, apk_key, date=date)
            (directory / UNSIGNED_INDEX).unlink()
            dirs.append(directory)
    return dirs


# --- verification with the real clients ------------------------------------------------------------------


def client_argv(apk: Path, root: Path, *, arch: str, keys_dir: Path, repositories_file: Path | str) -> list[str]:
    """One apk client bound to its own root, our keys only and our repository only (never --allow-untrusted)."""
    return [str(apk), "--root", str(root), "--arch", arch, "--keys-dir", str(keys_dir),
            "--repositories-file", str(repositories_file), "--no-progress", "--no-interactive"]


def initdb_argv(client: list[str]) -> list[str]:
    return [*client, "add", "--initdb"]


def update_argv(client: list[str]) -> list[str]:
    return [*client, "update"]


def fetch_argv(client: list[str], out: Path, package: str = PACKAGE_NAME) -> list[str]:
    """`apk fetch` checks the downloaded package against the signed index (its control digest `C:`)."""
    return [*client, "fetch", "--output", str(out), package]


def verify_argv(apk: Path, root: Path, keys_dir: Path, files: list[Path]) -> list[str]:
    """`apk verify` checks a package's own RSA signature against the keys directory."""
    return [str(apk), "--root", str(root), "--keys-dir", str(keys_dir), "verify", *map(str, files)]


def verify_package(apk: Path, package: Path, key_file: Path) -> None:
    """`apk verify` of one package file in a scratch root whose keys directory holds only `key_file`."""
    with tempfile.TemporaryDirectory(prefix="endura-apk-verify-") as tmp:
        keys_dir, root = Path(tmp) / "keys", Path(tmp) / "root"
        keys_dir.mkdir()
        root.mkdir()
        shutil.copyfile(key_file, keys_dir / key_file.name)
        init = client_argv(apk, root, arch=ARCHES[0], keys_dir=keys_dir, repositories_file="/dev/null")
        _check(run(initdb_argv(init), check=False, timeout=CLIENT_TIMEOUT), "apk add --initdb")
        _check(run(verify_argv(apk, root, keys_dir, [package]), check=False, timeout=CLIENT_TIMEOUT),
               f"apk verify {package.name} with {key_file.name}")


_AVAILABLE = re.compile(r"OK: (\d+) distinct packages available")
_PROBLEM = re.compile(r"^(WARNING|ERROR):", re.M)


def problem_line(proc) -> str:
    """The client's own complaint: its first `ERROR:`/`WARNING:` line, else its last line of output."""
    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    for line in text.splitlines():
        if _PROBLEM.match(line.strip()):
            return line.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _check(proc, what: str) -> None:
    text = (proc.stderr or "") + (proc.stdout or "")
    if proc.returncode != 0 or _PROBLEM.search(text):
        raise EnduraError(f"{what} failed (exit code {proc.returncode}): {problem_line(proc)}",
                          detail=text.strip()[-2000:])


def fetched_version(name: str, package: str = PACKAGE_NAME) -> str:
    """`endura-sensor-1.0.0_rc1-r0.apk` -> `1.0.0_rc1-r0`."""
    prefix = f"{package}-"
    if not (name.startswith(prefix) and name.endswith(".apk")):
        raise EnduraError(f"apk fetched {name!r}, not a {package} package")
    return name[len(prefix):-len(".apk")]


def published_keys(gen: Path, keys_dir: Path) -> list[str]:
    """Copy the generation's apk public keys (`keys/*.rsa.pub`) into `keys_dir`, nothing else."""
    keys = sorted((gen / KEYS_DIR).glob("*.rsa.pub"))
    if not keys:
        raise EnduraError(f"no apk key (*.rsa.pub) in {gen / KEYS_DIR}; build the apk channels first (build_channel publishes it)")
    keys_dir.mkdir(parents=True, exist_ok=True)
    for key in keys:
        shutil.copyfile(key, keys_dir / key.name)
    return [k.name for k in keys]


def verify_client(apk: Path, label: str, gen: Path, channel: str, url: str, workdir: Path, keys_dir: Path,
                  expected_version: str | None) -> dict:
    """One client, per arch: a fresh root, `update` (index signature, package count), `fetch` (package against
    the index) and `verify` (package signature). Returns {arch: version fetched (or None: empty index)}."""
    workdir.mkdir(parents=True, exist_ok=True)
    repos = workdir / "repositories"
    repos.write_text(repository_url(url, channel) + "\n")
    result: dict = {}
    for arch in ARCHES:
        root = workdir / f"root-{arch}"
        root.mkdir(parents=True)
        client = client_argv(apk, root, arch=arch, keys_dir=keys_dir, repositories_file=repos)
        wanted = len(list((gen / channel_dir(channel, arch)).glob("*.apk")))
        init = client_argv(apk, root, arch=arch, keys_dir=keys_dir, repositories_file="/dev/null")
        _check(run(initdb_argv(init), check=False, timeout=CLIENT_TIMEOUT), f"{label} add --initdb ({arch})")
        proc = run(update_argv(client), check=False, timeout=CLIENT_TIMEOUT)
        _check(proc, f"{label} update of {repository_url(url, channel)} ({arch})")
        found = _AVAILABLE.search(proc.stdout + proc.stderr)
        if not found or int(found.group(1)) != wanted:
            raise EnduraError(f"{label} update of channel {channel} ({arch}) reports "
                              f"{found.group(0) if found else problem_line(proc)!r}, expected {wanted} packages")
        if not wanted:
            result[arch] = None
            continue
        out = workdir / f"fetched-{arch}"
        out.mkdir()
        _check(run(fetch_argv(client, out), check=False, timeout=CLIENT_TIMEOUT), f"{label} fetch {PACKAGE_NAME} ({arch})")
        files = sorted(out.glob("*.apk"))
        if len(files) != 1:
            raise EnduraError(f"{label} fetch {PACKAGE_NAME} ({arch}) left {[f.name for f in files]} in {out}, expected one package")
        _check(run(verify_argv(apk, root, keys_dir, files), check=False, timeout=CLIENT_TIMEOUT),
               f"{label} verify {files[0].name} ({arch})")
        got = fetched_version(files[0].name)
        # the version is checked where the channel holds it for this arch (a build need not carry every arch)
        holds_expected = expected_version and (gen / channel_dir(channel, arch) / f"{PACKAGE_NAME}-{expected_version}.apk").exists()
        if holds_expected and got != expected_version:
            raise EnduraError(f"{label} fetched {PACKAGE_NAME} {got} from channel {channel} ({arch}), expected {expected_version}")
        result[arch] = got
    return result


def verify_channel(gen: Path, channel: str, url: str, workdir: Path, *, expected_version: str | None,
                   clients=None) -> dict:
    """apk-tools 2 and 3 against `gen` served at `url`: see `verify_client`. `expected_version` is the apk
    version of the build (`package_version(semver)`, e.g. `1.0.0-r0`). Uses `workdir/apk-keys`, `workdir/apk2`
    and `workdir/apk3` (emptied first, left for inspection). Raises EnduraError with the client's own error line;
    returns {"apk2": {"client": "2.14.10", "x86_64": "1.0.0-r0", "aarch64": ...}, "apk3": ...}."""
    if clients is None:
        from families.apk import apktools

        clients = apktools.clients()
    from families.apk.apktools import version

    keys_dir = workdir / "apk-keys"
    for sub in (keys_dir, *(workdir / f"apk{major}" for major in clients.by_major())):
        shutil.rmtree(sub, ignore_errors=True)  # fresh roots: nothing cached from an earlier run
    published_keys(gen, keys_dir)
    result: dict = {}
    for major, apk in clients.by_major().items():
        label = f"apk-tools {version(apk)}"
        with log.step(f"{label}: update, fetch and verify channel {channel} from {url}"):
            per_arch = verify_client(apk, label, gen, channel, url, workdir / f"apk{major}", keys_dir, expected_version)
        result[f"apk{major}"] = {"client": label.split()[-1], **per_arch}
    return result


# --- the install guide ---------------------------------------------------------------------------------------

#: where Alpine's apk reads its trusted keys and its repository list
APK_KEYS = "/etc/apk/keys"
APK_REPOSITORIES = "/etc/apk/repositories"


def guide_steps(channel: str, base_url: str, key_name: str) -> list[str]:
    """The Alpine install steps, one shell command each, run as root on the host: the key into
    /etc/apk/keys/ (under the name its signatures use), the channel's repository appended to
    /etc/apk/repositories, then `apk update` and `apk add`. busybox's wget fetches (Alpine has no curl by
    default); a `file://` base URL (an offline mirror) is copied with `install` and listed as a path.
    The sensor's python3 and libbpf come from Alpine's own repositories."""
    base = base_url.rstrip("/")
    key = key_path(key_name)
    dest = f"{APK_KEYS}/{key_name}"
    if base.startswith("file://"):
        local = base.removeprefix("file://")
        fetch_key = f"install -D -m 0644 {local}/{key} {dest}"
        repository = f"{local}/{repository_path(channel)}"
    else:
        fetch_key = f"wget -q -O {dest} {base}/{key}"
        repository = repository_url(base, channel)
    return [fetch_key, f"echo {repository} >> {APK_REPOSITORIES}", "apk update", f"apk add {PACKAGE_NAME}"]
