"""The ZenML step operator that hands each step to stepbox.

ZenML ≥ 0.94 calls `submit`, then polls `get_status` (through `wait`) and may
call `cancel`; it calls `cleanup_step_submission` when it is done with a step,
including when the pipeline process was interrupted while waiting. Older ZenML
calls the blocking `launch`. Each is one `stepbox` command; stepbox finds the
run again by ZenML's step-run id, so nothing is kept in this process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import zenml
from zenml.client import Client
from zenml.constants import ENV_ZENML_CONFIG_PATH
from zenml.enums import ExecutionStatus, StoreType
from zenml.logger import get_logger
from zenml.step_operators import BaseStepOperator
from zenml.utils import io_utils, source_utils
from zenml.utils.pipeline_docker_image_builder import PipelineDockerImageBuilder

from stepbox_zenml.cli import RunState, RunStatus, StepboxCli, StepboxError
from stepbox_zenml.entrypoint import SOURCE_ROOT_VARIABLE, StepboxEntrypointConfiguration
from stepbox_zenml.flavor import StepboxStepOperatorConfig, StepboxStepOperatorSettings
from stepbox_zenml.request import LaunchRequest, Resources
from stepbox_zenml.requirements import parse_requirements_files, with_runtime
from stepbox_zenml.runtime_requirements import integration_requirement, zenml_requirement

if TYPE_CHECKING:
    from zenml.config.base_settings import BaseSettings
    from zenml.config.step_run_info import StepRunInfo
    from zenml.models import StepRunResponse
    from zenml.step_operators.step_operator_entrypoint_configuration import (
        StepOperatorEntrypointConfiguration,
    )

logger = get_logger(__name__)

# Docker settings that describe an image; stepbox's flavor decides what a job runs in.
_IMAGE_ONLY_DOCKER_SETTINGS = ("parent_image", "dockerfile", "apt_packages")

STATUS_FOR_STATE = {
    RunState.RUNNING: ExecutionStatus.RUNNING,
    RunState.SUCCEEDED: ExecutionStatus.COMPLETED,
    RunState.FAILED: ExecutionStatus.FAILED,
    # stepbox cancels a run when asked to stop it: ZenML's word for that is "stopped".
    RunState.CANCELLED: ExecutionStatus.STOPPED,
}

# Why this package cancels a run, as `stepbox runs show` and ZenML's log then say.
INTERRUPTED = "the ZenML pipeline was interrupted (Ctrl-C)"
TERMINATED = "the ZenML pipeline process was asked to stop (SIGTERM)"
ABANDONED = "ZenML stopped waiting for the step (its pipeline process failed or ended)"
STOP_REQUESTED = "ZenML asked to stop the step"


class StepboxStepOperator(BaseStepOperator):
    """Runs each step as a launch of a stepbox step operator: a sandboxed Wasm flavor."""

    @property
    def config(self) -> StepboxStepOperatorConfig:
        """The step operator's config."""
        return cast(StepboxStepOperatorConfig, self._config)

    @property
    def settings_class(self) -> type[BaseSettings] | None:
        """Per-step settings: the flavor's own settings and an image."""
        return StepboxStepOperatorSettings

    @property
    def entrypoint_config_class(self) -> type[StepOperatorEntrypointConfiguration]:
        """ZenML's step entrypoint, staying in the source root where the job runs there (no `/app`)."""
        return StepboxEntrypointConfiguration

    def submit(
        self,
        info: StepRunInfo,
        entrypoint_command: list[str],
        environment: dict[str, str],
    ) -> None:
        """Start the step detached under a stepbox supervisor and return at once."""
        request = self._request(info, entrypoint_command)
        run_id = self._cli().submit(request, _job_environment(environment))
        logger.info(
            "Step `%s` runs as stepbox run %s on step operator `%s` (follow it with "
            "`stepbox status %s`, its log with `stepbox runs show %s`).",
            info.pipeline_step_name,
            run_id,
            request.step_operator,
            run_id[:8],
            run_id[:8],
        )

    def launch(
        self,
        info: StepRunInfo,
        entrypoint_command: list[str],
        environment: dict[str, str],
    ) -> None:
        """Run the step and return when it has ended (ZenML before 0.94 calls this)."""
        self._cli().launch(self._request(info, entrypoint_command), _job_environment(environment))

    def get_status(self, step_run: StepRunResponse) -> ExecutionStatus:
        """The step's state, as stepbox's store has it."""
        status = self._cli().status(str(step_run.id))
        if status.state in (RunState.FAILED, RunState.CANCELLED):
            logger.error(
                "stepbox run %s %s: %s (details: `stepbox runs show %s`)",
                status.run_id[:8],
                status.state.value,
                _outcome(status),
                status.run_id[:8],
            )
        return STATUS_FOR_STATE[status.state]

    def wait(self, step_run: StepRunResponse) -> ExecutionStatus:
        """Show the step's output as it runs, block until its run has ended, and return how it ended.

        `stepbox wait --follow` copies the job's output (scrubbed of secrets) to
        this process's stdout, where ZenML's own steps print, and notices the
        end within half a second; ZenML's own `wait` polls `get_status` at 1,
        2, 4, 8 and then every 16 seconds. Ctrl-C cancels the run, saying so.
        """
        cli = self._cli()
        signals: list[int] = []
        try:
            with _signals_noted(signals):
                cli.wait(str(step_run.id), output=sys.stdout)
        except StepboxError as error:
            logger.error("Waiting for step `%s` in stepbox failed: %s", step_run.name, error)
            return super().wait(step_run)
        except BaseException:
            # ZenML's own handler turns the signal into its exception (or KeyboardInterrupt).
            if signals:
                reason = _signal_reason(signals[0])
                logger.warning("Stopping step `%s` in stepbox: %s...", step_run.name, reason)
                try:
                    cli.cancel(str(step_run.id), reason=reason)
                except StepboxError as error:
                    # The interruption is what the caller must see; `cleanup_step_submission` tries again.
                    logger.error("Cancelling step `%s` in stepbox failed: %s", step_run.name, error)
                else:
                    logger.warning("Step `%s` was cancelled in stepbox: %s.", step_run.name, reason)
            raise
        return self.get_status(step_run)

    def cancel(self, step_run: StepRunResponse) -> None:
        """Cancel the step's stepbox run and wait until its jobs have stopped."""
        logger.info("Cancelling step `%s` in stepbox...", step_run.name)
        self._cli().cancel(str(step_run.id), reason=STOP_REQUESTED)

    def cleanup_step_submission(self, step_run: StepRunResponse) -> None:
        """Cancel the step's run if it is still running: ZenML stopped waiting (Ctrl-C, an error).

        ZenML calls this after `wait` returns or raises. A static pipeline
        interrupted while waiting never calls `cancel`, so without this its
        job would run on after the pipeline process ended.
        """
        cli = self._cli()
        if cli.status(str(step_run.id)).state is RunState.RUNNING:
            logger.warning(
                "Step `%s` is still running in stepbox after ZenML stopped waiting for it: cancelling it.",
                step_run.name,
            )
            cli.cancel(str(step_run.id), reason=ABANDONED)

    def _cli(self) -> StepboxCli:
        return StepboxCli.find(self.config.binary, self.config.home)

    def _request(self, info: StepRunInfo, entrypoint_command: list[str]) -> LaunchRequest:
        settings = cast(StepboxStepOperatorSettings, self.get_settings(info))
        resources = info.config.resource_settings
        requirements = self._requirements(info)
        return LaunchRequest(
            step_operator=self.config.step_operator,
            pipeline=info.pipeline.name,
            run_name=info.run_name,
            step=info.pipeline_step_name,
            run_id=str(info.run_id),
            step_run_id=str(info.step_run_id),
            command=_with_interpreter(entrypoint_command, own_python=not requirements and not settings.image),
            requirements=requirements,
            resources=Resources(
                cpu_count=resources.cpu_count,
                gpu_count=resources.gpu_count,
                gpu_class=resources.gpu_class,
                memory=resources.memory,
            ),
            flavor_settings=settings.flavor_settings,
            source_root=source_utils.get_source_root(),
            image=settings.image,
            read_dirs=_interpreter_dirs(),
        )

    def _requirements(self, info: StepRunInfo) -> list[str]:
        """The step's requirements (Docker settings), plus what its entrypoint needs when any."""
        docker_settings = info.config.docker_settings
        ignored = [name for name in _IMAGE_ONLY_DOCKER_SETTINGS if getattr(docker_settings, name)]
        if ignored:
            logger.warning(
                "Step `%s`: the Docker settings %s describe an image, and the stepbox step "
                "operator `%s` does not build ZenML's images; set the image in its flavor's "
                "config or settings instead.",
                info.pipeline_step_name,
                ", ".join(f"`{name}`" for name in ignored),
                self.config.step_operator,
            )
        client = Client()
        files = PipelineDockerImageBuilder.gather_requirements_files(
            docker_settings=docker_settings,
            stack=client.active_stack,
            log=False,
        )
        runtime = [
            zenml_requirement(zenml.__version__, sql_store=client.zen_store.type == StoreType.SQL),
            integration_requirement(),
        ]
        return with_runtime(parse_requirements_files(files), runtime)


@contextlib.contextmanager
def _signals_noted(received: list[int]) -> Iterator[None]:
    """Note SIGINT and SIGTERM in `received`, then hand them to the handlers already installed.

    In a static pipeline ZenML's step launcher installs its own handler, which raises
    `RunInterruptedException` for either signal: noting which one arrived lets the
    run's cancellation say "Ctrl-C". Outside the main thread signals cannot be handled,
    so nothing is noted there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def note(signum: int, frame: FrameType | None) -> None:
        handler = previous.get(signum)
        if handler == signal.SIG_IGN:
            return
        received.append(signum)
        if callable(handler):
            handler(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            # The default would end the process on the spot, leaving the step running.
            raise SystemExit(128 + signum)

    for wanted in (signal.SIGINT, signal.SIGTERM):
        previous[wanted] = signal.signal(wanted, note)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_reason(signum: int) -> str:
    return INTERRUPTED if signum == signal.SIGINT else TERMINATED


def _interpreter_dirs() -> list[str]:
    """Where the running interpreter and this package live: a step without requirements runs with them.

    A confined job reads only the machine's system directories, its environment and the
    source root; the pipeline's virtual environment (and the Python it was made from, which
    may live under a home directory) must be named, or the job finds no `python`. So must
    this package's directory when it is outside them (an editable install from a checkout).
    """
    real_prefix = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    prefixes = {sys.prefix, sys.base_prefix, real_prefix}
    package_root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if not any(_is_within(package_root, os.path.realpath(prefix)) for prefix in prefixes if prefix):
        prefixes.add(package_root)
    return sorted(prefix for prefix in prefixes if prefix and os.path.isdir(prefix) and prefix != "/")


def _is_within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _with_interpreter(command: list[str], own_python: bool) -> list[str]:
    """The entrypoint command, run by this very interpreter when the step has no environment of its own.

    ZenML's command starts with `python`, found on the job's PATH. A step
    without requirements or an image must run in the pipeline's interpreter:
    named by its path, the job runs exactly it, or fails saying it cannot
    start it, and never runs another `python` further down PATH (a pyenv
    shim, another virtual environment). A step with requirements keeps
    `python`: stepbox puts its environment's `bin` first on the job's PATH.
    """
    if own_python and command and command[0] == "python":
        return [sys.executable, *command[1:]]
    return list(command)


def _job_environment(environment: dict[str, str]) -> dict[str, str]:
    """ZenML's environment for the step, plus where this process keeps ZenML's config and its code.

    stepbox starts jobs with only the variables they are given (no `HOME`). A job
    on this machine reads the same local store and artifact store as the pipeline
    only if it finds the same global config: always named, since ZenML would
    otherwise look under the home directory of the job's user, which need not be
    this process's `HOME`. The source root tells the entrypoint (`entrypoint.py`)
    that a job started there needs no move to `/app`.
    """
    job_environment = dict(environment)
    job_environment.setdefault(ENV_ZENML_CONFIG_PATH, io_utils.get_global_config_directory())
    job_environment.setdefault(SOURCE_ROOT_VARIABLE, source_utils.get_source_root())
    return job_environment


def _outcome(status: RunStatus) -> str:
    parts = [status.message or "no message"]
    if status.exit_code is not None:
        parts.append(f"job exit code {status.exit_code}")
    return "; ".join(parts)
