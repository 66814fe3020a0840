"""Workflow definitions known to this process, by name and version."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from orchestrator.model.errors import UnknownWorkflow
from orchestrator.model.limits import ConcurrencyLimit

WorkflowFn = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True, kw_only=True)
class WorkflowDefinition:
    """A workflow function registered under a name and a version."""

    name: str
    version: str
    fn: WorkflowFn
    #: Its concurrency limit (see :mod:`orchestrator.model.limits`); ``None``: unlimited.
    limit: ConcurrencyLimit | None = None
    #: Checks a run's arguments (as the journal keeps them) when it is started or scheduled,
    #: raising a clear error, so that bad input is refused at the call rather than failing
    #: the run later; ``None``: any JSON arguments are taken.
    check_args: Callable[[list[Any]], None] | None = None


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key that orders ``"2" < "10"`` and ``"1.2" < "1.10"``."""
    return tuple((int(p), "") if p.isdigit() else (0, p) for p in re.split(r"[.\-_]", version))


class Registry:
    """The workflows this process can run; several versions of one name may be loaded."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, WorkflowDefinition]] = {}

    def add(
        self,
        fn: Any,
        *,
        name: str,
        version: str,
        limit: ConcurrencyLimit | None = None,
        check_args: Callable[[list[Any]], None] | None = None,
    ) -> WorkflowDefinition:
        """Register ``fn``; a clear error when it is not ``async def`` or the slot is taken."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"workflow {name!r} must be an 'async def' function taking a WorkflowContext, "
                f"not {fn!r}"
            )
        if not name or not isinstance(name, str):
            raise ValueError(f"workflow name must be a non-empty string, not {name!r}")
        if not version or not isinstance(version, str):
            raise ValueError(f"workflow {name!r}: version must be a non-empty string")
        versions = self._by_name.setdefault(name, {})
        existing = versions.get(version)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"workflow {name!r} version {version!r} is already registered")
        definition = WorkflowDefinition(
            name=name, version=version, fn=fn, limit=limit, check_args=check_args
        )
        versions[version] = definition
        return definition

    def get(self, name: str, version: str | None = None) -> WorkflowDefinition:
        """The definition of ``name`` at ``version`` (default: the newest loaded)."""
        versions = self._by_name.get(name)
        if not versions:
            raise UnknownWorkflow(name)
        if version is None:
            return versions[max(versions, key=version_key)]
        try:
            return versions[version]
        except KeyError:
            raise UnknownWorkflow(name, version) from None

    def resolve(self, workflow: Any, version: str | None = None) -> WorkflowDefinition:
        """The definition of a decorated workflow function, or of a workflow name."""
        if isinstance(workflow, str):
            return self.get(workflow, version)
        definition = getattr(workflow, "__workflow__", None)
        if isinstance(definition, WorkflowDefinition):
            return definition if version is None else self.get(definition.name, version)
        raise UnknownWorkflow(getattr(workflow, "__qualname__", repr(workflow)))

    def has(self, name: str, version: str) -> bool:
        """Whether this process can replay ``name`` at ``version``."""
        return version in self._by_name.get(name, {})

    def names(self) -> list[str]:
        """Registered workflow names."""
        return sorted(self._by_name)

    def versions(self) -> dict[str, list[str]]:
        """Every loaded name with its versions, oldest first."""
        return {n: sorted(v, key=version_key) for n, v in sorted(self._by_name.items())}
