"""HTML from templates (templates/*.html, `$name` placeholders) where every value is escaped unless it is Markup
built here from escaped parts: escaping is the default, not something each page remembers."""
from __future__ import annotations

import functools
import html
import string
from pathlib import Path

from aiohttp import web

TEMPLATES = Path(__file__).with_name("templates")


class Markup(str):
    """HTML that is already safe: a filled template, or escaped text."""


def escape(value: object) -> Markup:
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


@functools.cache
def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text())


def fill(name: str, **values: object) -> Markup:
    """Template `name` with each `$key` replaced by its value, escaped (Markup is kept as it is)."""
    return Markup(_template(name).substitute({k: escape(v) for k, v in values.items()}))


NAV = (("/", "Dashboard", "dashboard"), ("/restore-points", "Restore points", "points"), ("/jobs", "Jobs", "jobs"),
       ("/policies", "Policies", "policies"))


def nav(active: str) -> Markup:
    return Markup("".join(
        fill("nav_item.html", href=href, label=label, current="page" if key == active else "false")
        for href, label, key in NAV))


def page(title: str, body: Markup, *, session=None, script: str = "", active: str = "", data: dict | None = None,
         status: int = 200) -> web.Response:
    """A whole page: the layout around `body`, the page's own script (static/<script>.js) and its `data` as
    data-* attributes of <main> (read by the script: ids from the path, never rendered into script text)."""
    attrs = Markup("".join(f' data-{escape(k)}="{escape(v)}"' for k, v in (data or {}).items()))
    header = Markup("") if session is None else fill(
        "header.html", nav=nav(active), user=session.user, role=session.role)
    text = fill("layout.html", title=title, csrf=session.csrf if session is not None else "",
                role=session.role if session is not None else "", header=header, body=body, attrs=attrs,
                script=Markup(f'<script type="module" src="/static/{escape(script)}.js"></script>') if script
                else Markup(""))
    return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
