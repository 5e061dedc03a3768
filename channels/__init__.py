"""Release channels: the same builds promoted latest -> testing -> stable, gated by signed evidence.

`channels.promote` (nox -s promote), `channels.status` (nox -s channels), `channels.approve`
(nox -s approve), `channels.evidence` (written by the test sessions), `channels.records` (the signed
state and promotion log inside each repository generation), `channels.rules` (pure), `channels.policy`.
"""
