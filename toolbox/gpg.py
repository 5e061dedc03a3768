"""gpg, in one place: every OpenPGP argv the tooling runs (signing, exporting, checking keys, verifying).

Keys are *chosen* elsewhere (`release.signing`: the release key from GNUPGHOME, a development key,
the co-signer of a rotation); this module only knows how to use them. Every signature is SHA-256
and made at a given time (gpg's `--faked-system-time`), so signing the same bytes at the same time
gives the same signature: packages at SOURCE_DATE_EPOCH, repository metadata at the Release Date.

`Keys` is the key that signs everything plus the keys that co-sign metadata during a rotation (see
`release.signing.resolve_repo_keys`); every function that signs takes a `SigningKey` or `Keys`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tempfile
from pathlib import Path

from toolbox import log
from toolbox.errors import EnduraError
from toolbox.run import output, run

EXPIRY_WARNING_DAYS = 90
#: OpenPGP public-key algorithm ids (RFC 4880 / 9580) we accept, with the minimum size
ALGORITHMS = {"1": ("RSA", 3072), "22": ("EdDSA", 0), "27": ("Ed25519", 0)}
PASSPHRASE_ENV = "ENDURA_SIGNING_PASSPHRASE"


@dataclasses.dataclass(frozen=True)
class SigningKey:
    fingerprint: str
    gnupghome: Path
    uid: str
    algorithm: str
    bits: int
    created: int
    expires: int | None  # unix time, None = never
    development: bool

    @property
    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.gnupghome)}

    def describe(self) -> str:
        kind = "DEVELOPMENT key" if self.development else "release key"
        return f"{kind} {self.fingerprint} ({self.algorithm}{self.bits or ''}, {self.uid})"


@dataclasses.dataclass(frozen=True)
class Keys:
    """The key that signs everything, plus the keys that co-sign the metadata during a rotation."""

    primary: SigningKey
    cosigners: tuple[SigningKey, ...] = ()

    @property
    def all(self) -> tuple[SigningKey, ...]:
        return (self.primary, *self.cosigners)

    @property
    def fingerprints(self) -> list[str]:
        return [k.fingerprint for k in self.all]


def as_keys(keys: Keys | SigningKey) -> Keys:
    return keys if isinstance(keys, Keys) else Keys(keys)


def base_argv(home: Path) -> list[str]:
    return ["gpg", "--homedir", str(home), "--batch", "--no-tty"]


def colons_argv(home: Path) -> list[str]:
    return [*base_argv(home), "--with-colons"]


# --- keys ------------------------------------------------------------------------------------------


def parse_secret_key(colons: str, fingerprint: str) -> dict | None:
    """From `gpg --with-colons --list-secret-keys FPR` output, the primary key's fields (or None)."""
    key: dict | None = None
    for line in colons.splitlines():
        f = line.split(":")
        if f[0] == "sec":
            if key and key.get("fpr", "").upper().endswith(fingerprint.upper()):
                return key
            key = {"validity": f[1], "bits": int(f[2] or 0), "algo": f[3], "created": int(f[5] or 0),
                   "expires": int(f[6]) if f[6] else None, "caps": f[11] if len(f) > 11 else ""}
        elif f[0] == "fpr" and key is not None and "fpr" not in key:
            key["fpr"] = f[9]
        elif f[0] == "uid" and key is not None and "uid" not in key:
            key["uid"] = f[9]
    if key and key.get("fpr", "").upper().endswith(fingerprint.upper()):
        return key
    return None


def check_key(info: dict, fingerprint: str, home: Path, *, now: float | None = None) -> None:
    """Refuse revoked, expired, weak or non-signing keys; warn when expiry is near."""
    now = dt.datetime.now(dt.timezone.utc).timestamp() if now is None else now
    if info["validity"] == "r":
        raise EnduraError(f"signing key {fingerprint} in {home} is revoked; configure another key in ENDURA_SIGNING_KEY")
    if info["expires"] is not None and info["expires"] <= now:
        when = dt.datetime.fromtimestamp(info["expires"], dt.timezone.utc).date()
        raise EnduraError(
            f"signing key {fingerprint} expired on {when}; extend it with 'gpg --quick-set-expire {fingerprint} 2y' "
            "and publish the updated public key, or unset ENDURA_SIGNING_KEY to use a development key"
        )
    algo = ALGORITHMS.get(info["algo"])
    if algo is None or info["bits"] < algo[1]:
        raise EnduraError(
            f"signing key {fingerprint} uses algorithm {info['algo']} with {info['bits']} bits; "
            "use RSA >= 3072 or Ed25519 (older/smaller keys are refused by current apt and RHEL 9)"
        )
    if "s" not in info["caps"].lower():
        raise EnduraError(f"signing key {fingerprint} cannot sign (capabilities '{info['caps']}'); add a signing subkey")
    if info["expires"] is not None and info["expires"] - now < EXPIRY_WARNING_DAYS * 86400:
        days = int((info["expires"] - now) // 86400)
        log.warn(f"signing key {fingerprint} expires in {days} days; extend it with 'gpg --quick-set-expire {fingerprint} 2y'")


def secret_key_info(home: Path, fingerprint: str) -> dict | None:
    proc = run(colons_argv(home) + ["--list-secret-keys", fingerprint], check=False)
    return parse_secret_key(proc.stdout, fingerprint) if proc.returncode == 0 else None


def key_from_info(info: dict, home: Path, development: bool) -> SigningKey:
    name = ALGORITHMS.get(info["algo"], (info["algo"], 0))[0]
    return SigningKey(info["fpr"], home, info.get("uid", ""), name, info["bits"], info["created"], info["expires"],
                      development)


# --- signing ---------------------------------------------------------------------------------------

MODES = {"clearsign": ["--clearsign"], "armor": ["--armor", "--detach-sign"], "binary": ["--detach-sign"]}


def passphrase_args() -> list[str]:
    return ["--pinentry-mode", "loopback", "--passphrase-fd", "0"] if PASSPHRASE_ENV in os.environ else []


def signing_argv(keys: Keys | SigningKey, source: Path, out: Path, *, epoch: int, mode: str) -> list[str]:
    """gpg argv: `mode` is `clearsign` (InRelease), `armor` (.asc/Release.gpg) or `binary` (.sig)."""
    keys = as_keys(keys)
    users: list[str] = []
    for k in keys.all:
        users += ["--local-user", k.fingerprint]
    return [*base_argv(keys.primary.gnupghome), *passphrase_args(), "--faked-system-time", f"{epoch}!", *users,
            "--digest-algo", "SHA256", "--yes", "--output", str(out), *MODES[mode], str(source)]


def sign(keys: Keys | SigningKey, source: Path, out: Path, *, epoch: int, mode: str, when: str = "the signing time") -> Path:
    """Sign `source` into `out` with every key of `keys` at `epoch` (`when` names that time in errors)."""
    keys = as_keys(keys)
    for k in keys.all:
        if epoch >= k.created:
            continue
        if when == "SOURCE_DATE_EPOCH":
            raise EnduraError(f"SOURCE_DATE_EPOCH={epoch} is older than signing key {k.fingerprint} (created {k.created}); "
                              "build a newer commit or set SOURCE_DATE_EPOCH to a time after the key's creation")
        raise EnduraError(f"{when} {epoch} is before signing key {k.fingerprint} was created ({k.created}); check the clock")
    run(signing_argv(keys, source, out, epoch=epoch, mode=mode), input=os.environ.get(PASSPHRASE_ENV),
        hint=f"check {PASSPHRASE_ENV}")
    return out


def clearsign(keys: Keys | SigningKey, source: Path, out: Path, *, epoch: int) -> Path:
    return sign(keys, source, out, epoch=epoch, mode="clearsign", when="the Release Date")


def detached(keys: Keys | SigningKey, source: Path, out: Path, *, epoch: int, armor: bool = True,
             when: str = "the Release Date") -> Path:
    """Detached signature(s): armored (Release.gpg, repomd.xml.asc, SHA256SUMS.asc) or binary (.sig)."""
    return sign(keys, source, out, epoch=epoch, mode="armor" if armor else "binary", when=when)


def passphrase_file_args() -> list[str]:
    """gpg options reading the passphrase from a private file (for tools that run gpg themselves: rpmsign)."""
    phrase = os.environ.get(PASSPHRASE_ENV)
    if phrase is None:
        return []
    fd, name = tempfile.mkstemp(prefix="endura-pass-")
    with os.fdopen(fd, "w") as fh:
        fh.write(phrase)
    import atexit
    import contextlib

    def remove() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)

    atexit.register(remove)
    return ["--pinentry-mode", "loopback", "--passphrase-file", name]


# --- exporting and checking -------------------------------------------------------------------------


def export_public_keys(keys: Keys | SigningKey, out: Path) -> Path:
    keys = as_keys(keys)
    out.write_text(armored_export(keys.primary.gnupghome, keys.fingerprints) + "\n")
    return out


def export_public_key_bytes(home: Path, fingerprint: str) -> bytes:
    return run([*base_argv(home), "--export-options", "export-minimal", "--export", fingerprint], text=False).stdout


def key_file_fingerprints(key_file: Path) -> tuple[str, ...]:
    """Primary key fingerprints in an armored key file (two during a rotation): a `fpr` line right after a `pub` line."""
    lines = output(["gpg", "--batch", "--with-colons", "--show-keys", str(key_file)]).splitlines()
    return tuple(lines[i + 1].split(":")[9] for i, line in enumerate(lines[:-1])
                 if line.startswith("pub:") and lines[i + 1].startswith("fpr:"))


def verify_detached(public_key: Path, path: Path, signature: Path) -> None:
    """Verify with gpgv against only `public_key` (used by tests and by publishing)."""
    with tempfile.TemporaryDirectory(prefix="endura-verify-") as tmp:
        keyring = Path(tmp) / "keyring.gpg"
        run(["gpg", "--batch", "--no-default-keyring", "--homedir", tmp, "--keyring", str(keyring),
             "--import", str(public_key)])
        run(["gpgv", "--keyring", str(keyring), str(signature), str(path)],
            hint=f"{signature.name} does not verify {path.name} with {public_key.name}")


def import_keys(home: Path, data: bytes) -> None:
    run([*base_argv(home), "--import"], input=data, text=False)


def armored_export(home: Path, fingerprints: list[str]) -> str:
    return output([*base_argv(home), "--armor", "--export-options", "export-minimal", "--export", *fingerprints])


def list_keys_with_signatures(home: Path) -> str:
    return output([*colons_argv(home), "--with-sig-list", "--list-keys"])


def dearmor_argv(armored: Path, out: Path) -> list[str]:
    return ["gpg", "--batch", "--yes", "--dearmor", "-o", str(out), str(armored)]
