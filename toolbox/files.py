"""Small file helpers shared by the tooling: where the repository and the cache are, content digests, atomic writes."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: the top of the source tree (the one definition: every module asks this one)
REPO_TOP = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """$ENDURA_CACHE_DIR, else $XDG_CACHE_HOME/endura (~/.cache/endura): development keys, tools built once, roots."""
    base = os.environ.get("ENDURA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "endura"
    )
    return Path(base)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def json_text(obj: object, *, indent: str = "  ", _level: int = 0) -> str:
    """JSON for files people read too (generation.json): objects indented like `json.dumps(indent=2,
    sort_keys=True)`, and each element of a list on one line of its own (compact). Made with json's C
    encoder per element: `indent=` selects the pure-Python encoder, 0.15 s for the 2,000 entries of a
    generation (the C encoder: 10 ms). Ends without a newline."""
    pad = indent * _level
    if isinstance(obj, dict) and obj:
        items = (f"{pad}{indent}{json.dumps(str(k))}: {json_text(obj[k], indent=indent, _level=_level + 1)}" for k in sorted(obj))
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, (list, tuple)) and obj:
        items = (f"{pad}{indent}{json.dumps(v, sort_keys=True, separators=(', ', ': '))}" for v in obj)
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj, sort_keys=True)
