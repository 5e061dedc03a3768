"""The apt repository of a generation and its check with apt itself: one suite per channel, a pool shared by all suites, built with apt-ftparchive.

Why apt-ftparchive (and not reprepro or aptly): it only *writes index files* from a directory, with
no database of its own. The publisher already owns the state (each generation's `generation.json`)
and builds every generation aside in a fresh directory, so a stateless index tool makes the
generation a pure function of (packages, date, key): reproducible, and atomic by construction
(nothing outside the new directory is touched). reprepro and aptly keep their own databases that
would have to be copied per generation and kept in step with ours, and both sign through their
own gpg calls, where apt-ftparchive leaves signing to us (SHA-256, signature time = Release Date).

What apt-ftparchive does not do is filled in here: `Packages` of one suite lists only that channel's
.debs (the stanzas of the shared pool are filtered by Filename), `.gz`/`.xz` variants, the
`by-hash/` copies that `Acquire-By-Hash: yes` announces (also the previous generations' ones, so a
client holding an older InRelease can still fetch its indexes after a switch), and the signatures.
apt-ftparchive's own cache db (`--db`) is used so that unchanged .debs are not re-read; the index is
checked against the manifests' sha256 (see `repo.indexcache`).

Verification (`verify_channel`): a throwaway Debian 12 root (a cached mmdebstrap tar, shared with the
tests) gets the generated `.sources` file (URIs pointed at loopback) and key, then `apt-get update
--error-on=any` (InRelease signature, Valid-Until, index hashes, for amd64 and arm64), `apt-get install
endura-sensor endura-archive-keyring` (the .deb hashes, dependencies resolved by Debian's own
python3/libbpf1), `endura-sensor --version`, and `apt-get download endura-sensor:arm64`.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import io
import lzma
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from families import indexcache
from families.base import KEY_FILE, LABEL, PACKAGE, copy_metadata
from families.clients import CHROOT_PATH, client_env
from toolbox import gpg, log
from toolbox.dates import rfc2822
from toolbox.errors import EnduraError
from toolbox.files import cache_dir
from toolbox.run import output, run
from toolbox.tools import require

ORIGIN = "Endura"
APT_COMPONENT = "main"
#: where the deb822 source's `Signed-By` points (the endura-archive-keyring .deb owns the file)
APT_KEYRING = "/etc/apt/keyrings/endura-archive-keyring.asc"
#: checksums in Packages and Release: SHA256 and SHA512 only (MD5/SHA1 are not trusted by apt)
APT_HASHES = ("SHA256", "SHA512")
DEBIAN_ROOT_TAR = "test-roots/bookworm-python3-libbpf1-v2.tar"


# --- paths and texts ----------------------------------------------------------------------------------


def apt_suite_dir(channel: str) -> str:
    return f"apt/dists/{channel}"


def deb_pool_path(file: str) -> str:
    name = file.split("_", 1)[0]
    return f"apt/pool/{APT_COMPONENT}/{name[0]}/{name}/{file}"


def apt_sources(channel: str, base_url: str) -> str:
    """deb822 source for /etc/apt/sources.list.d/endura-<channel>.sources (apt >= 1.1)."""
    return (
        f"Types: deb\n"
        f"URIs: {base_url.rstrip('/')}/apt\n"
        f"Suites: {channel}\n"
        f"Components: {APT_COMPONENT}\n"
        f"Signed-By: {APT_KEYRING}\n"
    )


def release_fields(text: str) -> dict[str, str]:
    """The single-line fields of a Release/InRelease file (checksum lists are skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("-----BEGIN PGP SIGNED"):
            continue
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            break
        m = re.match(r"^([A-Za-z0-9-]+):\s*(.*)$", line)
        if m and m.group(2):
            fields[m.group(1)] = m.group(2)
    return fields


def release_checksums(text: str, hash_name: str) -> list[tuple[str, int, str]]:
    """`(digest, size, path)` entries of one checksum list (e.g. `SHA256`) of a Release file."""
    out: list[tuple[str, int, str]] = []
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.rstrip() == f"{hash_name}:"
            continue
        if inside:
            digest, size, path = line.split()
            out.append((digest, int(size), path))
    return out


def apt_ftparchive_options(channel: str, *, date: int, valid_until: int, arches: Iterable[str]) -> list[str]:
    """`-o` options for `apt-ftparchive release`: our fields, SHA256+SHA512 only, by-hash announced."""
    opts = {
        "APT::FTPArchive::MD5": "false",
        "APT::FTPArchive::SHA1": "false",
        "APT::FTPArchive::SHA256": "true",
        "APT::FTPArchive::SHA512": "true",
        "APT::FTPArchive::Release::Origin": ORIGIN,
        "APT::FTPArchive::Release::Label": LABEL,
        "APT::FTPArchive::Release::Suite": channel,
        "APT::FTPArchive::Release::Codename": channel,
        "APT::FTPArchive::Release::Architectures": " ".join(sorted(arches)),
        "APT::FTPArchive::Release::Components": APT_COMPONENT,
        "APT::FTPArchive::Release::Description": f"{LABEL} packages, channel {channel}",
        "APT::FTPArchive::Release::Acquire-By-Hash": "yes",
        "APT::FTPArchive::Release::Date": rfc2822(date),
        # apt-ftparchive writes Valid-Until only when ValidTime is set; the exact value is ours
        "APT::FTPArchive::Release::ValidTime": str(max(1, valid_until - date)),
        "APT::FTPArchive::Release::Valid-Until": rfc2822(valid_until),
    }
    args: list[str] = []
    for key, value in opts.items():
        args += ["-o", f"{key}={value}"]
    return args


def packages_argv(arch: str) -> list[str]:
    """`apt-ftparchive packages` for one architecture, run from the `apt/` directory."""
    return ["apt-ftparchive", "-o", "APT::FTPArchive::MD5=false", "-o", "APT::FTPArchive::SHA1=false",
            "--arch", arch, "packages", f"pool/{APT_COMPONENT}"]


def release_argv(channel: str, *, date: int, valid_until: int, arches: Iterable[str]) -> list[str]:
    """`apt-ftparchive release` for one suite, run from the `apt/` directory."""
    return ["apt-ftparchive", *apt_ftparchive_options(channel, date=date, valid_until=valid_until, arches=arches),
            "release", apt_suite_dir(channel).removeprefix("apt/")]


def point_at(text: str, base_url: str) -> str:
    """The generated .sources file with its URIs pointed at `base_url` (a loopback server, a mirror)."""
    return re.sub(r"^(URIs: )\S+?/apt$", lambda m: f"{m.group(1)}{base_url}/apt", text, flags=re.M)


# --- building the suite ---------------------------------------------------------------------------------


def set_mtime(directory: Path, epoch: int) -> None:
    """Give this generation's new files (not hardlinks of older ones) the Release Date as mtime.

    Web servers answer If-Modified-Since (and build ETags) from the mtime; two publishes within the
    same second would otherwise leave the new InRelease "not modified" for clients of the previous
    one. The Date strictly increases between generations, so the mtimes do too."""
    for path in directory.rglob("*"):
        if path.is_file() and "by-hash" not in path.parts:
            os.utime(path, (epoch, epoch))


def filter_packages(text: str, filenames: set[str]) -> str:
    """Keep the stanzas of `apt-ftparchive packages` output whose Filename is in `filenames`, sorted."""
    kept: list[tuple[str, str]] = []
    for stanza in text.strip().split("\n\n"):
        if not stanza.strip():
            continue
        filename = next((line.split(":", 1)[1].strip() for line in stanza.splitlines() if line.startswith("Filename:")), "")
        if filename in filenames:
            kept.append((filename, stanza.strip() + "\n"))
    return "\n".join(s for _, s in sorted(kept))


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", filename="", mtime=0, compresslevel=9) as fh:
        fh.write(data)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def link_by_hash(suite: Path, release_text: str) -> list[str]:
    """Hardlink every index named in Release to `<its dir>/by-hash/<HASH>/<digest>`; returns the links."""
    links: list[str] = []
    for hash_name in APT_HASHES:
        for digest, _size, rel in release_checksums(release_text, hash_name):
            src = suite / rel
            if not src.exists():
                continue
            link = src.parent / "by-hash" / hash_name / digest
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.link(src, link)
            links.append(str(link.relative_to(suite)))
    return links


def carry_by_hash(suite: Path, previous_suites: list[Path]) -> int:
    """Hardlink by-hash files of previous generations (newest first) that are still referenced by their
    own Release files, so clients that read an older InRelease during a switch still find their indexes."""
    carried = 0
    for old in previous_suites:
        release = old / "Release"
        if not release.exists():
            continue
        for rel in link_targets(release.read_text()):
            src, dst = old / rel, suite / rel
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
                carried += 1
    return carried


def link_targets(release_text: str) -> list[str]:
    out = []
    for hash_name in APT_HASHES:
        for digest, _size, rel in release_checksums(release_text, hash_name):
            out.append(f"{os.path.dirname(rel)}/by-hash/{hash_name}/{digest}")
    return out


def packages_index(apt_root: Path, arch: str, wanted: dict[str, tuple[str, int]], db: Path | None) -> str:
    """The `Packages` text of the pool's .debs named in `wanted` (`{Filename: (sha256, size)}`) for `arch`.

    With `db`, apt-ftparchive reuses the hashes it cached for unchanged files (see `repo.indexcache`);
    the result is checked against `wanted`, and built again with an emptied cache if they differ."""
    if not (apt_root / "pool").is_dir():
        return ""
    argv = packages_argv(arch)
    if db is not None:  # AlwaysStat: an entry is reused only while the file's mtime and size are unchanged (default: never re-read)
        argv = [argv[0], "--db", str(db), "-o", "APT::FTPArchive::AlwaysStat=true", *argv[1:]]
    for attempt in (1, 2):
        text = filter_packages(output(argv, cwd=apt_root), set(wanted))
        problems = indexcache.differences(indexcache.packages_listed(text), wanted)
        if not problems:
            return text
        if db is None or attempt == 2:
            break
        log.warn(f"apt-ftparchive's cache {db} disagrees with the manifests ({problems[0]}); indexing again with an empty one")
        db.unlink(missing_ok=True)
    raise indexcache.mismatch_error(apt_root / "pool", problems)


def release_suite(apt_root: Path, channel: str, keys: gpg.Keys, *, date: int, valid_until: int,
                  arches: list[str]) -> str:
    """Over the suite's indexes: Release (apt-ftparchive), InRelease and Release.gpg signed at `date`, by-hash links."""
    suite = apt_root.parent / apt_suite_dir(channel)
    release_text = output(release_argv(channel, date=date, valid_until=valid_until, arches=arches), cwd=apt_root) + "\n"
    (suite / "Release").write_text(release_text)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # the two gpg runs side by side
        signed = [pool.submit(gpg.clearsign, keys, suite / "Release", suite / "InRelease", epoch=date),
                  pool.submit(gpg.detached, keys, suite / "Release", suite / "Release.gpg", epoch=date)]
        for future in signed:
            future.result()
    set_mtime(suite, date)
    link_by_hash(suite, release_text)
    return release_text


def build_suite(gen: Path, channel: str, entries: list[dict], keys: gpg.Keys, *, date: int, valid_until: int,
                base_url: str, previous_suites: list[Path], package_arches: Iterable[str],
                cache: Path | None = None) -> Path:
    """Write dists/<channel>/ (indexes, Release, InRelease, Release.gpg, by-hash) and the .sources file.

    The .debs must already be in the generation's pool."""
    apt_root = gen / "apt"
    suite = gen / apt_suite_dir(channel)
    suite.mkdir(parents=True, exist_ok=True)
    debs = [e for e in entries if e["family"] == "deb"]
    arches = sorted({e["arch"] for e in debs} or set(package_arches))  # ours are Debian's names
    with indexcache.apt_db(cache) as db:
        for arch in arches:
            wanted = {deb_pool_path(e["file"]).removeprefix("apt/"): (e["sha256"], int(e["size"]))
                      for e in debs if e["arch"] == arch}
            packages = packages_index(apt_root, arch, wanted, db).encode()
            binary = suite / APT_COMPONENT / f"binary-{arch}"
            _write(binary / "Packages", packages)
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # zlib and lzma work outside the GIL
                xz = pool.submit(lzma.compress, packages, preset=6)
                _write(binary / "Packages.gz", gzip_bytes(packages))
                _write(binary / "Packages.xz", xz.result())
    release_suite(apt_root, channel, keys, date=date, valid_until=valid_until, arches=arches)
    carry_by_hash(suite, previous_suites)
    (apt_root / f"endura-{channel}.sources").write_text(apt_sources(channel, base_url))
    return suite


# --- an offline bundle --------------------------------------------------------------------------------


def resign_apt_suite(gen: Path, out: Path, channel: str, keys: gpg.Keys, *, date: int, valid_until: int) -> None:
    """The suite's indexes as published, with a new Release (Date, Valid-Until) signed by the repository key."""
    suite = apt_suite_dir(channel)
    published = (gen / suite / "Release").read_text()
    for _digest, _size, rel in release_checksums(published, "SHA256"):
        if (gen / suite / rel).exists():
            copy_metadata(gen / suite / rel, out / suite / rel)
    arches = release_fields(published)["Architectures"].split()
    release_suite(out / "apt", channel, keys, date=date, valid_until=valid_until, arches=arches)


# --- the check with apt -------------------------------------------------------------------------------


def debian_root_tar() -> Path:
    """The cached Debian 12 minbase root (python3, libbpf1) shared with the tests; built once."""
    cached = cache_dir() / DEBIAN_ROOT_TAR
    if not cached.exists():
        require("mmdebstrap")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        with log.step(f"creating the Debian 12 verification root {cached} (once)"):
            run(["mmdebstrap", "--variant=minbase", "--format=tar", "--include=python3,libbpf1", "bookworm", str(tmp)],
                timeout=900)
        os.replace(tmp, cached)
    return cached


def extract_debian_root(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    run(["tar", "-C", str(dest), "-xf", str(debian_root_tar())], timeout=600)
    return dest


def chroot(root: Path, *argv: str, check: bool = True, timeout: float = 600):
    return run(["chroot", str(root), *argv], env=client_env(CHROOT_PATH), check=check, timeout=timeout)


def configure_apt(root: Path, sources_text: str, key_file: Path, base_url: str, *, name: str = "endura") -> None:
    """Make `root` use only our source (its Debian sources removed: no network beyond loopback)."""
    etc = root / "etc" / "apt"
    with contextlib.suppress(FileNotFoundError):
        (etc / "sources.list").unlink()
    for p in (etc / "sources.list.d").glob("*"):
        p.unlink()
    keyrings = etc / "keyrings"
    keyrings.mkdir(parents=True, exist_ok=True)
    dest = root / APT_KEYRING.lstrip("/")
    shutil.copyfile(key_file, dest)
    os.chmod(dest, 0o644)
    (etc / "sources.list.d" / f"{name}.sources").write_text(point_at(sources_text, base_url))


def apt_get(root: Path, *args: str, check: bool = True):
    strict = ["--error-on=any"] if args[:1] == ("update",) else []  # warnings (e.g. a bad signature) fail too
    return chroot(root, "apt-get", "-q", "-y", *strict, *args, check=check)


def verify_apt(gen: Path, channel: str, url: str, workdir: Path, expected_version: Any = None) -> str:
    require("chroot", "tar")
    root = extract_debian_root(workdir / "debian-root")
    configure_apt(root, (gen / "apt" / f"endura-{channel}.sources").read_text(), gen / KEY_FILE, url)
    chroot(root, "dpkg", "--add-architecture", "arm64")
    apt_get(root, "update")
    apt_get(root, "install", "--no-install-recommends", PACKAGE, "endura-archive-keyring")
    installed = chroot(root, "endura-sensor", "--version").stdout.strip()
    if expected_version and installed != f"endura-sensor {expected_version}":
        raise EnduraError(f"apt installed '{installed}' from channel {channel}, expected endura-sensor {expected_version}")
    arm64 = gen / apt_suite_dir(channel) / APT_COMPONENT / "binary-arm64" / "Packages"
    if arm64.exists() and arm64.stat().st_size:
        # downloads and checks the .deb against the signed index (it cannot be installed on amd64)
        chroot(root, "sh", "-c", "cd /tmp && apt-get -q download endura-sensor:arm64")
    return installed


