"""The date format of apt Release files and our logs: `Sat, 28 Nov 2026 22:00:00 UTC` (RFC 2822, UTC)."""
from __future__ import annotations

import datetime as dt
import email.utils


def rfc2822(epoch: int) -> str:
    """The date format of Release files: `Sat, 28 Nov 2026 22:00:00 UTC`."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")


def parse_rfc2822(text: str) -> int:
    parsed = email.utils.parsedate_to_datetime(text.replace("UTC", "+0000"))
    return int(parsed.timestamp())


