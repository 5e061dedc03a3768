import os

import pytest
from endura_sensor import events


def record(**overrides):
    values = dict(type=1, action=events.ACTION_BLOCKED | events.ACTION_KILLED, tier=events.TIER_LSM, rule_id=7,
                  timestamp_ns=123456789, cgroup_id=42, pid=100, tid=101, ppid=1, uid=1000, gid=1000,
                  kill_result=0, dev=(8 << 20) | 1, ino=4242, comm=b"bash", filename=b"/tmp/evil",
                  addr=b"\0" * 16, port=0, family=0, detail=0)
    values.update(overrides)
    return events.EVENT.pack(*(values[name] for name, _ in events.EVENT_FIELDS))


def test_event_size_and_layout_match_the_header():
    assert events.EVENT.size == 368
    layout = events.event_layout()
    assert layout[0] == ("type", 0, 4)
    assert ("dev", 56, 8) in layout and ("comm", 72, 16) in layout and ("filename", 88, 256) in layout
    assert layout[-4:] == [("addr", 344, 16), ("port", 360, 2), ("family", 362, 2), ("detail", 364, 4)]
    assert events.FILE_KEY.size == 16 and events.RULE.size == 16 and events.CONFIG.size == 48 + events.CGROUP_NAME_LEN + 32
    assert events.NET_KEY.size == 24


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


def test_connect_event_names_the_address_and_drops_file_fields():
    v4 = events.decode(record(type=events.EVENT_CONNECT_DENIED, addr=b"\0" * 10 + b"\xff\xff" + bytes([10, 1, 2, 3]),
                              port=4444, family=events.AF_INET)).to_dict()
    assert (v4["type"], v4["addr"], v4["port"], v4["family"]) == ("connect_denied", "10.1.2.3", 4444, 2)
    assert "dev" not in v4 and "ino" not in v4 and "detail" not in v4
    v6 = events.decode(record(type=events.EVENT_CONNECT_DENIED, addr=bytes.fromhex("20010db8" + "00" * 11 + "01"),
                              port=443, family=events.AF_INET6)).to_dict()
    assert v6["addr"] == "2001:db8::1"


def test_file_module_and_bpf_events_explain_their_detail():
    f = events.decode(record(type=events.EVENT_FILE_OPEN_DENIED, detail=3)).to_dict()
    assert f["access"] == ["read", "write"] and "addr" not in f and f["ino"] == 4242
    m = events.decode(record(type=events.EVENT_MODULE_LOAD_DENIED, detail=2)).to_dict()
    assert m["how"] == "finit_module"
    b = events.decode(record(type=events.EVENT_BPF_DENIED, detail=5)).to_dict()
    assert b["bpf_cmd"] == 5 and b["type"] == "bpf_denied"


@pytest.mark.parametrize("network, port, prefixlen, port_bytes, addr", [
    ("10.0.0.0/8", 0, 16 + 96 + 8, b"\0\0", b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 0])),
    ("192.0.2.7/32", 4444, 16 + 128, (4444).to_bytes(2, "big"), b"\0" * 10 + b"\xff\xff" + bytes([192, 0, 2, 7])),
    ("2001:db8::/32", 443, 16 + 32, (443).to_bytes(2, "big"), bytes.fromhex("20010db8") + b"\0" * 12),
    ("", 22, 16, (22).to_bytes(2, "big"), b"\0" * 16),
])
def test_net_key_is_port_then_v4_mapped_address(network, port, prefixlen, port_bytes, addr):
    assert events.NET_KEY.unpack(events.net_key(network, port)) == (prefixlen, port_bytes, addr)
