"""apk (Alpine): `.apk` built and RSA-signed by nfpm (apk's own signature: a plain RSA key, `release.signing.ApkKey`,
not OpenPGP), with an OpenRC service; published as an apk repository (a signed APKINDEX per channel and arch,
`families.apk.repository`), checked with Alpine's own apk-tools 2 and 3 (`families.apk.apktools`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from families.apk import repository
from families.base import PACKAGE, IndexContext, PlainNames, copy_metadata
from families.guidetext import Source, Steps, sh


class Apk(PlainNames):
    name = "apk"
    extension = ".apk"
    arch_scheme = "machine"
    package_managers = ("apk",)
    nfpm_packager = "apk"
    init = "openrc"
    release = repository.RELEASE
    purl_type = "apk"

    def package_version(self, version: Any) -> str:
        return repository.pkgver(version)

    def file_name(self, package: str, package_version: str, package_arch: str) -> str:
        return f"{package}-{package_version}-r{self.release}.{package_arch}.apk"

    def upgrade_hook(self) -> str:
        return "postupgrade"

    def nfpm_section(self, package_arch: str, scripts: dict[str, str], meta: dict) -> dict:
        key = meta.get("apk_key")
        if key is None:
            raise ValueError("apk packages need an RSA key")
        return {"arch": package_arch, "signature": {"key_file": str(key.private), "key_name": key.name},
                "scripts": {"postupgrade": scripts["postupgrade"]}}

    def sign(self, key: Any, path: Path, *, epoch: int) -> str:
        """nfpm signed it already, with the apk RSA key (its signature carries no time)."""
        return "apk-rsa"

    def check_signature(self, path: Path, key_file: Path) -> None:
        """`apk verify` (apk-tools 2) with a keys directory holding only `key_file` (an `<name>.rsa.pub`)."""
        from families.apk import apktools

        repository.verify_package(apktools.build("2"), path, key_file)

    def artifact_path(self, channel: str, entry: dict) -> str:
        return repository.artifact_path(channel, entry)

    def build_channel(self, gen: Path, channel: str, entries: list[dict], ctx: IndexContext) -> None:
        if ctx.apk_key is None:
            raise ValueError("an apk index needs the apk RSA key (IndexContext.apk_key)")
        repository.build_channel(gen, channel, entries, ctx.apk_key, date=ctx.date)

    def verify_channel(self, gen: Path, channel: str, url: str, workdir: Path, *, expected_version: Any = None) -> dict:
        expected = repository.package_version(expected_version) if expected_version is not None else None
        return repository.verify_channel(gen, channel, url, workdir, expected_version=expected)

    def mirror_channel(self, gen: Path, out: Path, channel: str, ctx: IndexContext) -> None:
        """The signed indexes and the public key as published: neither names a date nor the base URL."""
        for arch in self.package_arches():
            rel = f"{repository.channel_dir(channel, arch)}/{repository.INDEX}"
            if (gen / rel).exists():
                copy_metadata(gen / rel, out / rel)
        for key in (gen / repository.KEYS_DIR).glob("*.rsa.pub"):
            copy_metadata(key, out / repository.KEYS_DIR / key.name)

    def guide_steps(self, target: Any, src: Source) -> Steps | None:
        key_name = next((k for k in src.key_files if k.endswith(".rsa.pub")), None)
        if key_name is None:  # a tree without the apk key: the guide installs the tarball
            return None
        fetch_key, add_repository, update, install = repository.guide_steps(src.channel, src.url, key_name)
        tools = "" if src.local else ("busybox's `wget` fetches the key (Alpine has no curl by default). ")
        return Steps(
            repository=(f"{tools}apk trusts the keys in `{repository.APK_KEYS}` by file name: the key goes there under "
                        f"the name its signatures use (`{key_name}`), then the channel is added to "
                        f"`{repository.APK_REPOSITORIES}`:\n\n" + sh(fetch_key, add_repository)),
            install=(f"apk checks the signed `APKINDEX.tar.gz` and each package's own signature. "
                     f"`{target.python_package}` and `{target.libbpf_package}` come from Alpine's own repositories.\n\n"
                     + sh(update, install, f"{PACKAGE} --version")),
            upgrade=f"`apk update && apk upgrade {PACKAGE}`.",
            uninstall=sh(f"apk del {PACKAGE}", f"sed -i '\\#/{repository.repository_path(src.channel)}$#d' {repository.APK_REPOSITORIES}",
                         f"rm -f {repository.APK_KEYS}/{key_name}"),
        )


