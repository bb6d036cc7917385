"""Turning a step launch into stepbox's flags, and a step's requirements files into requirements."""

from __future__ import annotations

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


def test_this_package_is_required_the_way_it_was_installed() -> None:
    # The test environment installs it from the checkout (scripts/test).
    assert integration_requirement().startswith("stepbox-zenml @ file:///")


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
