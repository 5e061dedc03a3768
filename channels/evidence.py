"""Evidence records: signed statements that a build passed a test suite, or was approved by a person.

A record is a JSON file plus its armored detached signature (`<name>.json.asc`), made with the
signing key (`ENDURA_SIGNING_KEY` or the development key) and kept in the evidence store
(`ENDURA_EVIDENCE_DIR`, default `build/evidence/<version>/`). It names the build by its artifacts'
sha256 (from the build's manifest), so the promotion gates compare it with the bytes in the
repository, not with a version string. Who writes which kind:

| kind | written by | what it says |
|---|---|---|
| `sensor-tests` | `nox -s tests` (full run: pytest + tox on Python 3.9-3.13) | the build's commit passed the test suite |
| `e2e-tests` | `nox -s vmtest` | the build's own .deb, installed in kernel VMs, enforced (EPERM / SIGKILL) |
| `approval` | `nox -s approve -- <version> --reason "..."` | a person signed off after manual testing in `testing` |

A test session records evidence only for a build of the exact commit it tested (manifest `source`,
checkout clean); with no such build in `dist/` it says so and records nothing. A failing run is never
evidence: the JUnit report must show tests and no failures or errors.

    python3 -m channels.evidence record sensor-tests --dist dist/1.2.3 --junit build/test-results/pytest.xml
    python3 -m channels.evidence record sensor-tests --for-head --junit ...   # what the sessions run
    python3 -m channels.evidence list [VERSION]
"""
from __future__ import annotations

import argparse
import dataclasses
import getpass
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from channels.policy import EVIDENCE_KINDS
from release import signing
from release.version import source_commit
from toolbox import gpg, log
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP as REPO
from toolbox.files import sha256_file
from toolbox.run import CommandFailed, output

SCHEMA = 1


def evidence_dir() -> Path:
    configured = os.environ.get("ENDURA_EVIDENCE_DIR", "").strip()
    return Path(configured) if configured else REPO / "build" / "evidence"


def actor() -> str:
    """Who is acting: ENDURA_ACTOR, else git's user.name <user.email>, else user@host."""
    configured = os.environ.get("ENDURA_ACTOR", "").strip()
    if configured:
        return configured
    try:
        name = output(["git", "-C", str(REPO), "config", "user.name"]).strip()
        email = output(["git", "-C", str(REPO), "config", "user.email"]).strip()
        if name:
            return f"{name} <{email}>" if email else name
    except (CommandFailed, EnduraError):
        pass
    return f"{getpass.getuser()}@{socket.gethostname()}"


# --- making records -------------------------------------------------------------------------------


def junit_counts(path: Path) -> dict[str, int]:
    """tests/failures/errors/skipped summed over a JUnit XML report (pytest's and vmtest's)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise EnduraError(f"cannot read the JUnit report {path} ({exc}); pass the file the test run wrote") from None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: 0 for k in ("tests", "failures", "errors", "skipped")}
    for suite in suites:
        for k in counts:
            counts[k] += int(suite.get(k, "0") or 0)
    return counts


def check_passed(kind: str, counts: dict[str, int], junit: Path) -> None:
    if counts["tests"] == 0:
        raise EnduraError(f"{junit} records no tests; a run that tested nothing is not {kind} evidence")
    if counts["failures"] or counts["errors"]:
        raise EnduraError(f"{junit} records {counts['failures']} failure(s) and {counts['errors']} error(s); "
                          f"a failing run is not {kind} evidence: fix the failures and run the tests again")


def make_record(kind: str, manifest: dict, *, now: int, who: str, junit: dict | None = None,
                tested: Sequence[str] = (), reason: str | None = None, extra: dict | None = None) -> dict:
    if kind not in EVIDENCE_KINDS:
        raise EnduraError(f"unknown evidence kind {kind!r}; use one of {', '.join(EVIDENCE_KINDS)}")
    record = {
        "schema": SCHEMA, "kind": kind, "version": manifest["version"],
        "commit": manifest.get("source", {}).get("commit"),
        "artifacts": {a["file"]: a["sha256"] for a in manifest["artifacts"]},
        "time": now, "who": who, "host": socket.gethostname(),
    }
    if junit is not None:
        record["junit"] = junit
    if tested:
        record["tested"] = sorted(tested)
    if reason:
        record["reason"] = reason
    if extra:
        record.update(extra)
    return record


def write_record(record: dict, directory: Path, key: gpg.SigningKey) -> Path:
    """`<dir>/<version>/<kind>-<time>-<digest>.json` and its `.asc`; both written aside, the JSON renamed last."""
    body = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    name = f"{record['kind']}-{record['time']}-{hashlib.sha256(body).hexdigest()[:12]}.json"
    out = directory / record["version"] / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".evidence-", dir=out.parent) as tmp:
        staged = Path(tmp) / name
        staged.write_bytes(body)
        gpg.detached(key, staged, Path(tmp) / (name + ".asc"), epoch=max(record["time"], key.created), when="the record's time")
        os.replace(Path(tmp) / (name + ".asc"), out.with_name(name + ".asc"))
        os.replace(staged, out)
    return out


def record_for_build(kind: str, dist: Path, *, junit: Path | None = None, tested: Sequence[str] = (),
                     reason: str | None = None, extra: dict | None = None, now: int | None = None) -> Path:
    """Check the run passed and the build is intact, then sign and store the record; returns its path."""
    manifest_path = dist / "manifest.json"
    if not manifest_path.is_file():
        raise EnduraError(f"{dist} has no manifest.json; pass a build directory made by 'nox -s package' (dist/<version>/)")
    manifest = json.loads(manifest_path.read_text())
    for a in manifest["artifacts"]:
        path = dist / a["file"]
        if path.is_file() and sha256_file(path) != a["sha256"]:
            raise EnduraError(f"{path} does not match its sha256 in {manifest_path}; evidence must name the bytes "
                              "that were tested: rebuild with 'nox -s package'")
    counts = None
    if junit is not None:
        counts = junit_counts(junit)
        check_passed(kind, counts, junit)
    elif kind != "approval":
        raise EnduraError(f"{kind} evidence needs the run's JUnit report (--junit FILE)")
    key = signing.resolve_key()
    record = make_record(kind, manifest, now=int(now if now is not None else time.time()), who=actor(), junit=counts,
                         tested=tested, reason=reason, extra=extra)
    return write_record(record, evidence_dir(), key)


def build_of_head(dist_root: Path) -> tuple[Path | None, str]:
    """The newest build in `dist_root` made from the checked-out commit with a clean tree, or (None, why not)."""
    source = source_commit(REPO)
    if not source["commit"]:
        return None, f"{REPO} is not a git checkout"
    if source["dirty"]:
        return None, "the checkout has uncommitted changes (evidence is only recorded for a committed state)"
    builds = sorted(dist_root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for m in builds:
        got = json.loads(m.read_text()).get("source", {})
        if got.get("commit") == source["commit"] and got.get("dirty") is False:
            return m.parent, ""
    return None, f"no build of commit {source['commit'][:12]} in {dist_root} (build it first with 'nox -s package')"


# --- reading and checking records ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    path: Path
    data: dict

    @property
    def kind(self) -> str:
        return self.data.get("kind", "")

    @property
    def signature(self) -> Path:
        return self.path.with_name(self.path.name + ".asc")


def load_records(version: str, directory: Path | None = None) -> list[Record]:
    """Every record stored for `version` (unchecked; newest first). Unreadable files are returned with empty data."""
    folder = (directory or evidence_dir()) / version
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        found.append(Record(path, data if isinstance(data, dict) else {}))
    return sorted(found, key=lambda r: r.data.get("time", 0), reverse=True)


def check_record(record: Record, *, kind: str, version: str, published: dict[str, str], keyring: Path,
                 not_before: int | None = None) -> str | None:
    """Why `record` is not valid `kind` evidence for the `published` {file: sha256} of `version` (None: it is)."""
    data, name = record.data, record.path.name
    if data.get("kind") != kind:
        return f"{name} is {data.get('kind')!r} evidence, not {kind}"
    if data.get("version") != version:
        return f"{name} is for version {data.get('version')}, not {version}"
    if not record.signature.is_file():
        return f"{name} has no signature ({record.signature.name} missing)"
    try:
        gpg.verify_detached(keyring, record.path, record.signature)
    except EnduraError:
        return f"{name} fails its signature check against {keyring.name} (tampered, or signed by another key)"
    named = data.get("artifacts", {})
    overlap = sorted(set(named) & set(published))
    if not overlap:
        return f"{name} names none of the published files of {version} (it is about other artifacts)"
    for file in overlap:
        if named[file] != published[file]:
            return (f"{name} names {file} with sha256 {named[file][:16]}…, the repository holds "
                    f"{published[file][:16]}… (evidence for other bytes)")
    if not_before is not None and data.get("time", 0) < not_before:
        return f"{name} was made before {version} entered testing; approve it again after testing it there"
    return None


def find_valid(kind: str, version: str, published: dict[str, str], keyring: Path, *, directory: Path | None = None,
               not_before: int | None = None) -> tuple[Record | None, str]:
    """The newest valid record of `kind`, or (None, the reason: missing, or why each candidate failed)."""
    problems = []
    for record in load_records(version, directory):
        if record.kind != kind:
            continue
        problem = check_record(record, kind=kind, version=version, published=published, keyring=keyring,
                               not_before=not_before)
        if problem is None:
            return record, ""
        problems.append(problem)
    if not problems:
        return None, f"no {kind} evidence for {version} in {(directory or evidence_dir()) / version}"
    return None, f"no valid {kind} evidence for {version}: " + "; ".join(problems)


# --- the command ---------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m channels.evidence", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="sign and store a test run's evidence for a build")
    rec.add_argument("kind", choices=[k for k in EVIDENCE_KINDS if k != "approval"])
    which = rec.add_mutually_exclusive_group(required=True)
    which.add_argument("--dist", type=Path, help="the build directory dist/<version>/ that was tested")
    which.add_argument("--for-head", action="store_true",
                       help="the build in dist/ of the checked-out commit; records nothing (exit 0) when there is none")
    rec.add_argument("--dist-root", type=Path, default=REPO / "dist", help=argparse.SUPPRESS)
    rec.add_argument("--junit", type=Path, required=True, help="the run's JUnit XML report")
    rec.add_argument("--tested", action="append", default=[], help="a file of the build the run exercised (repeat)")
    ls = sub.add_parser("list", help="the stored records (checked against nothing; see 'nox -s channels')")
    ls.add_argument("version", nargs="?")
    return p


def _cli(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if args.command == "list":
        folders = [evidence_dir() / args.version] if args.version else sorted(p for p in evidence_dir().glob("*") if p.is_dir())
        for folder in folders:
            for r in load_records(folder.name):
                print(f"{folder.name}\t{r.kind}\t{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.data.get('time', 0)))}"
                      f"\t{r.data.get('who', '?')}\t{r.path}")
        return 0
    dist = args.dist
    if args.for_head:
        dist, why = build_of_head(args.dist_root)
        if dist is None:
            log.info(f"==> no {args.kind} evidence recorded: {why}")
            return 0
    path = record_for_build(args.kind, dist, junit=args.junit, tested=args.tested)
    log.info(f"==> recorded {args.kind} evidence for {dist.name}: {path}")
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
