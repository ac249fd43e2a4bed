"""Who asks for a change, as the audit trail, holds and snapshot records name them."""
from __future__ import annotations

import getpass
import socket


def actor() -> str:
    """Who makes a change from this machine's command line: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
