"""The AI for Earth base-py example's shape (seed 000) on the toolkit: a long-running
`POST /` run as a task that reports its progress, and a quick `GET /echo/<text>`.

    execute-code examples/async-service
    curl -i -X POST localhost:8091/ -H 'Content-Type: application/json' -d '{"size": 3}'
        # 202, Location: /tasks/<id>
    curl localhost:8091/tasks/<id>     # "running", "progress": 0.4 ... then "completed"

Where AI4E's `api_async_func` started a thread and kept the status in memory
(lost on restart; a task that raised stayed "running" for ever), the toolkit
queues the task in its store: it survives a restart (and runs again if it was
cut short), a task that raises is "failed", and a stop lets running tasks
finish. `STEPS` and `STEP_SECONDS` set how long the pretend model runs.
"""

import os
import time

from workspace_service import Service

STEPS = int(os.environ.get("STEPS", "5"))
STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "1"))

svc = Service("async-example")


@svc.task("/", max_concurrent=3, content_types=["application/json"], max_content_length=1000)
def run_model(task) -> dict[str, object]:
    """Pretend to run a model in STEPS steps, saying how far it got after each."""
    for step in range(STEPS):
        task.update(f"running model: step {step + 1} of {STEPS}", progress=step / STEPS)
        time.sleep(STEP_SECONDS)
    return {"input": task.input, "steps": STEPS}


@svc.endpoint("/echo/<text>", methods=["GET"], max_concurrent=100)
def echo(text: str) -> dict[str, str]:
    """A synchronous endpoint beside the task: answers at once."""
    return {"echo": text}


if __name__ == "__main__":
    svc.serve()
