"""Shared plumbing for the build, release and test tooling (never shipped in the sensor).

- `errors`: the one exception type our modules raise (what, which value, the fix).
- `run`: the one process runner every external tool goes through.
- `tools`: which Debian package provides each tool, and installing it when missing.
- `log`: progress lines with timings on stderr.
"""
