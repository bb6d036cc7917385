"""Fixtures: a real stepbox (binary and home) and a real ZenML (local store) to run steps through.

The tests use the stepbox a ZenML user has: `stepbox` on PATH (scripts/test installs the
stepbox wheel it built into the test venv, and runs them with that venv first on PATH and
no Rust), with its builtin `local` flavor. STEPBOX_BIN and STEPBOX_LOCAL_FLAVOR name another
binary or flavor file instead. Without a stepbox the tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT = Path(__file__).parent / "project"

# The machine state these tests must not depend on (issue: they once passed only where an
# earlier unconfined run had made `/app`, and where CI kept the venv outside /tmp).
ZENML_CONTAINER_DIR = Path("/app")


def files_containing(root: Path, text: str) -> list[Path]:
    """Files under `root` holding `text`: where a value that must never be stored was stored."""
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def required_path(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value or not Path(value).exists():
        pytest.fail(
            f"{variable} must name {what} (scripts/test sets it): got {value!r}",
            pytrace=False,
        )
    return Path(value)


@dataclass
class Stepbox:
    """A stepbox binary and a home with the `local` flavor and a step operator for it."""

    binary: Path
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(self.binary), "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"stepbox {' '.join(args)} exited {completed.returncode}: {completed.stderr}")
        return completed

    def status(self, step_run_id: str) -> dict:
        return json.loads(self.run("status", "--step-run-id", step_run_id, "-o", "json").stdout)

    def runs(self) -> list[dict]:
        return json.loads(self.run("runs", "list", "-o", "json").stdout)


def stepbox_binary() -> Path:
    """STEPBOX_BIN, else the `stepbox` on PATH (the pip-installed one)."""
    if os.environ.get("STEPBOX_BIN"):
        return required_path("STEPBOX_BIN", "the stepbox binary")
    found = shutil.which("stepbox")
    if found is None:
        pytest.fail(
            "no `stepbox` on PATH: install the stepbox wheel (scripts/test does), or set STEPBOX_BIN", pytrace=False
        )
    return Path(found)


def make_stepbox(home: Path, writable: list[Path], more_grants: list[str] = ()) -> Stepbox:
    """A stepbox home with the `local` flavor and a step operator `local` as docs/ZENML.md registers it."""
    stepbox = Stepbox(binary=stepbox_binary(), home=home)
    if os.environ.get("STEPBOX_LOCAL_FLAVOR"):
        stepbox.run("flavor", "register", str(required_path("STEPBOX_LOCAL_FLAVOR", "the local flavor (.wasm)")))
    else:
        stepbox.run("flavor", "register", "builtin:local")
    make_stepbox_operator(stepbox, "local", writable, more_grants)
    return stepbox


def make_stepbox_operator(stepbox: Stepbox, name: str, writable: list[Path], more_grants: list[str] = ()) -> None:
    grants = ["--grant", "jobs", "--grant", "requirements"]
    for directory in writable:
        grants += ["--grant", f"writable-dir={directory}"]
    for grant in more_grants:
        grants += ["--grant", grant]
    stepbox.run("step-operator", "register", name, "--flavor", "local", *grants)


@pytest.fixture
def stepbox(tmp_path: Path) -> Stepbox:
    """A fresh stepbox home of the test's own, whose jobs may write `tmp_path/shared`."""
    (tmp_path / "shared").mkdir()
    return make_stepbox(tmp_path / "stepbox-home", [tmp_path / "shared"])


@dataclass
class ZenML:
    """A ZenML project with a local store whose stack sends steps to stepbox."""

    project: Path
    environment: dict[str, str]
    stepbox: Stepbox
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    trusted_stack_id: str = ""
    """A stack whose stepbox step operator is granted `trusted`: its jobs run unconfined."""
    misconfigured_stack_id: str = ""
    """A stack whose step operator names a stepbox step operator that does not exist."""
    legacy_stack_id: str = ""
    """A stack whose step operator has only the legacy blocking `launch` (ZenML < 0.94)."""

    def zenml(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "zenml"), *args],
            cwd=self.project,
            env=self.environment,
            capture_output=True,
            text=True,
            check=False,
        )

    def start(self, pipeline: str, **extra_env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "run.py", pipeline],
            cwd=self.project,
            env={**self.environment, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def run(self, pipeline: str, **extra_env: str) -> tuple[int, dict, str]:
        """Run a pipeline to its end: exit code, its report (run.py), and its log (ZenML's
        own lines go to stdout, the pipeline's exception to stderr)."""
        process = self.start(pipeline, **extra_env)
        stdout, stderr = process.communicate(timeout=600)
        return process.returncode, report(stdout, stderr), stdout + stderr


def report(stdout: str, stderr: str) -> dict:
    lines = stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"run.py printed no report; stderr:\n{stderr}")
    return json.loads(lines[-1])


@pytest.fixture(scope="session")
def zenml_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZenML]:
    """ZenML with a local store, the stepbox flavor registered, and a stack using it.

    Registration goes through ZenML's own CLI, as a user would do it, with no
    grants beyond docs/ZENML.md's Install section. The venv running these tests
    is under /tmp (scripts/test puts it there) and `/app` must not exist: a
    step that needed either to be otherwise would fail here.
    """
    if not sys.prefix.startswith("/tmp/"):
        pytest.fail(f"the ZenML tests must run from a venv under /tmp (scripts/test makes one): {sys.prefix}")
    if ZENML_CONTAINER_DIR.exists():
        pytest.fail(
            f"{ZENML_CONTAINER_DIR} exists on this machine, so these tests cannot prove that steps run "
            f"without it; remove it (it is left by ZenML runs outside stepbox)",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp("zenml")
    config = root / "zenml-config"
    config.mkdir()
    project = root / "project"
    shutil.copytree(PROJECT, project)
    stepbox = make_stepbox(root / "stepbox-home", [config])
    make_stepbox_operator(stepbox, "trusted-local", [config], ["trusted"])
    # A pyenv-style `python` first on PATH that is not the pipeline's: a step must never run it.
    decoy = root / "decoy-bin"
    decoy.mkdir()
    (decoy / "python").write_text('#!/bin/sh\necho "the decoy python ran, not the pipeline\'s" >&2\nexit 97\n')
    (decoy / "python").chmod(0o755)
    environment = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(config),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_COLORS_DISABLED": "true",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "STEPBOX_HOME": str(stepbox.home),
        # The decoy before stepbox's directory, which may be a venv's `bin` with its own python.
        "PATH": os.pathsep.join([str(decoy), str(stepbox.binary.parent), os.environ.get("PATH", "")]),
        # The stepbox-zenml wheel for steps with requirements is written here, not in ~/.cache.
        "XDG_CACHE_HOME": str(root / "cache"),
    }
    zenml = ZenML(project=project, environment=environment, stepbox=stepbox)
    for command in (
        ["init"],
        ["step-operator", "flavor", "register", "stepbox_zenml.flavor.StepboxStepOperatorFlavor"],
        ["step-operator", "register", "sandboxed", "--flavor=stepbox", "--step_operator=local"],
        ["step-operator", "register", "misconfigured", "--flavor=stepbox", "--step_operator=nope"],
        ["step-operator", "register", "unconfined", "--flavor=stepbox", "--step_operator=trusted-local"],
        ["stack", "register", "trusted", "-o", "default", "-a", "default", "-s", "unconfined"],
        ["stack", "register", "sandboxed", "-o", "default", "-a", "default", "-s", "sandboxed", "--set"],
        ["stack", "register", "misconfigured", "-o", "default", "-a", "default", "-s", "misconfigured"],
        ["step-operator", "flavor", "register", "legacy.LegacyStepboxStepOperatorFlavor"],
        ["step-operator", "register", "legacy", "--flavor=stepbox-legacy", "--step_operator=local"],
        ["stack", "register", "legacy", "-o", "default", "-a", "default", "-s", "legacy"],
    ):
        completed = zenml.zenml(*command)
        assert completed.returncode == 0, f"zenml {' '.join(command)}: {completed.stderr}"
    stack_ids = subprocess.run(
        [
            sys.executable,
            "-c",
            "from zenml.client import Client; c = Client(); "
            "print(c.get_stack('misconfigured').id, c.get_stack('legacy').id, c.get_stack('trusted').id)",
        ],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    (
        zenml.misconfigured_stack_id,
        zenml.legacy_stack_id,
        zenml.trusted_stack_id,
    ) = stack_ids.stdout.strip().splitlines()[-1].split()
    yield zenml
    for process in zenml.processes:
        if process.poll() is None:
            process.kill()
