"""Where the ``airtwin`` executable installed by this wheel lives."""

import os
import shutil
import sys
import sysconfig
from pathlib import Path


def find_airtwin_bin() -> Path:
    """The ``airtwin`` binary: ``$AIRTWIN_BIN`` if set, else the one this wheel installed into the
    interpreter's scripts directory (or the user scheme's), else the first on ``PATH``."""
    override = os.environ.get("AIRTWIN_BIN")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"AIRTWIN_BIN={override} is not a file")
        return path
    exe = "airtwin" + (sysconfig.get_config_var("EXE") or "")
    candidates = [Path(sysconfig.get_path("scripts")) / exe]
    user_scheme = f"{os.name}_user" if sys.platform != "darwin" else "osx_framework_user"
    try:
        candidates.append(Path(sysconfig.get_path("scripts", scheme=user_scheme)) / exe)
    except KeyError:
        pass
    candidates.append(Path(sys.executable).parent / exe)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    on_path = shutil.which(exe)
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        "no airtwin binary: install the airtwin wheel (ci/python-wheel builds it) or set AIRTWIN_BIN"
    )
