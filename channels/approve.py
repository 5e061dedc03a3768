"""`python3 -m channels.approve VERSION --reason "..."` (nox -s approve): sign off a version that is in testing.

The approval is an evidence record (`channels.evidence`, kind `approval`): who (ENDURA_ACTOR or git's
user.name/email), when, why, and the sha256 of every file of VERSION as the repository's `testing`
channel holds it. It is signed with the signing key and stored in the evidence store; `nox -s promote
-- stable` accepts it when it was made after VERSION entered testing and names the same bytes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from channels import evidence, records, rules
from channels.command import add_repo_root_option
from release import signing
from repo.generations import RepoRoot
from toolbox import log
from toolbox.errors import EnduraError, cli_main


def approve(repo_root: Path, version: str, reason: str) -> Path:
    if not reason.strip():
        raise EnduraError("an approval needs --reason \"...\" (what was tested, where): it is the record auditors read")
    rules.parse(version)
    root = RepoRoot(repo_root)
    current = root.current()
    if current is None:
        raise EnduraError(f"nothing is published in {root.path}; pass --repo-root of the repository to approve from")
    channels = root.state(current)["channels"]
    recs = records.read(root.dir(current))
    held = recs.channel("testing")
    if held is None or version not in rules.versions_in(channels.get("testing", [])):
        raise EnduraError(f"{version} is not in testing ({'it holds ' + held['version'] if held else 'testing is empty'}); "
                          f"approve a version after promoting it there ('nox -s promote -- testing {version}')")
    entries = [e for e in channels["testing"] if e["version"] == version]
    manifest = {"version": version, "artifacts": entries, "source": {}}
    record = evidence.make_record("approval", manifest, now=int(time.time()), who=evidence.actor(), reason=reason.strip(),
                                  extra={"channel": "testing", "generation": current})
    return evidence.write_record(record, evidence.evidence_dir(), signing.resolve_key())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m channels.approve", description=__doc__.split("\n")[0])
    p.add_argument("version")
    p.add_argument("--reason", required=True, help="what was tested and how (logged, signed)")
    add_repo_root_option(p)
    return p


def run_cli(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    path = approve(args.repo_root, args.version, args.reason)
    log.info(f"==> approved {args.version} for stable as {evidence.actor()}: {path}")
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
