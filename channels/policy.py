"""The promotion gates as data: `channels/policy.toml` (or `--policy FILE`), loaded into a frozen Policy."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import tomllib

from toolbox.errors import EnduraError

DEFAULT_POLICY = Path(__file__).resolve().parent / "policy.toml"
#: evidence kinds and who writes them (see channels.evidence)
EVIDENCE_KINDS = ("sensor-tests", "e2e-tests", "approval")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True)
class Policy:
    testing_evidence: tuple[str, ...] = ("sensor-tests", "e2e-tests")
    stable_soak: int = 7 * 86400
    stable_approval: bool = True
    source: str = "built-in defaults"


def parse_duration(text: str, *, where: str = "duration") -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(text))
    if not m:
        raise EnduraError(f"{where} {text!r} is not a duration; write e.g. \"30s\", \"15m\", \"12h\" or \"7d\"")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def load_policy(path: Path | None = None) -> Policy:
    path = Path(path) if path else DEFAULT_POLICY
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EnduraError(f"promotion policy {path} not found; pass --policy FILE or restore channels/policy.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise EnduraError(f"promotion policy {path} is not valid TOML ({exc}); fix it (see channels/policy.toml)") from None
    unknown = set(data) - {"testing", "stable"}
    if unknown:
        raise EnduraError(f"promotion policy {path} has unknown section(s) {', '.join(sorted(unknown))}; "
                          "only [testing] and [stable] exist")
    testing, stable = data.get("testing", {}), data.get("stable", {})
    for section, allowed, table in (("testing", {"evidence"}, testing), ("stable", {"soak", "approval"}, stable)):
        extra = set(table) - allowed
        if extra:
            raise EnduraError(f"promotion policy {path}: unknown key(s) {', '.join(sorted(extra))} in [{section}]; "
                              f"allowed: {', '.join(sorted(allowed))}")
    evidence = tuple(testing.get("evidence", Policy.testing_evidence))
    for kind in evidence:
        if kind not in EVIDENCE_KINDS or kind == "approval":
            raise EnduraError(f"promotion policy {path}: [testing] evidence {kind!r} is not a test evidence kind; "
                              "use sensor-tests and/or e2e-tests")
    approval = stable.get("approval", True)
    if not isinstance(approval, bool):
        raise EnduraError(f"promotion policy {path}: [stable] approval = {approval!r}; write true or false")
    soak = parse_duration(stable.get("soak", "7d"), where=f"{path} [stable] soak")
    return Policy(testing_evidence=evidence, stable_soak=soak, stable_approval=approval, source=str(path))
