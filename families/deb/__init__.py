"""deb (Debian, Ubuntu): `.deb` built by nfpm, signed with a debsigs origin signature, published as an
apt repository (`families.deb.repository`), checked with debsig-verify, linted with lintian."""
from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import Any, Sequence

from families.base import KEYRING_PACKAGE, PACKAGE, Dependency, Family, IndexContext, tilde_version
from families.deb import repository as apt
from families.guidetext import Source, Steps, sh, text
from toolbox import gpg
from toolbox.errors import EnduraError
from toolbox.run import output, run


class Deb(Family):
    name = "deb"
    extension = ".deb"
    arch_scheme = "debian"
    package_managers = ("apt",)
    nfpm_packager = "deb"
    index_tools = ("apt-ftparchive",)
    purl_type = "deb"
    noarch_name = "all"
    changelog = True  # /usr/share/doc/<package>/changelog.Debian.gz (Debian policy 12.7)

    def package_version(self, version: Any) -> str:
        """Debian upstream_version: `1.2.3`, `1.2.3~rc.1`, `1.2.4~~dev.5.gabc1234`, `1.2.3~rc.2.dev.5.g...`."""
        return tilde_version(version)

    def file_name(self, package: str, package_version: str, package_arch: str) -> str:
        return f"{package}_{package_version}_{package_arch}.deb"

    def render_alternatives(self, alternatives: Sequence[Dependency]) -> str:
        """`python3 (>= 3.9) | python3.9`."""
        return " | ".join(f"{d.name} (>= {d.min_version})" if d.min_version else d.name for d in alternatives)

    def nfpm_section(self, package_arch: str, scripts: dict[str, str], meta: dict) -> dict:
        return {"arch": package_arch, "compression": "xz"}

    def nfpm_description(self, summary: str, long_text: str) -> str:
        """The synopsis (the first line), then the long description, wrapped (lintian: at most 80 columns)."""
        return f"{summary}\n{textwrap.fill(long_text, 72)}"

    def lint_overrides_path(self, package: str) -> str:
        return f"/usr/share/lintian/overrides/{package}"

    def sign(self, key: gpg.SigningKey, path: Path, *, epoch: int) -> str:
        """Add a debsigs `_gpgorigin` member: a detached signature over debian-binary+control+data
        (the layout `debsigs --sign=origin` writes and `debsig-verify` checks), made with gpg at
        SOURCE_DATE_EPOCH and appended with binutils `ar` in deterministic mode."""
        with tempfile.TemporaryDirectory(prefix="endura-debsig-") as tmp:
            members = output(["ar", "t", str(path)]).split()
            if members[:1] != ["debian-binary"] or any(m.startswith("_gpg") for m in members):
                raise EnduraError(f"{path} is not an unsigned .deb (members: {' '.join(members)})")
            signed = Path(tmp) / "signed-data"
            signed.write_bytes(run(["ar", "p", str(path)], text=False).stdout)
            origin = Path(tmp) / "_gpgorigin"
            gpg.detached(key, signed, origin, armor=False, epoch=epoch, when="SOURCE_DATE_EPOCH")
            run(["ar", "rD", str(path), str(origin)])
        return "debsig-origin"

    def check_signature(self, path: Path, key_file: Path) -> None:
        """debsig-verify with a private policy naming only the key(s) of `key_file` as the origin."""
        with tempfile.TemporaryDirectory(prefix="endura-debsig-verify-") as tmp:
            policies, keyrings = debsig_dirs(Path(tmp), key_file)
            run(["debsig-verify", "--policies-dir", str(policies), "--keyrings-dir", str(keyrings), str(path)],
                hint=f"{path.name} has no valid origin signature by {key_file.name}: rebuild it with that key")

    def lint_argv(self, path: Path, overrides: Path | None) -> list[str]:
        """lintian reads the overrides the package ships (`lint_overrides_path`); --no-cfg: none of the user's."""
        return ["lintian", "--no-cfg", "--no-tag-display-limit", "--fail-on", "none", str(path)]

    def artifact_path(self, channel: str, entry: dict) -> str:
        return apt.deb_pool_path(entry["file"])

    def build_channel(self, gen: Path, channel: str, entries: list[dict], ctx: IndexContext) -> None:
        apt.build_suite(gen, channel, entries, ctx.keys, date=ctx.date,
                        valid_until=ctx.valid_until, base_url=ctx.base_url,
                        previous_suites=[d / apt.apt_suite_dir(channel) for d in ctx.previous],
                        package_arches=self.package_arches(), cache=ctx.cache)

    def verify_channel(self, gen: Path, channel: str, url: str, workdir: Path, *, expected_version: Any = None) -> str:
        return apt.verify_apt(gen, channel, url, workdir, expected_version)

    def mirror_channel(self, gen: Path, out: Path, channel: str, ctx: IndexContext) -> None:
        apt.resign_apt_suite(gen, out, channel, ctx.keys, date=ctx.date, valid_until=ctx.valid_until)
        (out / "apt" / f"endura-{channel}.sources").write_text(apt.apt_sources(channel, ctx.base_url))

    def guide_steps(self, target: Any, src: Source) -> Steps:
        return apt_steps(target, src)


def debsig_dirs(directory: Path, key_file: Path) -> tuple[Path, Path]:
    """debsig-verify's policies and keyrings directories trusting only the primary key(s) of `key_file`."""
    policies_top, keyrings_top = directory / "policies", directory / "keyrings"
    for fpr in gpg.key_file_fingerprints(key_file):
        keyid = fpr[-16:]
        policies, keyrings = policies_top / keyid, keyrings_top / keyid
        policies.mkdir(parents=True)
        keyrings.mkdir(parents=True)
        run(gpg.dearmor_argv(key_file, keyrings / "endura.gpg"))
        (policies / "endura.pol").write_text(f"""<?xml version="1.0"?>
<!DOCTYPE Policy SYSTEM "https://www.debian.org/debsig/1.0/policy.dtd">
<Policy xmlns="https://www.debian.org/debsig/1.0/">
  <Origin Name="Endura Security" id="{keyid}" Description="Endura Runtime Sensor"/>
  <Selection><Required Type="origin" File="endura.gpg" id="{keyid}"/></Selection>
  <Verification MinOptional="0"><Required Type="origin" File="endura.gpg" id="{keyid}"/></Verification>
</Policy>
""")
    return policies_top, keyrings_top


def apt_steps(target: Any, src: Source) -> Steps:
    ch = src.channel
    sources = f"/etc/apt/sources.list.d/endura-{ch}.sources"
    pre = "" if src.local else (
        "curl and the CA certificates fetch the key and the source file:\n\n"
        + sh("apt-get update", "apt-get install -y ca-certificates curl"))
    return Steps(
        prerequisites=pre,
        repository=(
            f"The key goes to `{apt.APT_KEYRING}`; the deb822 source names it in `Signed-By`, so apt trusts "
            "it for this repository only:\n\n"
            + sh(src.fetch_key(apt.APT_KEYRING), src.fetch(f"apt/endura-{ch}.sources", sources))
            + f"\n`{sources}` reads:\n\n" + text(apt.apt_sources(ch, src.url))),
        install=(f"apt checks the signed `InRelease` (and its `Valid-Until`), the index hashes and the package hash. "
                 f"`{target.python_package}` and `{target.libbpf_package}` come from {target.name}'s own repositories.\n\n"
                 f"`{KEYRING_PACKAGE}` takes over the key file and keeps it current (a key rotation arrives as its upgrade).\n\n"
                 + sh("apt-get update", f"apt-get install -y {KEYRING_PACKAGE} {PACKAGE}", f"{PACKAGE} --version")),
        upgrade=f"`apt-get update && apt-get install -y {PACKAGE}` (or any `apt-get upgrade`).",
        uninstall=(sh(f"apt-get remove -y {PACKAGE} {KEYRING_PACKAGE}", f"rm -f {sources} {apt.APT_KEYRING}", "apt-get update")
                   + f"\n`apt-get purge {PACKAGE}` instead of `remove` also deletes `/etc/endura`, `/var/lib/endura` "
                   "and `/var/log/endura`.\n"),
    )


