"""The console's pages: each an HTML shell (render.py, templates/) whose script (static/) fills it from the JSON API.
What a page knows from its path (a restore point id, a request id, a directory) goes into data-* attributes,
escaped; the role decides which controls are offered (the API refuses the rest anyway: 403)."""
from __future__ import annotations

from aiohttp import web

from ..routing import ADMIN, PUBLIC, Route
from ..security import SESSION
from .render import Markup, fill, page


def local_path(target: str | None) -> str:
    """Where to go after logging in: a path of this server only (no //host, no scheme), else the dashboard. A
    browser drops tabs and newlines from a URL and reads a backslash as a slash, so `/<TAB>/evil.example` would
    be `//evil.example`: no control character or backslash passes."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or any(c < " " or c == "\x7f" or c == "\\" for c in target)):
        return "/"
    return target


async def login(request: web.Request) -> web.Response:
    return page("Log in", fill("login.html"), script="login",
                data={"next": local_path(request.query.get("next"))})


async def dashboard(request: web.Request) -> web.Response:
    s = request[SESSION]
    return page("Dashboard", fill("dashboard.html", csrf=s.csrf), session=s, script="dashboard", active="dashboard")


async def points(request: web.Request) -> web.Response:
    s = request[SESSION]
    vm = request.query.get("vm", "")
    return page("Restore points", fill("points.html", csrf=s.csrf, vm=vm), session=s, script="points",
                active="points", data={"vm": vm})


async def files(request: web.Request) -> web.Response:
    s = request[SESSION]
    backup_id = request.match_info["backup_id"]
    path = request.query.get("path") or "/"
    return page("Files", fill("files.html", backup_id=backup_id), session=s, script="files", active="points",
                data={"point": backup_id, "path": path})


async def jobs(request: web.Request) -> web.Response:
    s = request[SESSION]
    return page("Jobs", fill("jobs.html"), session=s, script="jobs", active="jobs")


async def job(request: web.Request) -> web.Response:
    s = request[SESSION]
    rid = request.match_info["request_id"]
    return page("Job", fill("job.html", request_id=rid), session=s, script="job", active="jobs",
                data={"request": rid})


async def policies(request: web.Request) -> web.Response:
    """Everyone sees the policies and may run one now; an admin also gets the editors (PUT/POST/DELETE need it)."""
    s = request[SESSION]
    admin = fill("policy_new.html", csrf=s.csrf) if s.role == ADMIN else Markup("")
    return page("Policies", fill("policies.html", admin=admin), session=s, script="policies", active="policies")


def _page(path: str, handler, summary: str, role=None) -> Route:
    return Route("GET", path, handler, summary, kind="page", tag="console",
                 **({"role": role} if role is not None else {}), content_type="text/html")


ROUTES_PAGES = [
    Route("GET", "/login", login, "The console's login page", role=PUBLIC, kind="page", tag="console",
          content_type="text/html"),
    _page("/", dashboard, "Dashboard: protected and unprotected VMs, the last day's failures, storage used, jobs"),
    _page("/restore-points", points, "Restore points, with the restore dialog"),
    _page("/restore-points/{backup_id}/files", files, "The files inside a restore point, with downloads"),
    _page("/jobs", jobs, "Backups and restores since the service started"),
    _page("/jobs/{request_id}", job, "One job's live progress"),
    _page("/policies", policies, "Policies (editing: admin)"),
]
