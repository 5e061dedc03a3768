"""rpm (RHEL family, Fedora, Amazon Linux, SUSE): `.rpm` built by nfpm, header-signed with rpmsign, published
as rpm-md repositories (`families.rpm.repository`) for dnf, yum and zypper, checked with `rpm -K`,
linted with rpmlint."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any, Sequence

from families.base import KEYRING_PACKAGE, PACKAGE, Dependency, Family, IndexContext, copy_metadata, tilde_version
from families.guidetext import Source, Steps, sh, text
from families.rpm import repository as rpmrepo
from families.rpm.repository import RPM_KEYRING
from toolbox import gpg
from toolbox.run import run

MAINTAINER_GROUP = "System Environment/Daemons"
#: what rpm marks %doc: documentation and manual pages
DOC_DIRS = ("/usr/share/doc/", "/usr/share/man/")


class Rpm(Family):
    name = "rpm"
    extension = ".rpm"
    arch_scheme = "machine"
    package_managers = ("dnf", "yum", "zypper")
    nfpm_packager = "rpm"
    index_tools = ("createrepo_c",)
    purl_type = "rpm"
    changelog = True  # %changelog

    def package_version(self, version: Any) -> str:
        """RPM Version tag: same `~` scheme as deb; it never contains `-` (forbidden) or `^` (rpm >= 4.15)."""
        return tilde_version(version)

    def file_name(self, package: str, package_version: str, package_arch: str) -> str:
        return f"{package}-{package_version}-{self.release}.{package_arch}.rpm"

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str:
        """`(python3 >= 3.9 or python3.11 or python311)`: a boolean (rich) dependency, rpm >= 4.13."""
        parts = [f"{d.name} >= {d.min_version}" if d.min_version else d.name for d in alternatives]
        return parts[0] if len(parts) == 1 else f"({' or '.join(parts)})"

    def nfpm_section(self, package_arch: str, scripts: dict[str, str], meta: dict) -> dict:
        return {"arch": package_arch, "summary": meta["summary"], "group": meta.get("group", MAINTAINER_GROUP), "compression": "xz",
                "buildhost": "endura-build", "packager": meta["maintainer"]}

    def sign(self, key: gpg.SigningKey, path: Path, *, epoch: int) -> str:
        """The rpm header signature, by rpmsign (checked by `rpm -K`), RSA/EdDSA over SHA-256 at `epoch`."""
        extra = " ".join(gpg.passphrase_file_args() + ["--faked-system-time", f"{epoch}!", "--homedir", str(key.gnupghome)])
        run(["rpmsign", "--addsign",
             "--define", "__gpg /usr/bin/gpg",
             "--define", f"_gpg_name {key.fingerprint}",
             "--define", "_gpg_digest_algo sha256",
             "--define", f"_gpg_sign_cmd_extra_args {extra}",
             str(path)], hint=f"rpmsign could not sign {path.name}")
        return "rpm-header"

    def check_signature(self, path: Path, key_file: Path) -> None:
        rpmrepo.rpm_check_signatures([path], key_file)

    def nfpm_description(self, summary: str, long_text: str) -> str:
        """The long description, wrapped (rpmlint: at most 80 columns); the summary has its own tag."""
        return textwrap.fill(long_text, 72)

    def nfpm_file_type(self, dst: str) -> str:
        """%doc for documentation and manual pages (nfpm 2.48 drops a `doc` entry from the other formats)."""
        return "doc" if dst.startswith(DOC_DIRS) else "file"

    def lint_argv(self, path: Path, overrides: Path | None) -> list[str]:
        """`overrides`: an rpmlint configuration (TOML: ValidLicenses, Filters), not an old-style rpmlintrc."""
        return ["rpmlint", *(["--config", str(overrides)] if overrides else []), str(path)]

    def artifact_path(self, channel: str, entry: dict) -> str:
        return f"{rpmrepo.rpm_dir(channel, entry['package_arch'])}/packages/{entry['file']}"

    def carried_files(self, old: Path, channel: str) -> list[str]:
        """The repodata files the old repomd.xml names (their names carry their checksum)."""
        found = []
        for repomd in (old / "rpm" / channel).glob("*/repodata/repomd.xml"):
            base = repomd.parent.parent.relative_to(old)
            found += [f"{base}/{href}" for href in re.findall(r'<location href="([^"]+)"', repomd.read_text())]
        return found

    def build_channel(self, gen: Path, channel: str, entries: list[dict], ctx: IndexContext) -> None:
        rpmrepo.build_channel(gen, channel, entries, ctx.keys, date=ctx.date, base_url=ctx.base_url,
                              previous=ctx.previous[0] if ctx.previous else None)

    def verify_channel(self, gen: Path, channel: str, url: str, workdir: Path, *, expected_version: Any = None) -> dict:
        """`rpm -K` of every rpm of the channel against the published key only, then dnf's install."""
        rpms = sorted((gen / "rpm" / channel).glob("*/packages/*.rpm"))
        rpmrepo.rpm_check_signatures(rpms, gen / rpmrepo.KEY_FILE)
        wanted = self.package_version(expected_version) if expected_version is not None else None
        return {"rpm_k": len(rpms), "dnf": rpmrepo.verify_dnf(gen, channel, url, workdir, wanted)}

    def mirror_channel(self, gen: Path, out: Path, channel: str, ctx: IndexContext) -> None:
        """repodata as published (repomd.xml carries no expiry), and the .repo files for `ctx.base_url`."""
        for repomd in sorted((gen / "rpm" / channel).glob("*/repodata/repomd.xml")):
            base = repomd.parent.parent
            names = ["repodata/repomd.xml", "repodata/repomd.xml.asc",
                     *re.findall(r'<location href="([^"]+)"', repomd.read_text())]
            for name in names:
                copy_metadata(base / name, out / base.relative_to(gen) / name)
            (out / base.relative_to(gen) / "packages").mkdir(parents=True, exist_ok=True)
        (out / "rpm").mkdir(parents=True, exist_ok=True)
        (out / "rpm" / f"endura-{channel}.repo").write_text(rpmrepo.dnf_repo(channel, ctx.base_url))
        (out / "rpm" / f"endura-{channel}.zypper.repo").write_text(rpmrepo.zypper_repo(channel, ctx.base_url))

    def kernel_args_commands(self, args: str) -> list[str]:
        return [f'grubby --update-kernel=ALL --args="{args}"']

    def guide_steps(self, target: Any, src: Source) -> Steps:
        return zypper_steps(target, src) if target.package_manager == "zypper" else dnf_steps(target, src)


def dnf_steps(target: Any, src: Source) -> Steps:
    ch, tool = src.channel, target.package_manager
    repo_file = f"/etc/yum.repos.d/endura-{ch}.repo"
    return Steps(
        repository=(
            f"The key goes to `{RPM_KEYRING}`, the file the `.repo` file's `gpgkey=` names (never the server's "
            "copy); `rpm --import` trusts it for package signatures; the `.repo` file has `gpgcheck=1` (each package's "
            "signature) and `repo_gpgcheck=1` (the signed `repomd.xml`):\n\n"
            + sh(src.fetch_key(RPM_KEYRING), src.fetch(f"rpm/endura-{ch}.repo", repo_file),
                  f"rpm --import {RPM_KEYRING}")
            + f"\n`{repo_file}` reads:\n\n" + text(rpmrepo.dnf_repo(ch, src.url))),
        install=(f"`{target.python_package}` and `{target.libbpf_package}` come from {target.name}'s own repositories.\n\n"
                 f"`{KEYRING_PACKAGE}` takes over the key file and keeps it current (a key rotation arrives as its upgrade).\n\n"
                 + sh(f"{tool} install -y {KEYRING_PACKAGE} {PACKAGE}", f"{PACKAGE} --version")),
        upgrade=f"`{tool} upgrade -y {PACKAGE} {KEYRING_PACKAGE}`.",
        uninstall=sh(f"{tool} remove -y {PACKAGE} {KEYRING_PACKAGE}", f"rm -f {repo_file}", f"rpm -e {_rpm_key_names(src)}"),
    )


def zypper_steps(target: Any, src: Source) -> Steps:
    ch = src.channel
    repo_file = f"/etc/zypp/repos.d/endura-{ch}.repo"
    return Steps(
        repository=(
            "zypper trusts the keys in the rpm database: import it first. The `.repo` file checks the signed "
            "`repomd.xml` and each package's signature:\n\n"
            + sh(src.fetch_key(RPM_KEYRING), f"rpm --import {RPM_KEYRING}",
                  src.fetch(f"rpm/endura-{ch}.zypper.repo", repo_file))
            + f"\n`{repo_file}` reads:\n\n" + text(rpmrepo.zypper_repo(ch, src.url))),
        install=(f"`{target.python_package}` and `{target.libbpf_package}` come from {target.name}'s own repositories.\n\n"
                 + sh("zypper --non-interactive refresh", f"zypper --non-interactive install {KEYRING_PACKAGE} {PACKAGE}",
                       f"{PACKAGE} --version")),
        upgrade=f"`zypper --non-interactive refresh && zypper --non-interactive update {PACKAGE}`.",
        uninstall=sh(f"zypper --non-interactive remove {PACKAGE} {KEYRING_PACKAGE}", f"rm -f {repo_file}", f"rpm -e {_rpm_key_names(src)}"),
    )


def _rpm_key_names(src: Source) -> str:
    """rpm names an imported OpenPGP key gpg-pubkey-<the last 8 hex digits of its fingerprint, lowercase>."""
    return " ".join(f"gpg-pubkey-{f[-8:].lower()}" for f in src.fingerprints)


