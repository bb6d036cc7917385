"""What a fresh Python environment needs to run a ZenML step's entrypoint.

A step that installs requirements runs in an environment stepbox makes from
them alone. Its entrypoint (`python -m zenml.entrypoints.entrypoint …`) loads
the active stack, which imports every component's flavor, this one included;
so the environment needs ZenML (the version, and the extras the store needs)
and this package, installed the way this process has them.
"""

from __future__ import annotations

import json
from importlib import metadata

DISTRIBUTION = "stepbox-zenml"


def zenml_requirement(version: str, sql_store: bool) -> str:
    """ZenML as this process runs it; a SQL store needs the `local` extra's drivers."""
    return f"zenml[local]=={version}" if sql_store else f"zenml=={version}"


def integration_requirement() -> str:
    """The requirement for stepbox-zenml: by version from a package index, else by URL.

    A URL (a local checkout or wheel) needs the stepbox step operator's
    `requirement-urls` grant, and a checkout also `source-builds`; stepbox's
    error says so when they are missing.
    """
    distribution = metadata.distribution(DISTRIBUTION)
    origin = distribution.read_text("direct_url.json")
    if origin:
        url = json.loads(origin).get("url")
        if isinstance(url, str) and url.startswith("file://"):
            return f"{DISTRIBUTION} @ {url}"
    return f"{DISTRIBUTION}=={distribution.version}"
