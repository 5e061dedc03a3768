"""The rpm repositories of a generation, and their check with dnf and rpm -K: per channel and arch, `repodata/` by createrepo_c and a signed `repomd.xml.asc`.

dnf/yum (`repo_gpgcheck=1`) and zypper check `repomd.xml` against `repomd.xml.asc`; repomd.xml in
turn carries the checksums of primary/filelists/other, and those of each package (whose own rpm
header signature `gpgcheck=1` checks). Metadata file names carry their checksum (createrepo_c's
default), so a client that fetched an older repomd.xml never mixes files of two generations.

Verification (`verify_channel`): `rpm -K` of every published rpm against only the published key; then
the generated `.repo` file (baseurl pointed at loopback) with `repo_gpgcheck=1` and `gpgcheck=1`:
`dnf --installroot` into an empty root installs endura-sensor and endura-archive-keyring for x86_64
(scriptlets off: the empty root has no shell) with a dependency shim providing python3 and libbpf
(the target distros' own repositories are not reachable here); `dnf makecache` checks aarch64's
metadata.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import tempfile
from pathlib import Path

from families import indexcache
from families.base import KEY_FILE, KEYRING_PACKAGE, LABEL, PACKAGE, machine_arches
from families.clients import client_env
from toolbox import gpg, log
from toolbox.errors import EnduraError
from toolbox.files import cache_dir
from toolbox.run import CommandFailed, format_argv, output, run
from toolbox.tools import require

#: the repository keys for dnf/yum/zypper (`gpgkey=`): installed by the endura-archive-keyring rpm (see `repo.keyring`)
RPM_KEYRING = "/etc/pki/rpm-gpg/RPM-GPG-KEY-endura"


# --- paths and client configuration files ---------------------------------------------------------


def rpm_dir(channel: str, package_arch: str) -> str:
    return f"rpm/{channel}/{package_arch}"


def dnf_repo(channel: str, base_url: str) -> str:
    """/etc/yum.repos.d/endura-<channel>.repo for dnf and yum: package and metadata signatures checked."""
    url = base_url.rstrip("/")
    return (
        f"[endura-{channel}]\n"
        f"name={LABEL} ({channel})\n"
        f"baseurl={url}/rpm/{channel}/$basearch\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        "repo_gpgcheck=1\n"
        f"gpgkey=file://{RPM_KEYRING}\n"
        "metadata_expire=6h\n"
    )


def zypper_repo(channel: str, base_url: str) -> str:
    """/etc/zypp/repos.d/endura-<channel>.repo for zypper (SLES, openSUSE Leap)."""
    url = base_url.rstrip("/")
    return (
        f"[endura-{channel}]\n"
        f"name={LABEL} ({channel})\n"
        f"baseurl={url}/rpm/{channel}/$basearch\n"
        "type=rpm-md\n"
        "enabled=1\n"
        "autorefresh=1\n"
        "gpgcheck=1\n"
        "repo_gpgcheck=1\n"
        "pkg_gpgcheck=1\n"
        f"gpgkey=file://{RPM_KEYRING}\n"
    )


def createrepo_argv(directory: str, *, revision: int) -> list[str]:
    """createrepo_c for one channel and arch; timestamps from the publish date (reproducible)."""
    return ["createrepo_c", "--quiet", "--no-database", "--revision", str(revision), "--set-timestamp-to-revision",
            directory]


def point_at(text: str, base_url: str, *, root: Path | None = None) -> str:
    """A generated .repo file pointed at `base_url`: its baseurl, and its `gpgkey=file:///etc/pki/rpm-gpg/...`
    (installed by endura-archive-keyring) as that file inside `root` (dnf reads file:// keys from the host, even
    with --installroot), or without `root` the served key file: what the install guide's bootstrap puts there."""
    local = f"file://{root}{RPM_KEYRING}" if root is not None else f"{base_url}/{KEY_FILE}"
    text = text.replace(f"gpgkey=file://{RPM_KEYRING}", f"gpgkey={local}")
    text = re.sub(r"^(baseurl=)\S+?(/rpm/)", lambda m: f"{m.group(1)}{base_url}{m.group(2)}", text, flags=re.M)
    return re.sub(r"^(gpgkey=)\S+?(/keys/)", lambda m: f"{m.group(1)}{base_url}{m.group(2)}", text, flags=re.M)


# --- building the repodata -------------------------------------------------------------------------


def createrepo(directory: Path, wanted: dict[str, tuple[str, int]], *, date: int, previous: Path | None) -> None:
    """createrepo_c over `directory`, reusing `previous` (an older generation's same directory) for unchanged
    rpms; the metadata is checked against `wanted` (`{packages/<file>: (sha256, size)}`, see `repo.indexcache`)."""
    argv = createrepo_argv(str(directory), revision=date)
    if previous is not None and (previous / "repodata" / "repomd.xml").is_file():
        argv = [argv[0], "--update", "--update-md-path", str(previous), *argv[1:]]
    for attempt in (1, 2):
        run(argv, timeout=600)
        problems = indexcache.differences(indexcache.repodata_listed(directory), wanted)
        if not problems:
            return
        if "--update" not in argv or attempt == 2:
            break
        log.warn(f"createrepo_c --update reused metadata of {previous} that disagrees with the manifests "
                 f"({problems[0]}); indexing again without it")
        shutil.rmtree(directory / "repodata")
        argv = createrepo_argv(str(directory), revision=date)
    raise indexcache.mismatch_error(directory / "repodata", problems)


def build_channel(gen: Path, channel: str, entries: list[dict], keys: gpg.Keys, *, date: int, base_url: str,
                  previous: Path | None = None) -> list[Path]:
    """createrepo_c + signature for every arch of the channel (the .rpms are already in place).

    `previous`: an older generation whose metadata createrepo_c may reuse for the rpms it already indexed."""
    def one_arch(arch: str) -> Path:
        directory = gen / rpm_dir(channel, arch)
        (directory / "packages").mkdir(parents=True, exist_ok=True)
        createrepo(directory, indexcache.expected(entries, "rpm", "packages/", package_arch=arch), date=date,
                   previous=previous / rpm_dir(channel, arch) if previous is not None else None)
        repomd = directory / "repodata" / "repomd.xml"
        gpg.detached(keys, repomd, repomd.with_name("repomd.xml.asc"), epoch=date)
        for path in (directory / "repodata").iterdir():  # If-Modified-Since/ETag see every publish (see apt.set_mtime)
            os.utime(path, (date, date))
        return directory

    # the arches side by side: separate directories, and each mostly waits on createrepo_c and gpg
    arches = list(machine_arches())
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(arches)) as pool:
        dirs = list(pool.map(one_arch, arches))
    rpm_root = gen / "rpm"
    (rpm_root / f"endura-{channel}.repo").write_text(dnf_repo(channel, base_url))
    (rpm_root / f"endura-{channel}.zypper.repo").write_text(zypper_repo(channel, base_url))
    return dirs


# --- the checks: rpm -K and dnf ---------------------------------------------------------------------


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


def dnf_config(workdir: Path, repo_text: str, base_url: str, *, root: Path | None = None) -> Path:
    """A private dnf.conf whose only repository is our generated .repo file pointed at `base_url`
    (its local key file inside `root`, else the served one: see `point_at`).

    Nothing of the host's dnf configuration is read: no plugins (`plugins=0`; dnf loads them from the
    host's pluginpath even with --installroot, and e.g. Debian's dnf-plugins-core `local` plugin adds a
    repository `_dnf_local` with gpgcheck=1 and no key, which fails every install), no /etc/yum.repos.d
    (`reposdir`), no /etc/dnf/vars (`varsdir`, an empty directory of ours)."""
    repos, dnf_vars = workdir / "repos.d", workdir / "vars"
    for d in (repos, dnf_vars):
        d.mkdir(parents=True, exist_ok=True)
    (repos / "endura.repo").write_text(point_at(repo_text, base_url, root=root))
    conf = workdir / "dnf.conf"
    conf.write_text(f"[main]\nreposdir={repos}\nvarsdir={dnf_vars}\ncachedir={workdir / 'cache'}\nplugins=0\n"
                    "gpgcheck=1\ninstall_weak_deps=False\nkeepcache=False\nskip_if_unavailable=False\n")
    return conf


def dnf_argv(conf: Path, installroot: Path, *args: str) -> list[str]:
    """dnf with only `conf` (see `dnf_config`): the command line repeats what --installroot would otherwise
    look up elsewhere (reposdir and varsdir given here are host paths, dnf(8) "--installroot")."""
    return ["dnf", "-c", str(conf), "--installroot", str(installroot), "--assumeyes", "--releasever=9", "--noplugins",
            "--setopt=reposdir=" + str(conf.parent / "repos.d"), "--setopt=varsdir=" + str(conf.parent / "vars"),
            "--nodocs", *args]


#: the lines of dnf's output that say what went wrong (the rest: progress, key import notes, and the
#: option dump of a "Problem repository" that can fill the whole tail)
DNF_ERROR_LINE = re.compile(r"^\s*(Error:|Problem( \d+)?:|Problem repository:|- (Curl error|Status code|nothing provides|"
                            r"conflicting requests|package |cannot install)|Errors during downloading|"
                            r"You have enabled checking of packages via GPG keys|.*GPG (signature|check) .*(error|FAILED)|"
                            r"No match for argument|Failed to download|Public key for .* is not installed)")


def dnf_error_lines(output_text: str, limit: int = 6) -> list[str]:
    """dnf's own error lines from its output (stderr, then stdout), in order, without repeats."""
    found: list[str] = []
    for line in output_text.splitlines():
        line = line.rstrip()
        if DNF_ERROR_LINE.match(line) and line.strip() not in found and line.strip() != "Error:":
            found.append(line.strip())
    return found[:limit]


def run_dnf(argv: list[str], *, timeout: float = 600):
    """`run` for dnf: a failure names dnf's error lines in the message (`dnf_error_lines`), not only the tail."""
    try:
        return run(argv, env=client_env(), timeout=timeout)
    except CommandFailed as exc:
        lines = dnf_error_lines(exc.stderr)
        said = " ".join(line if line.endswith(":") else line + ";" for line in lines).rstrip(";") if lines \
            else (exc.detail.strip().splitlines() or ["(no output)"])[-1]
        raise EnduraError(f"dnf failed (exit code {exc.returncode}): {said} [command: {format_argv(exc.argv)}]",
                          detail=exc.detail) from None


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


def verify_dnf(gen: Path, channel: str, url: str, workdir: Path, wanted: str | None = None) -> str:
    """dnf installs from the channel (`wanted`: the rpm Version it must install, None: any)."""
    require("dnf", "rpm")
    conf = dnf_config(workdir / "dnf", (gen / "rpm" / f"endura-{channel}.repo").read_text(), url)
    root = workdir / "rpm-root"
    prepare_rpm_root(root)
    run_dnf(dnf_argv(conf, root, "--setopt=tsflags=noscripts", "install", PACKAGE, KEYRING_PACKAGE))
    installed = output(["rpm", "--root", str(root), "-q", "--qf", "%{VERSION}-%{RELEASE}.%{ARCH}", PACKAGE])
    if wanted:
        if installed.split("-", 1)[0] != wanted:
            raise EnduraError(f"dnf installed endura-sensor {installed} from channel {channel}, expected version {wanted}")
    aroot = workdir / "rpm-root-aarch64"
    aroot.mkdir()
    run_dnf(dnf_argv(conf, aroot, "--forcearch=aarch64", "makecache"))
    return installed


