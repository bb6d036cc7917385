"""The stepbox command line as this package drives it, against the real binary and flavor."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from conftest import Stepbox, files_containing
from stepbox_zenml.cli import RunState, StepboxCli, StepboxError
from stepbox_zenml.request import LaunchRequest, Resources


def request(step_run_id: str, command: list[str], **fields: object) -> LaunchRequest:
    return LaunchRequest(
        step_operator="local",
        pipeline="p",
        run_name="r",
        step="s",
        run_id="zenml-run",
        step_run_id=step_run_id,
        command=command,
        **fields,  # type: ignore[arg-type]
    )


def cli(stepbox: Stepbox) -> StepboxCli:
    return StepboxCli.find(str(stepbox.binary), str(stepbox.home))


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_submit_then_status_then_cancel(stepbox: Stepbox, tmp_path: Path) -> None:
    started = tmp_path / "shared" / "started"
    client = cli(stepbox)
    run_id = client.submit(request("step-1", ["sh", "-c", f"touch {started}; exec sleep 300"]), environment={})
    wait_for(started)
    status = client.status("step-1")
    assert status.run_id == run_id
    assert status.state is RunState.RUNNING

    client.cancel("step-1", reason="the test is over")
    status = client.status("step-1")
    assert status.state is RunState.CANCELLED
    assert status.outcome_code == 143
    assert status.message == "cancelled by `stepbox cancel`: the test is over"


def test_the_environment_goes_by_stdin_and_no_file_is_left(stepbox: Stepbox, tmp_path: Path) -> None:
    secret = "s3cr3t-" + os.urandom(6).hex()
    out = tmp_path / "shared" / "env.txt"
    client = cli(stepbox)
    client.submit(request("step-2", ["sh", "-c", f'echo "$API_TOKEN" > {out}']), {"API_TOKEN": secret})
    client.wait("step-2")
    assert client.status("step-2").state is RunState.SUCCEEDED
    assert out.read_text().strip() == secret
    assert files_containing(stepbox.home, secret) == []


def test_a_failed_job_reports_its_exit_code_and_its_output_is_followed(stepbox: Stepbox) -> None:
    client = cli(stepbox)
    client.submit(request("step-3", ["sh", "-c", "echo working; echo broken >&2; exit 3"]), {})
    followed = io.StringIO()
    client.wait("step-3", output=followed)
    # Two pipes read side by side: their lines may interleave either way.
    assert sorted(followed.getvalue().splitlines()) == ["broken", "working"], "stdout and stderr, each once"
    status = client.status("step-3")
    assert status.state is RunState.FAILED
    assert status.exit_code == 3


def test_the_blocking_launch_streams_stderr_and_raises_with_the_exit_code_and_its_end(
    stepbox: Stepbox, capfd: pytest.CaptureFixture[str]
) -> None:
    client = cli(stepbox)
    client.launch(request("step-4", ["sh", "-c", "echo progress-line >&2"]), {})
    assert "progress-line" in capfd.readouterr().err, "a successful launch's stderr is shown, not swallowed"
    with pytest.raises(StepboxError) as failure:
        client.launch(request("step-5", ["sh", "-c", "echo cannot-read-input >&2; exit 5"]), {})
    assert failure.value.exit_code == 5
    assert "cannot-read-input" in str(failure.value)


def test_resources_and_requirements_are_checked_by_stepbox(stepbox: Stepbox) -> None:
    client = cli(stepbox)
    with pytest.raises(StepboxError) as failure:
        client.launch(request("step-6", ["true"], resources=Resources(memory="lots")), {})
    assert failure.value.exit_code == 64
    assert "`lots` is not a memory size" in str(failure.value)


def test_an_unknown_step_run_is_a_clear_error(stepbox: Stepbox) -> None:
    with pytest.raises(StepboxError) as failure:
        cli(stepbox).status("never-launched")
    assert failure.value.exit_code == 64
    assert "no run was launched with --step-run-id never-launched" in str(failure.value)


def test_a_missing_binary_names_the_setting_to_fix() -> None:
    with pytest.raises(StepboxError) as failure:
        StepboxCli.find("/nonexistent/stepbox", None)
    assert "zenml step-operator update NAME --binary=" in str(failure.value)
