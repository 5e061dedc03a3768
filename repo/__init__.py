"""Package repositories: build, sign, verify and publish them (the generation engine, `repo.publish.commit`;
the commands are a layer above: `python3 -m channels.publish`, `channels.promote`).

- `layout`: where everything lives in a generation, client configuration files, Release fields (pure).
- `generations`: the `generations/<n>/` + `current` symlink state, switching, pruning (filesystem only).
- `apt`, `rpm`, `pacman`, `tarball`: one index each, built with its well-kept tool (apt-ftparchive,
  createrepo_c, repo-add).
- `sign`: OpenPGP signatures of repository metadata (InRelease, Release.gpg, repomd.xml.asc).
- `verify`: the real clients (apt-get, dnf, pacman, rpm -K) against the new generation over loopback HTTP.
- `remote`: pushing a generation to the web host (rsync over ssh, uploaded aside, switched there).
- `publish`: the command: ingest a build, build a generation aside, verify, switch, prune, rollback.
- `guides`: the install guide of every catalog target, written into each generation (`install/`).
- `mirror`: an offline bundle of one channel for air-gapped hosts (`nox -s mirror -- <channel>`).
"""
