"""Carry out a release plan: one function per DataRobot object, through the SDK.

Each function takes its planned step and returns the object's id. It records
the object in the state file the moment the server has made it, before any
wait and before the next step, so an interruption at any point leaves a state
from which the next run resumes without making anything twice. A step whose
plan says ``unchanged`` only records what was found (a lost state file is
rebuilt this way).

Failed builds and tests come back from the SDK as objects, not exceptions:
their status is checked here, and the server's log tail goes into the error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import datarobot as dr
from datarobot.errors import ClientError
from datarobot.models.runtime_parameters import RuntimeParameterValue

from drtool.bundle import ContextArchive, FileSet
from drtool.errors import BuildFailed, ModelTestFailed, RemoteError
from drtool.release.observe import context_marker
from drtool.release.plan import (
    ASSOCIATION_ID,
    BUILD_FINAL,
    BUILD_SUCCESS,
    CREATE,
    DEPENDENCY_BUILD,
    DEPLOYMENT,
    ENVIRONMENT,
    ENVIRONMENT_VERSION,
    MODEL,
    MODEL_TEST,
    MODEL_VERSION,
    REGISTERED_MODEL,
    REGISTERED_MODEL_VERSION,
    REPLACE,
    RESUME,
    TEST_IN_PROGRESS,
    TEST_SUCCEEDED,
    TEST_WARNING,
    UNCHANGED,
    Desired,
    Observed,
    PlannedStep,
)
from drtool.release.sdk import Remote
from drtool.release.state import State
from drtool.release.waiting import Deadline, sdk_wait, wait_for
from drtool.settings import Settings

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
# Read timeout of the model files' upload, whose answer comes once all are stored.
UPLOAD_TIMEOUT = 600
MEBIBYTE = 1024 * 1024
PACKAGE_BUILDING = "inProgress"
VALIDATION_FAILING = "failing"
VALIDATION_WARNING = "warning"
LABEL_LIMIT = 50


@dataclass
class Run:
    """Everything one release needs while it applies its plan."""

    settings: Settings
    remote: Remote
    state: State
    desired: Desired
    context: ContextArchive
    model_files: FileSet
    plan: list[PlannedStep] = field(default_factory=list)
    observed: Observed = field(default_factory=lambda: Observed(checked=False))
    # Ids as the run goes: planned ones, then made ones.
    ids: dict[str, str] = field(default_factory=dict)
    # Things worth telling that do not stop the release.
    notes: list[str] = field(default_factory=list)

    def deadline(self, phase: str) -> Deadline:
        return Deadline.of(self.settings.release.timeouts, phase)


# --- environment --------------------------------------------------------------


def ensure_environment(run: Run, step: PlannedStep) -> str:
    """Create the environment unless it exists."""
    if step.action == UNCHANGED:
        _adopt(run, ENVIRONMENT, step.id, name=run.desired.environment_name)
        return step.id
    environment = run.settings.environment
    with run.remote.errors(f"creating the environment {environment.name!r}"):
        made = dr.ExecutionEnvironment.create(
            name=environment.name,
            description=environment.description or None,
            programming_language=environment.programming_language,
        )
    run.state.record(ENVIRONMENT, id=made.id, name=made.name)
    return str(made.id)


def ensure_environment_version(run: Run, step: PlannedStep) -> str:
    """Build a new environment version when the context changed; wait for it."""
    environment_id = run.ids[ENVIRONMENT]
    if step.action == UNCHANGED:
        _record_environment_version(run, step.id, BUILD_SUCCESS)
        return step.id
    if step.action == RESUME:
        _record_environment_version(run, step.id, "processing")
        version_id = step.id
    else:
        version_id = _start_environment_build(run, environment_id)
    version = _wait_for_environment_build(run, environment_id, version_id)
    run.state.update(ENVIRONMENT_VERSION, build_status=version.build_status)
    if version.build_status != BUILD_SUCCESS:
        raise BuildFailed(_environment_build_failure(run, version))
    return version_id


def _start_environment_build(run: Run, environment_id: str) -> str:
    digest = run.desired.context_sha256
    description = "\n\n".join(
        part
        for part in (run.settings.environment.description, context_marker(digest))
        if part
    )
    with run.remote.errors("uploading the environment's Docker context"):
        version = dr.ExecutionEnvironmentVersion.create(
            environment_id,
            docker_context_path=str(run.context.path),
            label=f"drtool {digest[:12]}"[:LABEL_LIMIT],
            description=description,
            # Waiting is ours (waiting.py), with the deadline from config.
            max_wait=None,
        )
    _record_environment_version(run, version.id, version.build_status)
    return str(version.id)


def _record_environment_version(run: Run, version_id: str, status: str) -> None:
    run.state.record(
        ENVIRONMENT_VERSION,
        id=version_id,
        environment_id=run.ids[ENVIRONMENT],
        context_sha256=run.desired.context_sha256,
        files=run.desired.context_files,
        build_status=status,
    )


def _wait_for_environment_build(run: Run, environment_id: str, version_id: str) -> Any:
    def poll() -> Any:
        with run.remote.errors(f"reading environment version {version_id}"):
            return dr.ExecutionEnvironmentVersion.get(environment_id, version_id)

    return wait_for(
        f"Image build of environment version {version_id}",
        poll,
        status=lambda v: str(v.build_status),
        is_final=lambda v: v.build_status in BUILD_FINAL,
        deadline=run.deadline("environment_build"),
    )


def _environment_build_failure(run: Run, version: Any) -> str:
    with run.remote.errors(f"reading the build log of version {version.id}"):
        build_log, error = version.get_build_log()
    return (
        f"the image build of environment version {version.id} "
        f"{version.build_status}{f': {error}' if error else ''}. The end of its "
        f"build log:\n{_tail(build_log)}\nFix {run.settings.environment.dir} "
        f"and run `drtool release` again."
    )


# --- model --------------------------------------------------------------------


def ensure_model(run: Run, step: PlannedStep) -> str:
    """Create the custom model unless it exists."""
    if step.action == UNCHANGED:
        _adopt(run, MODEL, step.id, name=run.desired.model_name)
        return step.id
    name = run.desired.model_name
    with run.remote.errors(f"creating the custom model {name!r}"):
        if run.desired.model_kind == "typed-unstructured":
            model_id = _create_typed_unstructured_model(run)
        else:
            model_id = _create_unstructured_model(run)
    return model_id


def _create_typed_unstructured_model(run: Run) -> str:
    """Post the model through the SDK's client: its ``create`` cannot send
    ``isUnstructuredModelKind``, which makes an "Unstructured (Binary/Multiclass)"
    model, one whose deployment keeps accuracy from actuals."""
    model = run.settings.model
    payload: dict[str, Any] = {
        "customModelType": "inference",
        "name": model.name,
        "description": model.description,
        "language": run.settings.environment.programming_language,
        "targetType": run.desired.target_type,
        "targetName": model.target_name,
        "isUnstructuredModelKind": True,
    }
    if model.target_type == "binary":
        payload["positiveClassLabel"] = model.positive_label
        payload["negativeClassLabel"] = model.negative_label
    else:
        payload["classLabels"] = list(model.class_labels)
    response = run.remote.client.post("customModels/", json=payload)
    model_id = str(response.json()["id"])
    _record_model(run, model_id)
    # Read back through the SDK, which checks the answer's shape.
    dr.CustomInferenceModel.get(model_id)
    return model_id


def _create_unstructured_model(run: Run) -> str:
    model = run.settings.model
    # The SDK annotates target_type with its TARGET_TYPE class, whose members
    # are plain strings.
    unstructured: Any = dr.TARGET_TYPE.UNSTRUCTURED
    made = dr.CustomInferenceModel.create(
        name=model.name,
        target_type=unstructured,
        language=run.settings.environment.programming_language,
        description=model.description or None,
    )
    _record_model(run, made.id)
    return str(made.id)


def _record_model(run: Run, model_id: str) -> None:
    run.state.record(
        MODEL, id=model_id, name=run.desired.model_name, kind=run.desired.model_kind
    )


def ensure_model_version(run: Run, step: PlannedStep) -> str:
    """Upload the selected model files as a new version on the environment
    version, with the version settings of config.yaml."""
    if step.action == UNCHANGED:
        return step.id
    model = run.settings.model
    memory = model.memory_mb * MEBIBYTE if model.memory_mb else None
    previous = ((run.state.get(MODEL_VERSION) or {}).get("settings") or {}).get(
        "runtime_parameters"
    )
    parameters = runtime_parameter_values(model.runtime_parameters, previous or {})
    with run.remote.errors("uploading the model's files as a new version"):
        version = dr.CustomModelVersion.create_clean(
            run.ids[MODEL],
            base_environment_id=run.ids[ENVIRONMENT],
            base_environment_version_id=run.ids[ENVIRONMENT_VERSION],
            is_major_update=True,
            # An explicit list: folder_path would upload everything, .env too.
            files=run.model_files.upload_list(),
            network_egress_policy=model.network_egress.upper(),  # type: ignore[arg-type]
            maximum_memory=memory,
            replicas=model.replicas,
            runtime_parameter_values=parameters,
            max_wait=UPLOAD_TIMEOUT,
        )
    run.state.record(
        MODEL_VERSION,
        id=version.id,
        model_id=run.ids[MODEL],
        files_sha256=run.desired.model_files_sha256,
        files=run.desired.model_files,
        settings=run.desired.version_settings,
        environment_version_id=run.ids[ENVIRONMENT_VERSION],
    )
    return str(version.id)


def runtime_parameter_values(
    parameters: dict[str, Any], previous: dict[str, Any]
) -> list[RuntimeParameterValue] | None:
    """Turn ``{name: value}`` (or ``{name: {type, value}}``) into SDK values.

    DataRobot merges a version's values with the previous version's, so a
    parameter dropped from config.yaml is sent with no value, which unsets it.
    """
    dropped = {name: _unset(value) for name, value in previous.items()}
    wanted = {**{n: v for n, v in dropped.items() if n not in parameters}, **parameters}
    if not wanted:
        return None
    return [_runtime_value(name, value) for name, value in sorted(wanted.items())]


def _unset(value: Any) -> dict[str, Any]:
    kind = _runtime_value("_", value).type
    return {"type": kind, "value": None}


def _runtime_value(name: str, value: Any) -> RuntimeParameterValue:
    if isinstance(value, dict):
        return RuntimeParameterValue(
            field_name=name, type=str(value.get("type")), value=value.get("value")
        )
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int | float):
        kind = "numeric"
    else:
        kind, value = "string", str(value)
    return RuntimeParameterValue(field_name=name, type=kind, value=value)


def ensure_dependency_build(run: Run, step: PlannedStep) -> str:
    """Build the version's requirements.txt into its image; check the status.

    A dependency build has no id of its own: it is its model version's.
    """
    model_id, version_id = run.ids[MODEL], run.ids[MODEL_VERSION]
    if step.action == UNCHANGED:
        run.state.record(
            DEPENDENCY_BUILD, model_version_id=version_id, status=BUILD_SUCCESS
        )
        return version_id
    if step.action == CREATE:
        with run.remote.errors(f"starting the dependency build of {version_id}"):
            dr.CustomModelVersionDependencyBuild.start_build(
                model_id, version_id, max_wait=None
            )
    status = "submitted" if step.action == CREATE else "processing"
    run.state.record(DEPENDENCY_BUILD, model_version_id=version_id, status=status)
    build = _wait_for_dependency_build(run, model_id, version_id)
    run.state.update(DEPENDENCY_BUILD, status=build.build_status)
    if build.build_status != BUILD_SUCCESS:
        with run.remote.errors(f"reading the dependency build log of {version_id}"):
            build_log = build.get_log()
        raise BuildFailed(
            f"the dependency build of model version {version_id} "
            f"{build.build_status}. The end of its log:\n{_tail(build_log)}\n"
            f"Fix {run.settings.model.dir / 'requirements.txt'} and run "
            f"`drtool release` again."
        )
    return version_id


def _wait_for_dependency_build(run: Run, model_id: str, version_id: str) -> Any:
    def poll() -> Any:
        with run.remote.errors(f"reading the dependency build of {version_id}"):
            return dr.CustomModelVersionDependencyBuild.get_build_info(
                model_id, version_id
            )

    return wait_for(
        f"Dependency build of model version {version_id}",
        poll,
        status=lambda b: str(b.build_status),
        is_final=lambda b: b.build_status in BUILD_FINAL,
        deadline=run.deadline("dependency_build"),
    )


# --- test ---------------------------------------------------------------------


def ensure_model_test(run: Run, step: PlannedStep) -> str:
    """Run DataRobot's custom model test and gate the release on it."""
    if step.action == UNCHANGED:
        found = run.observed.model_test
        status = found.status if found else TEST_SUCCEEDED
        _adopt(run, MODEL_TEST, step.id, model_version_id=run.ids[MODEL_VERSION])
        run.state.update(MODEL_TEST, status=status)
        return step.id
    if step.action == RESUME:
        test_id = step.id
        _adopt(run, MODEL_TEST, test_id, model_version_id=run.ids[MODEL_VERSION])
    else:
        test_id = _start_test(run)
    test = _wait_for_test(run, test_id)
    run.state.update(MODEL_TEST, status=test.overall_status)
    _gate(run, test)
    return test_id


def _start_test(run: Run) -> str:
    model, version_id = run.settings.model, run.ids[MODEL_VERSION]
    with run.remote.errors(f"starting the test of model version {version_id}"):
        test = dr.CustomModelTest.create(
            run.ids[MODEL],
            version_id,
            # Waiting is ours (waiting.py), with the deadline from config.
            max_wait=None,
            network_egress_policy=model.network_egress.upper(),
            maximum_memory=model.memory_mb * MEBIBYTE if model.memory_mb else None,
            replicas=model.replicas,
        )
    run.state.record(
        MODEL_TEST, id=test.id, model_version_id=version_id, status=TEST_IN_PROGRESS
    )
    return str(test.id)


def _wait_for_test(run: Run, test_id: str) -> Any:
    def poll() -> Any:
        with run.remote.errors(f"reading custom model test {test_id}"):
            return dr.CustomModelTest.get(test_id)

    return wait_for(
        f"Custom model test {test_id}",
        poll,
        status=lambda t: str(t.overall_status),
        is_final=lambda t: t.overall_status != TEST_IN_PROGRESS,
        deadline=run.deadline("model_test"),
    )


def _gate(run: Run, test: Any) -> None:
    """Stop the release on a failed test, or on warnings when config says so."""
    checks: dict[str, Any] = dict(test.detailed_status or {})
    failed = _checks_with(checks, "failed")
    warned = _checks_with(checks, TEST_WARNING)
    for line in warned:
        log.warning("Custom model test %s: warning: %s", test.id, line)
    blocking_warning = bool(warned) and run.desired.block_on_test_warning
    passed = test.overall_status in (TEST_SUCCEEDED, TEST_WARNING)
    if passed and not failed and not blocking_warning:
        if warned:
            run.notes.append(f"model test {test.id}: {len(warned)} warning(s)")
        return
    with run.remote.errors(f"reading the log of custom model test {test.id}"):
        tail = test.get_log_tail()
    why = failed or (warned if blocking_warning else [])
    listed = "\n".join(f"  - {line}" for line in why) or f"  - {test.overall_status}"
    raise ModelTestFailed(
        f"DataRobot's test of model version {run.ids[MODEL_VERSION]} ended "
        f"{test.overall_status}; nothing was deployed.\n{listed}\nThe end of the "
        f"test's log:\n{_tail(tail)}"
    )


def _checks_with(checks: dict[str, Any], status: str) -> list[str]:
    return [
        f"{name}: {check.get('message') or status}"
        for name, check in sorted(checks.items())
        if isinstance(check, dict) and check.get("status") == status
    ]


# --- registry -----------------------------------------------------------------


def ensure_registered_model(run: Run, step: PlannedStep) -> str:
    """Make the registered model, which DataRobot makes with its first version."""
    if step.action == UNCHANGED:
        _adopt(run, REGISTERED_MODEL, step.id, name=_registered_name(run))
        return step.id
    package = _register(run, registered_id="")
    return str(package.registered_model_id)


def ensure_registered_model_version(run: Run, step: PlannedStep) -> str:
    """Register the model version (a model package) unless it is registered."""
    if step.action == UNCHANGED:
        _adopt_registered_version(run, run.ids[REGISTERED_MODEL], step.id)
        return step.id
    made_with_model = run.ids.get(REGISTERED_MODEL_VERSION)
    if made_with_model:
        return made_with_model
    return str(_register(run, registered_id=run.ids[REGISTERED_MODEL]).id)


def _register(run: Run, registered_id: str) -> Any:
    """Register the model version: in the registered model ``registered_id``,
    or, when that is '', in a new one named as config.yaml says."""
    version_id = run.ids[MODEL_VERSION]
    with run.remote.errors(f"registering model version {version_id}"):
        package = dr.RegisteredModelVersion.create_for_custom_model_version(
            version_id,
            description=(
                f"drtool release of custom model version {version_id} (files "
                f"sha256 {run.desired.model_files_sha256})"
            ),
            registered_model_id=registered_id or None,
            registered_model_name=None if registered_id else _registered_name(run),
        )
    made_in = str(package.registered_model_id)
    _adopt(run, REGISTERED_MODEL, made_in, name=_registered_name(run))
    _adopt_registered_version(run, made_in, package.id)
    run.ids[REGISTERED_MODEL_VERSION] = str(package.id)
    if package.build_status == PACKAGE_BUILDING:
        _wait_for_package(run, package)
    return package


def _registered_name(run: Run) -> str:
    return run.desired.registered_model_name


def _adopt_registered_version(run: Run, registered_id: str, package_id: str) -> None:
    record = run.state.get(REGISTERED_MODEL_VERSION) or {}
    if record.get("id") != package_id:
        run.state.record(
            REGISTERED_MODEL_VERSION,
            id=package_id,
            registered_model_id=registered_id,
            model_version_id=run.ids[MODEL_VERSION],
        )


def _wait_for_package(run: Run, package: Any) -> None:
    """Wait for DataRobot to finish building the package before deploying it."""
    with run.remote.errors(f"reading registered model {package.registered_model_id}"):
        registered = dr.RegisteredModel.get(package.registered_model_id)

    def poll() -> Any:
        with run.remote.errors(f"reading registered model version {package.id}"):
            return registered.get_version(package.id)

    built = wait_for(
        f"Build of registered model version {package.id}",
        poll,
        status=lambda v: str(v.build_status),
        is_final=lambda v: v.build_status != PACKAGE_BUILDING,
        deadline=run.deadline("deployment"),
    )
    if built.build_status == "failed":
        raise BuildFailed(
            f"DataRobot could not build registered model version {package.id}; "
            f"see {run.remote.ui}/registry/registered-models/"
            f"{package.registered_model_id}/info."
        )


# --- deployment ---------------------------------------------------------------


def ensure_deployment(run: Run, step: PlannedStep) -> str:
    """Deploy the registered version, or replace the deployment's model with it."""
    package_id = run.ids[REGISTERED_MODEL_VERSION]
    if step.action == CREATE:
        return _create_deployment(run, package_id)
    if step.action == REPLACE:
        _replace_model(run, step.id, package_id)
    else:
        _adopt(run, DEPLOYMENT, step.id, label=run.settings.deployment.label)
    run.state.update(DEPLOYMENT, model_package_id=package_id)
    return step.id


def _create_deployment(run: Run, package_id: str) -> str:
    settings = run.settings.deployment
    doing = f"deploying registered model version {package_id}"
    with _waiting_call(run, doing, "deployment") as max_wait:
        deployment = dr.Deployment.create_from_registered_model_version(
            package_id,
            label=settings.label,
            description=settings.description or None,
            # At most one is set (settings checks it); neither: the default.
            prediction_environment_id=settings.prediction_environment_id or None,
            default_prediction_server_id=settings.prediction_server_id or None,
            importance=settings.importance,
            max_wait=max_wait,
        )
    run.state.record(
        DEPLOYMENT, id=deployment.id, label=settings.label, model_package_id=package_id
    )
    return str(deployment.id)


def _replace_model(run: Run, deployment_id: str, package_id: str) -> None:
    """Validate, replace, then read back: DataRobot can silently keep the old
    model when the new one fails to start."""
    deployment = dr.Deployment(id=deployment_id)
    with run.remote.errors(f"validating the replacement of {deployment_id}'s model"):
        status, message, checks = deployment.validate_replacement_model(
            new_registered_model_version_id=package_id
        )
    if status == VALIDATION_FAILING:
        raise RemoteError(
            f"DataRobot refuses {package_id} as the model of deployment "
            f"{deployment_id}: {message}. Failing checks: {_failing(checks)}."
        )
    if status == VALIDATION_WARNING:
        log.warning("Replacing the model of %s: %s", deployment_id, message)
    doing = f"replacing the model of deployment {deployment_id}"
    with _waiting_call(run, doing, "deployment") as max_wait:
        deployment.perform_model_replace(
            package_id, run.settings.deployment.replacement_reason, max_wait
        )
    _check_serves(run, deployment_id, package_id)


def _check_serves(run: Run, deployment_id: str, package_id: str) -> None:
    with run.remote.errors(f"reading deployment {deployment_id}"):
        package: Any = dr.Deployment.get(deployment_id).model_package or {}
    served = package.get("id")
    if served != package_id:
        raise RemoteError(
            f"deployment {deployment_id} still serves {served} after the "
            f"replacement with {package_id}: DataRobot fell back to the previous "
            f"model, most likely because the new one did not start. See "
            f"{run.remote.ui}/deployments/{deployment_id}/overview."
        )


def _failing(checks: Any) -> str:
    if not isinstance(checks, dict):
        return "none listed"
    failing = [
        f"{name} ({(check or {}).get('message', '')})"
        for name, check in sorted(checks.items())
        if isinstance(check, dict) and check.get("status") == VALIDATION_FAILING
    ]
    return ", ".join(failing) or "none listed"


def ensure_association_id(run: Run, step: PlannedStep) -> str:
    """Name the column whose values match actuals to predictions."""
    column, deployment_id = run.desired.association_id_column, run.ids[DEPLOYMENT]
    if step.action == UNCHANGED:
        run.state.update(DEPLOYMENT, association_id_column=column)
        return deployment_id
    doing = f"setting the association id of deployment {deployment_id}"
    refused: ClientError | None = None
    with _waiting_call(run, doing, "deployment") as max_wait:
        try:
            dr.Deployment(id=deployment_id).update_association_id_settings(
                column_names=[column],
                required_in_prediction_requests=False,
                max_wait=max_wait,
            )
        except ClientError as exc:
            if exc.status_code in (401, 403, 404):
                raise
            refused = exc
    if refused is not None:
        # DataRobot refuses the change once the deployment has served
        # predictions; the release itself stands, so this is a note.
        message = (refused.json or {}).get("message") or str(refused)[:300]
        run.notes.append(f"association id of {deployment_id} not set: {message}")
        log.warning("Association id of %s not set: %s", deployment_id, message)
        return deployment_id
    run.state.update(DEPLOYMENT, association_id_column=column)
    return deployment_id


# --- dispatch -----------------------------------------------------------------

Applier = Callable[[Run, PlannedStep], str]

# The function that carries out each object's step; each returns the id.
APPLIERS: dict[str, Applier] = {
    ENVIRONMENT: ensure_environment,
    ENVIRONMENT_VERSION: ensure_environment_version,
    MODEL: ensure_model,
    MODEL_VERSION: ensure_model_version,
    DEPENDENCY_BUILD: ensure_dependency_build,
    MODEL_TEST: ensure_model_test,
    REGISTERED_MODEL: ensure_registered_model,
    REGISTERED_MODEL_VERSION: ensure_registered_model_version,
    DEPLOYMENT: ensure_deployment,
    ASSOCIATION_ID: ensure_association_id,
}


# --- helpers ------------------------------------------------------------------


@contextmanager
def _waiting_call(run: Run, doing: str, phase: str) -> Iterator[int]:
    """Run an SDK call that waits inside itself; yield its ``max_wait``."""
    with sdk_wait(doing, run.deadline(phase)) as max_wait, run.remote.errors(doing):
        yield max_wait


def _adopt(run: Run, name: str, identifier: str, /, **values: Any) -> None:
    """Record an object found on the server, unless already recorded."""
    if identifier and run.state.id_of(name) != identifier:
        run.state.record(name, id=identifier, **values)
    if identifier:
        run.ids[name] = identifier


def _tail(text: str | None, lines: int = LOG_TAIL_LINES) -> str:
    kept = (text or "").rstrip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in kept) or "  | (empty)"
