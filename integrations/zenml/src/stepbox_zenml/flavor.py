"""The `stepbox` step-operator flavor: its config, its per-step settings, and the flavor itself.

Register it with ZenML once:

    zenml step-operator flavor register stepbox_zenml.flavor.StepboxStepOperatorFlavor
    zenml step-operator register sandboxed --flavor=stepbox --step_operator=local
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field
from zenml.config.base_settings import BaseSettings
from zenml.step_operators import BaseStepOperatorConfig, BaseStepOperatorFlavor

if TYPE_CHECKING:
    from zenml.step_operators import BaseStepOperator

FLAVOR_NAME = "stepbox"


class StepboxStepOperatorSettings(BaseSettings):
    """Per-step settings, under the key `step_operator` (or `step_operator.stepbox`)."""

    flavor_settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Settings for the stepbox flavor's launch (what `stepbox launch --settings` takes); "
            "the flavor checks them against its own schema (`stepbox flavor describe`)."
        ),
    )
    image: str | None = Field(
        default=None,
        description="An image already built for the step, for flavors that run images.",
    )


class StepboxStepOperatorConfig(BaseStepOperatorConfig, StepboxStepOperatorSettings):
    """How ZenML reaches stepbox; the per-step settings can be given defaults here too."""

    step_operator: str = Field(
        description=(
            "The stepbox step operator to launch with (`stepbox step-operator list`): "
            "a sandboxed flavor, its config and its grants."
        ),
    )
    binary: str | None = Field(
        default=None,
        description="The stepbox binary; `stepbox` on PATH if not set.",
    )
    home: str | None = Field(
        default=None,
        description="stepbox's state directory; $STEPBOX_HOME, else ~/.local/share/stepbox.",
    )

    @property
    def is_local(self) -> bool:
        """stepbox runs on this machine, whichever backend its flavor sends jobs to."""
        return True


class StepboxStepOperatorFlavor(BaseStepOperatorFlavor):
    """Run steps through WebAssembly-sandboxed stepbox flavors."""

    @property
    def name(self) -> str:
        """The flavor's name in ZenML."""
        return FLAVOR_NAME

    @property
    def docs_url(self) -> str | None:
        """No hosted docs: the guide is docs/ZENML.md in the stepbox repository."""
        return None

    @property
    def sdk_docs_url(self) -> str | None:
        """No hosted SDK docs."""
        return None

    @property
    def logo_url(self) -> str | None:
        """No logo."""
        return None

    @property
    def config_class(self) -> type[StepboxStepOperatorConfig]:
        """The config class."""
        return StepboxStepOperatorConfig

    @property
    def implementation_class(self) -> type[BaseStepOperator]:
        """The step operator, imported only when ZenML needs it."""
        from stepbox_zenml.step_operator import StepboxStepOperator

        return StepboxStepOperator
