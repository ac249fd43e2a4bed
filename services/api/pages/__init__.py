"""The web console: server-rendered pages over the same service, guard and JSON API as scripts use.

Each page is an HTML shell rendered here (who is logged in, the CSRF token, the ids in its path, all escaped) and
one small script of its own (static/) that reads and changes things only through the JSON API (`/api/...`), with
the session cookie and the CSRF token: no logic of the API is repeated here. Scripts build the DOM from text nodes,
never from HTML strings, so nothing an engine, a guest or a user named can become markup.

app.add_pages registers `page_routes()` through the route table: pages are guarded like the API (a page asked for
without a login is sent to /login), and the Content-Security-Policy (security.py) allows scripts and styles from
this server only."""
from __future__ import annotations

from ..routing import Route


def page_routes() -> list[Route]:
    from .assets import ROUTES_STATIC
    from .views import ROUTES_PAGES

    return [*ROUTES_PAGES, *ROUTES_STATIC]
