"""Which keys sign: the release key from GNUPGHOME, or an automatically created development key.

- OpenPGP (gpg): `ENDURA_SIGNING_KEY` names the release key's fingerprint in `GNUPGHOME`. Without it a
  local DEVELOPMENT key is created once in the cache directory and used, and the build says so. RSA
  >= 3072 or Ed25519 only; every signature uses SHA-256 (RHEL 9 and current apt refuse SHA-1).
- apk (Alpine) packages are signed with a plain RSA key, not OpenPGP: `ENDURA_APK_SIGNING_KEY` is the
  path of its PEM private key; without it a development RSA key is created beside the gpg one.

Signatures are made at `SOURCE_DATE_EPOCH` (gpg's `--faked-system-time`) so that signing the same
bytes twice gives the same signature, which keeps the whole `dist/` byte-identical between builds.
The gpg commands themselves are in `toolbox.gpg`; the families sign their own formats with them.

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
import datetime as dt
import os
import shutil
import stat
from pathlib import Path

from toolbox import gpg, log
from toolbox.errors import EnduraError
from toolbox.files import cache_dir
from toolbox.gpg import Keys, SigningKey
from toolbox.run import output, run

DEV_UID = "Endura Runtime Sensor DEVELOPMENT signing key (not for production) <dev-signing@localhost>"
#: the development key is dated before any commit so that signing at SOURCE_DATE_EPOCH works
DEV_KEY_CREATION = "20200101T000000"
DEV_KEY_LIFETIME_DAYS = 730


@dataclasses.dataclass(frozen=True)
class ApkKey:
    private: Path
    public: Path
    #: the file name clients install into /etc/apk/keys/ (apk looks the signature up by it)
    name: str
    development: bool


# --- OpenPGP --------------------------------------------------------------------------------


def _load_key(fingerprint: str, home: Path, development: bool) -> SigningKey:
    info = gpg.secret_key_info(home, fingerprint)
    if info is None:
        raise EnduraError(
            f"signing key {fingerprint} not found in {home}; import it with 'gpg --import release-secret.asc' "
            "(or set GNUPGHOME) or unset ENDURA_SIGNING_KEY to use a development key"
        )
    gpg.check_key(info, fingerprint, home)
    return gpg.key_from_info(info, home, development)


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
        run(gpg.colons_argv(home) + ["--pinentry-mode", "loopback", "--gen-key"], input=params, timeout=600)
    listing = output(gpg.colons_argv(home) + ["--list-secret-keys"])
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


def resolve_repo_keys() -> Keys:
    """`resolve_key()` (ENDURA_SIGNING_KEY or the development key) and, during a rotation, ENDURA_SIGNING_KEY_NEXT
    (the incoming key, in the same GNUPGHOME): it co-signs every metadata signature (see `repo`'s README, "Keys")."""
    primary = resolve_key()
    fpr = os.environ.get("ENDURA_SIGNING_KEY_NEXT", "").strip().replace(" ", "").removeprefix("0x")
    if not fpr:
        return Keys(primary)
    if primary.development:
        raise EnduraError("ENDURA_SIGNING_KEY_NEXT is set but ENDURA_SIGNING_KEY is not; a rotation co-signs with the "
                          "release key: set ENDURA_SIGNING_KEY to the current release key's fingerprint")
    info = gpg.secret_key_info(primary.gnupghome, fpr)
    if info is None:
        raise EnduraError(f"ENDURA_SIGNING_KEY_NEXT={fpr} is not a secret key in {primary.gnupghome}; import the new "
                          "key there ('gpg --import new-secret.asc') or unset ENDURA_SIGNING_KEY_NEXT")
    gpg.check_key(info, fpr, primary.gnupghome)
    if info["fpr"].upper() == primary.fingerprint.upper():
        raise EnduraError(f"ENDURA_SIGNING_KEY_NEXT is the same key as ENDURA_SIGNING_KEY ({fpr}); set it to the incoming key")
    return Keys(primary, (gpg.key_from_info(info, primary.gnupghome, False),))


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
