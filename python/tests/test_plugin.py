"""The plugin's own contract, checked with pytest's pytester: a failing test leaves serve's
transcript in its tmp path and names it in the report; serve is stopped after every test."""

import json


def test_a_failing_test_reports_where_the_transcript_is(pytester):
    pytester.makepyfile(
        """
        def test_fails(airtwin_serve):
            serve = airtwin_serve("airport-express=den")
            assert serve.device("den").ports["raop"] > 0
            assert False, "on purpose"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*airtwin serve-0*", "*transcript and events in *serve-0*", "*events.jsonl*"])


def test_serve_is_stopped_and_its_ready_file_removed_after_the_test(pytester, monkeypatch):
    pytester.makepyfile(
        """
        import json, os, pathlib

        def test_serves(airtwin_serve, tmp_path):
            serve = airtwin_serve("itunes=lib", "airport-express=den")
            assert sorted(serve.devices) == ["den", "lib"]
            pathlib.Path(os.environ["PIDFILE"]).write_text(json.dumps(
                {"pid": serve.process.pid, "ready": str(serve.ready_file)}))
        """
    )
    pidfile = pytester.path / "pid.json"
    monkeypatch.setenv("PIDFILE", str(pidfile))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    facts = json.loads(pidfile.read_text())
    import os
    from pathlib import Path

    assert not Path(facts["ready"]).exists(), "serve removes its ready file when it stops"
    try:
        os.kill(facts["pid"], 0)
        alive = Path(f"/proc/{facts['pid']}/status").read_text().find("State:\tZ") < 0
    except ProcessLookupError:
        alive = False
    assert not alive, "serve must not outlive the test"


def test_the_marker_is_required_by_the_airtwin_fixture(pytester):
    pytester.makepyfile(
        """
        def test_unmarked(airtwin):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs @pytest.mark.airtwin*"])
