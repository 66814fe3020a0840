"""A Griffe extension: the docstrings' Sphinx roles (:class:`~orchestrator.X`) shown as code.

The library's docstrings are written for Python's help() and Sphinx-style readers; the site
renders them as Markdown, where a role would show as raw text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj):`~?(?P<target>[^`]+)`")


def _shown(match: re.Match[str]) -> str:
    target = match["target"]
    if match.group(0).split("`", 1)[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite ``:role:`target``` as ```target``` (``~`` keeps the last part only)."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_shown, obj.docstring.value)
