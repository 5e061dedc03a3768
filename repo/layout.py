"""Where everything lives in a repository generation, and the small texts derived from it (pure code).

A repository root (`--repo-root`, default `build/repo`) holds::

    generations/000007/            one complete, signed, verified tree (the web server's view)
    generations/.building-000008/  a generation being built (never served, removed if abandoned)
    current -> generations/000007  the web server's document root (switched with one rename)

and one generation holds, for every channel (`latest`, `testing`, `stable`)::

    keys/endura-archive-keyring.asc          the OpenPGP public key(s): what clients bootstrap with
    keys/endura-archive-keyring.json, keys/packages/   the keyring packages (deb+rpm) carrying them (`repo.keyring`)
    apt/dists/<channel>/InRelease, Release, Release.gpg, main/binary-<arch>/Packages{,.gz,.xz},
                       main/binary-<arch>/by-hash/SHA256|SHA512/<digest>
    apt/pool/main/e/endura-sensor/*.deb      shared by every suite: promotion keeps the same bytes
    apt/endura-<channel>.sources             deb822 source for /etc/apt/sources.list.d/
    rpm/<channel>/<x86_64|aarch64>/packages/*.rpm, repodata/repomd.xml(.asc)
    rpm/endura-<channel>.repo                for dnf/yum (/etc/yum.repos.d/)
    rpm/endura-<channel>.zypper.repo         for zypper (/etc/zypp/repos.d/)
    arch/<channel>/<x86_64|aarch64>/*.pkg.tar.zst(.sig), endura.db(.sig), endura.files
    arch/endura-<channel>.pacman.conf        the [endura] section for /etc/pacman.conf
    tarball/<channel>/*.tar.gz(.sig), index.json, SHA256SUMS(.asc)
    channels/state.json(.asc), promotions.jsonl(.asc)   which version each channel holds, and how it got there
    install/index.md, install/<channel>/<target-id>.md   install guides (see `repo.guides`)
    generation.json                          what this generation holds and where it came from
"""
from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Iterable

from toolbox.errors import EnduraError

CHANNELS = ("latest", "testing", "stable")
DEFAULT_CHANNEL = "latest"
DEFAULT_BASE_URL = "https://repo.endurasecurity.com"
DEFAULT_VALID_DAYS = 7
DEFAULT_KEEP = 5
#: the families this module publishes (the apk index is not built yet)
PUBLISHED_FAMILIES = ("deb", "rpm", "arch", "tgz")

ORIGIN = "Endura"
LABEL = "Endura Runtime Sensor"
APT_COMPONENT = "main"
#: our arch names are Debian's; rpm directories use the rpm names ($basearch)
DEB_ARCH = {"amd64": "amd64", "arm64": "arm64"}
RPM_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
KEY_FILE = "keys/endura-archive-keyring.asc"
APT_KEYRING = "/etc/apt/keyrings/endura-archive-keyring.asc"
#: the same keys for dnf/yum/zypper (`gpgkey=`): installed by the endura-archive-keyring rpm (see `repo.keyring`)
RPM_KEYRING = "/etc/pki/rpm-gpg/RPM-GPG-KEY-endura"
GENERATION_FILE = "generation.json"
#: the signed channel state and promotion log (written by `channels.promote`, carried by every publish)
CHANNEL_RECORDS_DIR = "channels"
GENERATIONS_DIR = "generations"
CURRENT = "current"
BUILDING_PREFIX = ".building-"
#: scratch space of a verification (Debian root, dnf roots) in the repository root, not served
VERIFY_PREFIX = ".verify-"
#: checksums in Packages and Release: SHA256 and SHA512 only (MD5/SHA1 are not trusted by apt)
APT_HASHES = ("SHA256", "SHA512")


# --- paths ------------------------------------------------------------------------------------


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise EnduraError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
    return channel


def apt_suite_dir(channel: str) -> str:
    return f"apt/dists/{channel}"


def deb_pool_path(file: str) -> str:
    name = file.split("_", 1)[0]
    return f"apt/pool/{APT_COMPONENT}/{name[0]}/{name}/{file}"


def rpm_dir(channel: str, package_arch: str) -> str:
    return f"rpm/{channel}/{package_arch}"


def pacman_dir(channel: str, package_arch: str) -> str:
    return f"arch/{channel}/{package_arch}"


def tarball_dir(channel: str) -> str:
    return f"tarball/{channel}"


def detached_signature(artifact: dict) -> str | None:
    sig = artifact.get("signature", "")
    return sig.split(":", 1)[1] if sig.startswith("detached:") else None


def artifact_paths(channel: str, artifact: dict) -> list[str]:
    """Relative paths (in a generation) of an artifact and of its detached signature, if any."""
    family, file = artifact["family"], artifact["file"]
    if family == "deb":
        paths = [deb_pool_path(file)]
    elif family == "rpm":
        paths = [f"{rpm_dir(channel, artifact['package_arch'])}/packages/{file}"]
    elif family == "arch":
        paths = [f"{pacman_dir(channel, artifact['package_arch'])}/{file}"]
    elif family == "tgz":
        paths = [f"{tarball_dir(channel)}/{file}"]
    else:
        raise EnduraError(f"artifact {file} has family {family!r}, which is not published yet; "
                          f"publish only {', '.join(PUBLISHED_FAMILIES)} (the apk index is still to do)")
    sig = detached_signature(artifact)
    if sig:
        paths.append(paths[0].rsplit("/", 1)[0] + "/" + sig)
    return paths


# --- client configuration files ----------------------------------------------------------------


def apt_sources(channel: str, base_url: str) -> str:
    """deb822 source for /etc/apt/sources.list.d/endura-<channel>.sources (apt >= 1.1)."""
    return (
        f"Types: deb\n"
        f"URIs: {base_url.rstrip('/')}/apt\n"
        f"Suites: {channel}\n"
        f"Components: {APT_COMPONENT}\n"
        f"Signed-By: {APT_KEYRING}\n"
    )


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


# --- apt Release fields -------------------------------------------------------------------------


def rfc2822(epoch: int) -> str:
    """The date format of Release files: `Sat, 28 Nov 2026 22:00:00 UTC`."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")


def parse_rfc2822(text: str) -> int:
    parsed = email.utils.parsedate_to_datetime(text.replace("UTC", "+0000"))
    return int(parsed.timestamp())


def next_date(now: float, previous: int | None) -> int:
    """The new Release Date: now, but always after the previous one (apt keeps the newer Release)."""
    date = int(now)
    if previous is not None and date <= previous:
        date = previous + 1
    return date


def release_fields(text: str) -> dict[str, str]:
    """The single-line fields of a Release/InRelease file (checksum lists are skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("-----BEGIN PGP SIGNED"):
            continue
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            break
        m = re.match(r"^([A-Za-z0-9-]+):\s*(.*)$", line)
        if m and m.group(2):
            fields[m.group(1)] = m.group(2)
    return fields


def release_checksums(text: str, hash_name: str) -> list[tuple[str, int, str]]:
    """`(digest, size, path)` entries of one checksum list (e.g. `SHA256`) of a Release file."""
    out: list[tuple[str, int, str]] = []
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.rstrip() == f"{hash_name}:"
            continue
        if inside:
            digest, size, path = line.split()
            out.append((digest, int(size), path))
    return out


def apt_ftparchive_options(channel: str, *, date: int, valid_until: int, arches: Iterable[str]) -> list[str]:
    """`-o` options for `apt-ftparchive release`: our fields, SHA256+SHA512 only, by-hash announced."""
    opts = {
        "APT::FTPArchive::MD5": "false",
        "APT::FTPArchive::SHA1": "false",
        "APT::FTPArchive::SHA256": "true",
        "APT::FTPArchive::SHA512": "true",
        "APT::FTPArchive::Release::Origin": ORIGIN,
        "APT::FTPArchive::Release::Label": LABEL,
        "APT::FTPArchive::Release::Suite": channel,
        "APT::FTPArchive::Release::Codename": channel,
        "APT::FTPArchive::Release::Architectures": " ".join(sorted(arches)),
        "APT::FTPArchive::Release::Components": APT_COMPONENT,
        "APT::FTPArchive::Release::Description": f"{LABEL} packages, channel {channel}",
        "APT::FTPArchive::Release::Acquire-By-Hash": "yes",
        "APT::FTPArchive::Release::Date": rfc2822(date),
        # apt-ftparchive writes Valid-Until only when ValidTime is set; the exact value is ours
        "APT::FTPArchive::Release::ValidTime": str(max(1, valid_until - date)),
        "APT::FTPArchive::Release::Valid-Until": rfc2822(valid_until),
    }
    args: list[str] = []
    for key, value in opts.items():
        args += ["-o", f"{key}={value}"]
    return args


def packages_argv(arch: str) -> list[str]:
    """`apt-ftparchive packages` for one architecture, run from the `apt/` directory."""
    return ["apt-ftparchive", "-o", "APT::FTPArchive::MD5=false", "-o", "APT::FTPArchive::SHA1=false",
            "--arch", arch, "packages", f"pool/{APT_COMPONENT}"]


def release_argv(channel: str, *, date: int, valid_until: int, arches: Iterable[str]) -> list[str]:
    """`apt-ftparchive release` for one suite, run from the `apt/` directory."""
    return ["apt-ftparchive", *apt_ftparchive_options(channel, date=date, valid_until=valid_until, arches=arches),
            "release", apt_suite_dir(channel).removeprefix("apt/")]


def createrepo_argv(directory: str, *, revision: int) -> list[str]:
    """createrepo_c for one channel and arch; timestamps from the publish date (reproducible)."""
    return ["createrepo_c", "--quiet", "--no-database", "--revision", str(revision), "--set-timestamp-to-revision",
            directory]


# --- generations ----------------------------------------------------------------------------------


def generation_name(number: int) -> str:
    return f"{number:06d}"


def parse_generation_name(name: str) -> int | None:
    return int(name) if re.fullmatch(r"\d{6,}", name) else None


def generations_to_keep(numbers: Iterable[int], current: int | None, keep: int) -> set[int]:
    """The newest `keep` generations, and always the current one (a rollback may have made it older)."""
    ordered = sorted(numbers, reverse=True)
    kept = set(ordered[:max(1, keep)])
    if current is not None:
        kept.add(current)
    return kept


# --- channel contents -------------------------------------------------------------------------------

#: the manifest fields a generation records for each published artifact
ARTIFACT_FIELDS = ("file", "family", "arch", "package_arch", "package_version", "version", "sha256", "size", "signature")


def channel_entry(artifact: dict) -> dict:
    return {k: artifact[k] for k in ARTIFACT_FIELDS if k in artifact}


def merge_build(existing: list[dict], manifest: dict) -> tuple[list[dict], list[dict]]:
    """Add a build's publishable artifacts to a channel's list: returns (merged list, newly added).

    Publishing the same build twice adds nothing; a file name that is already published with other
    bytes is refused (a published version is immutable)."""
    by_file = {a["file"]: a for a in existing}
    added: list[dict] = []
    for artifact in manifest["artifacts"]:
        if artifact["family"] not in PUBLISHED_FAMILIES:
            continue
        entry = channel_entry(artifact)
        old = by_file.get(entry["file"])
        if old is None:
            by_file[entry["file"]] = entry
            added.append(entry)
        elif old["sha256"] != entry["sha256"]:
            raise EnduraError(
                f"{entry['file']} is already published with sha256 {old['sha256'][:16]}…, this build has "
                f"{entry['sha256'][:16]}…; a published version is immutable: build a new version (ENDURA_VERSION or a new tag)"
            )
    merged = sorted(by_file.values(), key=lambda a: (a["family"], a["arch"], a["file"]))
    return merged, added
