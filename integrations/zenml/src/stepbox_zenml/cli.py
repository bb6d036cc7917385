"""The stepbox command line, called as a subprocess.

Everything this package does goes through the `stepbox` binary: it owns the
store, the supervisors and the sandbox, so ZenML needs no Rust bindings and any
process (a ZenML server, a CLI in another shell) sees the same runs. The step's
environment goes to stepbox on stdin as one JSON object, never on argv and
never in a file left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TextIO

from stepbox_zenml.request import LaunchRequest

# What stepbox's exit codes mean (see `stepbox launch --help`).
EXIT_CODE_MEANINGS = {
    1: "stepbox failed",
    64: "bad input, nothing ran",
    70: "the flavor failed",
    77: "denied by the step operator's grants",
    124: "the job ran past its timeout",
    126: "the step's program cannot be executed",
    127: "the step's program does not exist",
    129: "cancelled (SIGHUP: the terminal closed)",
    130: "cancelled (SIGINT)",
    143: "cancelled (SIGTERM)",
}

# Queries (status, cancel) answer quickly; a hung binary must not hang ZenML.
QUERY_TIMEOUT_SECONDS = 120.0


class StepboxError(RuntimeError):
    """A stepbox command failed; the message carries stepbox's own words."""

    def __init__(self, command: str, exit_code: int, stderr: str) -> None:
        meaning = EXIT_CODE_MEANINGS.get(exit_code, "the step's own exit code")
        detail = stderr.strip() or "(no message)"
        super().__init__(f"`stepbox {command}` exited with {exit_code} ({meaning}): {detail}")
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr


class RunState(str, Enum):
    """The states `stepbox status` reports."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunStatus:
    """One run as `stepbox status -o json` describes it."""

    run_id: str
    state: RunState
    exit_code: int | None
    """The job's own exit code, when a job ended."""
    outcome_code: int | None
    """What `stepbox launch` exited with, once the run has ended."""
    message: str | None

    @classmethod
    def from_json(cls, text: str) -> RunStatus:
        """Read `stepbox status -o json`'s output."""
        try:
            record = json.loads(text)
            return cls(
                run_id=str(record["id"]),
                state=RunState(record["state"]),
                exit_code=record.get("exit_code"),
                outcome_code=record.get("outcome_code"),
                message=record.get("message"),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise StepboxError("status", 0, f"unexpected output ({error}); is the stepbox binary too old?") from error


@dataclass(frozen=True)
class StepboxCli:
    """The stepbox binary and the state directory it works in."""

    binary: str
    home: str | None = None

    @classmethod
    def find(cls, binary: str | None, home: str | None) -> StepboxCli:
        """The configured binary, or `stepbox` on PATH; a clear error if neither exists."""
        wanted = binary or "stepbox"
        found = shutil.which(wanted)
        if found is None:
            where = (
                f"the configured binary `{wanted}` does not exist or is not executable"
                if binary
                else "`stepbox` is not on PATH"
            )
            raise StepboxError(
                "(not started)",
                127,
                f"{where}: install stepbox (see its README), or set the step operator's "
                "`binary` to its path: zenml step-operator update NAME --binary=/path/to/stepbox",
            )
        return cls(binary=found, home=home)

    def submit(self, request: LaunchRequest, environment: Mapping[str, str]) -> str:
        """Start the launch detached under a supervisor; return stepbox's run id."""
        args = ["submit", *request.arguments(), "--env-stdin", "--", *request.command]
        completed = self._run(args, stdin=json.dumps(dict(environment)), timeout=None)
        run_id = completed.stdout.strip()
        if not run_id:
            raise StepboxError("submit", 0, "printed no run id")
        return run_id

    def launch(self, request: LaunchRequest, environment: Mapping[str, str]) -> None:
        """Run the launch in the foreground until its job ends; raise if it did not succeed.

        The job's output goes to this process's stdout and stderr as it runs;
        the error carries the last lines of stderr.
        """
        args = ["launch", *request.arguments(), "--env-stdin", "--", *request.command]
        process = subprocess.Popen(
            [self.binary, *self._home_args(), *args],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._environment(),
        )
        stdin, stderr = process.stdin, process.stderr
        if stdin is None or stderr is None:  # both are piped above
            process.kill()
            raise StepboxError("launch", 1, "could not open pipes to stepbox")
        stdin.write(json.dumps(dict(environment)))
        stdin.close()
        # The job's stderr and stepbox's progress show as they come; the end is kept for the error.
        last_lines: deque[str] = deque(maxlen=20)
        for line in stderr:
            sys.stderr.write(line)
            last_lines.append(line.rstrip("\n"))
        code = process.wait()
        if code != 0:
            raise StepboxError("launch", code, "\n".join(last_lines))

    def status(self, step_run_id: str) -> RunStatus:
        """The run launched with this ZenML step-run id."""
        args = ["status", "--step-run-id", step_run_id, "-o", "json"]
        completed = self._run(args, stdin=None, timeout=QUERY_TIMEOUT_SECONDS)
        return RunStatus.from_json(completed.stdout)

    def wait(self, step_run_id: str, output: TextIO | None = None) -> None:
        """Block until the run launched with this step-run id has ended, however it ended.

        With `output`, the run's job output is copied there line by line as it
        is written (`stepbox wait --follow`). `stepbox wait` exits with the
        run's outcome, which may be any code the step exits with; ask `status`
        for the state.
        """
        command = [self.binary, *self._home_args(), "-q", "wait", "--step-run-id", step_run_id]
        if output is None:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                env=self._environment(),
            )
            return
        try:
            process = subprocess.Popen(
                [*command, "--follow"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                errors="replace",
                env=self._environment(),
            )
        except OSError as error:
            raise StepboxError("wait", 126, f"cannot run {self.binary}: {error}") from error
        try:
            if process.stdout is not None:
                for line in process.stdout:
                    output.write(line)
                    output.flush()
            process.wait()
        finally:
            # Interrupted (Ctrl-C reaches only this process when it is not in the
            # terminal's foreground): the follower must not outlive the wait.
            if process.poll() is None:
                process.kill()
                process.wait()

    def cancel(self, step_run_id: str, reason: str | None = None) -> None:
        """Cancel the run launched with this step-run id and wait until its jobs have stopped.

        `reason` is recorded as the run's message: `cancelled by `stepbox cancel`: REASON`.
        """
        args = ["cancel", "--step-run-id", step_run_id]
        if reason:
            args += ["--reason", reason]
        self._run(args, stdin=None, timeout=None)

    def _environment(self) -> dict[str, str]:
        """stepbox's own environment: this one, with this Python's directory first on PATH.

        Jobs that run on this machine find programs on stepbox's PATH, and the
        step's entrypoint is `python -m zenml.entrypoints.entrypoint`: this way
        `python` is the interpreter ZenML runs in (its virtual environment),
        not whichever `python` the shell would find first. Jobs in a
        requirements environment or an image have their own `python` first.
        """
        environment = dict(os.environ)
        interpreter_dir = os.path.dirname(sys.executable)
        path = environment.get("PATH", os.defpath)
        environment["PATH"] = os.pathsep.join([interpreter_dir, path])
        environment["NO_COLOR"] = "1"
        return environment

    def _home_args(self) -> list[str]:
        return ["--home", self.home] if self.home else []

    def _run(self, args: Sequence[str], stdin: str | None, timeout: float | None) -> subprocess.CompletedProcess[str]:
        command = [self.binary, *self._home_args(), *args]
        try:
            completed = subprocess.run(
                command,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=self._environment(),
            )
        except subprocess.TimeoutExpired as error:
            raise StepboxError(args[0], 124, f"did not answer within {timeout:.0f} s") from error
        except OSError as error:
            raise StepboxError(args[0], 126, f"cannot run {self.binary}: {error}") from error
        if completed.returncode != 0:
            raise StepboxError(args[0], completed.returncode, _tail(completed.stderr))
        return completed


def _tail(text: str, lines: int = 20) -> str:
    """The end of a long stderr: the error is at the bottom."""
    return "\n".join(text.strip().splitlines()[-lines:])
