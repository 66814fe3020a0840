"""Child workflows: one at a time with ``ctx.child``, in parallel with ``ctx.start_child``."""

from celery import Celery
from orchestrator import ChildFailed, Orchestrator, WorkflowContext

app = Celery("children")
orc = Orchestrator(app)


@app.task
def resize(image: str, width: int) -> str:
    if width <= 0:
        raise ValueError(f"cannot resize {image} to width {width}")
    return f"{image}@{width}"


# --8<-- [start:workflow]
@orc.workflow(name="thumbnail")
async def thumbnail(ctx: WorkflowContext, image: str, width: int) -> str:
    return await ctx.activity(resize, image, width)


@orc.workflow(name="gallery")
async def gallery(ctx: WorkflowContext, images: list[str]) -> dict[str, list[str]]:
    # One child, awaited at once: its run id is derived from this run's, so replay finds it.
    cover = await ctx.child(thumbnail, images[0], 1200)
    # Many children at once: start them, then await them together.
    handles = [ctx.start_child(thumbnail, image, 200) for image in images]
    thumbs = await ctx.gather(*handles)
    return {"cover": [cover], "thumbs": thumbs}


@orc.workflow(name="careful_gallery")
async def careful_gallery(ctx: WorkflowContext, image: str) -> str:
    try:
        return await ctx.child(thumbnail, image, 0)
    except ChildFailed as failure:  # carries the child's error: its type, message, traceback
        return f"no thumbnail: {failure.remote_message}"


# --8<-- [end:workflow]


# --8<-- [start:tests]
def test_children_run_as_runs_of_their_own(workflows: Orchestrator) -> None:
    handle = orc.start(gallery, ["a.png", "b.png"])
    assert handle.result(timeout=10) == {
        "cover": ["a.png@1200"],
        "thumbs": ["a.png@200", "b.png@200"],
    }
    children = orc.list_runs(workflow="thumbnail")
    assert {child.parent_run_id for child in children} == {handle.run_id}


def test_a_failed_child_raises_child_failed_in_the_parent(workflows: Orchestrator) -> None:
    handle = orc.start(careful_gallery, "c.png")
    outcome = handle.result(timeout=10)
    # The child failed because its activity did: the message names both.
    assert outcome.startswith("no thumbnail: run ")
    assert outcome.endswith("ValueError: cannot resize c.png to width 0")


# --8<-- [end:tests]
