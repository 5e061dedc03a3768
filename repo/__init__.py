"""Package repositories: the generation engine (`repo.engine.commit`): build a generation aside, verify it
with the real clients, switch it in atomically, prune. The commands that change what a channel holds are
a layer above (`channels.command`: publish, promote, approve, the offline bundle); what differs per
package family (the index, its signature, its client) is below, in `families/`.

- `layout`: where everything lives in a repository root and a generation; the channels (pure).
- `generations`: the `generations/<n>/` + `current` symlink state, switching, pruning (filesystem only).
- `engine`: a generation from a `Change`: place the files, every published family's index, the guides,
  verify, switch (locally and on the web host), prune.
- `verify`: serves a generation on loopback and runs every published family's client check.
- `keyring`: the endura-archive-keyring packages (deb + rpm) that carry the repository key(s).
- `remote`: pushing a generation to the web host (rsync over ssh, uploaded aside, switched there).
- `guides`: the install guide of every catalog target, written into each generation (`install/`).
"""
