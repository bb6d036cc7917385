"""What a fresh Python environment needs to run a ZenML step's entrypoint.

A step that installs requirements runs in an environment stepbox makes from
them alone. Its entrypoint (`python -m zenml.entrypoints.entrypoint …`) loads
the active stack, which imports every component's flavor, this one included;
so the environment needs ZenML (the version, and the extras the store needs)
and this package.

This package is not on a package index, so a user installs it from a
checkout; the environment then gets it as a wheel this module writes from the
package's own files (`stepbox-zenml @ file:///…whl`). A wheel, not the
checkout: a checkout is a source tree whose build code stepbox would have to
run (the `source-builds` grant), and the URL is the caller's own requirement,
which needs no grant (docs/SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "stepbox-zenml"
PACKAGE = "stepbox_zenml"

# A fixed timestamp for every member: the same files make the same wheel, byte for byte.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def zenml_requirement(version: str, sql_store: bool) -> str:
    """ZenML as this process runs it; a SQL store needs the `local` extra's drivers."""
    return f"zenml[local]=={version}" if sql_store else f"zenml=={version}"


def integration_requirement(cache_dir: Path | None = None) -> str:
    """The requirement for stepbox-zenml: by version from a package index, else a wheel of this copy.

    A copy installed from a checkout, a path or a URL (`direct_url.json`) becomes a
    wheel under `cache_dir` (default: the user's cache directory).
    """
    distribution = metadata.distribution(DISTRIBUTION)
    if distribution.read_text("direct_url.json") is None:
        return f"{DISTRIBUTION}=={distribution.version}"
    wheel = package_wheel(distribution, cache_dir or default_cache_dir())
    return f"{DISTRIBUTION} @ {wheel.as_uri()}"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/stepbox-zenml`, else `~/.cache/stepbox-zenml`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / DISTRIBUTION


def package_wheel(distribution: metadata.Distribution, cache_dir: Path) -> Path:
    """A pure-Python wheel of the installed package, written once per content.

    The wheel format (PEP 427) is a zip with a dist-info directory; writing it
    here takes a few lines of the standard library, where building it with a
    build backend would need one installed (and offline) in the user's environment.
    """
    package_dir = Path(__file__).resolve().parent
    members = {
        f"{PACKAGE}/{path.relative_to(package_dir).as_posix()}": path.read_bytes()
        for path in sorted(package_dir.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    version = distribution.version
    dist_info = f"{PACKAGE}-{version}.dist-info"
    members[f"{dist_info}/METADATA"] = step_metadata(distribution.read_text("METADATA") or "").encode()
    members[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: stepbox-zenml\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    digest = hashlib.sha256()
    for name, data in sorted(members.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    wheel = cache_dir / "wheels" / digest.hexdigest()[:16] / f"{PACKAGE}-{version}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    record = "".join(f"{name},sha256={_urlsafe_digest(data)},{len(data)}\n" for name, data in sorted(members.items()))
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    wheel.parent.mkdir(parents=True, exist_ok=True)
    partial = wheel.with_name(f".{wheel.name}.{os.getpid()}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    # Another pipeline process may write the same wheel at once: the rename makes either whole.
    os.replace(partial, wheel)
    return wheel


def step_metadata(text: str) -> str:
    """The package's metadata without its dependency on `stepbox`, the command's package.

    A step's environment runs ZenML's entrypoint, which imports this package but never
    runs stepbox; and `stepbox` would be looked up on the package index there, where a
    copy installed from a checkout is not.
    """
    kept = [line for line in text.splitlines(keepends=True) if not _requires_stepbox(line)]
    return "".join(kept)


def _requires_stepbox(line: str) -> bool:
    if not line.startswith("Requires-Dist:"):
        return False
    name = line.removeprefix("Requires-Dist:").strip()
    for end in " ;<>=!~[(":
        name = name.split(end, 1)[0]
    return name.lower().replace("_", "-") == "stepbox"


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
