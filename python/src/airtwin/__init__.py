"""airtwin from Python: the ``airtwin`` command shipped in this wheel, a handle on a running
``airtwin serve`` (:class:`Serve`), a client for its control API (:class:`Control`), and a pytest
plugin (``airtwin.pytest_plugin``, registered through the ``pytest11`` entry point) whose
``airtwin_serve`` fixture starts devices for a test and stops them afterwards.

The protocol and the control API are documented in the repository's README ("Control API").
"""

from airtwin.binary import find_airtwin_bin
from airtwin.control import Control, ControlError
from airtwin.serve import Device, Serve, ServeError

__all__ = ["Control", "ControlError", "Device", "Serve", "ServeError", "find_airtwin_bin"]
