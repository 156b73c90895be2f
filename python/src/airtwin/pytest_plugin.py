"""pytest plugin: airtwin devices for a test.

Fixtures:

- ``airtwin_serve``: a factory; ``airtwin_serve("apple-tv=tv")``, ``airtwin_serve(scenario=path)``
  or ``airtwin_serve(scenario={...})`` starts ``airtwin serve``, waits for its ready file and returns
  a :class:`airtwin.Serve` (``.device(name)`` with address, ports, identity and PIN,
  ``.dns_sd_port``, ``.control`` for faults, state, events and audio). Every serve it started is
  stopped after the test.
- ``airtwin``: one serve configured by the test's marker,
  ``@pytest.mark.airtwin(devices=["itunes=lib"], scenario=None, seed=None, discovery=None)``.

Each serve writes into the test's ``tmp_path`` (``airtwin/serve-N/``: the transcript, events.jsonl,
the serve log); when a test fails, the report gains a section naming those files and the end of
the serve log. ``--airtwin-bin PATH`` (or ``AIRTWIN_BIN``) picks another binary than the wheel's.
"""

from pathlib import Path
from typing import Any, Dict, List

import pytest

from airtwin.serve import Serve, transcript_files

_REPORT_KEY = pytest.StashKey[Dict[str, pytest.TestReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("airtwin")
    group.addoption("--airtwin-bin", default=None, help="airtwin binary to serve devices with")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "airtwin(devices=[], scenario=None, seed=None, discovery=None): devices for the `airtwin` fixture",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    item.stash.setdefault(_REPORT_KEY, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORT_KEY, {})
    return any(report.failed for report in reports.values())


class _Factory:
    def __init__(self, request: pytest.FixtureRequest, root: Path):
        self.request = request
        self.root = root
        self.started: List[Serve] = []
        option = request.config.getoption("--airtwin-bin")
        self.binary = Path(option) if option else None

    def __call__(self, *devices: Any, **options: Any) -> Serve:
        out = self.root / f"serve-{len(self.started)}"
        serve = Serve(out, devices=devices, binary=self.binary, **options)
        self.started.append(serve)
        return serve.start()

    def finish(self) -> None:
        for serve in self.started:
            serve.stop()
        if not _failed(self.request.node):
            return
        for index, serve in enumerate(self.started):
            files = "\n".join(f"  {path}" for path in transcript_files(serve.out))
            tail = "\n".join(serve.log().splitlines()[-20:])
            self.request.node.add_report_section(
                "teardown",
                f"airtwin serve-{index}",
                f"transcript and events in {serve.out}:\n{files}\nend of the serve log:\n{tail}",
            )


@pytest.fixture
def airtwin_serve(request: pytest.FixtureRequest, tmp_path: Path):
    """Start ``airtwin serve``: ``airtwin_serve("airport-express=den", seed=1)``."""
    factory = _Factory(request, tmp_path / "airtwin")
    yield factory
    factory.finish()


@pytest.fixture
def airtwin(request: pytest.FixtureRequest, airtwin_serve: _Factory) -> Serve:
    """The serve described by the test's ``@pytest.mark.airtwin(...)``."""
    marker = request.node.get_closest_marker("airtwin")
    if marker is None:
        raise pytest.UsageError("the `airtwin` fixture needs @pytest.mark.airtwin(devices=[...]) or scenario=...")
    options = dict(marker.kwargs)
    devices = options.pop("devices", ())
    return airtwin_serve(*devices, **options)
