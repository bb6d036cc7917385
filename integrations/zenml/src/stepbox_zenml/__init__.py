"""Run ZenML steps through stepbox: WebAssembly-sandboxed step-operator flavors.

The flavor to register is `stepbox_zenml.flavor.StepboxStepOperatorFlavor`;
see docs/ZENML.md in the stepbox repository.
"""

from stepbox_zenml.flavor import (
    FLAVOR_NAME,
    StepboxStepOperatorConfig,
    StepboxStepOperatorFlavor,
    StepboxStepOperatorSettings,
)

__all__ = [
    "FLAVOR_NAME",
    "StepboxStepOperatorConfig",
    "StepboxStepOperatorFlavor",
    "StepboxStepOperatorSettings",
]
