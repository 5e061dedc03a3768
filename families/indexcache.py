"""What the index tools computed for the previous generation, reused: a publish costs what changed.

Every generation is built from scratch in a fresh directory (see `repo.generations`), so without a
cache every publish would re-read every package of the repository: apt-ftparchive hashes each .deb
(SHA256 + SHA512), createrepo_c reads each rpm header and checksums the file. Both tools can reuse
what they computed before, keyed by the file's path, size and mtime, and the packages of a new
generation are hardlinks of the previous one's (same path, same inode, same mtime):

- apt: `apt-ftparchive --db <repo-root>/cache/apt-ftparchive.db -o APT::FTPArchive::AlwaysStat=true`
  (without AlwaysStat, apt-ftparchive trusts an entry by path alone, forever). The db lives beside
  `generations/` (never served). A publish works on a copy (`*.tmp-<pid>`) and renames it over the
  db once the suites are built, so a killed publisher or apt-ftparchive never leaves a half-written
  db; the next publish removes the copy (`RepoRoot.remove_abandoned`, through `abandoned`).
- rpm: `createrepo_c --update --update-md-path <previous generation>/rpm/<channel>/<arch>`: the
  previous generation's metadata is only read.

A cache may only make an index faster, never wrong: equal path, size and mtime do not prove equal
bytes (a package rebuilt with the same name, size and SOURCE_DATE_EPOCH mtime after a failed or
rolled-back publish). So every index is checked against the sha256 and size that the build's
manifest recorded for each package (and `load_build` checked against the file): on a mismatch the
index is built again without the cache; a mismatch without a cache is an error. (A published file
modified in place is therefore refused when its mtime or size changed; one modified keeping both is
not re-read, and its index entry keeps the manifest's sha256: clients refuse the file.)
"""
from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from toolbox.errors import EnduraError

CACHE_DIR = "cache"
APT_DB = "apt-ftparchive.db"
#: a cache file being written by a publish (removed by the next publish if that one was killed)
TMP_MARK = ".tmp-"


def abandoned(root: Path) -> list[Path]:
    """Cache copies left by a killed publish."""
    directory = root / CACHE_DIR
    return sorted(directory.glob(f"*{TMP_MARK}*")) if directory.is_dir() else []


@contextlib.contextmanager
def apt_db(directory: Path | None) -> Iterator[Path | None]:
    """A private copy of the apt-ftparchive db in `directory` (the repository root's cache, handed in by the
    engine; None: no cache) for this build, renamed over the db when the block succeeds."""
    if directory is None:
        yield None
        return
    directory.mkdir(exist_ok=True)
    db = directory / APT_DB
    work = directory / f"{APT_DB}{TMP_MARK}{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        work.unlink()
    if db.exists():
        shutil.copyfile(db, work)
    try:
        yield work
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            work.unlink()
        raise
    if work.exists():
        os.replace(work, db)


# --- checking an index against the manifests ------------------------------------------------------


def expected(entries: list[dict], family: str, prefix: str, **match: str) -> dict[str, tuple[str, int]]:
    """`{index path: (sha256, size)}` of a channel's artifacts of one family (and e.g. package_arch)."""
    return {prefix + e["file"]: (e["sha256"], int(e["size"])) for e in entries
            if e["family"] == family and all(e.get(k) == v for k, v in match.items())}


def packages_listed(packages_text: str) -> dict[str, tuple[str, int]]:
    """`{Filename: (SHA256, Size)}` of the stanzas of an apt `Packages` file."""
    found: dict[str, tuple[str, int]] = {}
    for stanza in packages_text.split("\n\n"):
        fields: dict[str, str] = {m.group(1): m.group(2) for m in re.finditer(r"^(Filename|SHA256|Size):\s*(\S+)", stanza, re.M)}
        if "Filename" in fields:
            found[fields["Filename"]] = (fields.get("SHA256", ""), int(fields.get("Size", -1)))
    return found


def repodata_listed(repo_dir: Path) -> dict[str, tuple[str, int]]:
    """`{location href: (sha256, size)}` of the packages in `repo_dir/repodata`'s primary metadata."""
    repomd = (repo_dir / "repodata" / "repomd.xml").read_text()
    primary = re.search(r'<data type="primary">.*?<location href="([^"]+)"', repomd, re.S)
    if primary is None:
        raise EnduraError(f"{repo_dir / 'repodata/repomd.xml'} names no primary metadata; createrepo_c wrote an "
                          "unexpected repomd.xml: check its version (createrepo_c --version)")
    path = repo_dir / primary.group(1)
    opener: Any = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix)
    if opener is None:
        raise EnduraError(f"{path} is compressed in a way this check does not read; createrepo_c must write "
                          "gzip or xz primary metadata (its default is gzip)")
    with opener(path) as fh:
        text = fh.read().decode()
    # a scan of createrepo_c's own output for the three fields of each <package> (before its <format>,
    # where rpm provides and files start): 5x faster than ElementTree over every element of 1,000 packages
    found: dict[str, tuple[str, int]] = {}
    for chunk in text.split("<package ")[1:]:
        head = chunk.split("<format>", 1)[0]
        checksum, size, location = _CHECKSUM.search(head), _SIZE.search(head), _LOCATION.search(head)
        if location is None:
            raise EnduraError(f"{path} has a <package> without <location href>; createrepo_c wrote unexpected "
                              "primary metadata: check its version (createrepo_c --version)")
        digest = checksum.group(2) if checksum is not None and checksum.group(1) == "sha256" else ""
        found[_xml_unescape(location.group(1))] = (digest, int(size.group(1)) if size is not None else -1)
    return found


_CHECKSUM = re.compile(r'<checksum\b[^>]*\btype="([^"]*)"[^>]*>([^<]*)</checksum>')
_SIZE = re.compile(r'<size\b[^>]*\bpackage="(\d+)"')
_LOCATION = re.compile(r'<location\b[^>]*\bhref="([^"]*)"')


def _xml_unescape(value: str) -> str:
    """The five predefined XML entities (createrepo_c writes no others), `&amp;` last."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        value = value.replace(entity, char)
    return value


def differences(listed: dict[str, tuple[str, int]], wanted: dict[str, tuple[str, int]]) -> list[str]:
    """What an index says that the manifests do not (empty: the index is right)."""
    out = [f"{path} is missing" for path in sorted(wanted.keys() - listed.keys())]
    out += [f"{path} is not published here" for path in sorted(listed.keys() - wanted.keys())]
    out += [f"{path} has sha256 {listed[path][0][:16]}… size {listed[path][1]}, the manifest {wanted[path][0][:16]}… "
            f"size {wanted[path][1]}" for path in sorted(listed.keys() & wanted.keys()) if listed[path] != wanted[path]]
    return out


def mismatch_error(index: Path, problems: list[str]) -> EnduraError:
    return EnduraError(f"{index} does not match the published packages' manifests ({'; '.join(problems[:3])}"
                       f"{'; …' if len(problems) > 3 else ''}); a published file was modified in the repository "
                       "tree: restore it from its build (dist/<version>/) or publish a new version")
