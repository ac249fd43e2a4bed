"""The API's answers to what went wrong: JSON `{"error": words, "field": the input at fault}` with a 4xx for bad
input, never a traceback. A BackupError the handlers let through is mapped by its type (a policy or a restore point
that does not exist is a 404 naming its field); anything else is a bug: logged, and a 500 that says nothing more."""
from __future__ import annotations

import json
import logging

from aiohttp import web

from olvm_backup.errors import BackupError

log = logging.getLogger(__name__)


class ApiError(web.HTTPException):
    """An answer with a status, a message and the field it is about (body, vm, restore_point, name...)."""

    def __init__(self, status: int, message: str, field: str = "", headers: dict | None = None) -> None:
        self.status_code = status
        body = {"error": message, **({"field": field} if field else {})}
        super().__init__(text=json.dumps(body), content_type="application/json", headers=headers)
        self.message = message
        self.field = field


def bad_input(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}" if field else message, field)


def not_found(field: str, message: str) -> ApiError:
    return ApiError(404, message, field)


def conflict(field: str, message: str) -> ApiError:
    return ApiError(409, message, field)


def from_backup_error(e: BackupError) -> ApiError:
    """The 4xx a known refusal is; a 502 for a dependency that failed (engine, store, broker)."""
    from olvm_backup.policy.model import PolicyError, PolicyNotFound
    from olvm_backup.repository.catalog import RestorePointNotFound
    from olvm_backup.users import UserError

    if isinstance(e, PolicyNotFound):
        return ApiError(404, str(e), "name")
    if isinstance(e, PolicyError):
        return ApiError(400, str(e), e.field or "document")
    if isinstance(e, RestorePointNotFound):
        return ApiError(404, str(e), "restore_point")
    if isinstance(e, UserError):
        return ApiError(400, str(e), e.field)
    try:
        from olvm_backup.access.tree import FilesError
    except ImportError:  # the optional files extra
        FilesError = ()  # type: ignore[assignment]  # noqa: N806
    if FilesError and isinstance(e, FilesError):
        return ApiError(404, str(e), "path")
    return ApiError(502, str(e))


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError:
        raise
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json" or not request.path.startswith("/api/"):
            raise
        # aiohttp's own refusals (no such route, method not allowed) in the API's shape
        raise ApiError(e.status, e.reason, headers={k: v for k, v in e.headers.items()
                                                    if k.lower() == "allow"}) from None
    except BackupError as e:
        raise from_backup_error(e) from None
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        raise ApiError(500, "internal error (the API's log says more)") from None
