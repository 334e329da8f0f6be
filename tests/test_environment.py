"""environment/, the Docker context, checked statically (no Docker engine here).

The pins must equal the packages these tests run with: a model that passes
locally and fails in DataRobot on another numpy is the manual workflow's
old trouble (datarobot-user-models issue #72).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

REQUIRED_ENV = {
    "CODE_DIR": "/opt/code",
    "ADDRESS": "0.0.0.0:8080",
    "HOME": "/opt",
    "WITH_ERROR_SERVER": "0",
    "PYTHONUNBUFFERED": "1",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def normalise(name: str) -> str:
    """PEP 503: case and runs of -, _ and . do not matter in package names."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def context(repo_root: Path) -> Path:
    return repo_root / "environment"


def dockerfile_instructions(context: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile line, continuations joined."""
    text = (context / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def requirement_pins(text: str) -> dict[str, str]:
    """The ``name==version`` lines of a requirements file; anything else fails."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned as name==version"
        pins[normalise(match.group(1))] = match.group(2)
    return pins


def pin_mismatches(pins: dict[str, str]) -> list[str]:
    """Each pin that differs from, or is absent in, the running environment."""
    problems = []
    for name, version in sorted(pins.items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is pinned but not installed")
            continue
        if installed != version:
            problems.append(f"{name}=={version} is pinned but {installed} is installed")
    return problems


def test_dockerfile_starts_from_the_local_python_minor(context: Path) -> None:
    instructions = dockerfile_instructions(context)
    froms = [args for keyword, args in instructions if keyword == "FROM"]

    assert instructions[0][0] == "FROM", "the first instruction must be FROM"
    match = re.match(r"python:(\d+)\.(\d+)", froms[-1])
    assert match, f"the final image {froms[-1]!r} is not an official python image"
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]


def test_every_copy_source_is_in_the_context(context: Path) -> None:
    for keyword, args in dockerfile_instructions(context):
        if keyword not in ("COPY", "ADD") or "--from=" in args:
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        for source in words[:-1]:
            assert list(context.glob(source)), f"{keyword} {source}: not in {context}"


def test_dockerfile_sets_the_drop_in_environment(context: Path) -> None:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(context):
        if keyword == "ENV":
            for name, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                env[name] = value.strip('"')

    assert {name: env.get(name) for name in REQUIRED_ENV} == REQUIRED_ENV


def test_dockerfile_installs_the_requirements_and_starts_the_server(
    context: Path,
) -> None:
    instructions = dockerfile_instructions(context)
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]

    assert "python -m venv" in runs
    assert re.search(r"pip\S* install .*-r \S*requirements.txt", runs)
    assert len(entrypoints) == 1 and "start_server.sh" in entrypoints[0]


def test_start_server_execs_drum_server(context: Path) -> None:
    script = context / "start_server.sh"
    text = script.read_text()

    assert text.startswith("#!/bin/sh")
    assert re.search(r"^exec drum server\b", text, re.MULTILINE)
    assert os.access(script, os.X_OK), "start_server.sh must be executable"


def test_env_info_has_the_required_keys(context: Path) -> None:
    info = json.loads((context / "env_info.json").read_text())

    for key in ("name", "description", "programmingLanguage", "useCases"):
        assert info.get(key), f"env_info.json: {key} is missing or empty"
    assert info["programmingLanguage"] == "python"
    assert "customModel" in info["useCases"]


def test_every_pin_equals_the_installed_version(context: Path) -> None:
    pins = requirement_pins((context / "requirements.txt").read_text())

    assert pin_mismatches(pins) == []


def test_a_drifted_pin_is_caught() -> None:
    numpy = importlib.metadata.version("numpy")
    pins = requirement_pins(f"numpy=={numpy}\nkeras==0.0.1\n")

    assert pin_mismatches(pins) == [
        f"keras==0.0.1 is pinned but {importlib.metadata.version('keras')} is installed"
    ]


def test_an_unpinned_requirement_is_caught() -> None:
    with pytest.raises(AssertionError, match="not pinned as name==version"):
        requirement_pins("numpy>=2\n")


def test_the_listed_packages_are_pinned(context: Path) -> None:
    pins = requirement_pins((context / "requirements.txt").read_text())
    wanted = {"datarobot-drum", "tensorflow-cpu", "keras", "h5py", "numpy"}
    wanted |= {"pandas", "pillow", "pyyaml"}

    assert wanted <= set(pins)


def test_scikit_learn_stays_out_because_custom_py_loads_the_model(
    context: Path, repo_root: Path
) -> None:
    # DRUM needs scikit-learn only for its own Keras artifact predictor,
    # which a load_model hook bypasses.
    pins = requirement_pins((context / "requirements.txt").read_text())
    hooks = ast.parse((repo_root / "model" / "custom.py").read_text())
    defined = {node.name for node in hooks.body if isinstance(node, ast.FunctionDef)}

    assert "scikit-learn" not in pins
    assert {"load_model", "score_unstructured"} <= defined


def imported_packages(folder: Path) -> set[str]:
    """Top-level names imported anywhere in folder's Python files."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_the_model_imports_is_pinned(
    context: Path, repo_root: Path
) -> None:
    model_dir = repo_root / "model"
    local = {p.stem for p in model_dir.iterdir()}  # custom, utils, training...
    third_party = imported_packages(model_dir) - set(sys.stdlib_module_names) - local
    pins = requirement_pins((context / "requirements.txt").read_text())
    distributions = importlib.metadata.packages_distributions()

    unpinned = []
    for name in sorted(third_party):
        providers = {normalise(d) for d in distributions.get(name, [name])}
        if not providers & set(pins):
            unpinned.append(f"{name} (from {', '.join(sorted(providers))})")

    assert "keras" in third_party and "PIL" in third_party  # the scan works
    assert unpinned == []


def test_pins_agree_with_the_local_extra_of_pyproject(
    context: Path, repo_root: Path
) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    local = project["optional-dependencies"]["local"]
    matches = [PIN.match(spec.replace(" ", "")) for spec in local]
    exact = {normalise(m[1]): m[2] for m in matches if m}
    pins = requirement_pins((context / "requirements.txt").read_text())

    assert exact, "pyproject's local extra pins nothing exactly"
    assert {name: pins.get(name) for name in exact} == exact
