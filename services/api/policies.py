"""Backup policies (olvm_backup/policy)."""
from __future__ import annotations

ROUTES_POLICIES: list = []
