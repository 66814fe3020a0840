"""What the pages and the JSON API show of runs: a run's summary, its links to related
runs, its history as table rows, and the filters of the runs list.

Plain functions over :class:`~orchestrator.model.events.RunInfo` and
:class:`~orchestrator.model.events.Event`, so that the HTML and the JSON say the same thing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from orchestrator.journal.insight import RunCursor, RunPage
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus, parse_status
from orchestrator.web.timeline import format_seconds

#: Runs per page of the list, and the most a caller may ask for.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

#: Links a run's page shows, by the RunInfo field that holds the other run's id.
_LINKS = {
    "parent_run_id": "parent",
    "continued_from_run_id": "continued from",
    "continued_to_run_id": "continued as",
}


class BadRequest(ValueError):
    """A request the web view refuses, with the HTTP status to answer and why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    """The runs list's filters and page, as read from the query string."""

    status: RunStatus | None = None
    workflow: str | None = None
    q: str | None = None
    after: RunCursor | None = None
    limit: int = PAGE_SIZE

    @classmethod
    def parse(cls, params: Any) -> ListQuery:
        """From query parameters; :class:`BadRequest` naming the parameter that is wrong."""
        status = params.get("status") or None
        if status is not None:
            try:
                status = parse_status(status)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        after = params.get("after") or None
        if after is not None:
            try:
                after = RunCursor.decode(after)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        limit_text = params.get("limit") or str(PAGE_SIZE)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE_SIZE:
            raise BadRequest(
                f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, not {limit_text!r}"
            )
        return cls(
            status=status,
            workflow=params.get("workflow") or None,
            q=(params.get("q") or "").strip() or None,
            after=after,
            limit=int(limit_text),
        )

    def link(self, **changes: Any) -> str:
        """The list's URL with these filters, changed as given (``None`` drops one)."""
        values = {
            "status": self.status.value if self.status else None,
            "workflow": self.workflow,
            "q": self.q,
            "after": None,
            "limit": None if self.limit == PAGE_SIZE else str(self.limit),
        }
        values.update(changes)
        query = urlencode({k: v for k, v in values.items() if v})
        return "/" + (f"?{query}" if query else "")


def now_utc() -> datetime:
    return datetime.now(UTC)


def duration(info: RunInfo, now: datetime) -> float | None:
    """Seconds from the run's creation to its end (to now while it is open)."""
    if info.created_at is None:
        return None
    end = info.closed_at or now
    return max((end - info.created_at).total_seconds(), 0.0)


def error_line(info: RunInfo) -> str:
    """A failed run's error in one line: its type and the first line of its message, without
    the ``run <id>:`` the message starts with (the line is shown beside the run's id)."""
    if not info.error:
        return ""
    message = str(info.error.get("message") or "").strip().splitlines()
    first = message[0].removeprefix(f"run {info.run_id}: ") if message else ""
    kind = str(info.error.get("type") or "error").rsplit(".", 1)[-1]
    return f"{kind}: {first}".strip()


def run_links(info: RunInfo, history: list[Event]) -> list[tuple[str, str]]:
    """(label, run id) of the runs related to this one: parent, continuations, retries,
    children (from the history)."""
    links = [(label, getattr(info, name)) for name, label in _LINKS.items() if getattr(info, name)]
    for f in fields(info):  # fields a newer RunInfo adds, such as a retry's
        value = getattr(info, f.name)
        if f.name.endswith("_run_id") and f.name not in _LINKS and f.name != "run_id" and value:
            links.append((f.name.removesuffix("_run_id").replace("_", " "), value))
    for event in history:
        if event.type is EventType.CHILD_STARTED and event.data.get("child_run_id"):
            links.append((f"child {event.data.get('workflow', '')}", event.data["child_run_id"]))
    return links


def pretty(value: Any) -> str:
    """JSON for people (indented, keys in their order)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def event_summary(event: Event) -> str:
    """The one thing worth reading about an event, shown before its folded data."""
    data = event.data
    for key in ("task", "workflow", "name"):
        if data.get(key):
            return str(data[key])
    if isinstance(data.get("error"), dict):
        error = data["error"]
        return f"{error.get('type')}: {error.get('message')}"
    if "seconds" in data:
        return format_seconds(float(data["seconds"]))
    if "result" in data:
        return short(json.dumps(data["result"], default=str))
    if data.get("reason"):
        return str(data["reason"])
    return ""


def short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying it was."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_json(info: RunInfo) -> dict[str, Any]:
    """A run's ``describe`` fields as JSON-ready values."""
    return {k: jsonable(v) for k, v in asdict(info).items()}


def event_json(event: Event) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in asdict(event).items()}


def page_json(page: RunPage, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "runs": [run_json(r) for r in page.runs],
        "next": page.next.encode() if page.next else None,
        "counts": counts,
    }


def jsonable(value: Any) -> Any:
    """A record's field as JSON carries it: times in ISO 8601, statuses by their name."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, RunStatus | EventType):
        return value.value
    return value


def status_counts(counts: dict[tuple[str, RunStatus], int]) -> dict[str, int]:
    """Runs per status (summed over workflows), in the statuses' order."""
    out = {s.value: 0 for s in RunStatus}
    for (_, status), n in counts.items():
        out[status.value] += n
    return {k: v for k, v in out.items() if v}
