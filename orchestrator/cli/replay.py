"""``continuum -A app replay FILE...``: recorded histories checked against the code, for CI.

Each FILE holds the JSON of ``continuum runs history RUN_ID --json`` (or of ``runs show
--json``). Every history is replayed against the app's workflows as a worker would replay
it (:mod:`orchestrator.engine.histories`); nothing is written and no activity runs. The exit
code says what CI needs to know: 0 when every history replays, 1 when the code disagrees
with one (the first mismatch of each is named), 2 when a file is not a history.
"""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli import common
from orchestrator.engine import histories
from orchestrator.model.errors import OrchestratorError

#: Exit codes: a history the code no longer replays, and a file that is not a history.
MISMATCH, NOT_A_HISTORY = 1, 2


@click.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def replay_cmd(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Replay recorded histories (JSON of `runs history --json`) against the app's
    workflows: exit 1 when the code no longer replays one, 2 when a file is not a history."""
    orc = common.load_orchestrator(ctx)
    code = 0
    for path in files:
        try:
            events = histories.load(path.read_bytes())
        except (OSError, histories.HistoryError) as exc:
            click.echo(f"{path}: {exc}", err=True)
            code = max(code, NOT_A_HISTORY)
            continue
        started = events[0].data
        what = f"{started['workflow']} v{started['version']}, {len(events)} events"
        try:
            histories.replay(orc.registry, orc.settings, events)
        except OrchestratorError as exc:
            click.echo(f"{path}: does not replay ({what}): {exc}", err=True)
            code = max(code, MISMATCH)
            continue
        click.echo(f"{path}: ok ({what})")
    ctx.exit(code)
