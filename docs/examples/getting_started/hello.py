"""A first workflow: two Celery tasks awaited in turn, with a durable timer between them."""

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

app = Celery("hello")
orc = Orchestrator(app)


@app.task
def greet(name: str) -> str:
    return f"Hello, {name}!"


@app.task
def shout(text: str) -> str:
    return text.upper()


@orc.workflow(name="hello")
async def hello(ctx: WorkflowContext, name: str) -> str:
    greeting = await ctx.activity(greet, name)
    await ctx.sleep(1)  # a durable timer: a restart does not lose it
    return await ctx.activity(shout, greeting)
