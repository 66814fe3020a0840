"""The web view, mounted in an existing ASGI site."""

import re

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

# --8<-- [start:imports]
from orchestrator.web import create_app
from starlette.applications import Starlette

# --8<-- [end:imports]
from starlette.testclient import TestClient

app = Celery("web_view")
orc = Orchestrator(app)


@orc.workflow(name="approval")
async def approval(ctx: WorkflowContext, request_id: str) -> str:
    answer = await ctx.wait_signal("answer")
    return f"{request_id}: {answer}"


# --8<-- [start:mount]
runs_app = create_app(orc, read_only=False)
site = Starlette()  # your site: FastAPI or Starlette
site.mount("/runs-admin", runs_app)
# --8<-- [end:mount]


def test_the_mounted_view_lists_runs_and_acts_on_them(workflows: Orchestrator) -> None:
    handle = orc.start(approval, "req-1", run_id="approval-1")
    client = TestClient(site)
    listed = client.get("/runs-admin/api/runs", params={"workflow": "approval"}).json()
    assert [run["run_id"] for run in listed["runs"]] == ["approval-1"]
    page = client.get("/runs-admin/runs/approval-1")
    assert page.status_code == 200 and "approval-1" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    sent = client.post(
        "/runs-admin/runs/approval-1/signal",
        data={"csrf_token": token, "name": "answer", "payload": '"yes"'},
    )
    assert sent.status_code < 400, sent.text
    assert handle.result(timeout=10) == "req-1: yes"
    assert client.get("/runs-admin/api/runs/approval-1").json()["run"]["status"] == "completed"


def test_a_read_only_view_refuses_actions(workflows: Orchestrator) -> None:
    orc.start(approval, "req-2", run_id="approval-2")
    client = TestClient(create_app(orc, read_only=True))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/runs/approval-2").text)
    data = {"csrf_token": token[1] if token else "", "reason": "no"}
    assert client.post("/runs/approval-2/cancel", data=data).status_code == 403
    assert client.get("/api/runs/nobody").status_code == 404
