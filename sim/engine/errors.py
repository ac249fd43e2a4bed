"""Engine errors as the REST API reports them: an HTTP status and a <fault> with reason and detail."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, detail: str, reason: str = "Operation Failed") -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def failed(detail: str, status: int = 400) -> ApiError:
    """A validation failure, worded like the engine's: `[Cannot … . …]`."""
    return ApiError(status, f"[{detail}]")


def conflict(detail: str) -> ApiError:
    return ApiError(409, f"[{detail}]")


def incomplete(detail: str) -> ApiError:
    return ApiError(400, detail, reason="Incomplete parameters")


def not_found(what: str) -> ApiError:
    """Every 404 has this shape: an unknown id and an unknown path alike (see `Api.middleware`)."""
    return ApiError(404, f"Entity not found: {what}", reason="Not Found")
