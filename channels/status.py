"""`python3 -m channels` (nox -s channels): each channel's version and age, and what may be promoted, or why not.

    channel   version   since                  age       digests
    latest    1.2.3     2026-11-29 01:10 UTC   2h 5m     10 files
    testing   1.2.2     2026-11-27 09:00 UTC   2d 18h    10 files, same as latest's 1.2.2
    stable    1.2.1     ...

    eligible:
      testing <- 1.2.3: no: no e2e-tests evidence for 1.2.3 in build/evidence/1.2.3 (run 'nox -s vmtest ...')
      stable  <- 1.2.2: no: 1.2.2 has been in testing for 2d 18h; stable needs 7d of soak (4d 6h left)

The channel records are checked first (signatures, hash chain). `--json` gives the same as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from channels import records, rules
from channels.command import add_repo_root_option
from channels.policy import format_duration, load_policy
from channels.promote import lookup_in
from repo import layout
from repo.generations import RepoRoot
from toolbox.errors import EnduraError, cli_main


def _when(epoch: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch)) if epoch else "-"


def published_at(root: RepoRoot, version: str) -> int | None:
    """The Date of the kept generation that published `version` into latest (None once that one is pruned)."""
    for number in root.numbers():
        state = root.state(number)
        published = state.get("published") or {}
        if published.get("channel") == "latest" and published.get("version") == version:
            return state.get("date")
    return None


def status(repo_root: Path, *, policy_path: Path | None = None, evidence_dir: Path | None = None,
           now: int | None = None) -> dict:
    root = RepoRoot(repo_root)
    current = root.current()
    if current is None:
        raise EnduraError(f"nothing is published in {root.path}; publish a build first ('nox -s publish') or pass --repo-root")
    now = int(now if now is not None else time.time())
    base, gen = root.state(current), root.dir(current)
    channels = base["channels"]
    latest_digests = {e["file"]: e["sha256"] for e in channels.get("latest", [])}
    recs = records.read(gen)
    policy = load_policy(policy_path)
    out: dict = {"repo_root": str(root.path), "generation": current, "policy": policy.source, "channels": {},
                 "eligible": [], "log_entries": len(recs.entries)}
    for name in layout.CHANNELS:
        version = rules.current_version(recs, channels, name)
        if name == "latest":
            since = published_at(root, version) if version else None
        else:
            held = recs.channel(name)
            since = held["since"] if held else None
        files = rules.digests(channels.get(name, []), version) if version else {}
        out["channels"][name] = {"version": version, "since": since, "age_seconds": (now - since) if since else None,
                                 "artifacts": files,
                                 # every file has the sha256 latest lists for it (checked at promotion; shown here)
                                 "same_as_latest": all(latest_digests.get(f) == d for f, d in files.items())}
    for name in layout.PROMOTED:
        source = rules.source_of(name)
        current_v = out["channels"][name]["version"]
        lookup = lookup_in(evidence_dir, channels, source, gen / layout.KEY_FILE)
        for version in reversed(rules.versions_in(channels.get(source, []))):
            if current_v is not None and not rules.parse(current_v) < rules.parse(version):
                break
            d = rules.evaluate(name, version, channels=channels, records=recs, policy=policy, now=now, lookup=lookup)
            out["eligible"].append({"channel": name, "version": version, "eligible": d.allowed, "why_not": d.refusals})
    return out


def render(result: dict) -> str:
    lines = [f"repository {result['repo_root']} (generation {result['generation']}), policy {result['policy']}", ""]
    lines.append(f"{'channel':<9} {'version':<28} {'since':<22} {'age':<9} artifacts")
    for name, c in result["channels"].items():
        age = format_duration(c["age_seconds"]) if c["age_seconds"] is not None else "-"
        n = len(c["artifacts"])
        same = ""
        if name != "latest" and c["artifacts"]:
            same = ", sha256 as published" if c["same_as_latest"] else ", DIFFERENT sha256 from latest"
        lines.append(f"{name:<9} {c['version'] or '(empty)':<28} {_when(c['since']):<22} {age:<9} {n} files{same}")
    lines += ["", "eligible for promotion:"]
    if not result["eligible"]:
        lines.append("  nothing newer to promote")
    for e in result["eligible"]:
        verdict = "yes" if e["eligible"] else "no: " + "; ".join(e["why_not"])
        lines.append(f"  {e['channel']:<7} <- {e['version']}: {verdict}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m channels", description=__doc__.split("\n")[0])
    add_repo_root_option(p)
    p.add_argument("--policy", type=Path, help="promotion policy (default channels/policy.toml)")
    p.add_argument("--evidence-dir", type=Path, help="evidence store (default $ENDURA_EVIDENCE_DIR or build/evidence)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run_cli(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    result = status(args.repo_root, policy_path=args.policy, evidence_dir=args.evidence_dir)
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else render(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
