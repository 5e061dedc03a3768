"""Install guides, one per catalog target, generated for a base URL and a channel (pure text + one writer).

    python3 -m repo.guides --base-url https://repo.endurasecurity.com --channel latest --out DIR [--from GENERATION]

Every publish writes them into the generation (`install/<channel>/<target-id>.md`, an index per
channel and `install/index.md`); `channels.mirror` writes them again for an offline bundle, with a
`file://` base URL. What a user runs for one package manager is the family's (`Family.guide_steps`, built from
`families.guidetext`); this module adds what every guide shares. The commands a user runs are in fenced ```sh blocks, nothing else is: the
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
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from distros import Catalog, Target, load_catalog
from families import FAMILIES, PACKAGE
from families.guidetext import Source, sh, sh_blocks
from families.tgz import tarball_blocks
from release.version import Version
from repo import layout
from toolbox import gpg
from toolbox.errors import EnduraError, cli_main
from toolbox.files import REPO_TOP

__all__ = ["PACKAGE", "Source", "guide", "sh_blocks", "write", "write_generation_guides"]
GUIDES_DIR = "install"
#: the tarball every target can use, listed in each index next to the targets
TARBALL_GUIDE = "tarball"
_LSM_LIST = re.compile(r"lsm=([a-z]+(?:,[a-z]+)+)")
_APT_INSTALL = re.compile(r"apt install ([a-z0-9][a-z0-9.+-]*)")


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
    lines += FAMILIES[target.family].kernel_args_commands(f"lsm={lsm.group(1)}")
    lines.append("reboot")
    return (text + "\n`lsm=` replaces the kernel's whole list, so it repeats the default one and adds `bpf` "
            "(if your kernel command line already has an `lsm=`, edit that one instead):\n\n" + sh(*lines)
            + "\nAfter the reboot `cat /sys/kernel/security/lsm` lists `bpf` and `endura-sensor check` reports the "
            "`lsm` tier.\n")


CHECK = (
    "`endura-sensor check` reports the kernel, BTF, the active LSMs, which enforcement tier loads here and how to "
    "enable a missing one. Its exit code: 0 = the LSM tier (blocks before the operation), 10 = degraded (fentry or "
    "tracepoint: kills after the fact), 20 = no tier works.\n\n" + sh(f"{PACKAGE} check"))

_START_STEPS = (
    "Review `/etc/endura/sensor.conf`, write a policy into `/etc/endura/policies/` (see "
    "`/usr/share/doc/endura-sensor/POLICIES.md`), then `systemctl start endura-sensor` "
    "(`rc-service endura-sensor start` with OpenRC) and `endura-sensor status`.\n")
START = ("The package enables the service without starting it, and the service does not start until a policy exists. "
         + _START_STEPS)
#: what sensor/packaging/tarball/install.sh does about the service (a tarball has no package scripts)
START_TARBALL = (
    "`install.sh` enables the service without starting it: `systemctl enable endura-sensor.service` when systemd "
    "is running, `rc-update add endura-sensor default` with OpenRC (`install.sh --no-enable` skips this, and "
    "`install.sh --root DIR` never touches the running system). When a sensor is already running (an upgrade), it "
    "restarts it, but only if the new configuration validates. The service does not start until a policy exists. "
    + _START_STEPS)


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
    family = FAMILIES[target.family]
    steps = family.guide_steps(target, src) if family.published else None
    if steps is None:
        tools = "gnupg" if src.local else "curl gnupg"
        pre = sh(f"{target.package_manager} add {tools} {target.python_package} {target.libbpf_package}") + "\n"
        tar_install, tar_uninstall = tarball_blocks(src, prerequisites=pre)
        sections += [
            ("Packages", f"The {family.name} repository is not published yet. Every release also carries signed "
             f"`{family.extension}` packages. This guide installs the tarball, which is published and signed.\n"),
            ("Install from the tarball", tar_install)]
        upgrade, uninstall = "", tar_uninstall
    else:
        if steps.prerequisites:
            sections.append(("Prerequisites", steps.prerequisites))
        sections += [("Add the key and the repository", steps.repository), ("Install", steps.install)]
        upgrade, uninstall = steps.upgrade, steps.uninstall
    sections += [("Check the host", CHECK), ("BPF LSM", lsm_section(target)),
                 ("Start the sensor", START_TARBALL if steps is None else START)]
    body = [f"## {i}. {title}\n\n{text}" for i, (title, text) in enumerate(sections, 1)]
    if upgrade:
        body.append(f"## Upgrade\n\n{upgrade}\n")
    body.append(f"## Uninstall\n\n{uninstall}")
    if steps is not None and src.tarball_version is not None:
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
        "## 1. Install\n", install, "## 2. Check the host\n", CHECK, "## 3. Start the sensor\n", START_TARBALL,
        "## Uninstall\n", uninstall])


def channel_index(catalog: Catalog, src: Source) -> str:
    rows = ["| target | package | manager | BPF LSM out of the box |", "|---|---|---|---|"]
    for t in catalog.targets:
        pkg = t.family if FAMILIES[t.family].published else f"tarball ({t.family} not published yet)"
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


def published_key_files(gen: Path) -> tuple[str, ...]:
    """The key files of a generation's keys/ besides the OpenPGP one (the guides name them)."""
    directory = gen / "keys"
    return tuple(sorted(p.name for p in directory.glob("*.pub"))) if directory.is_dir() else ()


def write_generation_guides(gen: Path, channels: dict[str, list[dict]], fingerprints: Sequence[str],
                            base_url: str) -> list[Path]:
    """The guides of every channel of a generation being built (`install/`): the publish hook."""
    keys = published_key_files(gen)
    sources = [Source(base_url, ch, tuple(fingerprints), newest_tarball_version(channels[ch]), keys) for ch in sorted(channels)]
    return write(gen / GUIDES_DIR, sources)


# --- command line ----------------------------------------------------------------------------------------------


def run_cli(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python3 -m repo.guides", description=__doc__.split("\n")[0])
    p.add_argument("--base-url", default=layout.DEFAULT_BASE_URL, help="URL (or file:///path) the repository is served at")
    p.add_argument("--channel", default=layout.DEFAULT_CHANNEL)
    p.add_argument("--out", required=True, help="directory to write the guides into")
    p.add_argument("--from", dest="generation", default=str(REPO_TOP / "build" / "repo" / "current"),
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
    src = Source(args.base_url, channel, gpg.key_file_fingerprints(gen / layout.KEY_FILE), newest_tarball_version(entries),
                 published_key_files(gen))
    out = Path(args.out)
    for path in write(out, [src]):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(run_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
