"""``continuum schedules``: list schedules, pause, resume, trigger and delete them.

Schedules are written in code (``orc.schedule(...)``, where their workflow and arguments
are); operators steer them from here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from orchestrator.cli import common
from orchestrator.model.schedules import ScheduleInfo


def _schedule_dict(info: ScheduleInfo) -> dict[str, Any]:
    return {"schedule_id": info.schedule_id, **asdict(info)}


def _line(info: ScheduleInfo) -> str:
    spec = info.spec
    when = f"cron {spec.cron!r} {spec.timezone}" if spec.cron else f"every {spec.every:g}s"
    state = "paused" if info.paused else f"next {info.next_fire_at.isoformat(timespec='seconds')}"
    last = info.last_run_id or "-"
    return f"{spec.schedule_id:<28} {spec.workflow:<24} {when:<28} {state:<32} last {last}"


@click.group("schedules")
def schedules_group() -> None:
    """List and steer schedules."""


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@common.user_errors
def schedules_list(ctx: click.Context, as_json: bool) -> None:
    """List schedules, by id."""
    found = common.load_orchestrator(ctx).list_schedules()
    if as_json:
        common.dump([_schedule_dict(s) for s in found])
        return
    for info in found:
        click.echo(_line(info))


@schedules_group.command("pause")
@click.argument("schedule_id")
@click.pass_context
@common.user_errors
def schedules_pause(ctx: click.Context, schedule_id: str) -> None:
    """Stop firing a schedule until it is resumed."""
    click.echo(_line(common.load_orchestrator(ctx).pause_schedule(schedule_id)))


@schedules_group.command("resume")
@click.argument("schedule_id")
@click.pass_context
@common.user_errors
def schedules_resume(ctx: click.Context, schedule_id: str) -> None:
    """Fire a paused schedule again, from its next slot."""
    click.echo(_line(common.load_orchestrator(ctx).resume_schedule(schedule_id)))


@schedules_group.command("trigger")
@click.argument("schedule_id")
@click.pass_context
@common.user_errors
def schedules_trigger(ctx: click.Context, schedule_id: str) -> None:
    """Start a schedule's run now; prints its run id."""
    click.echo(common.load_orchestrator(ctx).trigger_schedule(schedule_id).run_id)


@schedules_group.command("delete")
@click.argument("schedule_id")
@click.pass_context
@common.user_errors
def schedules_delete(ctx: click.Context, schedule_id: str) -> None:
    """Delete a schedule (the runs it started stay)."""
    common.load_orchestrator(ctx).delete_schedule(schedule_id)
    click.echo(f"deleted {schedule_id}")
