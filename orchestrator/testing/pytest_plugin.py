"""The test kit's pytest plugin (entry point ``pytest11``): the ``workflow_environment``
fixture, a factory of :class:`~orchestrator.testing.WorkflowEnvironment` closed after the test.

    def test_order(workflow_environment):
        env = workflow_environment(orc, activities={"charge": fake_charge})
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from orchestrator.testing.environment import WorkflowEnvironment


@pytest.fixture
def workflow_environment() -> Iterator[Callable[..., WorkflowEnvironment]]:
    """Make environments with ``workflow_environment(orc, activities=None, **options)``;
    each is closed when the test ends."""
    # Imported here, not when pytest loads its plugins: a project that never asks for the
    # fixture does not import the library before its own conftest (or coverage) starts.
    from orchestrator.testing.environment import WorkflowEnvironment

    with ExitStack() as stack:

        def make(orc: Any, activities: Any = None, **options: Any) -> WorkflowEnvironment:
            return stack.enter_context(WorkflowEnvironment(orc, activities, **options))

        yield make
