import os

import pytest
from endura_sensor import events


def record(**overrides):
    values = dict(type=1, action=events.ACTION_BLOCKED | events.ACTION_KILLED, tier=events.TIER_LSM, rule_id=7,
                  timestamp_ns=123456789, cgroup_id=42, pid=100, tid=101, ppid=1, uid=1000, gid=1000,
                  kill_result=0, dev=(8 << 20) | 1, ino=4242, comm=b"bash", filename=b"/tmp/evil")
    values.update(overrides)
    return events.EVENT.pack(*(values[name] for name, _ in events.EVENT_FIELDS))


def test_event_size_and_layout_match_the_header():
    assert events.EVENT.size == 344
    layout = events.event_layout()
    assert layout[0] == ("type", 0, 4)
    assert ("dev", 56, 8) in layout and ("comm", 72, 16) in layout and layout[-1] == ("filename", 88, 256)
    assert events.FILE_KEY.size == 16 and events.DENY_RULE.size == 8 and events.CONFIG.size == 16


def test_decode_names_type_tier_and_actions():
    ev = events.decode(record())
    assert ev.type == "exec_denied" and ev.tier == "lsm" and ev.action == ["blocked", "killed"]
    assert (ev.pid, ev.tid, ev.ppid, ev.uid, ev.rule_id) == (100, 101, 1, 1000, 7)
    assert ev.comm == "bash" and ev.filename == "/tmp/evil"
    assert ev.to_dict()["dev"] == (8 << 20) | 1


def test_decode_stops_strings_at_nul_and_tolerates_bad_utf8_and_trailing_bytes():
    ev = events.decode(record(comm=b"ab\0garbage", filename=b"/x/\xff\0junk", tier=9, action=1,
                              kill_result=-3) + b"\0" * 8)
    assert ev.comm == "ab" and ev.filename == "/x/\ufffd"
    assert ev.tier == "unknown(9)" and ev.action == ["audited"] and ev.kill_result == -3


def test_short_record_is_rejected():
    with pytest.raises(ValueError, match="shorter than struct endura_event"):
        events.decode(record()[:100])


def test_kernel_dev_encoding_matches_mkdev():
    assert events.kernel_dev(os.makedev(8, 1)) == (8 << 20) | 1
    assert events.kernel_dev(os.makedev(259, 300)) == (259 << 20) | 300


def test_file_key_is_device_and_inode(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    st = os.stat(path)
    assert events.FILE_KEY.unpack(events.file_key(str(path))) == (events.kernel_dev(st.st_dev), st.st_ino)
