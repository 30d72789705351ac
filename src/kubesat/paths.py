"""Where a server keeps its data by default; shared by the server and the commands that read its data dir."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_dir"]


def default_data_dir() -> Path:
    """$KUBESAT_DATA_DIR, else ~/.kubesat (the user's home), else ./.kubesat."""
    env = os.environ.get("KUBESAT_DATA_DIR")
    if env:
        return Path(env)
    home = Path.home()
    if home and str(home) not in ("", "/") and os.access(home, os.W_OK):
        return home / ".kubesat"
    return Path.cwd() / ".kubesat"
