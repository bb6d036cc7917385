"""One step launch, as the arguments of `stepbox submit` and `stepbox launch`.

This module knows nothing of ZenML: the step operator fills a `LaunchRequest`
from ZenML's step-run info, and this turns it into stepbox's flags. The step's
environment is not part of it: it travels on stdin (see `cli.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Resources:
    """What the step asks for, as ZenML's `ResourceSettings` writes it."""

    cpu_count: float | None = None
    gpu_count: int | None = None
    gpu_class: str | None = None
    memory: str | None = None
    """A size such as `4GiB` or `512MB`: stepbox reads ZenML's units as they are."""

    def arguments(self) -> list[str]:
        """The resource flags; none for what the step did not ask for.

        A GPU class with no GPU count is refused: the step would run with no GPU.
        """
        if self.gpu_class and not self.gpu_count:
            raise ValueError(
                f"the step's ResourceSettings ask for gpu_class={self.gpu_class!r} but no gpu_count: "
                "set gpu_count too (the step would otherwise run with no GPU)"
            )
        args: list[str] = []
        if self.cpu_count is not None:
            args += ["--cpu", _number(self.cpu_count)]
        if self.gpu_count is not None:
            args += ["--gpu", str(self.gpu_count)]
        if self.gpu_class:
            args += ["--gpu-class", self.gpu_class]
        if self.memory:
            args += ["--memory", self.memory]
        return args


@dataclass(frozen=True)
class LaunchRequest:
    """Everything about one step launch except its environment."""

    step_operator: str
    """The stepbox step operator (a flavor, its config and its grants)."""
    pipeline: str
    run_name: str
    step: str
    run_id: str
    step_run_id: str
    command: Sequence[str]
    """The step's entrypoint command: the only command its jobs may run."""
    requirements: Sequence[str] = ()
    resources: Resources = field(default_factory=Resources)
    flavor_settings: Mapping[str, Any] = field(default_factory=dict)
    """Per-step settings for the stepbox flavor, checked against its schema."""
    source_root: str | None = None
    image: str | None = None
    read_dirs: Sequence[str] = ()
    """Directories the step's confined job must read besides the source root and its
    environment: the pipeline's interpreter, which runs a step that has no requirements."""

    def arguments(self) -> list[str]:
        """Flags for `stepbox submit` / `stepbox launch`, without the command."""
        args = [
            "--step-operator",
            self.step_operator,
            "--pipeline",
            self.pipeline,
            "--run",
            self.run_name,
            "--step",
            self.step,
            "--run-id",
            self.run_id,
            "--step-run-id",
            self.step_run_id,
        ]
        for requirement in self.requirements:
            args += ["--requirement", requirement]
        args += self.resources.arguments()
        if self.flavor_settings:
            args += ["--settings", json.dumps(dict(self.flavor_settings), sort_keys=True)]
        if self.source_root:
            args += ["--source-root", self.source_root]
        if self.image:
            args += ["--image", self.image]
        for directory in self.read_dirs:
            args += ["--read-dir", directory]
        return args


def _number(value: float) -> str:
    """`2` for 2.0, `0.5` for 0.5: stepbox reads both, people read the first better."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
