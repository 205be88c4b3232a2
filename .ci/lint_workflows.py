"""The GitHub Actions workflows keep the promises that matter for a release.

Every action is pinned to a full commit SHA, with the release it came from in
a trailing comment; CI covers every CPython the package supports (3.14t
included) on Linux and macOS, and the pure-Python install; the free-threaded
rows run the suite under pytest-run-parallel and cp314t wheels are built; the PyPI upload
happens only on a v* tag, through trusted publishing, and only the publish
job may mint an OIDC token.

    python .ci/lint_workflows.py        (needs PyYAML; .ci/run installs it)

Prints every broken promise and exits 1 if there is one. A CI step, not a
unit test: it checks the repository, not the library, and the sdist and the
wheels carry no .github/.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:
    sys.exit("lint_workflows: needs PyYAML (python -m pip install pyyaml)")

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
PIN_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
PYTHONS = {"3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.14t"}
OSES = {"ubuntu-latest", "macos-latest"}


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        sys.exit(f"lint_workflows: {name} is not a mapping")
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
    return on if isinstance(on, dict) else {}


def pinned(name: str) -> Iterator[str]:
    """Every action is pinned to a commit, the release named beside it."""
    found = uses(load(name))
    if not found:
        yield f"{name}: no step uses an action (is this the right file?)"
    for action in found:
        if not SHA_PIN.match(action):
            yield f"{name}: {action} is not pinned to a full commit SHA"
    for line in (WORKFLOWS / name).read_text(encoding="utf-8").splitlines():
        if re.search(r"\buses:", line) and not PIN_COMMENT.search(line):
            yield f"{name}: no '@<sha> # vX.Y.Z' on: {line.strip()}"


def covers_every_python() -> Iterator[str]:
    """The tests job runs every supported CPython on both systems, and the
    pure-Python install on at least one."""
    matrix = load("ci.yml")["jobs"]["tests"]["strategy"]["matrix"]
    missing = PYTHONS - set(matrix["python-version"])
    if missing:
        yield f"ci.yml: the tests job leaves out Python {sorted(missing)}"
    missing = OSES - set(matrix["os"])
    if missing:
        yield f"ci.yml: the tests job leaves out {sorted(missing)}"
    if not any(row.get("impl") == "python" for row in matrix.get("include", [])):
        yield "ci.yml: no tests row for the pure-Python install (impl: python)"


def runs_free_threaded_in_parallel() -> Iterator[str]:
    """The free-threaded rows run the suite under pytest-run-parallel, and the
    wheels include free-threaded ones (pyproject.toml builds cp314t)."""
    steps = load("ci.yml")["jobs"]["tests"]["steps"]
    if not any(
        "--parallel-threads" in step.get("run", "") and "'t'" in str(step.get("if", ""))
        for step in steps
    ):
        yield "ci.yml: no step runs the free-threaded rows under pytest-run-parallel"
    pyproject = (WORKFLOWS.parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    if '"cp314t-*"' not in pyproject:
        yield "pyproject.toml: cibuildwheel does not build the free-threaded cp314t wheels"


def publishes_only_on_tags() -> Iterator[str]:
    """PyPI gets a release only from a v* tag, through trusted publishing."""
    wheels = load("wheels.yml")
    if triggers(wheels).get("push", {}).get("tags") != ["v*"]:
        yield "wheels.yml: push must trigger on tags ['v*'] only"
    if wheels.get("permissions") != {"contents": "read"}:
        yield "wheels.yml: the workflow's permissions must be {contents: read}"
    publish = wheels["jobs"]["publish"]
    if "startsWith(github.ref, 'refs/tags/v')" not in publish.get("if", ""):
        yield "wheels.yml: the publish job must run only for refs/tags/v*"
    if publish.get("permissions") != {"id-token": "write"}:
        yield "wheels.yml: the publish job's permissions must be {id-token: write}"
    if publish.get("environment", {}).get("name") != "pypi":
        yield "wheels.yml: the publish job must use the 'pypi' environment"
    if set(publish.get("needs", [])) != {"sdist", "wheels"}:
        yield "wheels.yml: the publish job must need exactly sdist and wheels"
    step = publish["steps"][-1]
    if not step.get("uses", "").startswith("pypa/gh-action-pypi-publish@"):
        yield "wheels.yml: the publish job must end with pypa/gh-action-pypi-publish"
    if "password" in step.get("with", {}):
        yield "wheels.yml: the upload must use no token (OIDC only)"
    for name, job in wheels["jobs"].items():
        if name != "publish" and "id-token" in job.get("permissions", {}):
            yield f"wheels.yml: only the publish job may mint an OIDC token, not {name}"


def main() -> int:
    if not WORKFLOWS.is_dir():
        sys.exit(f"lint_workflows: no {WORKFLOWS}")
    problems = [
        *pinned("ci.yml"),
        *pinned("wheels.yml"),
        *covers_every_python(),
        *runs_free_threaded_in_parallel(),
        *publishes_only_on_tags(),
    ]
    for problem in problems:
        print(f"lint_workflows: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("workflows: actions pinned, every Python covered, publishing on v* tags only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
