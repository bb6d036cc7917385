"""Where the time of a ZenML step that runs through stepbox goes.

    python overhead.py N        (run by scripts/bench-zenml, which sets up the stores)

Runs the tests' `adder` pipeline N times in each of two modes, alternating:
this package's `wait` (blocks in `stepbox wait`) and ZenML's own `wait`
(polls `get_status` at 1, 2, 4, 8, 16 s). Times the step operator's calls
in-process (the local orchestrator runs steps in this process), reads the
stepbox run's and its job's own times from stepbox, and also times the bare
`stepbox submit` and `stepbox status` commands. Prints medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from zenml.client import Client
from zenml.step_operators import BaseStepOperator

from stepbox_zenml.step_operator import StepboxStepOperator

sys.path.insert(0, os.getcwd())
import pipelines  # the tests' project: the current directory

samples: dict[str, list[float]] = defaultdict(list)
STEPBOX = os.environ["STEPBOX_BIN"]


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, recording how long each call takes under `name`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            samples[name].append((time.perf_counter() - start) * 1000)

    return wrapper


def millis_between(start: str, end: str) -> float:
    """Milliseconds between two ISO timestamps."""
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds() * 1000


def stepbox_json(*args: str) -> Any:
    """A stepbox command's JSON output."""
    completed = subprocess.run([STEPBOX, *args, "-o", "json"], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout)


def run_once(mode: str) -> None:
    """One pipeline run with `mode`'s wait, and its times."""
    StepboxStepOperator.wait = (  # type: ignore[method-assign]
        timed(f"{mode}: wait()", OUR_WAIT) if mode == "stepbox wait" else BaseStepOperator.wait
    )
    start = time.perf_counter()
    run = pipelines.adder()
    samples[f"{mode}: pipeline, end to end"].append((time.perf_counter() - start) * 1000)
    step = Client().get_pipeline_run(run.id).steps["total"]
    as_zenml_saw_it = millis_between(str(step.start_time), str(step.end_time))
    samples[f"{mode}: step, as ZenML saw it (start to end)"].append(as_zenml_saw_it)
    record = stepbox_json("status", "--step-run-id", str(step.id))
    run_time = millis_between(record["started_at"], record["ended_at"])
    samples[f"{mode}: stepbox run (launch start to end)"].append(run_time)
    jobs = stepbox_json("runs", "show", record["id"])["jobs"]
    samples[f"{mode}: the job itself (python -m zenml.entrypoints…)"].append(
        millis_between(jobs[0]["submitted_at"], jobs[0]["ended_at"])
    )


def bare_cli(n: int) -> None:
    """`stepbox submit` of a trivial command and `stepbox status` of it, without ZenML."""
    for i in range(n):
        args = ["--step-operator", "local", "--pipeline", "bare", "--run", f"r{i}", "--step", "s"]
        args += ["--step-run-id", f"bare-{os.getpid()}-{i}", "--env-stdin", "--", "true"]
        start = time.perf_counter()
        subprocess.run([STEPBOX, "-q", "submit", *args], input="{}", capture_output=True, text=True, check=True)
        samples["bare CLI: stepbox submit"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        stepbox_json("status", "--step-run-id", f"bare-{os.getpid()}-{i}")
        samples["bare CLI: stepbox status"].append((time.perf_counter() - start) * 1000)
        subprocess.run([STEPBOX, "-q", "wait", "--step-run-id", f"bare-{os.getpid()}-{i}"], check=False)


OUR_WAIT = StepboxStepOperator.wait
StepboxStepOperator.submit = timed("submit()", StepboxStepOperator.submit)  # type: ignore[method-assign]
StepboxStepOperator.get_status = timed("get_status()", StepboxStepOperator.get_status)  # type: ignore[method-assign]
StepboxStepOperator.cleanup_step_submission = timed(  # type: ignore[method-assign]
    "cleanup_step_submission()", StepboxStepOperator.cleanup_step_submission
)


def main() -> None:
    """Warm up, measure, print the medians."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    pipelines.adder()  # warm up: first-run registrations, caches
    samples.clear()
    for _ in range(n):
        run_once("stepbox wait")
        run_once("ZenML's polling wait")
    bare_cli(n)
    print(f"\nmedians of {n} runs each (ms):")
    for name, values in samples.items():
        print(f"  {name:<62} {statistics.median(values):>9.0f}   (n={len(values)})")


if __name__ == "__main__":
    main()
