"""The plan of a release: for each DataRobot object, what to do and why.

Pure functions only: the desired state (from config.yaml and the local file
hashes), the recorded state and what the server was seen to hold go in; a
list of steps comes out, in the order they must run. Nothing here calls the
network or writes a file, so ``--dry-run`` shows exactly what a run would do.

What forces what (the settings versus version split):

- environment files (hash of the Docker context) -> a new environment version;
- model files, memory, replicas, network egress, runtime parameters or the
  environment version -> a new model version;
- a new model version -> a dependency build (when model/ has requirements.txt),
  a test, a registered model version and a model replacement.

Names and descriptions are matched or set at creation only; changing
``model.name`` or ``environment.name`` makes new objects under the new names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drtool.bundle import FileSet, diff_hashes
from drtool.errors import ConfigError
from drtool.settings import Settings

# Actions.
CREATE = "create"
NEW_VERSION = "new version"
REPLACE = "replace"
UPDATE = "update"
RESUME = "resume"
UNCHANGED = "unchanged"

# Objects, in the order a release handles them; they are also the state's keys.
ENVIRONMENT = "environment"
ENVIRONMENT_VERSION = "environment_version"
MODEL = "model"
MODEL_VERSION = "model_version"
DEPENDENCY_BUILD = "dependency_build"
MODEL_TEST = "model_test"
REGISTERED_MODEL = "registered_model"
REGISTERED_MODEL_VERSION = "registered_model_version"
DEPLOYMENT = "deployment"
ASSOCIATION_ID = "association_id"

# Statuses DataRobot reports.
BUILD_SUCCESS = "success"
BUILD_FAILED = "failed"
BUILD_FINAL = frozenset({BUILD_SUCCESS, BUILD_FAILED})
TEST_SUCCEEDED = "succeeded"
TEST_WARNING = "warning"
TEST_IN_PROGRESS = "in_progress"

REQUIREMENTS_FILE = "requirements.txt"
TARGET_TYPES = {"binary": "Binary", "multiclass": "Multiclass"}
UNSTRUCTURED = "Unstructured"
SHORT_HASH = 12


@dataclass(frozen=True)
class Desired:
    """What config.yaml and the local folders ask for."""

    environment_name: str
    context_sha256: str
    context_files: dict[str, str]
    model_name: str
    model_kind: str
    target_type: str
    model_files_sha256: str
    model_files: dict[str, str]
    version_settings: dict[str, Any]
    has_requirements: bool
    block_on_test_warning: bool
    registered_model_name: str
    deployment_label: str
    association_id_column: str

    @classmethod
    def from_settings(
        cls, settings: Settings, context: FileSet, model_files: FileSet
    ) -> Desired:
        model = settings.model
        typed = model.datarobot_kind == "typed-unstructured"
        return cls(
            environment_name=settings.environment.name,
            context_sha256=context.digest,
            context_files=context.hashes(),
            model_name=model.name,
            model_kind=model.datarobot_kind,
            target_type=TARGET_TYPES[model.target_type] if typed else UNSTRUCTURED,
            model_files_sha256=model_files.digest,
            model_files=model_files.hashes(),
            version_settings=version_settings(settings),
            has_requirements=model_files.has(REQUIREMENTS_FILE),
            block_on_test_warning=settings.release.block_on_test_warning,
            registered_model_name=registered_model_name(settings),
            deployment_label=settings.deployment.label,
            association_id_column=settings.deployment.association_id_column,
        )


@dataclass(frozen=True)
class Found:
    """An object seen on the server (or, unchecked, assumed from the state)."""

    id: str
    status: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """What the server holds of each object; None: nothing usable exists."""

    checked: bool
    environment: Found | None = None
    environment_version: Found | None = None
    model: Found | None = None
    model_version: Found | None = None
    dependency_build: Found | None = None
    model_test: Found | None = None
    registered_model: Found | None = None
    registered_model_version: Found | None = None
    deployment: Found | None = None
    # Why something recorded is not usable, by object: "... was deleted".
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedStep:
    """One object's action, the reason for it, and its id when known."""

    object: str
    action: str
    reason: str
    id: str = ""

    @property
    def changes(self) -> bool:
        return self.action != UNCHANGED


def version_settings(settings: Settings) -> dict[str, Any]:
    """Return the settings of a model version that force a new one on change."""
    model = settings.model
    return {
        "memory_mb": model.memory_mb,
        "replicas": model.replicas,
        "network_egress": model.network_egress,
        "runtime_parameters": dict(model.runtime_parameters),
    }


def registered_model_name(settings: Settings) -> str:
    return settings.release.registered_model_name or settings.model.name


def make_plan(
    desired: Desired, observed: Observed, recorded: dict[str, dict[str, Any]]
) -> list[PlannedStep]:
    """Return the steps of a release, in order."""
    environment = _environment(desired, observed)
    environment_version = _environment_version(desired, observed, recorded, environment)
    model = _model(desired, observed)
    model_version = _model_version(desired, observed, environment_version, model)
    steps = [environment, environment_version, model, model_version]
    if desired.has_requirements:
        steps.append(_dependency_build(observed, model_version))
    steps.append(_model_test(desired, observed, model_version))

    registered = _registered_model(desired, observed)
    registered_version = _registered_model_version(observed, model_version, registered)
    deployment = _deployment(observed, registered_version)
    association = _association_id(desired, observed, deployment)
    return [*steps, registered, registered_version, deployment, association]


def observed_from_state(recorded: dict[str, dict[str, Any]]) -> Observed:
    """Assume the recorded objects exist as recorded (no server to ask)."""

    def found(name: str, status_key: str = "") -> Found | None:
        record = recorded.get(name) or {}
        # A dependency build has no id of its own: it is its version's.
        identifier = str(record.get("id") or record.get("model_version_id") or "")
        if not identifier:
            return None
        return Found(identifier, str(record.get(status_key) or ""), dict(record))

    def of_version(name: str, status_key: str = "") -> Found | None:
        # Builds, tests and registrations count only for the recorded version.
        item = found(name, status_key)
        version = str((recorded.get(MODEL_VERSION) or {}).get("id") or "")
        made_for = item.facts.get("model_version_id") if item else None
        return item if item and version and made_for == version else None

    return Observed(
        checked=False,
        environment=found(ENVIRONMENT),
        environment_version=found(ENVIRONMENT_VERSION, "build_status"),
        model=found(MODEL),
        model_version=found(MODEL_VERSION),
        dependency_build=of_version(DEPENDENCY_BUILD, "status"),
        model_test=of_version(MODEL_TEST, "status"),
        registered_model=found(REGISTERED_MODEL),
        registered_model_version=of_version(REGISTERED_MODEL_VERSION),
        deployment=found(DEPLOYMENT),
    )


# --- one function per object --------------------------------------------------


def _environment(desired: Desired, observed: Observed) -> PlannedStep:
    if observed.environment:
        return PlannedStep(
            ENVIRONMENT,
            UNCHANGED,
            f"{desired.environment_name!r} exists",
            observed.environment.id,
        )
    reason = observed.notes.get(ENVIRONMENT) or (
        f"no environment named {desired.environment_name!r} yet"
    )
    return PlannedStep(ENVIRONMENT, CREATE, reason)


def _environment_version(
    desired: Desired,
    observed: Observed,
    recorded: dict[str, dict[str, Any]],
    environment: PlannedStep,
) -> PlannedStep:
    if environment.changes:
        return PlannedStep(ENVIRONMENT_VERSION, NEW_VERSION, "the environment is new")
    version = observed.environment_version
    short = desired.context_sha256[:SHORT_HASH]
    if version and version.facts.get("context_sha256") == desired.context_sha256:
        if version.status == BUILD_SUCCESS:
            reason = f"built from this context (sha256 {short})"
            return PlannedStep(ENVIRONMENT_VERSION, UNCHANGED, reason, version.id)
        if version.status != BUILD_FAILED:
            reason = f"its image build is still running ({version.status})"
            return PlannedStep(ENVIRONMENT_VERSION, RESUME, reason, version.id)
        reason = "the last build of this context failed; building it again"
        return PlannedStep(ENVIRONMENT_VERSION, NEW_VERSION, reason)
    previous = (recorded.get(ENVIRONMENT_VERSION) or {}).get("files")
    reason = observed.notes.get(ENVIRONMENT_VERSION) or (
        _files_reason(previous, desired.context_files)
        or f"no version built from this context (sha256 {short}) yet"
    )
    return PlannedStep(ENVIRONMENT_VERSION, NEW_VERSION, reason)


def _model(desired: Desired, observed: Observed) -> PlannedStep:
    found = observed.model
    if not found:
        reason = observed.notes.get(MODEL) or (
            f"no custom model named {desired.model_name!r} yet"
        )
        return PlannedStep(MODEL, CREATE, reason)
    existing = found.facts.get("target_type")
    if existing and existing != desired.target_type:
        raise ConfigError(
            f"the custom model {desired.model_name!r} ({found.id}) has target "
            f"type {existing}, but config.yaml asks for {desired.target_type} "
            f"(model.datarobot_kind {desired.model_kind!r}). DataRobot cannot "
            f"change a model's kind: choose another model.name, or delete that "
            f"model."
        )
    return PlannedStep(MODEL, UNCHANGED, f"{desired.model_name!r} exists", found.id)


def _model_version(
    desired: Desired,
    observed: Observed,
    environment_version: PlannedStep,
    model: PlannedStep,
) -> PlannedStep:
    if model.changes:
        return PlannedStep(MODEL_VERSION, NEW_VERSION, "the custom model is new")
    found = observed.model_version
    if not found:
        reason = observed.notes.get(MODEL_VERSION) or "no version recorded yet"
        return PlannedStep(MODEL_VERSION, NEW_VERSION, reason)
    reasons = [
        _files_reason(found.facts.get("files"), desired.model_files)
        if found.facts.get("files_sha256") != desired.model_files_sha256
        else "",
        _settings_reason(found.facts.get("settings"), desired.version_settings),
        _environment_reason(found, environment_version),
    ]
    reason = "; ".join(r for r in reasons if r)
    if reason:
        return PlannedStep(MODEL_VERSION, NEW_VERSION, reason)
    return PlannedStep(MODEL_VERSION, UNCHANGED, "same files and settings", found.id)


def _dependency_build(observed: Observed, model_version: PlannedStep) -> PlannedStep:
    if model_version.changes:
        return PlannedStep(
            DEPENDENCY_BUILD, CREATE, f"new model version with {REQUIREMENTS_FILE}"
        )
    build = observed.dependency_build
    status = build.status if build else ""
    if status == BUILD_SUCCESS:
        return PlannedStep(DEPENDENCY_BUILD, UNCHANGED, "built", model_version.id)
    if status and status != BUILD_FAILED:
        reason = f"the build is still running ({status})"
        return PlannedStep(DEPENDENCY_BUILD, RESUME, reason, model_version.id)
    reason = "the last build failed" if status else "not built yet"
    return PlannedStep(DEPENDENCY_BUILD, CREATE, reason)


def _model_test(
    desired: Desired, observed: Observed, model_version: PlannedStep
) -> PlannedStep:
    if model_version.changes:
        return PlannedStep(MODEL_TEST, CREATE, "new model version")
    test = observed.model_test
    status = test.status if test else ""
    passed = status == TEST_SUCCEEDED or (
        status == TEST_WARNING and not desired.block_on_test_warning
    )
    if test and passed:
        return PlannedStep(MODEL_TEST, UNCHANGED, f"passed ({status})", test.id)
    if test and status == TEST_IN_PROGRESS:
        return PlannedStep(MODEL_TEST, RESUME, "the test is still running", test.id)
    reason = f"the last test ended {status}" if status else "not tested yet"
    return PlannedStep(MODEL_TEST, CREATE, reason)


def _registered_model(desired: Desired, observed: Observed) -> PlannedStep:
    name = desired.registered_model_name
    if observed.registered_model:
        return PlannedStep(
            REGISTERED_MODEL,
            UNCHANGED,
            f"{name!r} exists",
            observed.registered_model.id,
        )
    reason = observed.notes.get(REGISTERED_MODEL) or (
        f"no registered model named {name!r} yet; made with its first version"
    )
    return PlannedStep(REGISTERED_MODEL, CREATE, reason)


def _registered_model_version(
    observed: Observed, model_version: PlannedStep, registered: PlannedStep
) -> PlannedStep:
    if model_version.changes:
        return PlannedStep(REGISTERED_MODEL_VERSION, CREATE, "new model version")
    if registered.changes:
        reason = "the registered model is new"
        return PlannedStep(REGISTERED_MODEL_VERSION, CREATE, reason)
    found = observed.registered_model_version
    if found:
        reason = f"registers model version {model_version.id}"
        return PlannedStep(REGISTERED_MODEL_VERSION, UNCHANGED, reason, found.id)
    reason = observed.notes.get(REGISTERED_MODEL_VERSION) or (
        f"model version {model_version.id} is not registered yet"
    )
    return PlannedStep(REGISTERED_MODEL_VERSION, CREATE, reason)


def _deployment(observed: Observed, registered_version: PlannedStep) -> PlannedStep:
    found = observed.deployment
    if not found:
        reason = observed.notes.get(DEPLOYMENT) or "no deployment yet"
        return PlannedStep(DEPLOYMENT, CREATE, reason)
    served = found.facts.get("model_package_id") or "nothing"
    if registered_version.changes:
        reason = f"serves {served}; the new registered version replaces it"
        return PlannedStep(DEPLOYMENT, REPLACE, reason, found.id)
    if served != registered_version.id:
        reason = f"serves {served}, not {registered_version.id}"
        return PlannedStep(DEPLOYMENT, REPLACE, reason, found.id)
    reason = f"serves {registered_version.id}"
    return PlannedStep(DEPLOYMENT, UNCHANGED, reason, found.id)


def _association_id(
    desired: Desired, observed: Observed, deployment: PlannedStep
) -> PlannedStep:
    column = desired.association_id_column
    if deployment.action == CREATE:
        reason = f"set {column!r} on the new deployment"
        return PlannedStep(ASSOCIATION_ID, UPDATE, reason)
    found = (observed.deployment.facts if observed.deployment else {}).get(
        "association_id_column"
    )
    if found == column:
        reason = f"already {column!r}"
        return PlannedStep(ASSOCIATION_ID, UNCHANGED, reason, deployment.id)
    reason = f"is {found!r}, config.yaml says {column!r}" if found else "not set"
    return PlannedStep(ASSOCIATION_ID, UPDATE, reason, deployment.id)


# --- reasons ------------------------------------------------------------------


def _files_reason(previous: Any, current: dict[str, str]) -> str:
    if not isinstance(previous, dict):
        return ""
    changes = diff_hashes(previous, current)
    return f"files changed: {changes.describe()}" if changes else ""


def _settings_reason(previous: Any, current: dict[str, Any]) -> str:
    if not isinstance(previous, dict):
        return "settings not recorded"
    changed = [
        f"{key} {previous.get(key)!r} -> {current[key]!r}"
        for key in sorted(current)
        if previous.get(key) != current[key]
    ]
    return f"settings changed: {', '.join(changed)}" if changed else ""


def _environment_reason(found: Found, environment_version: PlannedStep) -> str:
    used = found.facts.get("environment_version_id")
    if environment_version.action == NEW_VERSION:
        return "a new environment version"
    if used and used != environment_version.id:
        return f"environment version {used} -> {environment_version.id}"
    return ""
