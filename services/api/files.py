"""Browsing and downloading the files of a restore point (olvm_backup/access)."""
from __future__ import annotations

ROUTES_FILES: list = []
