"""The dissect parsers (volume tables, LVM, file systems) are AGPL-3.0: an optional extra, imported only when
file-level restore runs, so everything else installs and works without them."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import BackupError

INSTALL = "pip install 'olvm-backup[files]'"


class FilesExtraMissing(BackupError):
    template = "file-level restore needs the optional AGPL extra: {install} ({reason})"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, install=INSTALL)


def dissect(module: str) -> ModuleType:
    """`dissect.<module>` (e.g. "extfs", "volume.lvm"), or FilesExtraMissing saying how to get it."""
    try:
        return importlib.import_module(f"dissect.{module}")
    except ImportError as e:
        raise FilesExtraMissing(f"dissect.{module} is not installed: {e}") from None
