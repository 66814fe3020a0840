"""The test kit's pytest plugin (entry point ``pytest11``): the ``workflow_environment``
fixture, a factory of :class:`~orchestrator.testing.WorkflowEnvironment` closed after the test.

    def test_order(workflow_environment):
        env = workflow_environment(orc, activities={"charge": fake_charge})
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from orchestrator.testing.environment import WorkflowEnvironment


@pytest.fixture
def workflow_environment() -> Iterator[Callable[..., WorkflowEnvironment]]:
    """Make environments with ``workflow_environment(orc, activities=None, **options)``;
    each is closed when the test ends."""
    with ExitStack() as stack:

        def make(orc: Any, activities: Any = None, **options: Any) -> WorkflowEnvironment:
            return stack.enter_context(WorkflowEnvironment(orc, activities, **options))

        yield make
