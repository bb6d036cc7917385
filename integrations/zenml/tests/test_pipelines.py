"""ZenML 0.98 pipelines whose steps run through stepbox and the sandboxed `local` flavor."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from conftest import ZENML_CONTAINER_DIR, ZenML, files_containing, report


def live_processes_with(text: str) -> list[int]:
    """Processes on this machine whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_a_step_runs_sandboxed_through_stepbox_and_its_output_is_loaded_back(zenml_project: ZenML) -> None:
    token = "tok-" + os.urandom(8).hex()
    code, run, log = zenml_project.run("adder", STEP_TOKEN=token)
    assert code == 0, log
    assert run["status"] == "completed"
    output = run["outputs"]
    assert output["sum"] == 10, "the artifact the sandboxed step wrote, loaded back"
    assert output["token"] == token, "the step's environment reached the job"
    assert output["step_operator_env"] == "True", "ZenML's own environment reached the job"
    assert output["pid"] < 100, "the job ran in its own PID namespace (confined by bubblewrap)"
    assert output["python"] == sys.executable, "the pipeline's own interpreter (its venv under /tmp), no other"
    assert output["cwd"] == str(zenml_project.project), "the step stayed in the source root (no /app)"
    assert "summing 4 numbers in the sandbox" in log, "the step's output reached the pipeline's terminal"

    step_run_id = run["steps"]["total"]["id"]
    status = zenml_project.stepbox.status(step_run_id)
    assert status["state"] == "succeeded"
    request = status["request"]
    assert request["pipeline_name"] == "adder"
    assert request["run_name"] == run["run_name"]
    assert request["step_name"] == "total"
    assert request["run_id"] == run["run_id"]
    assert request["step_run_id"] == step_run_id
    assert request["source_root"] == str(zenml_project.project)
    assert "STEP_TOKEN" in request["environment_names"]
    assert request["entrypoint_command"][:3] == [sys.executable, "-m", "zenml.entrypoints.entrypoint"]
    assert "stepbox_zenml.entrypoint.StepboxEntrypointConfiguration" in request["entrypoint_command"]
    assert files_containing(zenml_project.stepbox.home, token) == [], "the environment is never on disk"


def test_a_failing_step_fails_the_zenml_run_with_its_own_error(zenml_project: ZenML) -> None:
    code, run, log = zenml_project.run("failing")
    assert code != 0
    assert run["status"] == "failed"
    step = run["steps"]["broken"]
    assert step["status"] == "failed"
    assert "the data is bad: [1, 2, 3, 4]" in (step["exception"] or ""), step
    status = zenml_project.stepbox.status(step["id"])
    assert status["state"] == "failed"
    assert status["exit_code"] == 1
    assert f"stepbox run {status['id'][:8]} failed: exited with code 1" in log, log
    assert "ValueError: the data is bad: [1, 2, 3, 4]" in log, "the step's traceback reached the terminal"


def test_interrupting_the_pipeline_cancels_the_step_and_leaves_no_job(zenml_project: ZenML, tmp_path: Path) -> None:
    token = "tok-" + os.urandom(8).hex()
    marker = zenml_project.project / f"started-{os.urandom(4).hex()}"
    process = zenml_project.start("sleeper", STEP_TOKEN=token, STARTED_MARKER=str(marker))
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, f"the pipeline ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.2)
    running = next(run for run in zenml_project.stepbox.runs() if run["pipeline"] == "sleeper")
    step_run_id = running["request"]["step_run_id"]
    assert live_processes_with(step_run_id), "the step's job is running"
    assert live_processes_with(token) == [], "the environment is never on a command line"

    process.send_signal(signal.SIGINT)  # Ctrl-C in the terminal that runs the pipeline
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    run = report(stdout, stderr)
    assert run["status"] in ("failed", "stopped"), run
    status = zenml_project.stepbox.status(step_run_id)
    assert status["state"] == "cancelled", status
    assert status["message"] == "cancelled by `stepbox cancel`: the ZenML pipeline was interrupted (Ctrl-C)"
    assert "was cancelled in stepbox: the ZenML pipeline was interrupted (Ctrl-C)" in stdout + stderr
    assert live_processes_with(step_run_id) == [], "no process of the step's job is left"


def test_an_unconfined_step_runs_in_the_source_root_and_makes_no_app_directory(zenml_project: ZenML) -> None:
    code, run, log = zenml_project.run("unconfined_adder", ZENML_ACTIVE_STACK_ID=zenml_project.trusted_stack_id)
    assert code == 0, log
    output = run["outputs"]
    assert output["sum"] == 10
    assert output["pid"] >= 100, "a trusted step operator's job runs on the machine, unconfined"
    assert output["cwd"] == str(zenml_project.project), "ZenML's entrypoint stayed in the source root"
    assert not ZENML_CONTAINER_DIR.exists(), "nothing made /app on the machine"


def test_requirements_and_resources_from_the_step_settings_reach_stepbox(zenml_project: ZenML) -> None:
    code, run, log = zenml_project.run("requirements")
    assert code == 0, log
    output = run["outputs"]
    assert output["six"] == "1.16.0"
    envs = zenml_project.stepbox.home / "envs"
    assert Path(output["prefix"]).parent == envs, "the step ran in an environment stepbox made"

    status = zenml_project.stepbox.status(run["steps"]["with_six"]["id"])
    request = status["request"]
    assert request["requirements"][:2] == ["six==1.16.0", "zenml[local]==0.98.0"]
    wheel = request["requirements"][2]
    assert wheel.startswith("stepbox-zenml @ file:///"), wheel
    assert wheel.endswith("-py3-none-any.whl"), "a wheel of this package: no grant needed to install it"
    assert request["resources"]["cpu_count"] == 1.0
    assert request["resources"]["memory_bytes"] == 512 * 1024 * 1024


def test_a_step_operator_naming_no_stepbox_step_operator_fails_the_run_saying_so(
    zenml_project: ZenML,
) -> None:
    code, run, log = zenml_project.run("unknown_operator", ZENML_ACTIVE_STACK_ID=zenml_project.misconfigured_stack_id)
    assert code != 0
    assert run["status"] == "failed"
    assert "`stepbox submit` exited with 64" in log, log
    assert "nope" in log, log


def test_the_legacy_blocking_launch_runs_the_step_too(zenml_project: ZenML) -> None:
    code, run, log = zenml_project.run("legacy_adder", ZENML_ACTIVE_STACK_ID=zenml_project.legacy_stack_id)
    assert code == 0, log
    assert run["outputs"]["sum"] == 10
    assert run["outputs"]["pid"] < 100, "confined, as with submit"
    status = zenml_project.stepbox.status(run["steps"]["legacy_total"]["id"])
    assert status["state"] == "succeeded"
    assert status["outcome_code"] == 0
