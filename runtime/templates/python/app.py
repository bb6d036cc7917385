"""`{{name}}`: a stepbox flavor. It runs each step's entrypoint as one job on
the step operator's default backend and waits for it.

componentize-py generates the `wit_world` bindings from wit/ at build time.
"""

import json
from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import operator
from wit_world.imports import jobs, log, types

CONFIG_SCHEMA = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "timeout_seconds": {"type": ["integer", "null"], "minimum": 1,
                            "description": "Cancel a step that runs longer than this."},
    },
    "additionalProperties": False,
})
SETTINGS_SCHEMA = json.dumps({"type": "object", "additionalProperties": False})


def timeout_seconds(config: str) -> Optional[int]:
    """The configuration: a JSON object with an optional `timeout_seconds`."""
    try:
        value = json.loads(config or "{}")
    except json.JSONDecodeError as error:
        raise Err(operator.ConfigError(field=None, message=f"not JSON: {error.msg}"))
    if not isinstance(value, dict):
        raise Err(operator.ConfigError(field=None, message="expected a JSON object"))
    for key in value:
        if key != "timeout_seconds":
            raise Err(operator.ConfigError(field=key, message=f"unknown field `{key}`"))
    seconds = value.get("timeout_seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1):
        raise Err(operator.ConfigError(field="timeout_seconds",
                                       message=f"must be a whole number of seconds, at least 1, got {json.dumps(seconds)}"))
    return seconds


def host_error(error: types.Error) -> operator.LaunchError:
    if isinstance(error, types.Error_Denied):
        return operator.LaunchError_Denied(error.value)
    if isinstance(error, types.Error_Cancelled):
        return operator.LaunchError_Cancelled(error.value)
    return operator.LaunchError_Failed(error.value)


class Operator(exports.Operator):
    def metadata(self) -> operator.FlavorMetadata:
        return operator.FlavorMetadata(
            name="{{name}}", display_name="{{name}}", version="0.1.0",
            description="Runs each step as one job and waits for it.", docs_url=None,
            config_schema=CONFIG_SCHEMA, settings_schema=SETTINGS_SCHEMA)

    def validate_config(self, config: str) -> None:
        timeout_seconds(config)

    def launch(self, config: str, request: operator.LaunchRequest) -> operator.LaunchReport:
        try:
            timeout = timeout_seconds(config)
        except Err as problem:
            raise Err(operator.LaunchError_InvalidConfig(problem.value))
        log.log(log.Level.INFO, f"running step {request.step_name}")
        try:
            job = jobs.submit(jobs.JobSpec(
                name=request.step_name, backend=None, command=list(request.entrypoint_command),
                env=list(request.environment), working_dir=request.source_root, resources=request.resources,
                timeout_seconds=timeout, runtime=jobs.Runtime_Host(), backend_options=[]))
            status = job.wait()
        except Err as failure:
            raise Err(host_error(failure.value))
        return operator.LaunchReport(job_ids=[job.id()], state=status.state, exit_code=status.exit_code,
                                     message=status.message)
