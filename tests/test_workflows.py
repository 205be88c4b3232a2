"""The GitHub Actions workflows keep the promises that matter for a release.

Every action is pinned to a full commit SHA; CI covers every CPython the
package supports (3.14t included); the PyPI upload happens only on a v* tag,
through trusted publishing. Skipped where PyYAML is missing or outside a
checkout (the sdist and the wheels' tests carry no .github/).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
if not WORKFLOWS.is_dir():
    pytest.skip("no .github/workflows here (not a checkout)", allow_module_level=True)

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def uses(workflow: dict[Any, Any]) -> list[str]:
    return [
        step["uses"]
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # PyYAML reads the bare key `on:` as the boolean True (YAML 1.1).
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


@pytest.mark.parametrize("name", ["ci.yml", "wheels.yml"])
def test_every_action_is_pinned_to_a_commit(name: str) -> None:
    found = uses(load(name))
    assert found
    assert [u for u in found if not SHA_PIN.match(u)] == []
    # ...with the release it came from in a trailing comment.
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.search(r"\buses:", line):
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_ci_covers_every_supported_python() -> None:
    tests = load("ci.yml")["jobs"]["tests"]
    versions = set(tests["strategy"]["matrix"]["python-version"])
    assert {"3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.14t"} <= versions
    oses = set(tests["strategy"]["matrix"]["os"])
    assert {"ubuntu-latest", "macos-latest"} <= oses
    # ... and the pure-Python install too.
    assert any(row.get("impl") == "python" for row in tests["strategy"]["matrix"]["include"])


def test_publish_only_on_tags_with_trusted_publishing() -> None:
    wheels = load("wheels.yml")
    assert triggers(wheels)["push"]["tags"] == ["v*"]
    assert wheels["permissions"] == {"contents": "read"}
    publish = wheels["jobs"]["publish"]
    assert "startsWith(github.ref, 'refs/tags/v')" in publish["if"]
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    assert set(publish["needs"]) == {"sdist", "wheels"}
    step = publish["steps"][-1]
    assert step["uses"].startswith("pypa/gh-action-pypi-publish@")
    assert "password" not in step.get("with", {})  # no token: OIDC only
    # Only the publish job may mint an OIDC token.
    for name, job in wheels["jobs"].items():
        if name != "publish":
            assert "id-token" not in job.get("permissions", {}), name
