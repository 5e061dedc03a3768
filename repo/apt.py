"""The apt repository: one suite per channel, a pool shared by all suites, built with apt-ftparchive.

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
"""
from __future__ import annotations

import gzip
import io
import lzma
import os
from pathlib import Path

from repo import indexcache, layout, sign
from repo.sign import RepoKeys
from toolbox import log
from toolbox.run import output


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
    for hash_name in layout.APT_HASHES:
        for digest, _size, rel in layout.release_checksums(release_text, hash_name):
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
    for hash_name in layout.APT_HASHES:
        for digest, _size, rel in layout.release_checksums(release_text, hash_name):
            out.append(f"{os.path.dirname(rel)}/by-hash/{hash_name}/{digest}")
    return out


def packages_index(apt_root: Path, arch: str, wanted: dict[str, tuple[str, int]], db: Path | None) -> str:
    """The `Packages` text of the pool's .debs named in `wanted` (`{Filename: (sha256, size)}`) for `arch`.

    With `db`, apt-ftparchive reuses the hashes it cached for unchanged files (see `repo.indexcache`);
    the result is checked against `wanted`, and built again with an emptied cache if they differ."""
    if not (apt_root / "pool").is_dir():
        return ""
    argv = layout.packages_argv(arch)
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


def release_suite(apt_root: Path, channel: str, keys: RepoKeys, *, date: int, valid_until: int,
                  arches: list[str]) -> str:
    """Over the suite's indexes: Release (apt-ftparchive), InRelease and Release.gpg signed at `date`, by-hash links."""
    suite = apt_root.parent / layout.apt_suite_dir(channel)
    release_text = output(layout.release_argv(channel, date=date, valid_until=valid_until, arches=arches), cwd=apt_root) + "\n"
    (suite / "Release").write_text(release_text)
    sign.clearsign(keys, suite / "Release", suite / "InRelease", epoch=date)
    sign.detached(keys, suite / "Release", suite / "Release.gpg", epoch=date)
    set_mtime(suite, date)
    link_by_hash(suite, release_text)
    return release_text


def build_suite(gen: Path, channel: str, entries: list[dict], keys: RepoKeys, *, date: int, valid_until: int,
                base_url: str, previous_suites: list[Path]) -> Path:
    """Write dists/<channel>/ (indexes, Release, InRelease, Release.gpg, by-hash) and the .sources file.

    The .debs must already be in the generation's pool."""
    apt_root = gen / "apt"
    suite = gen / layout.apt_suite_dir(channel)
    suite.mkdir(parents=True, exist_ok=True)
    debs = [e for e in entries if e["family"] == "deb"]
    arches = sorted({layout.DEB_ARCH[e["arch"]] for e in debs} or set(layout.DEB_ARCH.values()))
    with indexcache.apt_db(gen) as db:
        for arch in arches:
            wanted = {layout.deb_pool_path(e["file"]).removeprefix("apt/"): (e["sha256"], int(e["size"]))
                      for e in debs if layout.DEB_ARCH[e["arch"]] == arch}
            packages = packages_index(apt_root, arch, wanted, db).encode()
            binary = suite / layout.APT_COMPONENT / f"binary-{arch}"
            _write(binary / "Packages", packages)
            _write(binary / "Packages.gz", gzip_bytes(packages))
            _write(binary / "Packages.xz", lzma.compress(packages, preset=6))
    release_suite(apt_root, channel, keys, date=date, valid_until=valid_until, arches=arches)
    carry_by_hash(suite, previous_suites)
    (apt_root / f"endura-{channel}.sources").write_text(layout.apt_sources(channel, base_url))
    return suite
