"""OpenPGP signatures over repository metadata, made with the repository key(s).

Every signature uses SHA-256 and is made at the Release `Date` (gpg's `--faked-system-time`), so a
signature never predates nor postdates the file it signs and re-signing the same bytes at the same
Date gives the same signature.

**Key rotation**: with `ENDURA_SIGNING_KEY_NEXT` (the incoming key's fingerprint, in the same
GNUPGHOME as `ENDURA_SIGNING_KEY`) every metadata signature (InRelease, Release.gpg,
repomd.xml.asc, SHA256SUMS.asc) carries a signature by each key, the published key file holds
both public keys, and the keyring package `endura-archive-keyring` (`repo.keyring`) gets a new
version holding both, so the new key reaches clients as an ordinary upgrade. The procedure (the
full text, with waits and checks, is in repo/README.md, "Keys"):

1. publish with `ENDURA_SIGNING_KEY=<old> ENDURA_SIGNING_KEY_NEXT=<new>` (`--refresh` will do);
   packages are still built with the old key;
2. wait until clients have upgraded endura-archive-keyring (30 days or more; check with
   `dpkg-query -W` / `rpm -q endura-archive-keyring` and the web server's log);
3. build and publish with `ENDURA_SIGNING_KEY=<new> ENDURA_SIGNING_KEY_NEXT=<old>` (packages now
   signed by the new key; clients that only know the old key still trust the metadata);
4. once no rpm signed by the old key is listed (the publisher's `rpm -K` refuses it otherwise),
   publish with `ENDURA_SIGNING_KEY=<new>` alone: the keyring drops the old key; then revoke the
   old key (`rpm -e gpg-pubkey-<id>` on rpm hosts, which keep imported keys).

pacman cannot use a database signature made by a key it does not know (it tries to import it and
fails), so `endura.db.sig` is signed by the primary key only.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from release.signing import ALGORITHMS, SigningKey, check_key, parse_secret_key, resolve_key
from toolbox.errors import EnduraError
from toolbox.run import output, run


@dataclasses.dataclass(frozen=True)
class RepoKeys:
    """The key that signs everything, plus the keys that co-sign the metadata during a rotation."""

    primary: SigningKey
    cosigners: tuple[SigningKey, ...] = ()

    @property
    def all(self) -> tuple[SigningKey, ...]:
        return (self.primary, *self.cosigners)

    @property
    def fingerprints(self) -> list[str]:
        return [k.fingerprint for k in self.all]


def resolve_repo_keys() -> RepoKeys:
    """`resolve_key()` (ENDURA_SIGNING_KEY or the development key) and, during a rotation, ENDURA_SIGNING_KEY_NEXT."""
    primary = resolve_key()
    fpr = os.environ.get("ENDURA_SIGNING_KEY_NEXT", "").strip().replace(" ", "").removeprefix("0x")
    if not fpr:
        return RepoKeys(primary)
    if primary.development:
        raise EnduraError("ENDURA_SIGNING_KEY_NEXT is set but ENDURA_SIGNING_KEY is not; a rotation co-signs with the "
                          "release key: set ENDURA_SIGNING_KEY to the current release key's fingerprint")
    listing = run(["gpg", "--homedir", str(primary.gnupghome), "--batch", "--with-colons", "--list-secret-keys", fpr],
                  check=False)
    info = parse_secret_key(listing.stdout, fpr) if listing.returncode == 0 else None
    if info is None:
        raise EnduraError(f"ENDURA_SIGNING_KEY_NEXT={fpr} is not a secret key in {primary.gnupghome}; import the new "
                          "key there ('gpg --import new-secret.asc') or unset ENDURA_SIGNING_KEY_NEXT")
    check_key(info, fpr, primary.gnupghome)
    if info["fpr"].upper() == primary.fingerprint.upper():
        raise EnduraError(f"ENDURA_SIGNING_KEY_NEXT is the same key as ENDURA_SIGNING_KEY ({fpr}); set it to the incoming key")
    algorithm = ALGORITHMS.get(info["algo"], (info["algo"], 0))[0]
    nxt = SigningKey(info["fpr"], primary.gnupghome, info.get("uid", ""), algorithm, info["bits"], info["created"],
                     info["expires"], False)
    return RepoKeys(primary, (nxt,))


def _as_keys(keys: RepoKeys | SigningKey) -> RepoKeys:
    return keys if isinstance(keys, RepoKeys) else RepoKeys(keys)


def signing_argv(keys: RepoKeys | SigningKey, source: Path, out: Path, *, epoch: int, mode: str) -> list[str]:
    """gpg argv: `mode` is `clearsign` (InRelease), `armor` (.asc/Release.gpg) or `binary` (.sig)."""
    keys = _as_keys(keys)
    passphrase = ["--pinentry-mode", "loopback", "--passphrase-fd", "0"] if "ENDURA_SIGNING_PASSPHRASE" in os.environ else []
    users: list[str] = []
    for k in keys.all:
        users += ["--local-user", k.fingerprint]
    action = {"clearsign": ["--clearsign"], "armor": ["--armor", "--detach-sign"], "binary": ["--detach-sign"]}[mode]
    return ["gpg", "--homedir", str(keys.primary.gnupghome), "--batch", "--no-tty", *passphrase,
            "--faked-system-time", f"{epoch}!", *users, "--digest-algo", "SHA256", "--yes", "--output", str(out),
            *action, str(source)]


def _sign(keys: RepoKeys | SigningKey, source: Path, out: Path, *, epoch: int, mode: str) -> Path:
    keys = _as_keys(keys)
    for k in keys.all:
        if epoch < k.created:
            raise EnduraError(f"the Release Date {epoch} is before signing key {k.fingerprint} was created ({k.created}); "
                              "check the clock")
    run(signing_argv(keys, source, out, epoch=epoch, mode=mode), input=os.environ.get("ENDURA_SIGNING_PASSPHRASE"),
        hint="check ENDURA_SIGNING_PASSPHRASE")
    return out


def clearsign(keys: RepoKeys | SigningKey, source: Path, out: Path, *, epoch: int) -> Path:
    return _sign(keys, source, out, epoch=epoch, mode="clearsign")


def detached(keys: RepoKeys | SigningKey, source: Path, out: Path, *, epoch: int, armor: bool = True) -> Path:
    """Detached signature(s): armored (Release.gpg, repomd.xml.asc, SHA256SUMS.asc) or binary (.sig)."""
    return _sign(keys, source, out, epoch=epoch, mode="armor" if armor else "binary")


def export_public_keys(keys: RepoKeys | SigningKey, out: Path) -> Path:
    keys = _as_keys(keys)
    armored = output(["gpg", "--homedir", str(keys.primary.gnupghome), "--batch", "--armor", "--export-options",
                      "export-minimal", "--export", *keys.fingerprints])
    out.write_text(armored + "\n")
    return out


def key_file_fingerprints(key_file: Path) -> tuple[str, ...]:
    """Primary key fingerprints in an armored key file (two during a rotation): a `fpr` line right after a `pub` line."""
    lines = output(["gpg", "--batch", "--with-colons", "--show-keys", str(key_file)]).splitlines()
    return tuple(lines[i + 1].split(":")[9] for i, line in enumerate(lines[:-1])
                 if line.startswith("pub:") and lines[i + 1].startswith("fpr:"))
