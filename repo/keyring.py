"""`endura-archive-keyring`: the repository's public keys as a .deb and an .rpm, so a key rotation
reaches clients as an ordinary `apt-get upgrade` / `dnf upgrade`.

The package carries every key of the publish (the primary and, during a rotation, the co-signer of
`ENDURA_SIGNING_KEY_NEXT`), one armored file:

- deb (`Architecture: all`): `families.deb.repository.APT_KEYRING`, the file the `.sources` `Signed-By` names;
- rpm (`noarch`): `families.rpm.repository.RPM_KEYRING`, the file the `.repo` files' `gpgkey=` names. dnf imports
  from it: into its per-repository keyring when `repomd.xml.asc` does not verify with the keys it
  has, and into the rpm database when a package is signed by a key rpm does not know yet.

Both are plain files, not conffiles: installing the package takes over a key file the admin put
there by hand (the install guide's bootstrap), and an upgrade replaces it, so a key dropped from the
set stops being trusted by apt at the next upgrade. (rpm keeps keys it imported into its database
until `rpm -e gpg-pubkey-<id>`: see the revocation step in `repo/README.md`.)

**Version**: a pure function of the key set, `<newest key created>.<oldest key created>.<newest
signature>` (UTC, `YYYYMMDDhhmmss` each), so the same keys always give the same version and the same
bytes (built at the newest signature's time), and every step of a rotation moves it forward: adding
a newer key raises the first part, dropping the oldest raises the second, re-signing a key (a new
expiry, a revocation) raises the third. A key set change that would not move it forward is refused.

**In a publish** (`include()`, called by `repo.engine.build_generation`): when a previous
generation holds a keyring with the same keys, its files are reused (hardlinks: the bytes never
change); otherwise the packages are built with nfpm and signed with the primary key (`sign_deb`,
`sign_rpm`, at that fixed time). Either way they are listed in every channel: the .deb in each
suite's `Packages` (for the arches the suite has), the .rpm in each channel's x86_64 and aarch64
repodata. `keys/endura-archive-keyring.json` records version, fingerprints and files; the next
publish reads it. `carry_previous()` keeps older keyring files (unlisted) for clients in flight.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from families import ARCHES, FAMILIES, KEYRING_PACKAGE
from families.deb.repository import APT_KEYRING
from families.rpm.repository import RPM_KEYRING
from release import changelog, nfpm
from repo import keycache, layout
from repo.generations import place
from toolbox import gpg, log
from toolbox.errors import EnduraError
from toolbox.files import REPO_TOP, sha256_file
from toolbox.gpg import Keys
from toolbox.run import run

PACKAGE = KEYRING_PACKAGE
RELEASE = "1"
SUMMARY = "OpenPGP keys of the Endura Runtime Sensor package repository"
DESCRIPTION = ("The public keys that sign the Endura package repository and its packages. "
               "Upgrading this package is how a repository key rotation reaches this host.")
#: in each generation: what the keyring package of that generation is (read by the next publish)
RECORD = "keys/endura-archive-keyring.json"
RECORD_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class KeySet:
    """The public keys of a publish, exported in a canonical order (sorted by fingerprint)."""

    armored: str
    fingerprints: tuple[str, ...]
    #: creation time of each primary key, and the newest signature (self-signature, binding, revocation)
    created: tuple[int, ...]
    newest_signature: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.armored.encode()).hexdigest()

    @property
    def version(self) -> str:
        return version_of(self.created, self.newest_signature)

    @property
    def epoch(self) -> int:
        """The packages' mtime and signature time: fixed by the keys, so a rebuild gives the same bytes."""
        return self.newest_signature


# --- version (pure) ---------------------------------------------------------------------------------


def _stamp(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y%m%d%H%M%S")


def version_of(created: tuple[int, ...] | list[int], newest_signature: int) -> str:
    """`<newest key created>.<oldest key created>.<newest signature>`; see the module docstring."""
    if not created:
        raise ValueError("a keyring holds at least one key")
    return f"{_stamp(max(created))}.{_stamp(min(created))}.{_stamp(newest_signature)}"


def version_key(version: str) -> tuple[int, ...]:
    """Order of two keyring versions (what dpkg and rpm conclude for these all-digit parts)."""
    return tuple(int(part) for part in version.split("."))


def parse_key_listing(colons: str) -> tuple[list[str], list[int], int]:
    """From `gpg --with-colons --show-keys --with-sig-list`: fingerprints, primary key creation
    times, and the newest time of any key, subkey or signature packet."""
    fprs: list[str] = []
    created: list[int] = []
    newest = 0
    lines = colons.splitlines()
    for i, line in enumerate(lines):
        f = line.split(":")
        if f[0] in ("pub", "sub", "sig", "rev") and len(f) > 5 and f[5].isdigit():
            newest = max(newest, int(f[5]))
        if f[0] == "pub":
            created.append(int(f[5]))
            fpr = next((n.split(":")[9] for n in lines[i + 1:i + 3] if n.startswith("fpr:")), "")
            fprs.append(fpr)
    return fprs, created, newest


def file_names(version: str) -> dict[str, str]:
    return {"deb": f"{PACKAGE}_{version}-{RELEASE}_all.deb", "rpm": f"{PACKAGE}-{version}-{RELEASE}.noarch.rpm"}


# --- the key set ----------------------------------------------------------------------------------------


def export_key_set(keys: Keys) -> KeySet:
    """Export the keys (minimal: self-signatures only) into one armored block, ordered by fingerprint.

    gpg exports in keyring order, which depends on the history of the GNUPGHOME; importing the keys
    one by one in fingerprint order into an empty keyring makes the bytes depend on the keys only."""
    home = str(keys.primary.gnupghome)
    with tempfile.TemporaryDirectory(prefix="endura-keyring-") as tmp:
        os.chmod(tmp, 0o700)
        for fpr in sorted(k.fingerprint.upper() for k in keys.all):
            data = gpg.export_public_key_bytes(Path(home), fpr)
            if not data:
                raise EnduraError(f"gpg exported nothing for key {fpr} from {home}; import its public key there")
            gpg.import_keys(Path(tmp), data)
        armored = gpg.armored_export(Path(tmp), []) + "\n"
        listing = gpg.list_keys_with_signatures(Path(tmp))
        run(["gpgconf", "--homedir", tmp, "--kill", "all"], check=False)
    fprs, created, newest = parse_key_listing(listing)
    return KeySet(armored, tuple(fprs), tuple(created), newest)


# --- building the packages -------------------------------------------------------------------------------


def nfpm_config(family: str, version: str, key_file: Path, epoch: int, changelog_file: Path | None = None) -> dict:
    """nfpm config of the keyring package for `family` (deb or rpm); pure. `changelog_file`: a chglog file
    (`release.changelog.write`), for the deb's changelog.Debian.gz and the rpm's %changelog."""
    dst = {"deb": APT_KEYRING, "rpm": RPM_KEYRING}[family]
    fam = FAMILIES[family]
    arch = fam.noarch_name
    mtime = nfpm.rfc3339(epoch)
    info = {"mode": 0o644, "owner": "root", "group": "root", "mtime": mtime}
    copyright_dst = f"/usr/share/doc/{PACKAGE}/copyright"
    cfg: dict = {
        "name": PACKAGE, "arch": arch, "platform": "linux", "version": version, "version_schema": "none",
        "release": RELEASE, "maintainer": nfpm.MAINTAINER, "description": fam.nfpm_description(SUMMARY, DESCRIPTION),
        "vendor": nfpm.VENDOR,
        "homepage": nfpm.HOMEPAGE, "license": "Apache-2.0", "section": "misc", "priority": "optional",
        "mtime": mtime, "umask": 0o022,
        # a plain file (not a conffile / %config): the package takes over a hand-placed key and an
        # upgrade replaces it, so a key dropped from the set is no longer trusted
        "contents": [{"src": str(key_file), "dst": dst, "type": "file", "file_info": info},
                     # the project's copyright and license statement (Debian policy 12.5)
                     {"src": str(REPO_TOP / "LICENSE"), "dst": copyright_dst, "type": fam.nfpm_file_type(copyright_dst),
                      "file_info": info},
                     *nfpm.lint_files(fam, PACKAGE, epoch)],
    }
    if changelog_file is not None:
        cfg["changelog"] = str(changelog_file)
    cfg[str(fam.nfpm_packager)] = fam.nfpm_section(arch, {}, {"summary": SUMMARY, "maintainer": nfpm.MAINTAINER,
                                                               "group": "System Environment/Base"})
    return cfg


def build_packages(key_set: KeySet, key: gpg.SigningKey, out: Path) -> dict[str, tuple[Path, str]]:
    """Build and sign the .deb and the .rpm into `out`; returns {family: (path, how it is signed)}."""
    names = file_names(key_set.version)
    built: dict[str, tuple[Path, str]] = {}
    with tempfile.TemporaryDirectory(prefix="endura-keyring-build-") as tmp:
        work = Path(tmp)
        key_file = work / "endura-archive-keyring.asc"
        key_file.write_text(key_set.armored)
        os.utime(key_file, (key_set.epoch, key_set.epoch))
        notes = changelog.write(work / "changelog.yml", package_version=key_set.version, release=RELEASE,
                                epoch=key_set.epoch, packager=nfpm.MAINTAINER,
                                note=f"Repository keys: {', '.join(key_set.fingerprints)}.")
        for family in ("deb", "rpm"):
            target = out / names[family]
            cfg = nfpm_config(family, key_set.version, key_file, key_set.epoch, notes)
            nfpm.build(cfg, FAMILIES[family], work, target, epoch=key_set.epoch, passphrase_env={})
            how = FAMILIES[family].sign(key, target, epoch=key_set.epoch)
            os.utime(target, (key_set.epoch, key_set.epoch))
            built[family] = (target, how)
    return built


# --- a generation ----------------------------------------------------------------------------------------------


def read_record(gen: Path) -> dict | None:
    path = gen / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def channel_entries(record: dict, channel_entries_: list[dict]) -> list[dict]:
    """The keyring's artifact entries for one channel, one per arch (the same file in each), so the
    generic placement and index code lists it: deb for the arches the channel's debs have (all when
    none), rpm in every rpm arch directory."""
    deb_arches = sorted({e["arch"] for e in channel_entries_ if e["family"] == "deb"} or ARCHES)
    out = []
    for family, arches in (("deb", deb_arches), ("rpm", sorted(ARCHES))):
        f = record["files"][family]
        for arch in arches:
            fam = FAMILIES[family]  # apt's pool is shared by every arch; the rpm repositories are per arch
            package_arch = fam.noarch_name if fam.arch_scheme == "debian" else fam.arch_name(arch)
            out.append({"file": f["file"], "family": family, "arch": arch, "package_arch": package_arch,
                        "package_version": f"{record['version']}-{RELEASE}", "version": record["version"],
                        "sha256": f["sha256"], "size": f["size"], "signature": f["signature"]})
    return out


def _reusable(record: dict | None, key_set: KeySet, gen: Path) -> bool:
    return (record is not None and record.get("digest") == key_set.digest
            and all((gen / f["path"]).is_file() for f in record["files"].values()))


def include(gen: Path, channels: dict[str, list[dict]], sources: dict[str, Path | str], keys: Keys,
            previous_dirs: list[Path]) -> tuple[dict[str, list[dict]], dict[str, Path | str]]:
    """Put the keyring packages for `keys` into the generation being built (reused from a previous
    generation with the same keys, else built and signed) and return the channels and sources with
    the keyring added to every channel, for the placement and index code to list."""
    key_file = gen / layout.KEY_FILE  # the armored export of these keys (`gpg.export_public_keys`), when written
    key_set = (keycache.key_set(key_file.read_text(), lambda: export_key_set(keys), KeySet) if key_file.is_file()
               else export_key_set(keys))
    records = [(d, read_record(d)) for d in previous_dirs]
    reuse = next((d for d, rec in records if _reusable(rec, key_set, d)), None)
    newest = next((rec for _d, rec in records if rec is not None), None)
    if (newest is not None and newest["digest"] != key_set.digest
            and version_key(key_set.version) <= version_key(newest["version"])):
        raise EnduraError(
            f"the keys {' + '.join(key_set.fingerprints)} differ from those of the published keyring "
            f"{newest['version']} but give version {key_set.version}, which is not newer, so clients would not "
            "upgrade to it; the version moves forward when a newer key is added, the oldest key is dropped or a key "
            "is re-signed: re-sign the changed key ('gpg --quick-set-expire FPR 2y') and publish again")
    names = file_names(key_set.version)
    files: dict[str, dict] = {}
    old = None
    if reuse is not None:
        old = read_record(reuse)
        assert old is not None  # _reusable checked it
        for family, f in old["files"].items():
            place(reuse / f["path"], gen / f["path"])
            files[family] = f
        log.info(f"    keyring {key_set.version} ({len(key_set.fingerprints)} keys) carried from {reuse.name}")
    else:
        with log.step(f"building {PACKAGE} {key_set.version} ({' + '.join(key_set.fingerprints)})"):
            # built once per key set and signer (`repo.keycache`), copied: the cache is not published
            recipe = json.dumps([nfpm_config(f, key_set.version, Path("KEYS"), key_set.epoch) for f in ("deb", "rpm")],
                                sort_keys=True)  # a change of the package's definition is a new cache entry
            built = keycache.packages(f"{key_set.digest}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}",
                                      keys.primary.fingerprint, names,
                                      lambda out: build_packages(key_set, keys.primary, out))
            for family, (path, how) in built.items():
                rel = f"keys/packages/{names[family]}"
                (gen / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, gen / rel)
                files[family] = {"file": names[family], "path": rel, "sha256": sha256_file(gen / rel),
                                 "size": (gen / rel).stat().st_size, "signature": how}
    record = {"schema": RECORD_SCHEMA, "package": PACKAGE, "version": key_set.version, "digest": key_set.digest,
              "fingerprints": list(key_set.fingerprints), "signed_by": keys.primary.fingerprint if old is None
              else old["signed_by"], "files": files}
    (gen / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    new_sources: dict[str, Path | str] = {**sources, **{f["file"]: gen / f["path"] for f in files.values()}}
    with_keyring = {channel: [*entries, *channel_entries(record, entries)] for channel, entries in channels.items()}
    return with_keyring, new_sources


def carry_previous(gen: Path, previous_dirs: list[Path]) -> int:
    """Hardlink the keyring packages that previous generations listed (and this one does not), unlisted,
    so a client that read an older index during the switch still downloads them. Call after the indexes.

    Only those signed by a key of this generation: once a key leaves the set, nothing it signed is
    served (the publisher's `rpm -K` checks every rpm against the published keys)."""
    current = read_record(gen) or {}
    carried = 0
    for old in previous_dirs:
        rec = read_record(old)
        if (rec is None or rec["version"] == current.get("version")
                or rec["signed_by"] not in current.get("fingerprints", ())):
            continue
        state = old / layout.GENERATION_FILE
        chans = json.loads(state.read_text())["channels"] if state.is_file() else {}
        for channel, entries in chans.items():
            for entry in channel_entries(rec, entries):
                for rel in [f["path"] for f in rec["files"].values()] + layout.artifact_paths(channel, entry):
                    src, dst = old / rel, gen / rel
                    if src.is_file() and not dst.exists():
                        place(src, dst)
                        carried += 1
    return carried
