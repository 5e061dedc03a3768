"""Fetch a target's kernel from its apt suite through a private APT_CONFIG, verify it, cache it.

Nothing under /etc/apt is read or written: each (mirror, suite, arch) gets its own sources list,
state, lists and archive cache under `<cache>/apt/<suite>-<arch>/`. The kernel package named by the
catalog (often a meta package such as `linux-image-cloud-amd64`) is resolved through its
dependencies to the package holding `/boot/vmlinuz-*` (from 6.19 that is `linux-binary-<kver>`).
apt verifies the signed index and the download; we keep the index's SHA256 and check the cached
.deb and the extracted vmlinuz against it on every use.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from toolbox import log
from toolbox.errors import EnduraError
from toolbox.files import atomic_write, sha256_file
from toolbox.run import CommandFailed, run
from toolbox.tools import require

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600  # re-run `apt-get update` for a suite at most once a day (--refresh forces)
_VERSIONED = re.compile(r"^linux-(image|binary)-\d")


def cache_root() -> Path:
    base = os.environ.get("ENDURA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "endura")
    return Path(base) / "vmtest"


# ------------------------------------------------------------------ private apt configuration

def apt_config_text(root: Path, arch: str) -> str:
    """An apt.conf that confines apt to `root` (sources, parts, state, cache) and one architecture."""
    r = os.fspath(root)
    return "\n".join([
        f'Dir::Etc "{r}/etc";',
        'Dir::Etc::SourceList "sources.list";',
        'Dir::Etc::SourceParts "sources.list.d";',
        'Dir::Etc::Parts "apt.conf.d";',
        'Dir::Etc::Preferences "preferences";',
        'Dir::Etc::PreferencesParts "preferences.d";',
        f'Dir::State "{r}/state";',
        f'Dir::State::status "{r}/state/status";',
        f'Dir::Cache "{r}/cache";',
        f'APT::Architecture "{arch}";',
        f'APT::Architectures {{ "{arch}"; }};',
        'Acquire::Languages "none";',
        'Acquire::Retries "3";',
        "",
    ])


def sources_line(mirror: str, suite: str, keyring: str = KEYRING) -> str:
    return f"deb [signed-by={keyring}] {mirror} {suite} main\n"


@dataclass(frozen=True)
class AptRoot:
    """A private apt universe for one (mirror, suite, arch)."""

    root: Path
    mirror: str
    suite: str
    arch: str

    @property
    def config(self) -> Path:
        return self.root / "etc" / "apt.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"APT_CONFIG": os.fspath(self.config), "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}

    def setup(self) -> None:
        for sub in ("etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "state/lists/partial",
                    "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        status = self.root / "state" / "status"
        if not status.exists():
            status.write_text("")
        atomic_write(self.root / "etc" / "sources.list", sources_line(self.mirror, self.suite))
        atomic_write(self.config, apt_config_text(self.root, self.arch))

    def update(self, refresh: bool = False) -> None:
        stamp = self.root / "state" / "updated"
        if not refresh and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE:
            return
        with log.step(f"apt-get update for {self.suite} ({self.mirror}, {self.arch})"):
            run(["apt-get", "update", "-q"], extra_env=self.env, timeout=600,
                hint=f"cannot read the {self.suite} index from {self.mirror}; check the network or the mirror")
        stamp.touch()

    def show(self, package: str) -> dict[str, str]:
        text = run(["apt-cache", "show", "--no-all-versions", package], extra_env=self.env, timeout=120,
                   hint=f"package {package} is not in {self.suite} on {self.mirror}").stdout
        fields = parse_control(text)
        if not fields.get("Package"):
            raise EnduraError(f"package {package} is not in {self.suite} on {self.mirror} (apt-cache show printed "
                              "nothing); fix the kernel package name in distros/catalog.toml")
        return fields

    def download(self, package: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        run(["apt-get", "download", "-q", f"{package}={version}"], cwd=dest, extra_env=self.env, timeout=1800,
            hint=f"downloading {package} {version} from {self.mirror} failed")
        found = sorted(dest.glob(f"{package}_*.deb"))
        if not found:
            raise EnduraError(f"apt-get download {package}={version} left no .deb in {dest}")
        return found[-1]


def parse_control(text: str) -> dict[str, str]:
    """The first stanza of deb822 text (`apt-cache show`) as a dict; continuation lines joined."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        fields[key] = value.strip()
    return fields


def dependency_names(depends: str) -> list[str]:
    """'a (>= 1) | b, c [amd64]' -> ['a', 'b', 'c'] (every alternative, in order)."""
    names = []
    for group in depends.split(","):
        for alt in group.split("|"):
            name = alt.strip().split(" ", 1)[0].split(":", 1)[0].strip()
            if name:
                names.append(name)
    return names


def next_image_package(fields: dict[str, str]) -> str | None:
    """Which dependency holds the kernel image, or None when `fields` is that package itself.

    linux-image-cloud-amd64 -> linux-image-6.1.0-41-cloud-amd64 (a meta package's versioned image);
    linux-image-6.19.1+deb14-amd64 -> linux-binary-6.19.1+deb14-amd64 (6.19 split the image out).
    """
    deps = dependency_names(fields.get("Depends", "") + "," + fields.get("Pre-Depends", ""))
    binaries = [d for d in deps if d.startswith("linux-binary-")]
    if binaries:
        return binaries[0]
    if _VERSIONED.match(fields.get("Package", "")):
        return None
    images = [d for d in deps if _VERSIONED.match(d)]
    return images[0] if images else None


# ------------------------------------------------------------------ the cached kernel

@dataclass(frozen=True)
class KernelImage:
    """A verified kernel on disk: the vmlinuz, its config, and where it came from."""

    vmlinuz: Path
    config: Path | None
    release: str  # uname -r, e.g. 6.1.0-41-cloud-amd64
    package: str
    version: str
    deb_sha256: str
    vmlinuz_sha256: str

    @property
    def label(self) -> str:
        return self.release

    def to_json(self) -> dict:
        d = asdict(self)
        d["vmlinuz"] = os.fspath(self.vmlinuz)
        d["config"] = os.fspath(self.config) if self.config else None
        return d


def _load_record(path: Path) -> KernelImage | None:
    try:
        d = json.loads(path.read_text())
        return KernelImage(Path(d["vmlinuz"]), Path(d["config"]) if d.get("config") else None, d["release"],
                           d["package"], d["version"], d["deb_sha256"], d["vmlinuz_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify_cached(image: KernelImage) -> None:
    """Raise when the cached vmlinuz does not match the checksum recorded when it was extracted."""
    if not image.vmlinuz.is_file():
        raise EnduraError(f"cached kernel {image.vmlinuz} is missing")
    got = sha256_file(image.vmlinuz)
    if got != image.vmlinuz_sha256:
        raise EnduraError(f"cached kernel {image.vmlinuz} is corrupt: sha256 {got}, expected "
                          f"{image.vmlinuz_sha256}; it will be extracted again (or delete {image.vmlinuz.parent})")


def extract_kernel(deb: Path, dest: Path) -> tuple[Path, Path | None, str]:
    """dpkg-deb -x the package into a temp dir; keep boot/vmlinuz-* and boot/config-*."""
    require("dpkg-deb")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kernel-", dir=dest) as tmp:
        run(["dpkg-deb", "-x", os.fspath(deb), tmp], timeout=600)
        images = sorted(Path(tmp, "boot").glob("vmlinuz-*"))
        if not images:
            raise EnduraError(f"{deb.name} has no /boot/vmlinuz-*; the catalog's kernel package must be (or depend "
                              "on) the package holding the image")
        release = images[0].name[len("vmlinuz-"):]
        vmlinuz = dest / images[0].name
        shutil.move(os.fspath(images[0]), vmlinuz)
        config_src = Path(tmp, "boot", f"config-{release}")
        config = None
        if config_src.is_file():
            config = dest / config_src.name
            shutil.move(os.fspath(config_src), config)
    return vmlinuz, config, release


def fetch(target_id: str, package: str, mirror: str, suite: str, arch: str, *, refresh: bool = False,
          cache: Path | None = None, dry_run: bool = False) -> KernelImage:
    """The verified kernel for `package` from `suite`, downloaded on first use and then cached.

    Offline with a cached kernel: the cached one is used (with a warning) when `apt-get update` fails.
    """
    cache = cache or cache_root()
    record = cache / "kernels" / f"{target_id}-{arch}.json"
    apt = AptRoot(cache / "apt" / f"{suite}-{arch}", mirror, suite, arch)
    if dry_run:
        log.info(f"+ APT_CONFIG={apt.config} apt-get update; apt-get download {package} (dry run)")
        return KernelImage(cache / "kernels" / "DRY-RUN" / "vmlinuz", None, "dry-run", package, "", "", "")
    require("apt-get", "dpkg-deb")
    apt.setup()
    try:
        apt.update(refresh)
    except CommandFailed as exc:
        cached = _load_record(record)
        if cached is None:
            raise
        log.warn(f"{exc.message}; using the cached kernel {cached.package} {cached.version}")
        try:
            verify_cached(cached)
            return cached
        except EnduraError:
            raise exc from None

    # resolve the meta package to the one that holds the image
    name, seen = package, []
    while True:
        fields = apt.show(name)
        seen.append(name)
        nxt = next_image_package(fields)
        if nxt is None:
            break
        if nxt in seen or len(seen) > 4:
            raise EnduraError(f"cannot resolve {package} to a kernel image package (followed {' -> '.join(seen)})")
        name = nxt
    version, sha256 = fields.get("Version", ""), fields.get("SHA256", "")
    if not sha256:
        raise EnduraError(f"the {suite} index has no SHA256 for {name} {version}; cannot verify the download")

    cached = _load_record(record)
    if cached and cached.package == name and cached.version == version and cached.deb_sha256 == sha256:
        try:
            verify_cached(cached)
            return cached
        except EnduraError as exc:
            log.warn(exc.message)

    debs = cache / "debs"
    deb = debs / Path(fields.get("Filename", f"{name}_{version}_{arch}.deb")).name
    if deb.is_file() and sha256_file(deb) != sha256:
        log.warn(f"cached {deb} does not match the index's sha256 {sha256}; downloading it again")
        deb.unlink()
    if not deb.is_file():
        with log.step(f"downloading {name} {version} ({int(fields.get('Size', '0')) // 1_000_000} MB) from {suite}"):
            with tempfile.TemporaryDirectory(prefix="dl-", dir=cache) as tmp:
                got = apt.download(name, version, Path(tmp))
                actual = sha256_file(got)
                if actual != sha256:
                    raise EnduraError(f"downloaded {got.name} has sha256 {actual}, the signed {suite} index says "
                                      f"{sha256}; the mirror {mirror} served a corrupt file, try again later")
                debs.mkdir(parents=True, exist_ok=True)
                os.replace(got, deb)
    with log.step(f"extracting the kernel from {deb.name}"):
        dest = cache / "kernels" / f"{name}_{version}"
        vmlinuz, config, release = extract_kernel(deb, dest)
    image = KernelImage(vmlinuz, config, release, name, version, sha256, sha256_file(vmlinuz))
    atomic_write(record, json.dumps(image.to_json(), indent=2) + "\n")
    return image
