"""The entrypoint configuration of steps run through stepbox.

ZenML's step-operator entrypoint assumes a container: before every step it
runs `os.makedirs("/app"); os.chdir("/app")` (ZenML 0.98,
`BaseEntrypointConfiguration.prepare_code_environment`), where ZenML's images
keep the code. A stepbox job on a local backend is no container: its working
directory is already the pipeline's source root, a confined job's `/` is not
the machine's, and an unconfined one would create `/app` on the machine (or
fail, as a user without root). So when the job starts in the source root the
pipeline sent, this configuration stays there; anywhere else (an image, a
remote worker) it does what ZenML does.
"""

from __future__ import annotations

import os
import sys

from zenml.step_operators.step_operator_entrypoint_configuration import (
    StepOperatorEntrypointConfiguration,
)

SOURCE_ROOT_VARIABLE = "STEPBOX_ZENML_SOURCE_ROOT"
"""The pipeline's source root, in the job's environment (the package sets it)."""


def runs_in_source_root(working_dir: str, source_root: str | None) -> bool:
    """Whether the job's working directory is the pipeline's source root: the code is here."""
    if not source_root:
        return False
    try:
        return os.path.samefile(working_dir, source_root)
    except OSError:
        return False


class StepboxEntrypointConfiguration(StepOperatorEntrypointConfiguration):
    """ZenML's step-operator entrypoint, without the move to `/app` where the code already is."""

    def prepare_code_environment(self) -> None:
        """Stay in the source root when the job runs there; otherwise prepare as ZenML does."""
        working_dir = os.getcwd()
        if self.should_download_code or not runs_in_source_root(working_dir, os.environ.get(SOURCE_ROOT_VARIABLE)):
            super().prepare_code_environment()
            return
        if working_dir not in sys.path:
            sys.path.insert(0, working_dir)
