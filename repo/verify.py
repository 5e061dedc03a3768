"""Verify a generation with the real clients before anyone can see it.

The generation directory is served on 127.0.0.1 (an ephemeral port, a thread of this process) and:
- **apt**: a throwaway Debian 12 root (the cached mmdebstrap tar the tests use) gets the generated
  `.sources` file (URIs pointed at loopback) and key, then `apt-get update --error-on=any` (InRelease
  signature, Valid-Until, index hashes, for amd64 and arm64), `apt-get install endura-sensor
  endura-archive-keyring` (the .deb hashes, dependencies resolved by Debian's own python3/libbpf1),
  `endura-sensor --version`, and `apt-get download endura-sensor:arm64`.
- **dnf**: the generated `.repo` file (baseurl pointed at loopback) with `repo_gpgcheck=1` and
  `gpgcheck=1`: `dnf --installroot` into an empty root installs endura-sensor and endura-archive-keyring
  for x86_64 (scriptlets off: the empty root has no shell) with a dependency shim providing python3
  and libbpf (the target distros' own repositories are not reachable here); `dnf makecache` checks
  aarch64's metadata.
- **pacman**: the generated `[endura]` section with `SigLevel = Required` and a keyring holding only
  our key: `pacman -Sy` (database signature) and `pacman -Sw` (package checksum and signature) per arch.
- **rpm -K** of every published rpm against only the published key; **gpgv** of the tarball index.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from release.signing import cache_dir, verify_detached
from release.version import Version, format_version
from repo import layout
from repo.sign import key_file_fingerprints
from toolbox import log
from toolbox.errors import EnduraError
from toolbox.run import output, run
from toolbox.tools import require

DEBIAN_ROOT_TAR = "test-roots/bookworm-python3-libbpf1-v2.tar"
CHROOT_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


# --- loopback HTTP ---------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        log.debug("http: " + format % args)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` read-only on 127.0.0.1 (ephemeral port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="repo-verify-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- client configuration pointed at loopback --------------------------------------------------------


def point_at(text: str, base_url: str, *, root: Path | None = None) -> str:
    """Replace the published base URL of a generated .sources/.repo file with `base_url`.

    The .repo files' `gpgkey=file:///etc/pki/rpm-gpg/...` (installed by endura-archive-keyring) becomes
    that file inside `root` (dnf reads file:// keys from the host, even with --installroot), or without
    `root` the served key file: what the install guide's bootstrap puts there."""
    local = f"file://{root}{layout.RPM_KEYRING}" if root is not None else f"{base_url}/{layout.KEY_FILE}"
    text = text.replace(f"gpgkey=file://{layout.RPM_KEYRING}", f"gpgkey={local}")
    text = re.sub(r"^(URIs: )\S+?/apt$", lambda m: f"{m.group(1)}{base_url}/apt", text, flags=re.M)
    text = re.sub(r"^(baseurl=)\S+?(/rpm/)", lambda m: f"{m.group(1)}{base_url}{m.group(2)}", text, flags=re.M)
    text = re.sub(r"^(gpgkey=)\S+?(/keys/)", lambda m: f"{m.group(1)}{base_url}{m.group(2)}", text, flags=re.M)
    text = re.sub(r"^(Server = )\S+?(/arch/)", lambda m: f"{m.group(1)}{base_url}{m.group(2)}", text, flags=re.M)
    return text


def debian_root_tar() -> Path:
    """The cached Debian 12 minbase root (python3, libbpf1) shared with the tests; built once."""
    cached = cache_dir() / DEBIAN_ROOT_TAR
    if not cached.exists():
        require("mmdebstrap")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        with log.step(f"creating the Debian 12 verification root {cached} (once)"):
            run(["mmdebstrap", "--variant=minbase", "--format=tar", "--include=python3,libbpf1", "bookworm", str(tmp)],
                timeout=900)
        os.replace(tmp, cached)
    return cached


def extract_debian_root(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    run(["tar", "-C", str(dest), "-xf", str(debian_root_tar())], timeout=600)
    return dest


def chroot(root: Path, *argv: str, check: bool = True, timeout: float = 600):
    return run(["chroot", str(root), *argv], extra_env=CHROOT_PATH, check=check, timeout=timeout)


def configure_apt(root: Path, sources_text: str, key_file: Path, base_url: str, *, name: str = "endura") -> None:
    """Make `root` use only our source (its Debian sources removed: no network beyond loopback)."""
    etc = root / "etc" / "apt"
    with contextlib.suppress(FileNotFoundError):
        (etc / "sources.list").unlink()
    for p in (etc / "sources.list.d").glob("*"):
        p.unlink()
    keyrings = etc / "keyrings"
    keyrings.mkdir(parents=True, exist_ok=True)
    dest = root / layout.APT_KEYRING.lstrip("/")
    shutil.copyfile(key_file, dest)
    os.chmod(dest, 0o644)
    (etc / "sources.list.d" / f"{name}.sources").write_text(point_at(sources_text, base_url))


def apt_get(root: Path, *args: str, check: bool = True):
    strict = ["--error-on=any"] if args[:1] == ("update",) else []  # warnings (e.g. a bad signature) fail too
    return chroot(root, "apt-get", "-q", "-y", *strict, *args, check=check)


def dnf_config(workdir: Path, repo_text: str, base_url: str, *, root: Path | None = None) -> Path:
    """A private dnf.conf whose only repository is our generated .repo file pointed at `base_url`
    (its local key file inside `root`, else the served one: see `point_at`)."""
    repos = workdir / "repos.d"
    repos.mkdir(parents=True, exist_ok=True)
    (repos / "endura.repo").write_text(point_at(repo_text, base_url, root=root))
    conf = workdir / "dnf.conf"
    conf.write_text(f"[main]\nreposdir={repos}\ncachedir={workdir / 'cache'}\ngpgcheck=1\n"
                    "install_weak_deps=False\nkeepcache=False\nskip_if_unavailable=False\n")
    return conf


def dnf_argv(conf: Path, installroot: Path, *args: str) -> list[str]:
    return ["dnf", "-c", str(conf), "--installroot", str(installroot), "--assumeyes", "--releasever=9",
            "--setopt=reposdir=" + str(conf.parent / "repos.d"), "--nodocs", *args]


def dependency_shim() -> Path:
    """A file-less noarch rpm that *provides* python3 and libbpf (built once with rpmbuild)."""
    out_dir = cache_dir() / "repo-verify"
    rpm = out_dir / "endura-verify-deps-shim-1-1.noarch.rpm"
    if rpm.exists():
        return rpm
    require("rpmbuild")
    with tempfile.TemporaryDirectory(prefix="endura-shim-") as tmp:
        spec = Path(tmp) / "shim.spec"
        spec.write_text("Name: endura-verify-deps-shim\nVersion: 1\nRelease: 1\nSummary: verification-only provider\n"
                        "License: Apache-2.0\nBuildArch: noarch\nProvides: python3 = 3.11\nProvides: libbpf = 1.1\n"
                        "%description\nProvides python3 and libbpf for repository verification only.\n%files\n")
        run(["rpmbuild", "-bb", "--define", f"_topdir {tmp}/top", "--define", "_build_id_links none", str(spec)], timeout=300)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "top" / "RPMS" / "noarch" / rpm.name, rpm)
    return rpm


def prepare_rpm_root(installroot: Path) -> None:
    installroot.mkdir(parents=True, exist_ok=True)
    run(["rpm", "--root", str(installroot), "--initdb"])
    run(["rpm", "--root", str(installroot), "--nodeps", "--noscripts", "-i", str(dependency_shim())])


def stop_gpg_agents(under: Path) -> None:
    """Stop the gpg-agents that dnf (librepo's per-repository keyring) and pacman-key start for their
    keyrings below `under`: they would outlive the scratch directory they serve."""
    homes = {p.parent for name in ("pubring.kbx", "pubring.gpg") for p in under.rglob(name)}
    for home in sorted(homes):
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, timeout=60)


# --- the checks -----------------------------------------------------------------------------------------


def rpm_check_signatures(rpms: list[Path], key_file: Path) -> None:
    """`rpm -K` against a private rpmdb holding only our public key: digests AND signatures OK."""
    require("rpmkeys")
    with tempfile.TemporaryDirectory(prefix="endura-rpmk-") as db:
        run(["rpmkeys", "--dbpath", db, "--import", str(key_file)])
        for rpm in rpms:
            out = run(["rpmkeys", "--dbpath", db, "-K", str(rpm)], check=False)
            if out.returncode != 0 or "signatures OK" not in out.stdout:
                raise EnduraError(f"rpm -K failed for {rpm}: {out.stdout.strip() or out.stderr.strip()}; "
                                  "the package is not signed by the repository key: rebuild it with this key")


def verify_apt(gen: Path, channel: str, url: str, workdir: Path, expected_version: str | None) -> str:
    require("chroot", "tar")
    root = extract_debian_root(workdir / "debian-root")
    configure_apt(root, (gen / "apt" / f"endura-{channel}.sources").read_text(), gen / layout.KEY_FILE, url)
    chroot(root, "dpkg", "--add-architecture", "arm64")
    apt_get(root, "update")
    apt_get(root, "install", "--no-install-recommends", "endura-sensor", "endura-archive-keyring")
    installed = chroot(root, "endura-sensor", "--version").stdout.strip()
    if expected_version and installed != f"endura-sensor {expected_version}":
        raise EnduraError(f"apt installed '{installed}' from channel {channel}, expected endura-sensor {expected_version}")
    arm64 = gen / layout.apt_suite_dir(channel) / layout.APT_COMPONENT / "binary-arm64" / "Packages"
    if arm64.exists() and arm64.stat().st_size:
        # downloads and checks the .deb against the signed index (it cannot be installed on amd64)
        chroot(root, "sh", "-c", "cd /tmp && apt-get -q download endura-sensor:arm64")
    return installed


def verify_dnf(gen: Path, channel: str, url: str, workdir: Path, expected_version: str | None = None) -> str:
    require("dnf", "rpm")
    conf = dnf_config(workdir / "dnf", (gen / "rpm" / f"endura-{channel}.repo").read_text(), url)
    root = workdir / "rpm-root"
    prepare_rpm_root(root)
    run(dnf_argv(conf, root, "--setopt=tsflags=noscripts", "install", "endura-sensor", "endura-archive-keyring"), timeout=600)
    installed = output(["rpm", "--root", str(root), "-q", "--qf", "%{VERSION}-%{RELEASE}.%{ARCH}", "endura-sensor"])
    if expected_version:
        wanted = format_version(Version.parse(expected_version), "rpm")
        if installed.split("-", 1)[0] != wanted:
            raise EnduraError(f"dnf installed endura-sensor {installed} from channel {channel}, expected version {wanted}")
    aroot = workdir / "rpm-root-aarch64"
    aroot.mkdir()
    run(dnf_argv(conf, aroot, "--forcearch=aarch64", "makecache"), timeout=600)
    return installed


def pacman_client(workdir: Path, snippet: str, base_url: str, key_file: Path) -> list[str]:
    """A private pacman (config, root, db, cache, keyring holding only our key): returns its argv prefix."""
    require("pacman", "pacman-key", "pacman-key-libs")
    gpgdir, root, cache = workdir / "gnupg", workdir / "root", workdir / "cache"
    for d in (root / "var/lib/pacman", cache):
        d.mkdir(parents=True, exist_ok=True)
    conf = workdir / "pacman.conf"
    conf.write_text(f"[options]\nArchitecture = auto\nSigLevel = Required\nGPGDir = {gpgdir}\n\n" + point_at(snippet, base_url))
    fprs = key_file_fingerprints(key_file)  # primary keys only; the file holds two during a rotation
    run(["pacman-key", "--config", str(conf), "--gpgdir", str(gpgdir), "--init"], timeout=300)
    run(["pacman-key", "--config", str(conf), "--gpgdir", str(gpgdir), "--add", str(key_file)])
    for fpr in fprs:
        run(["pacman-key", "--config", str(conf), "--gpgdir", str(gpgdir), "--lsign-key", fpr])
    return ["pacman", "--config", str(conf), "--root", str(root), "--dbpath", str(root / "var/lib/pacman"),
            "--cachedir", str(cache), "--noconfirm", "--noprogressbar"]


def verify_pacman(gen: Path, channel: str, url: str, workdir: Path) -> list[str]:
    """`pacman -Sy` (database signature) and `-Sw` (download, checksum and package signature) per arch."""
    snippet = (gen / "arch" / f"endura-{channel}.pacman.conf").read_text()
    fetched = []
    for arch in sorted(layout.RPM_ARCH.values()):
        if not list((gen / layout.pacman_dir(channel, arch)).glob("*.pkg.tar.*[!g]")):
            continue
        # one client per arch: pacman's sync db is per name, not per $arch
        pacman = pacman_client(workdir / f"pacman-{arch}", snippet, url, gen / layout.KEY_FILE)
        run([*pacman, "--arch", arch, "-Sy"], timeout=300)
        run([*pacman, "--arch", arch, "-Swdd", "endura-sensor"], timeout=300)
        fetched.append(arch)
    return fetched


def verify_generation(gen: Path, channel: str, workdir: Path, *, expected_version: str | None = None) -> dict:
    """Run every client check against `gen` served on loopback; raises EnduraError on the first failure.

    `workdir` (the Debian root, dnf roots) is emptied first and removed afterwards."""
    key = gen / layout.KEY_FILE
    result: dict = {}
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    work = workdir
    try:
        with log.step(f"rpm -K every rpm of channel {channel}"):
            rpms = sorted((gen / "rpm" / channel).glob("*/packages/*.rpm"))
            rpm_check_signatures(rpms, key)
            result["rpm_k"] = len(rpms)
        with log.step(f"gpgv the tarball index of channel {channel}"):
            tdir = gen / layout.tarball_dir(channel)
            verify_detached(key, tdir / "SHA256SUMS", tdir / "SHA256SUMS.asc")
            run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"], cwd=tdir)
        with serve(gen) as url:
            with log.step(f"apt-get update + install from {url} (channel {channel})"):
                result["apt"] = verify_apt(gen, channel, url, work, expected_version)
            with log.step(f"dnf install with repo_gpgcheck from {url} (channel {channel})"):
                result["dnf"] = verify_dnf(gen, channel, url, work, expected_version)
            with log.step(f"pacman -Sy + -Sw with SigLevel Required from {url} (channel {channel})"):
                result["pacman"] = verify_pacman(gen, channel, url, work)
    finally:
        for sub in ("rpm-root", "rpm-root-aarch64", "pacman-x86_64", "pacman-aarch64"):
            if (workdir / sub).exists():
                stop_gpg_agents(workdir / sub)
        shutil.rmtree(workdir, ignore_errors=True)
    return result
