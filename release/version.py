"""Versions: semver from git tags, and the one table that maps a semver onto each package format.

Accepted semver forms (strict; anything else is an EnduraError naming the value and these forms):

    X.Y.Z                               release                   1.2.3
    X.Y.Z-(alpha|beta|rc).N             pre-release               1.2.3-rc.1
    X.Y.Z-0.dev.N[+g<sha>]              N commits after vX.Y.(Z-1) 1.2.4-0.dev.5+gabc1234
    X.Y.Z-(alpha|beta|rc).M.dev.N[+g<sha>]  N commits after that pre-release tag

`version_from_git()` derives them from `git describe`; `ENDURA_VERSION` overrides it. A dev build
after release X.Y.Z is numbered `X.Y.(Z+1)-0.dev.N`: by semver rules it sorts after X.Y.Z and
before every pre-release (and the release) of X.Y.(Z+1), because the numeric identifier `0`
precedes `alpha`, `beta` and `rc`.

Each package format gets its own string (`FORMATTERS`), chosen so that any two versions compare
the same way in semver and in that format's own comparison (dpkg, rpmvercmp, apk, alpm_pkg_vercmp;
proven by tests/integration/test_version_ordering.py with the real tools where they run here):

| semver                      | deb / rpm                  | apk                  | arch (pkgver)          |
|-----------------------------|----------------------------|----------------------|------------------------|
| 1.2.3                       | 1.2.3                      | 1.2.3                | 1.2.3                  |
| 1.2.3-rc.1                  | 1.2.3~rc.1                 | 1.2.3_rc1            | 1.2.3rc1               |
| 1.2.4-0.dev.5+gabc1234      | 1.2.4~~dev.5.gabc1234      | 1.2.3_git5           | 1.2.3.r5.gabc1234      |
| 1.2.3-rc.2.dev.5+gabc1234   | 1.2.3~rc.2.dev.5.gabc1234  | 1.2.3_rc2_git5       | 1.2.3rc2.r5.gabc1234   |

- deb/rpm: `~` sorts before anything, even the end of the string, so `1.2.3~rc.1 < 1.2.3`, and
  `~~dev` sorts before `~alpha`. rpm's Version may not contain `-`; `~` works since rpm 4.10
  (RHEL 8 and SLES 15 ship 4.14). The caret `^` (rpm >= 4.15) is not used for that reason.
- apk: suffixes `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p`. A dev build
  after release X.Y.Z is written from the tag it follows, `X.Y.Z_gitN` (post-release suffix). A dev
  build after a pre-release chains the suffixes, `X.Y.Z_rc2_gitN`: after `_rc2` and before `_rc3`.
  apk versions cannot carry a commit hash here, so the sha is left out (the package's `-rN`
  release is added by nfpm).
- arch: pkgver may not contain `-`. `1.2.3rc1 < 1.2.3` (a trailing letter block loses to the end),
  and `1.2.3.rN.g<sha>` (the Arch VCS convention) sorts after 1.2.3 and before 1.2.4alpha1.
- tgz: the semver string itself, used in file names.

Build metadata (`+g<sha>`) does not take part in semver precedence; two dev builds with the same
N on different branches compare equal there, while formats that keep the sha order them by it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from families import FAMILIES
from toolbox.errors import EnduraError, cli_main
from toolbox.run import CommandFailed, run

#: pre-release kinds, in semver (alphabetical) order
PRE_RELEASE_KINDS: tuple[str, ...] = ("alpha", "beta", "rc")

#: the forms `Version.parse` accepts, for error messages
ACCEPTED_FORMS = (
    "X.Y.Z (1.2.3), X.Y.Z-alpha.N / -beta.N / -rc.N (1.2.3-rc.1), "
    "or a dev build X.Y.Z-0.dev.N+g<sha> / X.Y.Z-rc.N.dev.M+g<sha> as made by version_from_git"
)

#: the tags version_from_git looks at (`git describe --match`)
TAG_PATTERN = "v[0-9]*"

_NUM = r"(?:0|[1-9][0-9]*)"
_POS = r"[1-9][0-9]*"
_SEMVER_RE = re.compile(
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?:(?P<kind>alpha|beta|rc)\.(?P<num>{_NUM})(?:\.dev\.(?P<pre_dev>{_POS}))?"
    rf"|0\.dev\.(?P<rel_dev>{_POS})))?"
    rf"(?:\+g(?P<commit>[0-9a-f]{{7,40}}))?"
)
_DESCRIBE_RE = re.compile(r"(?P<tag>.+)-(?P<count>[0-9]+)-g(?P<sha>[0-9a-f]{4,40})")


@dataclass(frozen=True)
class PreRelease:
    """`alpha.N`, `beta.N` or `rc.N`."""

    kind: str
    number: int

    def __str__(self) -> str:
        return f"{self.kind}.{self.number}"


def _problem(major: int, minor: int, patch: int, pre: PreRelease | None, dev: int | None,
             commit: str | None) -> str:
    """Why these fields do not form an accepted version ('' when they do)."""
    if min(major, minor, patch) < 0:
        return "negative version component"
    if pre is not None and (pre.kind not in PRE_RELEASE_KINDS or pre.number < 0):
        return f"pre-release '{pre}' is not alpha.N, beta.N or rc.N"
    if dev is not None and dev < 1:
        return "dev builds count at least one commit after their tag"
    if dev is None and commit is not None:
        return "only dev builds carry a commit (+g<sha>)"
    if dev is not None and pre is None and patch == 0:
        return "a dev build after release X.Y.Z is numbered X.Y.(Z+1)-0.dev.N, so its patch is at least 1"
    if commit is not None and not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return f"commit '{commit}' is not 7-40 lowercase hex digits"
    return ""


@dataclass(frozen=True)
class Version:
    """A parsed semver of one of the accepted forms (see module docstring).

    `dev` is the number of commits after the tag, `commit` the abbreviated sha (build metadata).
    With `dev` set and `pre` None the semver is `X.Y.Z-0.dev.N`, following release X.Y.(Z-1).
    Ordering (`<`) is semver precedence; `==` compares all fields, including the commit.
    """

    major: int
    minor: int
    patch: int
    pre: PreRelease | None = None
    dev: int | None = None
    commit: str | None = None

    def __post_init__(self) -> None:
        problem = _problem(self.major, self.minor, self.patch, self.pre, self.dev, self.commit)
        if problem:
            raise EnduraError(f"invalid version {self.semver!r}: {problem}; accepted forms: {ACCEPTED_FORMS}")

    # -- parsing -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, *, source: str = "version") -> Version:
        """Parse one of the accepted semver forms; `source` names where the text came from."""
        value = text.strip()
        match = _SEMVER_RE.fullmatch(value)
        if not match:
            hint = ""
            if value[:1] in ("v", "V"):
                hint = f" (drop the leading '{value[0]}': {value[1:]!r})"
            raise EnduraError(f"{source} {text!r} is not a valid version{hint}; accepted forms: {ACCEPTED_FORMS}")
        g = match.groupdict()
        pre = PreRelease(g["kind"], int(g["num"])) if g["kind"] else None
        dev_text = g["pre_dev"] or g["rel_dev"]
        fields = (int(g["major"]), int(g["minor"]), int(g["patch"]), pre,
                  int(dev_text) if dev_text else None, g["commit"])
        problem = _problem(*fields)
        if problem:
            raise EnduraError(f"{source} {text!r} is not a valid version: {problem}; accepted forms: {ACCEPTED_FORMS}")
        return cls(*fields)

    # -- what kind of version ----------------------------------------------------------------
    @property
    def is_release(self) -> bool:
        return self.pre is None and self.dev is None

    @property
    def is_prerelease(self) -> bool:
        """A tagged pre-release (alpha/beta/rc), not a dev build after one."""
        return self.pre is not None and self.dev is None

    @property
    def is_dev(self) -> bool:
        return self.dev is not None

    @property
    def is_dev_after_release(self) -> bool:
        return self.dev is not None and self.pre is None

    @property
    def core(self) -> str:
        """`X.Y.Z` of the semver (for a dev build after a release: the next patch version)."""
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def tag_version(self) -> Version:
        """The tagged version a dev build follows (itself for a release or pre-release)."""
        if self.dev is None:
            return self
        if self.pre is None:
            return Version(self.major, self.minor, self.patch - 1)
        return Version(self.major, self.minor, self.patch, self.pre)

    @property
    def semver(self) -> str:
        text = self.core
        if self.pre is not None:
            text += f"-{self.pre}"
            if self.dev is not None:
                text += f".dev.{self.dev}"
        elif self.dev is not None:
            text += f"-0.dev.{self.dev}"
        if self.commit:
            text += f"+g{self.commit}"
        return text

    def __str__(self) -> str:
        return self.semver

    # -- semver precedence -------------------------------------------------------------------
    def precedence(self) -> tuple[int, ...]:
        """Sort key equal to semver precedence (build metadata ignored)."""
        if self.pre is None and self.dev is None:
            tail: tuple[int, ...] = (2,)  # the release sorts after all its pre-releases
        elif self.pre is None:
            tail = (0, self.dev or 0)  # -0.dev.N: numeric 0 sorts before alpha/beta/rc
        else:
            # -kind.M < -kind.M.dev.N (more identifiers win when the prefix is equal)
            tail = (1, PRE_RELEASE_KINDS.index(self.pre.kind), self.pre.number, self.dev or 0)
        return (self.major, self.minor, self.patch, *tail)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.precedence() < other.precedence()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.precedence() <= other.precedence()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.precedence() > other.precedence()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.precedence() >= other.precedence()


# -- the version string per format (the rules live in each family: families/<name>/) ------------------------------------------------------------------
def semver(version: Version) -> str:
    """The semver string (also the tarball's version in file names)."""
    return version.semver


#: package format (family name in distros/catalog.toml) -> version string for that format (each family's own rule)
FORMATTERS: dict[str, Callable[[Version], str]] = {name: f.package_version for name, f in FAMILIES.items()}


def format_version(version: Version, fmt: str) -> str:
    """The version string for one package format (`deb`, `rpm`, `apk`, `arch`, `tgz`)."""
    try:
        formatter = FORMATTERS[fmt]
    except KeyError:
        raise EnduraError(f"unknown package format {fmt!r}; use one of {', '.join(FORMATTERS)}") from None
    return formatter(version)


# -- from git ---------------------------------------------------------------------------------
_GIT_ENV = {"LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1"}


def _git(repo_dir: Path, *args: str, check: bool = True):
    return run(["git", "-C", str(repo_dir), *args], extra_env=_GIT_ENV, check=check)


def parse_tag(tag: str) -> Version:
    """A release tag `vX.Y.Z` or `vX.Y.Z-(alpha|beta|rc).N` as a Version; anything else raises."""
    fix = (
        f"release tags are vX.Y.Z or vX.Y.Z-(alpha|beta|rc).N (e.g. v1.2.3, v1.2.3-rc.1); "
        f"delete it with 'git tag -d {tag}' (and 'git push --delete origin {tag}' if pushed) "
        f"and tag again, or set ENDURA_VERSION=X.Y.Z to build anyway"
    )
    if not tag.startswith("v"):
        raise EnduraError(f"git tag '{tag}' does not start with 'v'; {fix}")
    try:
        version = Version.parse(tag[1:], source="tag")
    except EnduraError:
        raise EnduraError(f"git tag '{tag}' is not a valid release tag; {fix}") from None
    if version.is_dev or version.commit:
        raise EnduraError(f"git tag '{tag}' names a dev build, not a release; {fix}")
    return version


def _highest_tag_at(repo_dir: Path, commit: str) -> Version:
    """All `v*` tags on one commit parsed, highest wins (an rc promoted to the release on the same commit)."""
    tags = _git(repo_dir, "tag", "--list", TAG_PATTERN, "--points-at", commit).stdout.split()
    return max((parse_tag(t) for t in tags), key=Version.precedence)


def version_from_git(repo_dir: str | os.PathLike = ".") -> Version:
    """The version of HEAD in `repo_dir` from `git describe --tags --long --match 'v[0-9]*'`.

    Tag at HEAD → that version; N commits after vX.Y.Z → X.Y.(Z+1)-0.dev.N+g<sha>; N commits after
    vX.Y.Z-rc.M → X.Y.Z-rc.M.dev.N+g<sha>; no tag → as if v0.0.0 at the root. `ENDURA_VERSION`
    in the environment overrides all of this (validated the same way).
    """
    override = os.environ.get("ENDURA_VERSION", "").strip()
    if override:
        return Version.parse(override, source="ENDURA_VERSION")
    repo = Path(repo_dir)
    fix = "run it in a git checkout with at least one commit, or set ENDURA_VERSION=X.Y.Z"
    if _git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise EnduraError(f"{repo} is not a git repository; {fix}")
    if _git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).returncode != 0:
        raise EnduraError(f"git repository {repo} has no commit yet; {fix}")

    proc = _git(repo, "describe", "--tags", "--long", "--abbrev=7", "--match", TAG_PATTERN, "HEAD", check=False)
    if proc.returncode != 0:
        if "No names found" not in proc.stderr and "No tags can describe" not in proc.stderr:
            raise CommandFailed(proc.args, proc.returncode, proc.stderr, hint="git describe failed")
        if _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            raise EnduraError(
                f"{repo} is a shallow clone and no '{TAG_PATTERN}' tag is reachable from HEAD; "
                "fetch history and tags with 'git fetch --unshallow --tags', or set ENDURA_VERSION=X.Y.Z"
            )
        count = int(_git(repo, "rev-list", "--count", "HEAD").stdout.strip())
        sha = _git(repo, "rev-parse", "--short=7", "HEAD").stdout.strip()
        return Version(0, 0, 1, dev=count, commit=sha)

    described = proc.stdout.strip()
    match = _DESCRIBE_RE.fullmatch(described)
    if not match:
        raise EnduraError(f"unexpected 'git describe' output {described!r} in {repo}; set ENDURA_VERSION=X.Y.Z")
    tag, count, sha = match["tag"], int(match["count"]), match["sha"]
    parse_tag(tag)  # the tag git chose must itself be valid, even if a sibling tag wins below
    tag_commit = _git(repo, "rev-parse", f"{tag}^{{commit}}").stdout.strip()
    base = _highest_tag_at(repo, tag_commit)
    if count == 0:
        return base
    if base.pre is None:
        return Version(base.major, base.minor, base.patch + 1, dev=count, commit=sha)
    return Version(base.major, base.minor, base.patch, base.pre, dev=count, commit=sha)


def source_commit(repo_dir: str | os.PathLike = ".") -> dict:
    """The commit a build comes from and whether the checkout had uncommitted changes (`commit` None outside git)."""
    head = _git(Path(repo_dir), "rev-parse", "HEAD", check=False)
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = _git(Path(repo_dir), "status", "--porcelain", "--untracked-files=no", check=False)
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def source_date_epoch(repo_dir: str | os.PathLike = ".") -> int:
    """`SOURCE_DATE_EPOCH` from the environment if set, else the committer time of HEAD."""
    explicit = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if explicit:
        if not explicit.isdigit():
            raise EnduraError(
                f"SOURCE_DATE_EPOCH={explicit!r} is not a Unix timestamp (whole seconds); "
                "unset it to use the commit time of HEAD, or set e.g. SOURCE_DATE_EPOCH=1700000000"
            )
        return int(explicit)
    proc = _git(Path(repo_dir), "log", "-1", "--format=%ct", "HEAD", check=False)
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise EnduraError(
            f"cannot read the commit time of HEAD in {repo_dir}; run in a git checkout with a commit, "
            "or set SOURCE_DATE_EPOCH"
        )
    return int(proc.stdout.strip())


# -- command line -----------------------------------------------------------------------------
def _cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m release.version",
                                     description="Print the version of a git checkout in each package format.")
    parser.add_argument("--repo", default=".", help="git checkout (default: current directory)")
    parser.add_argument("--format", choices=["semver", "json", *FORMATTERS], default="semver",
                        help="one format, or json with all of them and SOURCE_DATE_EPOCH")
    args = parser.parse_args(list(argv))
    version = version_from_git(args.repo)
    if args.format == "json":
        data = {"semver": version.semver, **{f: fn(version) for f, fn in FORMATTERS.items()},
                "source_date_epoch": source_date_epoch(args.repo)}
        print(json.dumps(data, indent=2))
    elif args.format == "semver":
        print(version.semver)
    else:
        print(format_version(version, args.format))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors become `error: ...` on stderr and a non-zero exit code."""
    return cli_main(_cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
