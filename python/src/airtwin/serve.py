"""A running ``airtwin serve``: started from device kinds or a scenario, ready once its ready file
exists (serve writes it atomically once every device listens), stopped with SIGTERM so that it
writes its transcript to ``--out`` before it exits (README, "Serving devices to your own client").
"""

import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from airtwin.binary import find_airtwin_bin
from airtwin.control import Control


class ServeError(Exception):
    """serve exited or never became ready; ``log`` is what it wrote on stderr."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(f"{message}\n--- airtwin serve stderr ---\n{log}" if log else message)
        self.log = log


@dataclass
class Device:
    """One device of the ready file: where it listens and who it says it is."""

    name: str
    kind: str
    address: str
    ports: Dict[str, int]
    identity: Dict[str, Any] = field(default_factory=dict)
    mdns: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The device's main port: ``raop``, ``airplay``, ``dacp`` or ``spotify-ap``."""
        for key in ("raop", "airplay", "dacp", "spotify-ap"):
            if key in self.ports:
                return self.ports[key]
        return next(iter(self.ports.values()))

    @property
    def pin(self) -> Optional[str]:
        """The PIN a HomeKit-pairing device (an Apple TV 4K) shows."""
        return self.identity.get("pin")


def _device_arg(spec: Union[str, Sequence[str]]) -> str:
    if isinstance(spec, str):
        return spec
    kind, name = spec
    return f"{kind}={name}"


class Serve:
    """``airtwin serve`` as a child process.

    ``devices`` are ``KIND``, ``KIND=NAME`` or ``(KIND, NAME)``; ``scenario`` is a scenario file,
    or a ``dict`` written out as one (YAML is a superset of JSON). ``out`` receives the transcript
    and ``events.jsonl``; the ready file is kept beside it.
    """

    def __init__(
        self,
        out: Union[str, Path],
        devices: Iterable[Union[str, Sequence[str]]] = (),
        scenario: Union[None, str, Path, Dict[str, Any]] = None,
        seed: Optional[int] = None,
        discovery: Optional[str] = None,
        extra_args: Sequence[str] = (),
        binary: Optional[Path] = None,
        ready_timeout: float = 30.0,
    ):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ready_file = self.out / "ready.json"
        self.log_file = self.out / "serve.log"
        args: List[str] = [str(binary or find_airtwin_bin()), "serve"]
        if isinstance(scenario, dict):
            path = self.out / "scenario.yaml"
            path.write_text(json.dumps(scenario, indent=2))
            args.append(str(path))
        elif scenario is not None:
            args.append(str(scenario))
        for spec in devices:
            args += ["--device", _device_arg(spec)]
        if seed is not None:
            args += ["--seed", str(seed)]
        if discovery is not None:
            args += ["--discovery", discovery]
        args += ["--ready-file", str(self.ready_file), "--out", str(self.out), *extra_args]
        self.args = args
        self.ready_timeout = ready_timeout
        self.process: Optional[subprocess.Popen] = None
        self.ready: Dict[str, Any] = {}
        self.devices: Dict[str, Device] = {}
        self.control: Optional[Control] = None

    def start(self) -> "Serve":
        if self.ready_file.exists():
            self.ready_file.unlink()
        log = open(self.log_file, "wb")
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.ready_timeout
        while not self.ready_file.exists():
            code = self.process.poll()
            if code is not None:
                raise ServeError(f"airtwin serve exited with {code} before it was ready", self.log())
            if time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"airtwin serve not ready after {self.ready_timeout:g} s", self.log())
            time.sleep(0.05)
        self.ready = json.loads(self.ready_file.read_text())
        self.devices = {
            entry["name"]: Device(
                name=entry["name"],
                kind=entry["kind"],
                address=entry["address"],
                ports=entry.get("ports", {}),
                identity=entry.get("identity", {}),
                mdns=entry.get("mdns", []),
            )
            for entry in self.ready["devices"]
        }
        self.control = Control(self.ready["ports"]["control"], self.ready["token"])
        return self

    @property
    def dns_sd_port(self) -> Optional[int]:
        """The unicast DNS-SD responder's UDP port on 127.0.0.1 (pyatv: ``PYATV_UDNS_PORT``)."""
        return self.ready.get("ports", {}).get("dns-sd")

    def device(self, name: Optional[str] = None) -> Device:
        """The device called ``name``, or the only one."""
        if name is None:
            if len(self.devices) != 1:
                raise KeyError(f"serve has {len(self.devices)} devices: name one of {sorted(self.devices)}")
            return next(iter(self.devices.values()))
        return self.devices[name]

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGTERM, so that serve writes its transcript; SIGKILL if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "Serve":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def transcript_files(out: Union[str, Path]) -> List[Path]:
    """What serve wrote into ``out``: the transcript, events.jsonl, captured audio."""
    root = Path(out)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


__all__ = ["Device", "Serve", "ServeError", "transcript_files"]
