"""Versions shared by the version tests: tricky cases, strictly ascending in semver."""

#: strictly ascending in semver; the tests check every pair (not just neighbours)
ASCENDING = [
    "0.0.1-0.dev.1+g0000001",          # no tag yet: as if v0.0.0 at the root
    "0.0.1-0.dev.25+g0000002",
    "0.9.0",
    "0.9.1-0.dev.7+gfedcba9",          # 7 commits after v0.9.0
    "1.0.0-alpha.1",
    "1.0.0-alpha.1.dev.3+gaaaaaaa",    # dev after a pre-release
    "1.0.0-alpha.1.dev.12+g0000000",   # dev.3 < dev.12 even when the sha sorts the other way
    "1.0.0-alpha.2",
    "1.0.0-alpha.10",
    "1.0.0-beta.1",
    "1.0.0-beta.2.dev.4+g1234567",
    "1.0.0-rc.1",
    "1.0.0-rc.2",
    "1.0.0-rc.2.dev.3+gfffffff",
    "1.0.0-rc.2.dev.12+g0000000",
    "1.0.0-rc.10",
    "1.0.0",
    "1.0.1-0.dev.3+gfffffff",          # 3 commits after v1.0.0
    "1.0.1-0.dev.12+g0000000",
    "1.0.1-alpha.1",                   # the next pre-release beats every dev build before it
    "1.0.1-rc.1.dev.1+gabcdef0",
    "1.0.1",
    "1.0.2-0.dev.1+g1111111",
    "1.0.9",
    "1.0.10-0.dev.2+g2222222",
    "1.0.10",
    "1.0.11-0.dev.4+g3333333",
    "1.1.0-alpha.1",
    "1.1.0",
    "1.9.0",
    "1.10.0",
    "1.10.1-0.dev.1+g4444444",
    "2.0.0-rc.1",
    "2.0.0",
    "10.0.0",
]
