"""Install guides, one per catalog target, generated for a base URL and a channel (pure text + one writer).

    python3 -m repo.guides --base-url https://repo.endurasecurity.com --channel latest --out DIR [--from GENERATION]

Every publish writes them into the generation (`install/<channel>/<target-id>.md`, an index per
channel and `install/index.md`); `repo.mirror` writes them again for an offline bundle, with a
`file://` base URL. The commands a user runs are in fenced ```sh blocks, nothing else is: the
integration tests extract those blocks and run them, verbatim, against a published repository
(`tests/integration/test_guides.py`). Each block is a complete `sh -e` script; the only block that
may exit non-zero on a healthy host is the one that runs `endura-sensor check` (10: degraded tier,
20: no tier; the guide says so).

Commands run as root (the guides say so once, rather than `sudo` on every line). A file is fetched
with `curl -fsSL --create-dirs -o DEST URL` from an http(s) base URL, or copied with
`install -D -m 0644 PATH DEST` from a `file://` one (an air-gapped host needs neither network nor curl).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from distros import Catalog, Target, load_catalog
from repo import keyring, layout, sign
from toolbox.errors import EnduraError, cli_main

GUIDES_DIR = "install"
PACKAGE = "endura-sensor"
#: installed with the sensor: it owns the key file and carries key rotations as upgrades
KEYRING = keyring.PACKAGE
#: the tarball every target can use, listed in each index next to the targets
TARBALL_GUIDE = "tarball"
_LSM_LIST = re.compile(r"lsm=([a-z]+(?:,[a-z]+)+)")
_APT_INSTALL = re.compile(r"apt install ([a-z0-9][a-z0-9.+-]*)")
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a guide installs from: a published (or mirrored) repository and one of its channels."""

    base_url: str
    channel: str
    #: the repository key(s): pacman's --lsign-key, rpm's gpg-pubkey-<id> on uninstall, shown to the user
    fingerprints: tuple[str, ...]
    #: the newest tarball version in the channel (the tarball steps name it); None: the channel has none
    tarball_version: str | None = None

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def local(self) -> bool:
        return self.url.startswith("file://")

    def path(self, rel: str) -> str:
        """The file's path (file:// base) or URL (http base)."""
        return self.url.removeprefix("file://") + "/" + rel if self.local else f"{self.url}/{rel}"

    def fetch(self, rel: str, dest: str) -> str:
        """The command that puts the repository file `rel` at `dest` (directories created)."""
        if self.local:
            return f"install -D -m 0644 {self.path(rel)} {dest}"
        return f"curl -fsSL --create-dirs -o {dest} {self.path(rel)}"

    def cat(self, rel: str) -> str:
        return f"cat {self.path(rel)}" if self.local else f"curl -fsSL {self.path(rel)}"


def _sh(*lines: str) -> str:
    return "```sh\n" + "\n".join(lines) + "\n```\n"


def _text(body: str) -> str:
    return "```text\n" + body.rstrip("\n") + "\n```\n"


def sh_blocks(markdown: str) -> list[str]:
    """The ```sh blocks of a guide, in order (what a user runs; the tests run exactly these)."""
    return [m.group(1) for m in _SH_BLOCK.finditer(markdown)]


def _rpm_key_names(src: Source) -> str:
    """rpm names an imported OpenPGP key gpg-pubkey-<the last 8 hex digits of its fingerprint, lowercase>."""
    return " ".join(f"gpg-pubkey-{f[-8:].lower()}" for f in src.fingerprints)


# --- per package manager: (prerequisites, repository, install, upgrade, uninstall) ---------------------


@dataclasses.dataclass
class Steps:
    repository: str
    install: str
    upgrade: str
    uninstall: str
    prerequisites: str = ""


def apt_steps(target: Target, src: Source) -> Steps:
    ch = src.channel
    sources = f"/etc/apt/sources.list.d/endura-{ch}.sources"
    pre = "" if src.local else (
        "curl and the CA certificates fetch the key and the source file:\n\n"
        + _sh("apt-get update", "apt-get install -y ca-certificates curl"))
    return Steps(
        prerequisites=pre,
        repository=(
            f"The key goes to `{layout.APT_KEYRING}`; the deb822 source names it in `Signed-By`, so apt trusts "
            "it for this repository only:\n\n"
            + _sh(src.fetch(layout.KEY_FILE, layout.APT_KEYRING), src.fetch(f"apt/endura-{ch}.sources", sources))
            + f"\n`{sources}` reads:\n\n" + _text(layout.apt_sources(ch, src.url))),
        install=(f"apt checks the signed `InRelease` (and its `Valid-Until`), the index hashes and the package hash. "
                 f"`{target.python_package}` and `{target.libbpf_package}` come from {target.name}'s own repositories.\n\n"
                 f"`{KEYRING}` takes over the key file and keeps it current (a key rotation arrives as its upgrade).\n\n"
                 + _sh("apt-get update", f"apt-get install -y {KEYRING} {PACKAGE}", f"{PACKAGE} --version")),
        upgrade=f"`apt-get update && apt-get install -y {PACKAGE}` (or any `apt-get upgrade`).",
        uninstall=(_sh(f"apt-get remove -y {PACKAGE} {KEYRING}", f"rm -f {sources} {layout.APT_KEYRING}", "apt-get update")
                   + f"\n`apt-get purge {PACKAGE}` instead of `remove` also deletes `/etc/endura`, `/var/lib/endura` "
                   "and `/var/log/endura`.\n"),
    )


def dnf_steps(target: Target, src: Source) -> Steps:
    ch, tool = src.channel, target.package_manager
    repo_file = f"/etc/yum.repos.d/endura-{ch}.repo"
    return Steps(
        repository=(
            f"The key goes to `{layout.RPM_KEYRING}`, the file the `.repo` file's `gpgkey=` names (never the server's "
            "copy); `rpm --import` trusts it for package signatures; the `.repo` file has `gpgcheck=1` (each package's "
            "signature) and `repo_gpgcheck=1` (the signed `repomd.xml`):\n\n"
            + _sh(src.fetch(layout.KEY_FILE, layout.RPM_KEYRING), src.fetch(f"rpm/endura-{ch}.repo", repo_file),
                  f"rpm --import {layout.RPM_KEYRING}")
            + f"\n`{repo_file}` reads:\n\n" + _text(layout.dnf_repo(ch, src.url))),
        install=(f"`{target.python_package}` and `{target.libbpf_package}` come from {target.name}'s own repositories.\n\n"
                 f"`{KEYRING}` takes over the key file and keeps it current (a key rotation arrives as its upgrade).\n\n"
                 + _sh(f"{tool} install -y {KEYRING} {PACKAGE}", f"{PACKAGE} --version")),
        upgrade=f"`{tool} upgrade -y {PACKAGE} {KEYRING}`.",
        uninstall=_sh(f"{tool} remove -y {PACKAGE} {KEYRING}", f"rm -f {repo_file}", f"rpm -e {_rpm_key_names(src)}"),
    )


def zypper_steps(target: Target, src: Source) -> Steps:
    ch = src.channel
    repo_file = f"/etc/zypp/repos.d/endura-{ch}.repo"
    return Steps(
        repository=(
            "zypper trusts the keys in the rpm database: import it first. The `.repo` file checks the signed "
            "`repomd.xml` and each package's signature:\n\n"
            + _sh(src.fetch(layout.KEY_FILE, layout.RPM_KEYRING), f"rpm --import {layout.RPM_KEYRING}",
                  src.fetch(f"rpm/endura-{ch}.zypper.repo", repo_file))
            + f"\n`{repo_file}` reads:\n\n" + _text(layout.zypper_repo(ch, src.url))),
        install=(f"`{target.python_package}` and `{target.libbpf_package}` come from {target.name}'s own repositories.\n\n"
                 + _sh("zypper --non-interactive refresh", f"zypper --non-interactive install {KEYRING} {PACKAGE}",
                       f"{PACKAGE} --version")),
        upgrade=f"`zypper --non-interactive refresh && zypper --non-interactive update {PACKAGE}`.",
        uninstall=_sh(f"zypper --non-interactive remove {PACKAGE} {KEYRING}", f"rm -f {repo_file}", f"rpm -e {_rpm_key_names(src)}"),
    )


def pacman_steps(target: Target, src: Source) -> Steps:
    ch = src.channel
    key_tmp = "/tmp/endura-archive-keyring.asc"
    return Steps(
        repository=(
            "pacman-key adds the key and signs it locally (trusted); the `[endura]` section (with "
            "`SigLevel = Required`: database and package signatures) is appended to `/etc/pacman.conf`:\n\n"
            + _sh(src.fetch(layout.KEY_FILE, key_tmp), f"pacman-key --add {key_tmp}",
                  *[f"pacman-key --lsign-key {f}" for f in src.fingerprints], f"rm -f {key_tmp}",
                  f"{src.cat(f'arch/endura-{ch}.pacman.conf')} >> /etc/pacman.conf")
            + "\nThe section reads:\n\n" + _text(_pacman_section(src))),
        install=("Arch does not support partial upgrades: install with `-Syu`. "
                 f"`{target.python_package}` and `{target.libbpf_package}` come from Arch's own repositories.\n\n"
                 + _sh(f"pacman -Syu --noconfirm {PACKAGE}", f"{PACKAGE} --version")),
        upgrade="`pacman -Syu`.",
        uninstall=_sh(f"pacman -Rns --noconfirm {PACKAGE}", r"sed -i '/^\[endura\]$/,/^SigLevel = Required$/d' /etc/pacman.conf",
                      *[f"pacman-key --delete {f}" for f in src.fingerprints]),
    )


def _pacman_section(src: Source) -> str:
    from repo.pacman import pacman_conf_snippet

    return pacman_conf_snippet(src.channel, src.url)


def tarball_blocks(src: Source, prerequisites: str = "") -> tuple[str, str]:
    """(install, uninstall) of the tarball: SHA256SUMS checked with gpgv against the repository key, then install.sh."""
    ch = src.channel
    if src.tarball_version is None:
        none = f"Channel `{ch}` holds no tarball yet.\n"
        return none, none
    tdir = layout.tarball_dir(ch)
    arch = "ARCH=$(uname -m | sed -e s/x86_64/amd64/ -e s/aarch64/arm64/)"
    version = f"VERSION={src.tarball_version}"
    name = f"{PACKAGE}-$VERSION-$ARCH"
    workdir = "/var/tmp/endura"
    install = (
        prerequisites
        + "`SHA256SUMS.asc` is checked with `gpgv` against the repository key only, then the tarball against "
        f"`SHA256SUMS`; `install.sh` installs into `/` and enables the service (systemd or OpenRC). Keep `{workdir}`: "
        "its `uninstall.sh` removes what `install.sh` installed.\n\n"
        + _sh(arch, version, f"mkdir -p {workdir}", f"cd {workdir}",
              src.fetch(layout.KEY_FILE, "endura-archive-keyring.asc"),
              src.fetch(f"{tdir}/SHA256SUMS", "SHA256SUMS"), src.fetch(f"{tdir}/SHA256SUMS.asc", "SHA256SUMS.asc"),
              src.fetch(f"{tdir}/{name}.tar.gz", f"{name}.tar.gz"),
              "gpg --batch --yes --dearmor -o endura-archive-keyring.gpg endura-archive-keyring.asc",
              "gpgv --keyring ./endura-archive-keyring.gpg SHA256SUMS.asc SHA256SUMS",
              f'grep "  {name}.tar.gz$" SHA256SUMS | sha256sum -c -',
              f"tar -xzf {name}.tar.gz", f"./{name}/install.sh", f"{PACKAGE} --version")
        + f"\nThe channel's tarballs, with versions and checksums, are listed in `{src.path(tdir + '/index.json')}`.\n")
    uninstall = (_sh(arch, version, f"{workdir}/{name}/uninstall.sh")
                 + "\n`uninstall.sh --purge` also deletes `/etc/endura`, `/var/lib/endura` and `/var/log/endura`.\n")
    return install, uninstall


# --- sections every guide shares ----------------------------------------------------------------------------


def lsm_section(target: Target) -> str:
    note = f"\n\n{target.bpf_lsm_note[0].upper()}{target.bpf_lsm_note[1:]}." if target.bpf_lsm_note else ""
    if target.bpf_lsm_default:
        return (f"BPF LSM is active out of the box on {target.name}: `endura-sensor check` reports the `lsm` tier "
                f"(operations are refused before they happen).{note}\n")
    text = (f"BPF LSM is **not** active by default on {target.name}; without it the sensor falls back to the fentry or "
            f"tracepoint tier (it kills offenders after the fact). The fix: {target.bpf_lsm_fix}.{note}\n")
    lsm = _LSM_LIST.search(target.bpf_lsm_fix)
    if not lsm:
        return text
    lines = []
    extra = _APT_INSTALL.search(target.bpf_lsm_fix)
    if extra:
        lines.append(f"apt-get install -y {extra.group(1)}")
    if target.family == "rpm":
        lines.append(f'grubby --update-kernel=ALL --args="lsm={lsm.group(1)}"')
    else:
        lines += [f"sed -i 's/^GRUB_CMDLINE_LINUX=\"/&lsm={lsm.group(1)} /' /etc/default/grub", "update-grub"]
    lines.append("reboot")
    return (text + "\n`lsm=` replaces the kernel's whole list, so it repeats the default one and adds `bpf` "
            "(if your kernel command line already has an `lsm=`, edit that one instead):\n\n" + _sh(*lines)
            + "\nAfter the reboot `cat /sys/kernel/security/lsm` lists `bpf` and `endura-sensor check` reports the "
            "`lsm` tier.\n")


CHECK = (
    "`endura-sensor check` reports the kernel, BTF, the active LSMs, which enforcement tier loads here and how to "
    "enable a missing one. Its exit code: 0 = the LSM tier (blocks before the operation), 10 = degraded (fentry or "
    "tracepoint: kills after the fact), 20 = no tier works.\n\n" + _sh(f"{PACKAGE} check"))

START = (
    "The package enables the service without starting it, and the service does not start until a policy exists. "
    "Review `/etc/endura/sensor.conf`, write a policy into `/etc/endura/policies/` (see "
    "`/usr/share/doc/endura-sensor/POLICIES.md`), then `systemctl start endura-sensor` "
    "(`rc-service endura-sensor start` with OpenRC) and `endura-sensor status`.\n")


def guide(target: Target, src: Source) -> str:
    """The Markdown install guide of one target for one channel."""
    manager = target.package_manager
    header = [f"# Install Endura Runtime Sensor on {target.name}\n",
              f"Channel `{src.channel}` of `{src.url}`. Architectures: {', '.join(target.native_arches)}. "
              f"Init: {target.init}. The sensor runs on `{target.python_command}` ({target.python_package}, "
              f"Python >= 3.9) with `{target.libbpf_package}`.\n",
              "Run every command as root (`sudo -i` first).\n",
              f"The repository key's fingerprint is {_fingerprints(src)}: compare it with the one your organisation "
              "obtained out of band (`gpg --show-keys FILE` prints a key file's).\n"]
    sections: list[tuple[str, str]] = []
    if target.family == "apk":
        tools = "gnupg" if src.local else "curl gnupg"
        pre = _sh(f"apk add {tools} {target.python_package} {target.libbpf_package}") + "\n"
        tar_install, tar_uninstall = tarball_blocks(src, prerequisites=pre)
        sections += [
            ("Packages", "The apk repository is not published yet (Alpine's apk-tools are not available to build and "
             "verify its index here). Every release also carries signed `.apk` packages "
             "(`endura-sensor-<version>-r0.<arch>.apk`, with the RSA public key `endura-*.rsa.pub` beside them, for "
             "`/etc/apk/keys/`). This guide installs the tarball, which is published and signed.\n"),
            ("Install from the tarball", tar_install)]
        upgrade, uninstall = "", tar_uninstall
    else:
        steps = {"apt": apt_steps, "dnf": dnf_steps, "yum": dnf_steps, "zypper": zypper_steps,
                 "pacman": pacman_steps}[manager](target, src)
        if steps.prerequisites:
            sections.append(("Prerequisites", steps.prerequisites))
        sections += [("Add the key and the repository", steps.repository), ("Install", steps.install)]
        upgrade, uninstall = steps.upgrade, steps.uninstall
    sections += [("Check the host", CHECK), ("BPF LSM", lsm_section(target)), ("Start the sensor", START)]
    body = [f"## {i}. {title}\n\n{text}" for i, (title, text) in enumerate(sections, 1)]
    if upgrade:
        body.append(f"## Upgrade\n\n{upgrade}\n")
    body.append(f"## Uninstall\n\n{uninstall}")
    if target.family != "apk" and src.tarball_version is not None:
        body.append(f"## Alternative: the tarball\n\nHosts that cannot use {manager} can install the tarball instead: "
                    f"see [{TARBALL_GUIDE}.md]({TARBALL_GUIDE}.md).\n")
    if target.notes:
        body.append("## Notes\n\n" + "".join(f"- {n}\n" for n in target.notes))
    return "\n".join(c.rstrip("\n") + "\n" for c in header + body)


def _fingerprints(src: Source) -> str:
    return " and ".join(f"`{f}`" for f in src.fingerprints)


def tarball_guide(src: Source) -> str:
    install, uninstall = tarball_blocks(src)
    return "\n".join([
        "# Install Endura Runtime Sensor from the tarball (any systemd or OpenRC host)\n",
        f"Channel `{src.channel}` of `{src.url}`. Run every command as root. The tarball has no dependency metadata: "
        "install Python >= 3.9 and libbpf with your distribution's package manager first, and `curl`, `gpg` and "
        "`gpgv` for the checks.\n",
        f"The repository key's fingerprint is {_fingerprints(src)}.\n",
        "## 1. Install\n", install, "## 2. Check the host\n", CHECK, "## 3. Start the sensor\n", START,
        "## Uninstall\n", uninstall])


def channel_index(catalog: Catalog, src: Source) -> str:
    rows = ["| target | package | manager | BPF LSM out of the box |", "|---|---|---|---|"]
    for t in catalog.targets:
        pkg = "tarball (apk not published yet)" if t.family == "apk" else t.family
        rows.append(f"| [{t.name}]({t.id}.md) | {pkg} | {t.package_manager} | {'yes' if t.bpf_lsm_default else 'no'} |")
    return "\n".join([
        f"# Install guides: channel `{src.channel}`\n",
        f"Repository `{src.url}`. One guide per supported target (from `distros/catalog.toml`); "
        f"[{TARBALL_GUIDE}.md]({TARBALL_GUIDE}.md) for any other systemd or OpenRC host.\n",
        "\n".join(rows) + "\n"])


def top_index(channels: Sequence[str]) -> str:
    lines = ["# Endura Runtime Sensor: install guides\n",
             "Channels: `latest` (every build that passed the sensor's tests), `testing` (also passed integration "
             "tests with Team Server), `stable` (released). Pick one:\n"]
    lines += [f"- [{c}]({c}/index.md)" for c in channels]
    return "\n".join(lines) + "\n"


# --- writing --------------------------------------------------------------------------------------------------


def newest_tarball_version(entries: list[dict]) -> str | None:
    from release.version import Version

    versions = {e["version"] for e in entries if e["family"] == "tgz"}
    return str(max(versions, key=Version.parse)) if versions else None


def write(out: Path, sources: Sequence[Source], catalog: Catalog | None = None) -> list[Path]:
    """Write `<out>/<channel>/<target>.md`, `tarball.md` and `index.md` per source, and `<out>/index.md`."""
    catalog = catalog or load_catalog()
    written = []
    for src in sources:
        d = out / src.channel
        d.mkdir(parents=True, exist_ok=True)
        files = {f"{t.id}.md": guide(t, src) for t in catalog.targets}
        files[f"{TARBALL_GUIDE}.md"] = tarball_guide(src)
        files["index.md"] = channel_index(catalog, src)
        for name, text in files.items():
            (d / name).write_text(text)
            written.append(d / name)
    (out / "index.md").write_text(top_index([s.channel for s in sources]))
    written.append(out / "index.md")
    return written


def write_generation_guides(gen: Path, channels: dict[str, list[dict]], fingerprints: Sequence[str],
                            base_url: str) -> list[Path]:
    """The guides of every channel of a generation being built (`install/`): the publish hook."""
    sources = [Source(base_url, ch, tuple(fingerprints), newest_tarball_version(channels[ch])) for ch in sorted(channels)]
    return write(gen / GUIDES_DIR, sources)


# --- command line ----------------------------------------------------------------------------------------------


def run_cli(argv: Sequence[str]) -> int:
    top = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(prog="python3 -m repo.guides", description=__doc__.split("\n")[0])
    p.add_argument("--base-url", default=layout.DEFAULT_BASE_URL, help="URL (or file:///path) the repository is served at")
    p.add_argument("--channel", default=layout.DEFAULT_CHANNEL)
    p.add_argument("--out", required=True, help="directory to write the guides into")
    p.add_argument("--from", dest="generation", default=str(top / "build" / "repo" / "current"),
                   help="a published generation: its key and the channel's tarball version (default build/repo/current)")
    args = p.parse_args(list(argv))
    channel = layout.check_channel(args.channel)
    if not re.match(r"^(https?|file)://", args.base_url):
        raise EnduraError(f"--base-url {args.base_url!r} is not an http(s):// or file:// URL; e.g. {layout.DEFAULT_BASE_URL}")
    gen = Path(args.generation)
    state_file = gen / layout.GENERATION_FILE
    if not state_file.is_file():
        raise EnduraError(f"{gen} is not a published generation (no {layout.GENERATION_FILE}); publish first "
                          "('nox -s publish') or pass --from <repo-root>/current")
    entries = json.loads(state_file.read_text())["channels"].get(channel)
    if entries is None:
        raise EnduraError(f"channel {channel!r} is not in {gen}; promote a build into it first or pick another --channel")
    src = Source(args.base_url, channel, sign.key_file_fingerprints(gen / layout.KEY_FILE), newest_tarball_version(entries))
    out = Path(args.out)
    for path in write(out, [src]):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
