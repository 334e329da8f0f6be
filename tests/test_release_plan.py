"""The pure planner: desired versus recorded and observed -> actions and reasons."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from drtool.errors import ConfigError
from drtool.release.plan import (
    Desired,
    Found,
    Observed,
    make_plan,
    observed_from_state,
)

SETTINGS = {
    "memory_mb": 512,
    "replicas": 1,
    "network_egress": "none",
    "runtime_parameters": {},
}
DESIRED = Desired(
    environment_name="env",
    context_sha256="ctx-1",
    context_files={"Dockerfile": "d1"},
    model_name="model",
    model_kind="typed-unstructured",
    target_type="Binary",
    model_files_sha256="files-1",
    model_files={"custom.py": "c1", "utils/a.py": "a1"},
    version_settings=SETTINGS,
    has_requirements=False,
    block_on_test_warning=False,
    registered_model_name="registered",
    deployment_label="label",
    association_id_column="id",
)
RECORDED: dict[str, dict[str, Any]] = {
    "environment": {"id": "E"},
    "environment_version": {
        "id": "EV",
        "environment_id": "E",
        "context_sha256": "ctx-1",
        "files": {"Dockerfile": "d1"},
        "build_status": "success",
    },
    "model": {"id": "M"},
    "model_version": {
        "id": "MV",
        "model_id": "M",
        "files_sha256": "files-1",
        "files": {"custom.py": "c1", "utils/a.py": "a1"},
        "settings": SETTINGS,
        "environment_version_id": "EV",
    },
    "model_test": {"id": "T", "model_version_id": "MV", "status": "succeeded"},
    "registered_model": {"id": "R"},
    "registered_model_version": {"id": "P", "model_version_id": "MV"},
    "deployment": {"id": "D", "model_package_id": "P", "association_id_column": "id"},
}


def all_there(**changes: Any) -> Observed:
    """What the server holds after a complete release, with ``changes``."""
    return replace(observed_from_state(RECORDED), checked=True, **changes)


def plan(desired: Desired = DESIRED, observed: Observed | None = None) -> dict:
    steps = make_plan(desired, observed or all_there(), RECORDED)
    return {s.object: (s.action, s.reason) for s in steps}


def test_everything_in_place_is_unchanged():
    assert {action for action, _ in plan().values()} == {"unchanged"}


def test_nothing_on_the_server_creates_everything_in_order():
    steps = make_plan(DESIRED, Observed(checked=True), {})

    assert [(s.object, s.action) for s in steps] == [
        ("environment", "create"),
        ("environment_version", "new version"),
        ("model", "create"),
        ("model_version", "new version"),
        ("model_test", "create"),
        ("registered_model", "create"),
        ("registered_model_version", "create"),
        ("deployment", "create"),
        ("association_id", "update"),
    ]


def test_a_changed_model_file_cascades_to_a_replacement():
    desired = replace(
        DESIRED,
        model_files_sha256="files-2",
        model_files={"custom.py": "c2", "utils/a.py": "a1", "new.py": "n"},
    )

    steps = plan(desired)

    assert steps["environment_version"][0] == "unchanged"
    assert steps["model_version"] == (
        "new version",
        "files changed: custom.py (modified), new.py (added)",
    )
    assert steps["model_test"][0] == "create"
    assert steps["registered_model_version"][0] == "create"
    assert steps["deployment"][0] == "replace"
    assert steps["association_id"][0] == "unchanged"


def test_a_changed_context_makes_a_new_environment_version_and_model_version():
    desired = replace(
        DESIRED, context_sha256="ctx-2", context_files={"Dockerfile": "d2"}
    )

    steps = plan(desired, all_there(environment_version=None))

    assert steps["environment_version"] == (
        "new version",
        "files changed: Dockerfile (modified)",
    )
    assert steps["model_version"] == ("new version", "a new environment version")


def test_changed_settings_are_named_with_old_and_new_values():
    desired = replace(DESIRED, version_settings={**SETTINGS, "replicas": 2})

    assert plan(desired)["model_version"] == (
        "new version",
        "settings changed: replicas 1 -> 2",
    )


def test_a_running_image_build_is_resumed():
    running = Found("EV", "processing", {"context_sha256": "ctx-1"})

    steps = plan(observed=all_there(environment_version=running))

    assert steps["environment_version"][0] == "resume"


def test_a_failed_build_of_the_same_context_is_built_again():
    failed = Found("EV", "failed", {"context_sha256": "ctx-1"})

    steps = plan(observed=all_there(environment_version=failed))

    assert steps["environment_version"] == (
        "new version",
        "the last build of this context failed; building it again",
    )


@pytest.mark.parametrize(
    ("status", "blocking", "action"),
    [
        ("succeeded", False, "unchanged"),
        ("warning", False, "unchanged"),
        ("warning", True, "create"),
        ("failed", False, "create"),
        ("in_progress", False, "resume"),
    ],
)
def test_the_test_step_follows_the_last_result(status, blocking, action):
    desired = replace(DESIRED, block_on_test_warning=blocking)
    observed = all_there(model_test=Found("T", status))

    assert plan(desired, observed)["model_test"][0] == action


def test_a_dependency_build_is_planned_only_with_requirements():
    assert "dependency_build" not in plan()
    desired = replace(DESIRED, has_requirements=True)

    assert plan(desired)["dependency_build"] == ("create", "not built yet")


def test_gone_objects_say_so():
    notes = {"deployment": "the recorded deployment D no longer exists on the server"}

    steps = plan(observed=all_there(deployment=None, notes=notes))

    assert steps["deployment"] == ("create", notes["deployment"])
    assert steps["association_id"][0] == "update"


def test_a_deployment_serving_another_package_is_replaced():
    serving_other = Found(
        "D", "", {"model_package_id": "OLD", "association_id_column": "id"}
    )

    steps = plan(observed=all_there(deployment=serving_other))

    assert steps["deployment"] == ("replace", "serves OLD, not P")


def test_an_unset_association_id_is_set():
    unset = Found("D", "", {"model_package_id": "P", "association_id_column": None})

    assert plan(observed=all_there(deployment=unset))["association_id"] == (
        "update",
        "not set",
    )


def test_a_model_of_another_kind_is_refused():
    other = Found("M", facts={"target_type": "Unstructured"})

    with pytest.raises(ConfigError, match="cannot change a model's kind"):
        plan(observed=all_there(model=other))


def test_state_only_observation_ignores_records_of_another_version():
    recorded = {**RECORDED, "model_test": {"id": "T0", "model_version_id": "OLD"}}

    observed = observed_from_state(recorded)

    assert observed.model_test is None
    assert not observed.checked
    assert observed.deployment is not None
    assert observed.deployment.facts["model_package_id"] == "P"
