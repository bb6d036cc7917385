"""`python-local`: the local flavor, written in Python.

Does what the Rust `local` flavor does, against the same contract: decodes
its configuration and the per-step settings, installs the step's Python
requirements into an environment (`requirements`), submits the entrypoint
to run in it (`jobs`) and waits. Built into a component by componentize-py
(see build.sh); the `wit_world` bindings are generated at build time.
"""

import json
from typing import Any, Dict, List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import operator
from wit_world.imports import jobs, log, requirements, types

NAME = "python-local"
VERSION = "0.1.0"

# Field name -> (JSON type, description). The same fields as the Rust flavor.
CONFIG_FIELDS: Dict[str, tuple] = {
    "timeout_seconds": ("integer", "Cancel a step that runs longer than this many seconds."),
    "environment": ("object", "Environment variables added to every step (the step's own win)."),
    "working_dir": ("string", "Run steps in this directory instead of the step's source root."),
    "backend": ("string", "The job backend to use; the step operator's default when absent."),
    "python_version": ("string", "The Python version of the environment made for a step's requirements."),
}
SETTINGS_FIELDS: Dict[str, tuple] = {
    "timeout_seconds": ("integer", "Overrides the configured timeout for this step."),
    "environment": ("object", "Environment variables for this step only."),
}


def schema(title: str, fields: Dict[str, tuple]) -> str:
    """A JSON Schema (draft 2020-12) for an object with these optional fields."""
    properties: Dict[str, Any] = {}
    for name, (kind, description) in fields.items():
        if kind == "integer":
            properties[name] = {"type": ["integer", "null"], "minimum": 0, "description": description}
        elif kind == "object":
            properties[name] = {"type": "object", "additionalProperties": {"type": "string"}, "description": description}
        else:
            properties[name] = {"type": ["string", "null"], "description": description}
    return json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    })


class Invalid(Exception):
    """A configuration or settings problem, blamed on a field when one is to blame."""

    def __init__(self, field: Optional[str], message: str):
        super().__init__(message)
        self.field = field
        self.message = message

    def config_error(self) -> operator.ConfigError:
        return operator.ConfigError(field=self.field, message=self.message)


def decode(text: str, what: str, fields: Dict[str, tuple]) -> Dict[str, Any]:
    """Parse `text` as a JSON object of `fields`, naming the field that is wrong."""
    if not text.strip() or text.strip() == "null":
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise Invalid(None, f"{what}: not JSON: {error.msg}")
    if not isinstance(value, dict):
        raise Invalid(None, f"{what}: expected a JSON object")
    for key, item in value.items():
        if key not in fields:
            expected = ", ".join(f"`{name}`" for name in fields)
            raise Invalid(key, f"{what}: unknown field `{key}`, expected one of {expected}")
        kind = fields[key][0]
        if item is None and kind != "object":
            continue
        if kind == "integer" and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
            raise Invalid(key, f"{what}: invalid type: expected a non-negative integer, got {json.dumps(item)}")
        if kind == "string" and not isinstance(item, str):
            raise Invalid(key, f"{what}: invalid type: expected a string, got {json.dumps(item)}")
        if kind == "object" and (not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values())):
            raise Invalid(key, f"{what}: invalid type: expected a map of strings")
    return value


def valid_env_name(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and name.isascii() \
        and all(c.isalnum() or c == "_" for c in name)


def validate(config: Dict[str, Any]) -> None:
    if config.get("timeout_seconds") == 0:
        raise Invalid("timeout_seconds", "must be at least 1 second")
    for name in config.get("environment") or {}:
        if not valid_env_name(name):
            raise Invalid(f"environment.{name}", "is not a valid environment variable name "
                          "(letters, digits and _, not starting with a digit)")
    working_dir = config.get("working_dir")
    if working_dir is not None and not working_dir.startswith("/"):
        raise Invalid("working_dir", "must be an absolute path")


def launch_error(error: types.Error) -> operator.LaunchError:
    """A host error as the launch's error: denials and cancellations stay what they are."""
    if isinstance(error, types.Error_Denied):
        return operator.LaunchError_Denied(error.value)
    if isinstance(error, types.Error_Cancelled):
        return operator.LaunchError_Cancelled(error.value)
    if isinstance(error, types.Error_Invalid):
        return operator.LaunchError_Failed(f"invalid request: {error.value}")
    if isinstance(error, types.Error_Unsupported):
        return operator.LaunchError_Failed(f"unsupported: {error.value}")
    return operator.LaunchError_Failed(error.value)


def info(message: str) -> None:
    log.log(log.Level.INFO, message)


def run(config: Dict[str, Any], settings: Dict[str, Any], request: operator.LaunchRequest) -> operator.LaunchReport:
    env: List[types.EnvVar] = list(request.environment)
    defaults = dict(config.get("environment") or {})
    defaults.update(settings.get("environment") or {})
    for name, value in defaults.items():
        if not any(var.name == name for var in env):
            env.append(types.EnvVar(name=name, value=value))
    timeout = settings.get("timeout_seconds")
    if timeout is None:
        timeout = config.get("timeout_seconds")
    runtime: jobs.Runtime = jobs.Runtime_Host()
    if request.requirements:
        info(f"installing {len(request.requirements)} requirements")
        spec = requirements.EnvironmentSpec(requirements=list(request.requirements),
                                            python_version=config.get("python_version"))
        runtime = jobs.Runtime_Environment(requirements.install(spec).handle)
    job_spec = jobs.JobSpec(
        name=request.step_name,
        backend=config.get("backend"),
        command=list(request.entrypoint_command),
        env=env,
        working_dir=config.get("working_dir") or request.source_root,
        resources=request.resources,
        timeout_seconds=timeout,
        runtime=runtime,
        backend_options=[],
    )
    info(f"running step {request.step_name} of {request.pipeline_name}/{request.run_name}")
    job = jobs.submit(job_spec)
    job_id = job.id()
    log.log(log.Level.DEBUG, f"submitted job {job_id}")
    status = job.wait()
    return operator.LaunchReport(job_ids=[job_id], state=status.state, exit_code=status.exit_code,
                                 message=status.message)


class Operator(exports.Operator):
    def metadata(self) -> operator.FlavorMetadata:
        return operator.FlavorMetadata(
            name=NAME,
            display_name="Local process (Python)",
            version=VERSION,
            description="Runs each step as a process on the machine stepbox runs on, and waits for it. "
                        "Written in Python.",
            docs_url=None,
            config_schema=schema("Config", CONFIG_FIELDS),
            settings_schema=schema("Settings", SETTINGS_FIELDS),
        )

    def validate_config(self, config: str) -> None:
        try:
            validate(decode(config, "invalid configuration", CONFIG_FIELDS))
        except Invalid as problem:
            raise Err(problem.config_error())

    def launch(self, config: str, request: operator.LaunchRequest) -> operator.LaunchReport:
        try:
            decoded = decode(config, "invalid configuration", CONFIG_FIELDS)
            validate(decoded)
            settings = decode(request.settings, "invalid step settings", SETTINGS_FIELDS)
            if settings.get("timeout_seconds") == 0:
                raise Invalid("timeout_seconds", "step setting must be at least 1 second")
            return run(decoded, settings, request)
        except Invalid as problem:
            raise Err(operator.LaunchError_InvalidConfig(problem.config_error()))
        except Err as failure:
            if isinstance(failure.value, (operator.LaunchError_InvalidConfig, operator.LaunchError_Denied,
                                          operator.LaunchError_Cancelled, operator.LaunchError_Failed)):
                raise
            raise Err(launch_error(failure.value))
