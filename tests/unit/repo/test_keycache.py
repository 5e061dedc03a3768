"""repo.keycache: what is derived from the keys alone is computed once, and a damaged cache entry is made again."""
from __future__ import annotations

from pathlib import Path

from repo import keycache
from repo.keyring import KeySet


def test_key_set_is_computed_once_per_export(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDURA_CACHE_DIR", str(tmp_path))
    computed: list[str] = []
    one = KeySet("-----BEGIN PGP PUBLIC KEY BLOCK-----\nA\n", ("F1",), (1700000000,), 1700000100)

    def compute() -> KeySet:
        computed.append("x")
        return one

    assert keycache.key_set("export A", compute, KeySet) == one
    assert keycache.key_set("export A", compute, KeySet) == one
    assert len(computed) == 1
    assert keycache.key_set("export B (a key re-signed)", compute, KeySet) == one
    assert len(computed) == 2


def test_packages_are_built_again_when_a_cached_file_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDURA_CACHE_DIR", str(tmp_path))
    names = {"deb": "k_1_all.deb", "rpm": "k-1.noarch.rpm"}
    builds: list[Path] = []

    def build(out: Path) -> dict[str, Path]:
        builds.append(out)
        for family, name in names.items():
            (out / name).write_bytes(f"{family} package".encode())
        return {family: (out / name, f"{family}-sig") for family, name in names.items()}

    first = keycache.packages("digest", "abcd", names, build)
    assert keycache.packages("digest", "abcd", names, build) == first and len(builds) == 1
    assert first["deb"][0].read_bytes() == b"deb package" and first["deb"][0].parent.name == "digest-ABCD"
    assert first["rpm"][1] == "rpm-sig"
    first["rpm"][0].write_bytes(b"modified")
    again = keycache.packages("digest", "abcd", names, build)
    assert len(builds) == 2 and again["rpm"][0].read_bytes() == b"rpm package"
    assert keycache.packages("digest", "other-signer", names, build) and len(builds) == 3
    assert not [p for p in (tmp_path / "repo-keyring" / "packages").iterdir() if p.name.startswith(".tmp-")]
