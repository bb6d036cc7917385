"""Turning a step launch into stepbox's flags, and a step's requirements files into requirements."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from stepbox_zenml.request import LaunchRequest, Resources
from stepbox_zenml.requirements import (
    RequirementsError,
    parse_requirements_files,
    requirement_name,
    with_runtime,
)
from stepbox_zenml.runtime_requirements import integration_requirement, zenml_requirement


def test_every_field_becomes_a_flag_and_nothing_is_invented() -> None:
    bare = LaunchRequest("op", "p", "r", "s", "run-1", "step-1", ["python", "-m", "x"])
    assert bare.arguments() == [
        "--step-operator", "op", "--pipeline", "p", "--run", "r", "--step", "s",
        "--run-id", "run-1", "--step-run-id", "step-1",
    ]  # fmt: skip
    full = LaunchRequest(
        "op", "p", "r", "s", "run-1", "step-1", ["true"],
        requirements=["six==1.16.0"],
        resources=Resources(cpu_count=2.0, gpu_count=1, gpu_class="a100", memory="4GiB"),
        flavor_settings={"b": 1, "a": [1]},
        source_root="/src",
        image="registry/step:1",
        read_dirs=["/opt/venv", "/opt/python"],
    )  # fmt: skip
    assert full.arguments()[12:] == [
        "--requirement", "six==1.16.0", "--cpu", "2", "--gpu", "1", "--gpu-class", "a100",
        "--memory", "4GiB", "--settings", '{"a": [1], "b": 1}', "--source-root", "/src",
        "--image", "registry/step:1", "--read-dir", "/opt/venv", "--read-dir", "/opt/python",
    ]  # fmt: skip


def test_a_gpu_class_without_a_count_is_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="gpu_class='h100' but no gpu_count"):
        Resources(gpu_class="h100").arguments()
    with pytest.raises(ValueError, match="set gpu_count too"):
        Resources(gpu_count=0, gpu_class="h100").arguments()


@pytest.mark.parametrize(("cpus", "flag"), [(0.5, "0.5"), (1.0, "1"), (16.0, "16"), (1.25, "1.25")])
def test_cpu_counts_are_written_plainly(cpus: float, flag: str) -> None:
    assert Resources(cpu_count=cpus).arguments() == ["--cpu", flag]


def test_requirements_files_are_read_in_order_without_comments_or_duplicates() -> None:
    files = [
        (".zenml_stack_integration_requirements", "s3fs>2023.1\n", []),
        ("requirements.txt", "# pinned\nsix==1.16.0  # for compat\n\nnumpy>=1.26 ; python_version >= '3.10'\n", []),
        (".zenml_integration_requirements", "six==1.16.0\nscikit-learn \\\n  >=1.3\n", []),
    ]
    assert parse_requirements_files(files) == [
        "s3fs>2023.1",
        "six==1.16.0",
        "numpy>=1.26 ; python_version >= '3.10'",
        "scikit-learn >=1.3",
    ]


@pytest.mark.parametrize(
    "line",
    ["--extra-index-url https://example.invalid/simple", "-e .", "-r other.txt", "six==1.16.0 --hash=sha256:abc"],
)
def test_pip_options_are_refused_naming_the_line(line: str) -> None:
    with pytest.raises(RequirementsError) as refused:
        parse_requirements_files([("requirements.txt", f"six==1.16.0\n{line}\n", [])])
    assert f"`{line}` (requirements.txt, line 2) is a pip option" in str(refused.value)


def test_options_on_a_whole_file_are_refused() -> None:
    with pytest.raises(RequirementsError, match="needs pip options"):
        parse_requirements_files([("pyproject", "six", ["--no-deps"])])


def test_the_runtime_is_added_only_to_steps_that_install_something() -> None:
    runtime = ["zenml[local]==0.98.0", "stepbox-zenml==0.1.0"]
    assert with_runtime([], runtime) == []
    assert with_runtime(["six"], runtime) == ["six", *runtime]
    assert with_runtime(["ZenML>=0.90", "six"], runtime) == ["ZenML>=0.90", "six", "stepbox-zenml==0.1.0"]


def test_zenml_comes_with_the_drivers_its_store_needs() -> None:
    assert zenml_requirement("0.98.0", sql_store=True) == "zenml[local]==0.98.0"
    assert zenml_requirement("0.98.0", sql_store=False) == "zenml==0.98.0"


def test_a_checkout_install_is_required_as_a_wheel_of_its_own_files(tmp_path: Path) -> None:
    # The test environment installs it from the checkout (scripts/test): a source tree,
    # which stepbox would need `source-builds` to build; the step gets a wheel instead.
    requirement = integration_requirement(tmp_path)
    assert requirement.startswith("stepbox-zenml @ file:///"), requirement
    wheel = Path(requirement.removeprefix("stepbox-zenml @ file://"))
    assert wheel.is_relative_to(tmp_path)
    assert wheel.name == "stepbox_zenml-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "stepbox_zenml/entrypoint.py" in names
        assert "stepbox_zenml/py.typed" in names
        assert not any("__pycache__" in name for name in names)
        metadata = archive.read("stepbox_zenml-0.1.0.dist-info/METADATA").decode()
        assert "Name: stepbox-zenml" in metadata
        # The step's environment needs the package, never the stepbox command (nor an index lookup of it).
        assert "Requires-Dist: zenml" in metadata
        assert "Requires-Dist: stepbox" not in metadata, metadata
        record = archive.read("stepbox_zenml-0.1.0.dist-info/RECORD").decode()
        assert "stepbox_zenml/cli.py,sha256=" in record
    first = wheel.read_bytes()
    assert integration_requirement(tmp_path) == requirement, "the same files make the same wheel, once"
    wheel.unlink()
    integration_requirement(tmp_path)
    assert wheel.read_bytes() == first, "byte for byte"


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("Scikit_Learn>=1", "scikit-learn"),
        ("zenml[local]==0.98.0", "zenml"),
        ("pkg @ https://x/y.whl", "pkg"),
        ("", None),
    ],
)
def test_requirement_names_are_normalised(requirement: str, name: str | None) -> None:
    assert requirement_name(requirement) == name


def test_a_step_without_an_environment_of_its_own_runs_this_interpreter_by_path() -> None:
    from stepbox_zenml.step_operator import _with_interpreter

    command = ["python", "-m", "zenml.entrypoints.entrypoint", "--step_name", "s"]
    assert _with_interpreter(command, own_python=True) == [sys.executable, *command[1:]]
    assert _with_interpreter(command, own_python=False) == command, "requirements: the environment's python"
    assert _with_interpreter(["python3", "x.py"], own_python=True) == ["python3", "x.py"], "only ZenML's `python`"


def test_the_entrypoint_stays_only_in_the_source_root_it_was_sent(tmp_path: Path) -> None:
    from stepbox_zenml.entrypoint import runs_in_source_root

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    assert runs_in_source_root(str(tmp_path), str(tmp_path))
    assert runs_in_source_root(str(tmp_path / "link"), str(tmp_path)), "the same directory by another name"
    assert not runs_in_source_root(str(tmp_path / "elsewhere"), str(tmp_path)), "an image's working dir: /app"
    assert not runs_in_source_root(str(tmp_path), None)
    assert not runs_in_source_root(str(tmp_path), str(tmp_path / "missing"))


def test_the_job_is_told_where_zenmls_config_is_even_when_the_pipeline_was_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zenml.utils import io_utils

    from stepbox_zenml.step_operator import _job_environment

    monkeypatch.delenv("ZENML_CONFIG_PATH", raising=False)
    environment = _job_environment({"ZENML_STEP_OPERATOR": "True"})
    # A job has no HOME: without this, ZenML in the job would look under another directory.
    assert environment["ZENML_CONFIG_PATH"] == io_utils.get_global_config_directory()
    assert environment["ZENML_STEP_OPERATOR"] == "True"
    assert _job_environment({"ZENML_CONFIG_PATH": "/mine"})["ZENML_CONFIG_PATH"] == "/mine", "ZenML's own wins"


class StopRequestedError(Exception):
    pass


def test_a_signal_while_waiting_is_noted_then_handed_to_the_handler_in_place() -> None:
    import os
    import signal

    from stepbox_zenml.step_operator import _signal_reason, _signals_noted

    def zenmls_handler(signum: int, frame: object) -> None:
        raise StopRequestedError(signum)

    previous = signal.signal(signal.SIGTERM, zenmls_handler)
    try:
        received: list[int] = []
        with _signals_noted(received), pytest.raises(StopRequestedError):
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line
        assert received == [signal.SIGTERM]
        assert _signal_reason(received[0]) == "the ZenML pipeline process was asked to stop (SIGTERM)"
        assert signal.getsignal(signal.SIGTERM) is zenmls_handler, "restored afterwards"

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ignored: list[int] = []
        with _signals_noted(ignored):
            os.kill(os.getpid(), signal.SIGTERM)
        assert ignored == [], "an ignored signal stays ignored and cancels nothing"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _signal_reason(signal.SIGINT) == "the ZenML pipeline was interrupted (Ctrl-C)"
