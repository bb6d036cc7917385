"""Run one pipeline of pipelines.py and print what happened as one JSON line.

    python run.py PIPELINE

The last line of stdout is {"status", "run_id", "outputs", "steps"}; the outputs
of the last step are loaded back from the artifact store in a fresh query.
"""

import json
import sys

import pipelines
from zenml.client import Client


def describe(pipeline_name: str) -> dict:
    run = Client().get_pipeline(pipeline_name).last_run
    steps = {}
    outputs = None
    for name, step_run in run.steps.items():
        steps[name] = {
            "id": str(step_run.id),
            "status": str(step_run.status.value),
            "exception": (step_run.exception_info.message if step_run.exception_info else None),
        }
        if name != "numbers" and step_run.status.value == "completed":
            outputs = step_run.outputs["output"][0].load()
    return {"status": run.status.value, "run_id": str(run.id), "run_name": run.name, "outputs": outputs, "steps": steps}


def main() -> int:
    name = sys.argv[1]
    code = 0
    try:
        getattr(pipelines, name)()
    except BaseException as error:  # the report below is the point, also on Ctrl-C
        print(f"pipeline raised {type(error).__name__}: {error}", file=sys.stderr)
        code = 1
    print(json.dumps(describe(name)))
    return code


if __name__ == "__main__":
    sys.exit(main())
