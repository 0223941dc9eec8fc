"""One strict jinja2 environment: an undefined variable is an error, never ''."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hastack.render", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # config files, not HTML; inputs are validated at load time
    )


def render(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)
