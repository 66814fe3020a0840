"""Run ids: short printable tokens, checked where they enter (client calls, replay messages)."""

from __future__ import annotations

import re
from typing import Any

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,199}$")


def check_run_id(run_id: Any) -> str:
    """A clear error for a run id that is not a short printable token."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use 1-200 characters of letters, digits and _.:@/+=-"
        )
    return run_id
