"""Payloads that cross a process boundary: JSON only, checked before anything is written.

kombu's JSON codec is used (the one Celery's ``json`` serializer uses), so the values a
Celery task already accepts - including datetimes, UUIDs and Decimals - round-trip through
the journal exactly as they do through the broker.
"""

from __future__ import annotations

from typing import Any

from kombu.utils import json as kombu_json

from orchestrator.model.errors import PayloadError

#: Default cap on one encoded payload (arguments, a result, a signal payload).
DEFAULT_MAX_BYTES = 1024 * 1024


def encode(value: Any, what: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """``value`` as JSON text, or a :class:`PayloadError` naming ``what`` could not be carried."""
    try:
        text: str = kombu_json.dumps(value, allow_nan=False)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} cannot be carried as JSON: {exc}") from None
    if len(text) > max_bytes:
        raise PayloadError(
            f"{what} is {len(text)} bytes as JSON, over the limit of {max_bytes} bytes "
            "(orchestrator_max_payload_bytes)"
        )
    return text


def decode(text: str | None) -> Any:
    """The value of a payload written by :func:`encode` (``None`` for a missing one)."""
    if text is None:
        return None
    return kombu_json.loads(text)  # type: ignore[no-untyped-call]


def roundtrip(value: Any, what: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """``value`` as another process will see it (tuples become lists, and so on)."""
    return decode(encode(value, what, max_bytes))
