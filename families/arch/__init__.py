"""arch (Arch Linux): `.pkg.tar.zst` built by nfpm with a detached gpg signature beside it, published as
a pacman repository (`families.arch.repository`), checked with gpgv (what pacman checks)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from families.arch import repository as pacrepo
from families.base import PACKAGE, IndexContext, PlainNames, copy_metadata, detached_sign
from families.guidetext import Source, Steps, sh, text
from toolbox import gpg


class Arch(PlainNames):
    name = "arch"
    extension = ".pkg.tar.zst"
    arch_scheme = "machine"
    package_managers = ("pacman",)
    nfpm_packager = "archlinux"
    index_tools = ("repo-add", "pacman-key-libs", "bsdtar")
    purl_type = "alpm"
    noarch_name = "any"

    def package_version(self, version: Any) -> str:
        """pacman pkgver: `1.2.3`, `1.2.3rc1`, dev after 1.2.3 → `1.2.3.r5.gabc1234`, after rc.2 → `1.2.3rc2.r5.g...`."""
        base = version.tag_version
        text = base.core
        if base.pre is not None:
            text += f"{base.pre.kind}{base.pre.number}"
        if version.dev is not None:
            text += f".r{version.dev}"
            if version.commit:
                text += f".g{version.commit}"
        return text

    def file_name(self, package: str, package_version: str, package_arch: str) -> str:
        return f"{package}-{package_version}-{self.release}-{package_arch}.pkg.tar.zst"

    def upgrade_hook(self) -> str:
        return "postupgrade"

    def nfpm_section(self, package_arch: str, scripts: dict[str, str], meta: dict) -> dict:
        return {"arch": package_arch, "packager": meta["maintainer"], "scripts": {"postupgrade": scripts["postupgrade"]}}

    def sign(self, key: gpg.SigningKey, path: Path, *, epoch: int) -> str:
        return detached_sign(key, path, epoch=epoch)

    def check_signature(self, path: Path, key_file: Path) -> None:
        gpg.verify_detached(key_file, path, path.with_name(path.name + ".sig"))

    def artifact_path(self, channel: str, entry: dict) -> str:
        return f"{pacrepo.pacman_dir(channel, entry['package_arch'])}/{entry['file']}"

    def build_channel(self, gen: Path, channel: str, entries: list[dict], ctx: IndexContext) -> None:
        pacrepo.build_channel(gen, channel, entries, ctx.keys, date=ctx.date, base_url=ctx.base_url)

    def verify_channel(self, gen: Path, channel: str, url: str, workdir: Path, *, expected_version: Any = None) -> list[str]:
        return pacrepo.verify_pacman(gen, channel, url, workdir)

    def mirror_channel(self, gen: Path, out: Path, channel: str, ctx: IndexContext) -> None:
        """The signed databases as published, and the [endura] section for `ctx.base_url`."""
        db = pacrepo.DB_NAME
        for arch in self.package_arches():
            rel = pacrepo.pacman_dir(channel, arch)
            for name in (f"{db}.db", f"{db}.db.tar.gz", f"{db}.db.sig", f"{db}.db.tar.gz.sig", f"{db}.files",
                         f"{db}.files.tar.gz"):
                if (gen / rel / name).exists():
                    copy_metadata(gen / rel / name, out / rel / name)
        (out / "arch").mkdir(parents=True, exist_ok=True)
        (out / "arch" / f"endura-{channel}.pacman.conf").write_text(pacrepo.pacman_conf_snippet(channel, ctx.base_url))

    def guide_steps(self, target: Any, src: Source) -> Steps:
        return pacman_steps(target, src)


def pacman_steps(target: Any, src: Source) -> Steps:
    ch = src.channel
    key_tmp = "/tmp/endura-archive-keyring.asc"
    return Steps(
        repository=(
            "pacman-key adds the key and signs it locally (trusted); the `[endura]` section (with "
            "`SigLevel = Required`: database and package signatures) is appended to `/etc/pacman.conf`:\n\n"
            + sh(src.fetch_key(key_tmp), f"pacman-key --add {key_tmp}",
                  *[f"pacman-key --lsign-key {f}" for f in src.fingerprints], f"rm -f {key_tmp}",
                  f"{src.cat(f'arch/endura-{ch}.pacman.conf')} >> /etc/pacman.conf")
            + "\nThe section reads:\n\n" + text(_pacman_section(src))),
        install=("Arch does not support partial upgrades: install with `-Syu`. "
                 f"`{target.python_package}` and `{target.libbpf_package}` come from Arch's own repositories.\n\n"
                 + sh(f"pacman -Syu --noconfirm {PACKAGE}", f"{PACKAGE} --version")),
        upgrade="`pacman -Syu`.",
        uninstall=sh(f"pacman -Rns --noconfirm {PACKAGE}", r"sed -i '/^\[endura\]$/,/^SigLevel = Required$/d' /etc/pacman.conf",
                      *[f"pacman-key --delete {f}" for f in src.fingerprints]),
    )


def _pacman_section(src: Source) -> str:
    return pacrepo.pacman_conf_snippet(src.channel, src.url)


