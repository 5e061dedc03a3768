"""Signing keys: the release key from GNUPGHOME, or an automatically created development key.

- OpenPGP (gpg): `ENDURA_SIGNING_KEY` names the release key's fingerprint in `GNUPGHOME`. Without it a
  local DEVELOPMENT key is created once in the cache directory and used, and the build says so. RSA
  >= 3072 or Ed25519 only; every signature uses SHA-256 (RHEL 9 and current apt refuse SHA-1).
- apk (Alpine) packages are signed with a plain RSA key, not OpenPGP: `ENDURA_APK_SIGNING_KEY` is the
  path of its PEM private key; without it a development RSA key is created beside the gpg one.

Signatures are made at `SOURCE_DATE_EPOCH` (gpg's `--faked-system-time`) so that signing the same
bytes twice gives the same signature, which keeps the whole `dist/` byte-identical between builds.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import stat
import tempfile
from pathlib import Path

from toolbox import log
from toolbox.errors import EnduraError
from toolbox.run import output, run

DEV_UID = "Endura Runtime Sensor DEVELOPMENT signing key (not for production) <dev-signing@localhost>"
#: the development key is dated before any commit so that signing at SOURCE_DATE_EPOCH works
DEV_KEY_CREATION = "20200101T000000"
DEV_KEY_LIFETIME_DAYS = 730
EXPIRY_WARNING_DAYS = 90
#: OpenPGP public-key algorithm ids (RFC 4880 / 9580) we accept, with the minimum size
ALGORITHMS = {"1": ("RSA", 3072), "22": ("EdDSA", 0), "27": ("Ed25519", 0)}


def cache_dir() -> Path:
    base = os.environ.get("ENDURA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "endura"
    )
    return Path(base)


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
class ApkKey:
    private: Path
    public: Path
    #: the file name clients install into /etc/apk/keys/ (apk looks the signature up by it)
    name: str
    development: bool


# --- OpenPGP --------------------------------------------------------------------------------


def _gpg(key_home: Path) -> list[str]:
    return ["gpg", "--homedir", str(key_home), "--batch", "--no-tty", "--with-colons"]


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


def _load_key(fingerprint: str, home: Path, development: bool) -> SigningKey:
    proc = run(_gpg(home) + ["--list-secret-keys", fingerprint], check=False)
    info = parse_secret_key(proc.stdout, fingerprint) if proc.returncode == 0 else None
    if info is None:
        raise EnduraError(
            f"signing key {fingerprint} not found in {home}; import it with 'gpg --import release-secret.asc' "
            "(or set GNUPGHOME) or unset ENDURA_SIGNING_KEY to use a development key"
        )
    check_key(info, fingerprint, home)
    name = ALGORITHMS.get(info["algo"], (info["algo"], 0))[0]
    return SigningKey(info["fpr"], home, info.get("uid", ""), name, info["bits"], info["created"],
                      info["expires"], development)


def dev_gnupghome() -> Path:
    return cache_dir() / "dev-signing" / "gnupg"


def _ensure_dev_key() -> SigningKey:
    home = dev_gnupghome()
    fpr_file = home.parent / "fingerprint"
    if fpr_file.exists():
        try:
            return _load_key(fpr_file.read_text().strip(), home, True)
        except EnduraError as exc:
            log.warn(f"development key unusable ({exc}); creating a new one")
            shutil.rmtree(home.parent)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, stat.S_IRWXU)
    # Expire-Date counts from the (back-dated) creation date: lifetime from now, in seconds
    created = dt.datetime.strptime(DEV_KEY_CREATION, "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    expire = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=DEV_KEY_LIFETIME_DAYS)
    params = "\n".join([
        "%no-protection",
        "Key-Type: RSA", "Key-Length: 4096", "Key-Usage: sign",
        f"Name-Real: {DEV_UID.split(' <')[0]}", "Name-Email: dev-signing@localhost",
        f"Creation-Date: {DEV_KEY_CREATION}", f"Expire-Date: seconds={int((expire - created).total_seconds())}",
        "%commit", "",
    ])
    with log.step(f"creating a DEVELOPMENT signing key in {home} (set ENDURA_SIGNING_KEY for releases)"):
        run(_gpg(home) + ["--pinentry-mode", "loopback", "--gen-key"], input=params, timeout=600)
    listing = output(_gpg(home) + ["--list-secret-keys"])
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    fpr_file.write_text(fpr + "\n")
    return _load_key(fpr, home, True)


def resolve_key() -> SigningKey:
    """The key to sign with: ENDURA_SIGNING_KEY in GNUPGHOME, else the (created on demand) development key."""
    fpr = os.environ.get("ENDURA_SIGNING_KEY", "").strip().replace(" ", "")
    if not fpr:
        key = _ensure_dev_key()
        log.info(f"    signing with the {key.describe()}; set ENDURA_SIGNING_KEY to sign a release")
        return key
    if len(fpr) < 16 or any(c not in "0123456789abcdefABCDEF" for c in fpr.removeprefix("0x")):
        raise EnduraError(f"ENDURA_SIGNING_KEY={fpr!r} is not a key fingerprint; set it to the 40-hex-digit fingerprint ('gpg --list-secret-keys --with-colons')")
    home = Path(os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg"))
    return _load_key(fpr.removeprefix("0x"), home, False)


def _faked_time(epoch: int) -> list[str]:
    return ["--faked-system-time", f"{epoch}!"]


def _passphrase_args() -> list[str]:
    phrase = os.environ.get("ENDURA_SIGNING_PASSPHRASE")
    if phrase is None:
        return []
    return ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]


def sign_detached(key: SigningKey, path: Path, out: Path, *, armor: bool, epoch: int) -> Path:
    """Write a detached SHA-256 signature of `path` to `out` (armored `.asc` or binary `.sig`)."""
    if epoch < key.created:
        raise EnduraError(
            f"SOURCE_DATE_EPOCH={epoch} is older than signing key {key.fingerprint} (created {key.created}); "
            "build a newer commit or set SOURCE_DATE_EPOCH to a time after the key's creation"
        )
    argv = _gpg(key.gnupghome) + _passphrase_args() + _faked_time(epoch) + [
        "--local-user", key.fingerprint, "--digest-algo", "SHA256", "--yes", "--output", str(out),
        *(["--armor"] if armor else []), "--detach-sign", str(path),
    ]
    run(argv, input=os.environ.get("ENDURA_SIGNING_PASSPHRASE"), hint="check ENDURA_SIGNING_PASSPHRASE")
    return out


def sign_rpm(key: SigningKey, path: Path, *, epoch: int) -> None:
    """Add the rpm header signature with rpmsign (checked by `rpm -K`), RSA/EdDSA over SHA-256."""
    extra = " ".join(_passphrase_file_args() + _faked_time(epoch) + ["--homedir", str(key.gnupghome)])
    run(["rpmsign", "--addsign",
         "--define", "__gpg /usr/bin/gpg",
         "--define", f"_gpg_name {key.fingerprint}",
         "--define", "_gpg_digest_algo sha256",
         "--define", f"_gpg_sign_cmd_extra_args {extra}",
         str(path)], hint=f"rpmsign could not sign {path.name}")


def sign_deb(key: SigningKey, path: Path, *, epoch: int) -> None:
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
        sign_detached(key, signed, origin, armor=False, epoch=epoch)
        run(["ar", "rD", str(path), str(origin)])


def _passphrase_file_args() -> list[str]:
    """gpg options reading ENDURA_SIGNING_PASSPHRASE from a private file (for rpmsign's gpg call)."""
    phrase = os.environ.get("ENDURA_SIGNING_PASSPHRASE")
    if phrase is None:
        return []
    fd, name = tempfile.mkstemp(prefix="endura-pass-")
    with os.fdopen(fd, "w") as fh:
        fh.write(phrase)
    import atexit

    atexit.register(lambda: os.path.exists(name) and os.unlink(name))
    return ["--pinentry-mode", "loopback", "--passphrase-file", name]


def export_public_key(key: SigningKey, out: Path) -> Path:
    armored = output(_gpg(key.gnupghome) + ["--armor", "--export-options", "export-minimal", "--export", key.fingerprint])
    out.write_text(armored + "\n")
    return out


def export_secret_key(key: SigningKey, directory: Path) -> Path:
    """Armored secret key for nfpm (which signs with its own OpenPGP code), 0600 in a private dir."""
    out = directory / "signing-secret.asc"
    data = output(_gpg(key.gnupghome) + _passphrase_args() + ["--armor", "--export-secret-keys", key.fingerprint],
                  input=os.environ.get("ENDURA_SIGNING_PASSPHRASE"))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data + "\n")
    return out


def verify_detached(public_key: Path, path: Path, signature: Path) -> None:
    """Verify with gpgv against only `public_key` (used by tests and by publishing)."""
    with tempfile.TemporaryDirectory(prefix="endura-verify-") as tmp:
        keyring = Path(tmp) / "keyring.gpg"
        run(["gpg", "--batch", "--no-default-keyring", "--homedir", tmp, "--keyring", str(keyring),
             "--import", str(public_key)])
        run(["gpgv", "--keyring", str(keyring), str(signature), str(path)],
            hint=f"{signature.name} does not verify {path.name} with {public_key.name}")


# --- apk RSA key ----------------------------------------------------------------------------


def resolve_apk_key(gpg_key: SigningKey) -> ApkKey:
    """The RSA key for apk: ENDURA_APK_SIGNING_KEY (PEM), else a development key in the cache."""
    configured = os.environ.get("ENDURA_APK_SIGNING_KEY", "").strip()
    if configured:
        private = Path(configured)
        if not private.is_file():
            raise EnduraError(f"ENDURA_APK_SIGNING_KEY={configured} does not exist; point it at the apk RSA private key (PEM)")
        public = Path(str(private) + ".pub")  # abuild's layout: name.rsa + name.rsa.pub
        if not public.exists():
            public = private.parent / (private.stem + ".rsa.pub")
        if not public.exists():
            raise EnduraError(f"public key for {private} not found as {public}; create it with 'openssl rsa -in {private} -pubout -out {public}'")
        return ApkKey(private, public, os.environ.get("ENDURA_APK_KEY_NAME", public.name), False)
    if not gpg_key.development:
        raise EnduraError("ENDURA_SIGNING_KEY is a release key but ENDURA_APK_SIGNING_KEY is not set; "
                          "set it to the release apk RSA private key (PEM) so Alpine packages are not signed with a development key")
    directory = cache_dir() / "dev-signing" / "apk"
    private = directory / "endura-dev.rsa"
    public = directory / "endura-dev.rsa.pub"
    if not (private.exists() and public.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        with log.step(f"creating a DEVELOPMENT apk RSA key in {directory}"):
            run(["openssl", "genrsa", "-out", str(private), "4096"])
            os.chmod(private, 0o600)
            run(["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(public)])
    return ApkKey(private, public, "endura-dev.rsa.pub", True)
