"""HTML pages from Jinja2 templates shipped in the package (``endoctl/templates``).

Every generated page (``endoctl report``'s ``index.html``, and later pages such as ``endoctl study``'s)
is rendered here: Python prepares plain data (dicts, lists, strings, numbers) and a template in
``templates/`` turns it into markup. Autoescaping is on for every template, so a string from the
data (a class or source name, a file path) is escaped wherever it lands; markup that is meant to
pass through must be marked ``|safe`` (or built as :class:`markupsafe.Markup`) in one visible place.
Undefined names fail loudly (``StrictUndefined``) rather than render as empty text.

Stylesheets live beside the templates (``*.css``) and are inlined by them, so a page stays one
self-contained file. Rendering is deterministic: the same data gives the same bytes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

TEMPLATES = "templates"  # package data: endoctl/templates/*.j2 and *.css (pyproject.toml package-data)


def thousands(n: int) -> str:
    """``1234567`` -> ``1,234,567``."""
    return f"{int(n):,}"


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment for endoctl's pages: package templates, autoescape, strict undefined."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("endoctl", TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["thousands"] = thousands
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)
