"""handoff: what `release --unless-restarting` decides (the systemd/OpenRC facts it reads are given)."""
from endura_sensor import handoff

LIST_JOBS = """\
1234 endura-sensor.service restart running
1240 apt-daily.service    start   waiting
"""


def test_restart_jobs_are_read_for_the_unit_only():
    assert handoff.restart_jobs(LIST_JOBS, "endura-sensor.service") == ["restart"]
    assert handoff.restart_jobs(LIST_JOBS, "other.service") == []
    assert handoff.restart_jobs("", "endura-sensor.service") == []
    assert handoff.restart_jobs("No jobs running.\n", "endura-sensor.service") == []


def _decide(**kw):
    args = dict(fail_closed=False, service_result="success", job_types=[], rc_cmd=None)
    args.update(kw)
    return handoff.decide(**args)


def test_a_real_stop_releases():
    assert _decide().release is True
    assert _decide(service_result=None).release is True  # by hand, outside systemd
    assert _decide(job_types=["stop"]).release is True
    assert _decide(rc_cmd="stop").release is True


def test_a_restart_a_crash_or_fail_closed_keeps_the_programs():
    for kw, words in ((dict(job_types=["restart"]), "restarting (systemd job 'restart')"),
                      (dict(job_types=["try-restart"]), "restarting"),
                      (dict(job_types=["start"]), "restarting"),
                      (dict(rc_cmd="restart"), "restarting (OpenRC)"),
                      (dict(service_result="signal"), "ended with 'signal'"),
                      (dict(service_result="oom-kill"), "ended with 'oom-kill'"),
                      (dict(service_result="exit-code"), "Restart=on-failure"),
                      (dict(fail_closed=True), "fail_closed = true")):
        decision = _decide(**kw)
        assert decision.release is False and words in decision.reason, (kw, decision)


def test_run_release_without_a_pin_dir_does_nothing(tmp_path):
    decision = handoff.run_release(None, tmp_path, unless_restarting=True, fail_closed=False, jobs=lambda unit: [])
    assert decision.release is False and "nothing is pinned" in decision.reason


def test_run_release_removes_only_endura_pins_and_logs_it(tmp_path):
    pins = tmp_path / "pins"
    pins.mkdir()
    for name in ("endura_tp_exec-1", "endura_config-1", "other"):
        (pins / name).write_text("")
    decision = handoff.run_release(pins, tmp_path, unless_restarting=True, fail_closed=False,
                                   env={"SERVICE_RESULT": "success"}, jobs=lambda unit: [])
    assert decision.release and "detached 2 pinned object(s)" in decision.reason
    assert sorted(p.name for p in pins.iterdir()) == ["other"]
    assert '"type": "released"' in (tmp_path / "events.log").read_text()


def test_run_release_keeps_and_logs_the_handoff(tmp_path):
    pins = tmp_path / "pins"
    pins.mkdir()
    (pins / "endura_tp_exec-1").write_text("")
    decision = handoff.run_release(pins, tmp_path, unless_restarting=True, fail_closed=False,
                                   env={"SERVICE_RESULT": "success"}, jobs=lambda unit: ["restart"])
    assert not decision.release and (pins / "endura_tp_exec-1").exists()
    assert '"type": "handed_off"' in (tmp_path / "events.log").read_text()
