"""The stepbox step operator as ZenML before 0.94 sees it: no `submit`, only the blocking `launch`.

ZenML 0.98 falls back to `launch` when `submit` raises NotImplementedError,
which is how the tests exercise the legacy path with the ZenML they have.
"""

from typing import Any

from stepbox_zenml.flavor import StepboxStepOperatorFlavor
from stepbox_zenml.step_operator import StepboxStepOperator


class LegacyStepboxStepOperator(StepboxStepOperator):
    def submit(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("ZenML < 0.94 has no submit")


class LegacyStepboxStepOperatorFlavor(StepboxStepOperatorFlavor):
    @property
    def name(self) -> str:
        return "stepbox-legacy"

    @property
    def implementation_class(self) -> type[StepboxStepOperator]:
        return LegacyStepboxStepOperator
