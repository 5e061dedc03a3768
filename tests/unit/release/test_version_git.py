"""version_from_git and source_date_epoch against real temporary git repositories (fast: git only)."""
from __future__ import annotations

from pathlib import Path

import pytest

from release.version import PreRelease, Version, source_date_epoch, version_from_git
from toolbox.errors import EnduraError, ToolMissing
from toolbox.run import ensure_tool, run

COMMIT_TIME = 1700000000


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch, tmp_path):
    try:
        ensure_tool("git")
    except ToolMissing as exc:
        pytest.fail(str(exc))
    monkeypatch.delenv("ENDURA_VERSION", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for key, value in {
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }.items():
        monkeypatch.setenv(key, value)


class Repo:
    """A scratch repository; each commit is one second later than the one before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits = 0
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return run(["git", "-C", str(self.path), *args]).stdout.strip()

    def commit(self, n: int = 1) -> str:
        for _ in range(n):
            self.commits += 1
            date = f"@{COMMIT_TIME + self.commits} +0000"
            run(["git", "-C", str(self.path), "commit", "-q", "--allow-empty", "-m", f"c{self.commits}"],
                extra_env={"GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date})
        return self.git("rev-parse", "--short=7", "HEAD")

    def tag(self, name: str, annotated: bool = False) -> None:
        self.git("tag", *(["-a", "-m", name] if annotated else []), name)


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "repo")


def test_no_tag_counts_commits_from_the_root(repo):
    sha = repo.commit(3)
    assert version_from_git(repo.path) == Version(0, 0, 1, dev=3, commit=sha)
    assert str(version_from_git(repo.path)) == f"0.0.1-0.dev.3+g{sha}"


def test_tag_at_head_is_that_version(repo):
    repo.commit()
    repo.tag("v1.2.3")
    assert version_from_git(repo.path) == Version(1, 2, 3)


def test_commits_after_a_release_bump_the_patch(repo):
    repo.commit()
    repo.tag("v1.2.3", annotated=True)
    sha = repo.commit(2)
    assert str(version_from_git(repo.path)) == f"1.2.4-0.dev.2+g{sha}"


def test_commits_after_a_prerelease_extend_it(repo):
    repo.commit()
    repo.tag("v1.3.0-rc.2", annotated=True)
    sha = repo.commit(5)
    v = version_from_git(repo.path)
    assert v == Version(1, 3, 0, PreRelease("rc", 2), dev=5, commit=sha)
    assert Version.parse("1.3.0-rc.2") < v < Version.parse("1.3.0-rc.3")


def test_the_nearest_tag_wins_and_foreign_tags_are_ignored(repo):
    repo.commit()
    repo.tag("v1.0.0")
    repo.commit()
    repo.tag("v1.1.0-beta.1")
    repo.commit()
    repo.tag("release-7")  # does not match v[0-9]*
    repo.tag("vendor-drop")  # starts with v but not v<digit>
    sha = repo.commit()
    assert str(version_from_git(repo.path)) == f"1.1.0-beta.1.dev.2+g{sha}"


def test_rc_promoted_to_release_on_the_same_commit(repo):
    repo.commit()
    repo.tag("v2.0.0-rc.1", annotated=True)
    repo.tag("v2.0.0")  # same commit, lightweight; git describe alone could pick either
    assert version_from_git(repo.path) == Version(2, 0, 0)
    sha = repo.commit()
    assert str(version_from_git(repo.path)) == f"2.0.1-0.dev.1+g{sha}"


@pytest.mark.parametrize("bad", ["v1.2", "v1.2.3-foo", "v1.2.3-rc.1.dev.4", "v01.2.3"])
def test_invalid_tag_names_the_tag_and_the_fix(repo, bad):
    repo.commit()
    repo.tag("v1.0.0")
    repo.commit()
    repo.tag(bad)
    with pytest.raises(EnduraError) as err:
        version_from_git(repo.path)
    assert f"git tag '{bad}'" in err.value.message
    assert f"git tag -d {bad}" in err.value.message and "vX.Y.Z" in err.value.message


def test_endura_version_overrides_tags(repo, monkeypatch):
    repo.commit()
    repo.tag("v1.2")  # would be an error without the override
    monkeypatch.setenv("ENDURA_VERSION", "3.1.4")
    assert version_from_git(repo.path) == Version(3, 1, 4)


def test_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(EnduraError, match=r"is not a git repository; .*ENDURA_VERSION"):
        version_from_git(tmp_path / "plain")


def test_repository_without_commits(repo):
    with pytest.raises(EnduraError, match=r"has no commit yet; .*ENDURA_VERSION"):
        version_from_git(repo.path)


def test_shallow_clone_without_reachable_tag_says_how_to_fix(repo, tmp_path):
    repo.commit()
    repo.tag("v1.0.0")
    repo.commit(3)
    clone = tmp_path / "shallow"
    run(["git", "clone", "-q", "--depth", "1", "--no-tags", f"file://{repo.path}", str(clone)])
    with pytest.raises(EnduraError, match=r"shallow clone .*git fetch --unshallow --tags"):
        version_from_git(clone)


def test_source_date_epoch_is_the_committer_time_of_head(repo, monkeypatch):
    repo.commit(4)
    assert source_date_epoch(repo.path) == COMMIT_TIME + 4
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "42")
    assert source_date_epoch(repo.path) == 42


def test_source_date_epoch_without_commit(repo):
    with pytest.raises(EnduraError, match="cannot read the commit time of HEAD"):
        source_date_epoch(repo.path)
