"""A step's Python requirements, from the requirements files ZenML gathers.

ZenML turns a step's `DockerSettings` (requirements, required integrations,
a pyproject, the stack's integrations, an implicit `requirements.txt`) into
requirements files for an image. stepbox installs requirements itself (PEP 508
strings, wheels only, from the host's package index), so this reads those
files back into plain requirement strings and refuses what stepbox cannot
honour instead of dropping it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# A pip option: a line starting with `-`, or one after a requirement (`--hash=…`).
_OPTION = re.compile(r"(^|\s)-")


class RequirementsError(ValueError):
    """A requirements file holds something stepbox cannot install."""


def parse_requirements_files(files: Iterable[tuple[str, str, Sequence[str]]]) -> list[str]:
    """The requirement strings of `(file name, content, pip options)` triples, in order.

    Comments and blank lines are skipped, continuation lines joined, and
    duplicates kept once. pip options (an index URL, `-e`, `--hash`, a nested
    `-r`) are refused with the file and line that holds them.
    """
    requirements: list[str] = []
    for name, content, options in files:
        if options:
            raise RequirementsError(
                f"the requirements file `{name}` needs pip options {list(options)}, which stepbox "
                "cannot pass: it installs wheels from the host's package index. Remove the "
                "options from the step's DockerSettings."
            )
        for number, line in _logical_lines(content):
            if _OPTION.search(line):
                raise RequirementsError(
                    f"`{line}` ({name}, line {number}) is a pip option, which stepbox cannot "
                    "pass: it installs PEP 508 requirements from the host's package index. "
                    "Write the requirement itself (`package==1.2`), or grant the stepbox step "
                    "operator `requirement-urls` and name the URL."
                )
            if line not in requirements:
                requirements.append(line)
    return requirements


def with_runtime(requirements: Sequence[str], runtime: Sequence[str]) -> list[str]:
    """The requirements, plus each `runtime` requirement whose project they do not name.

    Only when they install anything: a step without requirements runs in the
    Python that launched it, which has everything already.
    """
    if not requirements:
        return list(requirements)
    named = {requirement_name(r) for r in requirements}
    return [*requirements, *(r for r in runtime if requirement_name(r) not in named)]


def requirement_name(requirement: str) -> str | None:
    """The normalised project name of a requirement (PEP 503), if it starts with one."""
    match = _NAME.match(requirement)
    if match is None:
        return None
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _logical_lines(content: str) -> Iterable[tuple[int, str]]:
    """Non-empty lines without comments, continuation lines joined, with their line numbers."""
    pending = ""
    start = 0
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = " ".join((pending + line).split())
        pending = ""
        if text:
            yield start, text
    if pending.strip():
        yield start, " ".join(pending.split())
