"""Jinja2 templates of the HTML reports: ``base.html.j2`` (page shell, style sheet, header) extended by
the data report (``data_report.html.j2``) and the evaluation report (``eval_report.html.j2``).

Autoescaping is always on: report pages show data files and model replies, which may contain anything.
"""

from __future__ import annotations

import functools
import html
from typing import Any

from markupsafe import Markup


def _escape(value: Any) -> Markup:
    # html.escape writes quotes as &quot; / &#x27; where markupsafe writes &#34; / &#39;: equally safe, and the
    # pages read as they did before templates (tests and readers search them for html.escape's output).
    # Markup (a macro's output, already escaped) passes through unchanged.
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


@functools.cache
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("edulora", "templates"), autoescape=True, finalize=_escape,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(name: str, **context: Any) -> str:
    """The page of template ``name`` filled with ``context``."""
    return _environment().get_template(name).render(**context)
