"""apk (Alpine): `.apk` built and RSA-signed by nfpm (apk's own signature: a plain RSA key, `release.signing.ApkKey`,
not OpenPGP), with an OpenRC service. The repository part (a signed APKINDEX per channel and arch, checked
with apk-tools v2 and v3) is `families.apk.repository`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from families import PlainNames


class Apk(PlainNames):
    name = "apk"
    extension = ".apk"
    arch_scheme = "machine"
    package_managers = ("apk",)
    nfpm_packager = "apk"
    init = "openrc"
    release = "0"
    purl_type = "apk"
    published = False

    def package_version(self, version: Any) -> str:
        """apk pkgver: `1.2.3`, `1.2.3_rc1`, dev after 1.2.3 → `1.2.3_git5`, after rc.2 → `1.2.3_rc2_git5`."""
        base = version.tag_version
        text = base.core
        if base.pre is not None:
            text += f"_{base.pre.kind}{base.pre.number}"
        if version.dev is not None:
            text += f"_git{version.dev}"
        return text

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


