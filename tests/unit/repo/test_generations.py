"""The generations/ + current layout on a real filesystem: atomic switch, pruning, leftovers, the lock."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from release.manifest import find_build
from repo import engine, layout
from repo.generations import RepoRoot
from toolbox.errors import EnduraError


def _complete(root: RepoRoot, n: int) -> None:
    building = root.start(n)
    (building / layout.GENERATION_FILE).write_text(json.dumps({"generation": n}))
    root.finish(building, n)


def test_switch_is_a_relative_symlink_replaced_in_one_rename(tmp_path):
    root = RepoRoot(tmp_path)
    assert root.current() is None and root.numbers() == [] and root.next_number() == 1
    _complete(root, 1)
    root.switch(1)
    assert os.readlink(tmp_path / "current") == "generations/000001"
    inode = os.lstat(tmp_path / "current").st_ino
    _complete(root, 2)
    root.switch(2)
    assert root.current() == 2 and os.lstat(tmp_path / "current").st_ino != inode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".current")], "no temporary symlink left"
    assert root.state(2) == {"generation": 2}


def test_switch_refuses_an_incomplete_generation(tmp_path):
    root = RepoRoot(tmp_path)
    (tmp_path / "generations" / "000003").mkdir(parents=True)
    with pytest.raises(EnduraError, match="generation 3 is not complete"):
        root.switch(3)
    with pytest.raises(EnduraError, match="has no generation.json; it is incomplete"):
        root.state(3)


def test_abandoned_builds_are_ignored_then_removed(tmp_path):
    root = RepoRoot(tmp_path)
    _complete(root, 1)
    root.switch(1)
    root.start(2)
    (tmp_path / ".verify-000002").mkdir()
    assert root.numbers() == [1] and root.next_number() == 2
    removed = root.remove_abandoned()
    assert sorted(p.name for p in removed) == [".building-000002", ".verify-000002"]
    assert root.current() == 1


def test_prune_keeps_newest_and_current(tmp_path):
    root = RepoRoot(tmp_path)
    for n in range(1, 6):
        _complete(root, n)
    root.switch(2)
    assert root.prune(2) == [1, 3]
    assert root.numbers() == [2, 4, 5]


def test_leftovers_of_a_killed_switch_and_prune_are_removed(tmp_path):
    root = RepoRoot(tmp_path)
    _complete(root, 1)
    root.switch(1)
    os.symlink("generations/000001", tmp_path / ".current.tmp-4242")  # killed between symlink and rename
    (tmp_path / "generations" / ".pruning-000000" / "apt").mkdir(parents=True)  # killed while deleting
    removed = root.remove_abandoned()
    assert sorted(p.name for p in removed) == [".current.tmp-4242", ".pruning-000000"]
    assert root.current() == 1 and os.readlink(tmp_path / "current") == "generations/000001"


def test_finish_flushes_the_filesystem_before_the_rename(tmp_path, monkeypatch):
    from repo import generations

    calls: list[tuple[str, str]] = []
    real_syncfs, real_rename = generations._syncfs, os.rename
    monkeypatch.setattr(generations, "_syncfs", lambda path: calls.append(("syncfs", path.name)) or real_syncfs(path))
    monkeypatch.setattr(os, "rename", lambda a, b: calls.append(("rename", Path(a).name)) or real_rename(a, b))
    root = RepoRoot(tmp_path)
    building = root.start(1)
    (building / layout.GENERATION_FILE).write_text("{}")
    assert real_syncfs(building) is True  # Linux: the real syncfs(2) ran
    root.finish(building, 1)
    assert calls == [("syncfs", building.name), ("rename", building.name)]


def test_finish_flushes_only_what_no_finished_generation_flushed(tmp_path, monkeypatch):
    """Without syncfs (another OS): an fsync per new file and directory."""
    from repo import generations

    monkeypatch.setattr(generations, "_syncfs", lambda path: False)
    root = RepoRoot(tmp_path)
    _complete(root, 1)
    shared = root.dir(1) / "shared.deb"
    shared.write_text("bytes of generation 1")
    building = root.start(2)
    os.link(shared, building / "shared.deb")
    (building / layout.GENERATION_FILE).write_text("{}")
    flushed: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: flushed.append(os.fstat(fd).st_ino) or real_fsync(fd))
    root.finish(building, 2)
    assert (root.dir(2) / layout.GENERATION_FILE).stat().st_ino in flushed
    assert shared.stat().st_ino not in flushed


def test_lock_refuses_a_second_publisher(tmp_path):
    root = RepoRoot(tmp_path)
    with root.lock():
        with pytest.raises(EnduraError, match=f"another publish or promotion \\(pid {os.getpid()} "):
            with RepoRoot(tmp_path).lock():
                pass
    with root.lock():
        pass


def test_find_build_errors_name_the_fix(tmp_path):
    with pytest.raises(EnduraError, match="has no manifest.json; pass a build directory made by 'nox -s package'"):
        find_build(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{}")
    assert find_build(str(tmp_path / "manifest.json")) == tmp_path


def test_cli_rejects_bad_options():
    from channels import publish as publish_cmd

    assert publish_cmd.main(["--keep", "1"]) == 1
    assert publish_cmd.main(["--base-url", "repo.example.test"]) == 1
    assert publish_cmd.main(["--target", "u@h:/srv", "--no-verify"]) == 1


def test_verification_needs_root_and_says_so_before_any_work(tmp_path, monkeypatch):
    from channels import publish as publish_cmd

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    args = publish_cmd.parser().parse_args(["--repo-root", str(tmp_path / "r")])
    with pytest.raises(EnduraError, match="needs root; run as root or pass --no-verify"):
        publish_cmd.publish(args)
    assert not (tmp_path / "r").exists()


def test_key_must_outlive_valid_until():
    from toolbox.gpg import SigningKey

    key = SigningKey("ABCD", None, "k", "RSA", 4096, 0, 2_000_000, False)
    engine.check_key_outlives(key, 1_999_999)
    with pytest.raises(EnduraError, match="signing key ABCD expires on .* before this publish's Valid-Until"):
        engine.check_key_outlives(key, 2_000_001)
    engine.check_key_outlives(SigningKey("ABCD", None, "k", "RSA", 4096, 0, None, False), 2_000_001)
