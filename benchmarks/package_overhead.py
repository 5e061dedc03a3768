"""Benchmark: wall time of `nox -s package`, cold and warm, against the external tools it runs.

    python3 benchmarks/package_overhead.py [--runs 3]

cold = no nox virtualenv, no BPF objects, no development key (the pip download cache is kept);
warm = everything cached. The "bare tools" figure is the time spent inside the external commands
of the build (nfpm, gpg, rpmsign, ar, openssl, clang...) as measured by the process runner
(ENDURA_RUN_LOG), i.e. what the same work costs without our orchestration. Prints a table and JSON.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_package(out: Path, log: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(["nox", "-s", "package", "--", "--out", str(out)], cwd=REPO, check=True,
                   env={**env, "ENDURA_RUN_LOG": str(log)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def tool_seconds(log: Path) -> dict[str, float]:
    totals: dict[str, float] = collections.defaultdict(float)
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        totals[rec["tool"]] += rec["seconds"]
    return dict(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="endura-bench-") as tmp:
        cache = Path(tmp) / "cache"
        env = {**os.environ, "ENDURA_CACHE_DIR": str(cache)}
        for kind in ("cold", "warm"):
            walls, tools = [], []
            for i in range(args.runs if kind == "warm" else 1):
                if kind == "cold":
                    shutil.rmtree(REPO / ".nox" / "package", ignore_errors=True)
                    shutil.rmtree(REPO / "build" / "bpf", ignore_errors=True)
                    shutil.rmtree(cache, ignore_errors=True)
                log = Path(tmp) / f"{kind}-{i}.jsonl"
                walls.append(timed_package(Path(tmp) / f"dist-{kind}-{i}", log, env))
                tools.append(tool_seconds(log))
            best = min(range(len(walls)), key=walls.__getitem__)
            bare = tools[best]
            sign_pack = sum(v for k, v in bare.items() if k in ("nfpm", "gpg", "rpmsign", "ar", "openssl"))
            results[kind] = {"wall_s": round(walls[best], 2), "all_tools_s": round(sum(bare.values()), 2),
                             "nfpm_gpg_sign_s": round(sign_pack, 2),
                             "ratio_to_all_tools": round(walls[best] / sum(bare.values()), 2),
                             "ratio_to_nfpm_gpg": round(walls[best] / sign_pack, 2),
                             "per_tool_s": {k: round(v, 3) for k, v in sorted(bare.items())}}
        dist = next((Path(tmp) / "dist-warm-0").iterdir())
        results["dist_bytes"] = sum(p.stat().st_size for p in dist.iterdir())
    for kind in ("cold", "warm"):
        r = results[kind]
        print(f"{kind:5} wall {r['wall_s']:6.2f}s  tools {r['all_tools_s']:5.2f}s (nfpm+gpg+signing {r['nfpm_gpg_sign_s']:.2f}s)"
              f"  ratio {r['ratio_to_all_tools']:.2f}x / {r['ratio_to_nfpm_gpg']:.2f}x", file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
