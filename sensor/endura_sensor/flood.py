"""Flood control for the event stream: the first events of a burst in full, the rest summarized.

Events are grouped by key = (event type, rule id). For each key:

- the first `burst` events are logged in full (an `exec_denied`... record each);
- beyond that the key is *flooding*: its events are counted, not logged one by one. An
  `events_summarized` record tells how many there were (with their first/last time, the actions, and
  the most frequent comm, pid and uid values). The first one is written `FIRST_SUMMARY_S` after the
  flood began, the next ones at doubling intervals (2 s, 4 s, ...) up to one every `summary_max_s`,
  and only while events keep coming: a flood that lasts T seconds writes `burst` full records and
  about log2(min(T, summary_max_s)) + T / summary_max_s summaries;
- the burst ends when the key has had no event for `quiet_s` seconds: the last summary is written
  (`"final": true`) and the next event is logged in full again, with a whole budget.

So the first events of a flood are in the log in full, and the flood itself writes too little afterwards
to rotate them out (sensor/README.md, "Floods", has the figures); each summary also repeats the
flood's first record (`first_event`), so the newest record of a flood holds its start even in a
rotation too small for the rest. Everything is counted:
`in_full` + `summarized` = events read from the ring buffer.

The summarized path is kept cheap: no record dict, no JSON; a few dict increments per event.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

FIRST_SUMMARY_S = 1.0
TOP = 5  # values listed per field in a summary
TRACKED = 256  # distinct (comm, pid, uid) counted per summary; events of further ones are counted as "other"
#: bytes an event record may take in events.log (a long filename and path; typical records are ~500)
RECORD_BYTES_ESTIMATE = 1024

Key = Tuple[int, int]  # (event type number, rule id)


def effective_burst(burst: int, log_max_bytes: int, log_keep: int) -> int:
    """`burst`, lowered so that one flood's full records fill at most half of what rotation keeps
    (`log_keep` files of `log_max_bytes`): the start of a flood must survive its own records. 0 = off."""
    if burst <= 0:
        return 0
    return max(1, min(burst, log_keep * log_max_bytes // 2 // RECORD_BYTES_ESTIMATE))


class _Burst:
    __slots__ = ("full", "last_seen", "total", "count", "first_ns", "last_ns", "actions", "who", "other",
                 "due", "interval", "summaries", "first")

    def __init__(self) -> None:
        self.full = 0  # events of this burst logged in full
        self.last_seen = 0.0  # monotonic time of its last event
        self.total = 0  # events of this burst summarized so far
        self.due: Optional[float] = None  # when the next summary is due (None: nothing summarized yet)
        self.interval = FIRST_SUMMARY_S
        self.summaries = 0
        self.first: Optional[dict] = None  # the burst's first record, as logged
        self._reset_summary()

    def _reset_summary(self) -> None:
        self.count = 0
        self.first_ns = self.last_ns = 0
        self.actions: Dict[int, int] = {}
        self.who: Dict[Tuple[bytes, int, int], int] = {}  # (comm, pid, uid) -> events
        self.other = 0  # events whose (comm, pid, uid) was not tracked (more than TRACKED distinct)


class FloodControl:
    """Decides, event by event, whether it is logged in full; accumulates and hands out summaries."""

    def __init__(self, burst: int, quiet_s: float, summary_max_s: float) -> None:
        self.burst, self.quiet_s, self.summary_max_s = burst, quiet_s, summary_max_s
        self.bursts: Dict[Key, _Burst] = {}
        self.in_full = 0  # events logged in full, in total
        self.summarized = 0  # events summarized, in total
        self.floods = 0  # bursts that went over their budget

    def admit(self, key: Key, now: float, timestamp_ns: int, action: int, pid: int, uid: int, comm: bytes) -> bool:
        """True: log this event in full. False: it was counted into the key's summary."""
        state = self.bursts.get(key)
        if state is None:
            state = self.bursts[key] = _Burst()
        elif now - state.last_seen >= self.quiet_s and state.due is None:
            state.full = 0  # a quiet key that never flooded: a new burst (a flooded one ends in due())
        state.last_seen = now
        if state.full < self.burst:
            state.full += 1
            self.in_full += 1
            return True
        if state.due is None:
            state.due = now + state.interval
            self.floods += 1
        if not state.count:
            state.first_ns = timestamp_ns
        state.count += 1
        state.total += 1
        state.last_ns = timestamp_ns
        actions = state.actions
        actions[action] = actions.get(action, 0) + 1
        who, actor = state.who, (comm, pid, uid)
        if actor in who:
            who[actor] += 1
        elif len(who) < TRACKED:
            who[actor] = 1
        else:
            state.other += 1
        self.summarized += 1
        return False

    def keep_first(self, key: Key, record: dict) -> None:
        """Remember the record of a burst's first event: every summary repeats it (`first_event`), so the
        newest record of a flood always holds its start, however small the log rotation."""
        state = self.bursts[key]
        if state.first is None or state.full == 1:
            state.first = record

    def due(self, now: float) -> List[Tuple[Key, dict]]:
        """Summaries due now, as (key, fields); bursts that ended get their final summary and are forgotten."""
        out: List[Tuple[Key, dict]] = []
        for key in list(self.bursts):
            state = self.bursts[key]
            ended = now - state.last_seen >= self.quiet_s
            if ended:
                if state.due is not None:
                    out.append((key, self._summary(state, final=True)))
                del self.bursts[key]
            elif state.due is not None and now >= state.due and state.count:
                out.append((key, self._summary(state, final=False)))
                state.interval = min(state.interval * 2, self.summary_max_s)
                state.due = now + state.interval
        return out

    def finish(self) -> List[Tuple[Key, dict]]:
        """At exit: the final summary of every flood still going on."""
        out = [(key, self._summary(state, final=True)) for key, state in self.bursts.items() if state.due is not None]
        self.bursts.clear()
        return out

    def _summary(self, state: _Burst, final: bool) -> dict:
        fields = {"count": state.count, "first_ns": state.first_ns, "last_ns": state.last_ns,
                  "actions": dict(state.actions)}
        for i, name in enumerate(("comm", "pid", "uid")):
            totals: Dict[object, int] = {}
            for actor, n in state.who.items():
                totals[actor[i]] = totals.get(actor[i], 0) + n
            ranked = sorted(totals.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP]
            fields[f"top_{name}"] = [{name: _comm(value) if name == "comm" else value, "count": n}
                                     for value, n in ranked]
        if state.other:
            fields["untracked"] = state.other  # events beyond TRACKED distinct (comm, pid, uid): not in the tops
        fields.update(burst_in_full=state.full, burst_summarized=state.total, final=final)
        if state.first is not None:
            fields["first_event"] = state.first
        state.summaries += 1
        state._reset_summary()
        return fields


def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
