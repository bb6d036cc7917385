"""Pipelines the end-to-end tests run: their second step goes through stepbox."""

import os
import sys
import time

from zenml import pipeline, step
from zenml.config import DockerSettings, ResourceSettings


@step
def numbers() -> list[int]:
    return [1, 2, 3, 4]


def summed(values: list[int]) -> dict:
    """What the adder steps report: the sum and where they ran."""
    print(f"summing {len(values)} numbers in the sandbox", flush=True)
    return {
        "sum": sum(values),
        "token": os.environ.get("STEP_TOKEN"),
        "step_operator_env": os.environ.get("ZENML_STEP_OPERATOR"),
        "pid": os.getpid(),
        "python": sys.executable,
        "cwd": os.getcwd(),
    }


@step(step_operator="sandboxed", environment={"STEP_TOKEN": os.environ.get("STEP_TOKEN", "")})
def total(values: list[int]) -> dict:
    return summed(values)


@pipeline(enable_cache=False)
def adder() -> None:
    total(numbers())


@step(step_operator="unconfined")
def unconfined_total(values: list[int]) -> dict:
    return summed(values)


@pipeline(enable_cache=False)
def unconfined_adder() -> None:
    unconfined_total(numbers())


@step(step_operator="sandboxed")
def broken(values: list[int]) -> int:
    raise ValueError(f"the data is bad: {values}")


@pipeline(enable_cache=False)
def failing() -> None:
    broken(numbers())


@step(
    step_operator="sandboxed",
    environment={
        "STEP_TOKEN": os.environ.get("STEP_TOKEN", ""),
        "STARTED_MARKER": os.environ.get("STARTED_MARKER", ""),
    },
)
def slow(values: list[int]) -> int:
    with open(os.environ["STARTED_MARKER"], "w") as marker:
        marker.write(str(os.getpid()))
    time.sleep(600)
    return sum(values)


@pipeline(enable_cache=False)
def sleeper() -> None:
    slow(numbers())


@step(
    step_operator="sandboxed",
    settings={
        "docker": DockerSettings(requirements=["six==1.16.0"]),
        "resources": ResourceSettings(cpu_count=1, memory="512MiB"),
    },
)
def with_six(values: list[int]) -> dict:
    import six

    return {"six": six.__version__, "prefix": sys.prefix, "sum": sum(values)}


@pipeline(enable_cache=False)
def requirements() -> None:
    with_six(numbers())


@step(step_operator="misconfigured")
def nowhere(values: list[int]) -> int:
    return sum(values)


@pipeline(enable_cache=False)
def unknown_operator() -> None:
    nowhere(numbers())


@step(step_operator="legacy")
def legacy_total(values: list[int]) -> dict:
    return {"sum": sum(values), "pid": os.getpid()}


@pipeline(enable_cache=False)
def legacy_adder() -> None:
    legacy_total(numbers())
