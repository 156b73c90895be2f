"""A client for the control API of ``airtwin serve`` (README, "Control API").

Every request carries the serve's token as ``Authorization: Bearer``; errors come back as
``{"error": "reason"}`` with a 4xx status and are raised as :class:`ControlError`. Standard library
only, so the plugin adds no dependency to a test suite.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional


class ControlError(Exception):
    """The control API refused a request: ``status`` and the API's ``reason``."""

    def __init__(self, method: str, path: str, status: int, reason: str):
        super().__init__(f"{method} {path}: {status} {reason}")
        self.status = status
        self.reason = reason


class Control:
    """The control API at ``http://127.0.0.1:port`` with ``token``."""

    def __init__(self, port: int, token: str, host: str = "127.0.0.1", timeout: float = 70.0):
        self.base = f"http://{host}:{port}"
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                reason = json.loads(raw).get("error", raw.decode(errors="replace"))
            except ValueError:
                reason = raw.decode(errors="replace")
            raise ControlError(method, path, error.code, reason) from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        raw = self._request(method, path, body)
        return json.loads(raw) if raw else None

    def devices(self) -> list:
        """Every device: name, kind, address, ports, identity, DNS-SD records, state."""
        return self._json("GET", "/devices")

    def device(self, name: str) -> Dict[str, Any]:
        """One device, as in ``devices()`` (a 4K Apple TV's includes its ``pin``)."""
        return self._json("GET", f"/devices/{urllib.parse.quote(name)}")

    def state(self, name: str) -> Dict[str, Any]:
        """The device's state as ``GET /devices/NAME`` reports it: nested objects, whose dotted
        paths are the keys scenario ``state`` expectations read (``dacp.state``, ``hap.failed``)."""
        return self.device(name).get("state", {})

    def set_state(self, name: str, **changes: Any) -> Dict[str, Any]:
        """Change a device live: ``volume=-15``, ``name="Den"``, ``now_playing={…}``,
        ``play_state="paused"``…"""
        return self._json("POST", f"/devices/{urllib.parse.quote(name)}/state", changes)

    def faults(self) -> list:
        """The fault plan with each fault's index and how often it struck."""
        return self._json("GET", "/faults")

    def add_fault(self, fault: Dict[str, Any]) -> Dict[str, Any]:
        """Add a fault written as in a scenario: ``{"when": {...}, "action": {...}, "times": 1}``."""
        return self._json("POST", "/faults", fault)

    def remove_fault(self, index: int) -> None:
        self._request("DELETE", f"/faults/{index}")

    def events(self, since: int = 0, wait: Optional[float] = None) -> Dict[str, Any]:
        """The exchange log from event ``since``; ``wait`` seconds (≤ 60) for the next one."""
        query = f"?since={since}" + (f"&wait={wait:g}" if wait is not None else "")
        return self._json("GET", f"/events{query}")

    def exchanges(self, device: Optional[str] = None, since: int = 0) -> List[Dict[str, Any]]:
        """Requests and their responses from event ``since`` on, in order, optionally of one device:
        ``{"device", "connection", "method", "path", "status"}`` (``status`` is ``None`` for a
        request that got no answer, e.g. one a fault dropped)."""
        requests: Dict[Any, Dict[str, Any]] = {}
        order: List[Dict[str, Any]] = []
        for event in self.events(since)["events"]:
            if device is not None and event.get("device") != device:
                continue
            kind = event.get("kind", {})
            key = (event.get("device"), event.get("connection"), kind.get("index"))
            if kind.get("type") == "request":
                exchange = {
                    "device": event.get("device"),
                    "connection": event.get("connection"),
                    "method": kind.get("method"),
                    "path": kind.get("path"),
                    "status": None,
                }
                requests[key] = exchange
                order.append(exchange)
            elif kind.get("type") == "response" and key in requests:
                requests[key]["status"] = kind.get("status")
        return order

    def audio(self, name: str) -> bytes:
        """The audio the device received, as a WAV file."""
        return self._request("GET", f"/devices/{urllib.parse.quote(name)}/audio")

    def reset(self) -> None:
        """Runtime faults gone, scenario faults back, names and volumes back."""
        self._request("POST", "/reset")

    def shutdown(self) -> None:
        self._request("POST", "/shutdown")
