"""Building the signed release artifacts: versions, signing, packages, SBOMs, manifest (`nox -s package`)."""
