"""What the server holds: the recorded objects checked, the missing ones looked up.

Only GET requests go out from here, so a dry run can call it. Each object is
found by the id the state recorded; when the state has none (a first run, a
lost state file) it is looked up by its exact name, and an environment version
by the context hash drtool writes into its description. A recorded object the
server answers 404 for is reported as gone, with the reason, so the plan
recreates it instead of assuming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datarobot as dr
from datarobot.errors import ClientError

from drtool.errors import ConfigError
from drtool.release.plan import (
    BUILD_FAILED,
    BUILD_FINAL,
    DEPENDENCY_BUILD,
    DEPLOYMENT,
    ENVIRONMENT,
    ENVIRONMENT_VERSION,
    MODEL,
    MODEL_TEST,
    MODEL_VERSION,
    REGISTERED_MODEL,
    REGISTERED_MODEL_VERSION,
    TEST_IN_PROGRESS,
    Desired,
    Found,
    Observed,
)
from drtool.release.sdk import Remote, exact
from drtool.release.state import State
from drtool.settings import Settings

log = logging.getLogger(__name__)

# Written into each environment version's description, so a lost state file
# can be rebuilt from the server.
CONTEXT_MARKER = "drtool-context-sha256: "
NOT_STARTED = 422


@dataclass
class _Lookup:
    """One observation in progress: where to ask and what was noted."""

    remote: Remote
    settings: Settings
    desired: Desired
    state: State
    notes: dict[str, str]

    def gone(self, name: str, identifier: str, what: str) -> None:
        self.notes[name] = (
            f"the recorded {what} {identifier} no longer exists on the server"
        )


def observe(
    remote: Remote, settings: Settings, desired: Desired, state: State
) -> Observed:
    """Return what the server holds of each object of the release."""
    look = _Lookup(remote, settings, desired, state, notes={})
    environment = _environment(look)
    model = _model(look)
    model_version = _model_version(look, model)
    registered = _registered_model(look)
    deployment = _deployment(look, registered)
    if deployment is None:
        _check_prediction_target(look)
    return Observed(
        checked=True,
        environment=_found(environment),
        environment_version=_environment_version(look, environment),
        model=_found(model, target_type=getattr(model, "target_type", None)),
        model_version=model_version,
        dependency_build=_dependency_build(look, model, model_version),
        model_test=_model_test(look, model, model_version),
        registered_model=_found(registered),
        registered_model_version=_registered_model_version(
            look, registered, model_version
        ),
        deployment=deployment,
        notes=look.notes,
    )


def context_marker(context_sha256: str) -> str:
    return f"{CONTEXT_MARKER}{context_sha256}"


# --- environment --------------------------------------------------------------


def _environment(look: _Lookup) -> Any:
    return _recorded_or_named(
        look,
        ENVIRONMENT,
        "environment",
        look.desired.environment_name,
        dr.ExecutionEnvironment.get,
        dr.ExecutionEnvironment.list,
    )


def _recorded_or_named(
    look: _Lookup,
    kind: str,
    label: str,
    name: str,
    get: Callable[[str], Any],
    search: Callable[..., list[Any]],
) -> Any:
    """Find an object by the id the state file recorded, else by its exact name.

    A recorded id the server no longer knows is noted as gone, and the name
    decides: the object is then found again or made anew.
    """
    recorded = look.state.id_of(kind)
    if recorded:
        found = look.remote.fetch(f"reading {label} {recorded}", lambda: get(recorded))
        if found is not None:
            return found
        look.gone(kind, recorded, label)
    with look.remote.errors(f"looking up the {label} {name!r}"):
        matches = exact(search(search_for=name), "name", name)
    return _only(matches, f"{label}s named {name!r}")


def _environment_version(look: _Lookup, environment: Any) -> Found | None:
    if environment is None:
        return None
    wanted = look.desired.context_sha256
    record = look.state.get(ENVIRONMENT_VERSION) or {}
    is_current = (
        record.get("environment_id") == environment.id
        and record.get("context_sha256") == wanted
    )
    if is_current and record.get("id"):
        version = look.remote.fetch(
            f"reading environment version {record['id']}",
            lambda: dr.ExecutionEnvironmentVersion.get(environment.id, record["id"]),
        )
        if version is not None:
            return _version_found(version, wanted)
        look.gone(ENVIRONMENT_VERSION, record["id"], "environment version")
    return _version_by_marker(look, environment.id, wanted)


def _version_by_marker(look: _Lookup, environment_id: str, wanted: str) -> Found | None:
    """Find a version built from the wanted context, by its description."""
    with look.remote.errors(f"listing the versions of environment {environment_id}"):
        versions = dr.ExecutionEnvironmentVersion.list(environment_id)
    marked = [
        v
        for v in versions
        if context_marker(wanted) in (v.description or "")
        and v.build_status != BUILD_FAILED
    ]
    # A finished build is better than one still running.
    marked.sort(key=lambda v: v.build_status not in BUILD_FINAL)
    return _version_found(marked[0], wanted) if marked else None


def _version_found(version: Any, context_sha256: str) -> Found:
    return Found(
        version.id,
        version.build_status,
        {"context_sha256": context_sha256, "environment_id": version.environment_id},
    )


# --- model --------------------------------------------------------------------


def _model(look: _Lookup) -> Any:
    return _recorded_or_named(
        look,
        MODEL,
        "custom model",
        look.desired.model_name,
        dr.CustomInferenceModel.get,
        dr.CustomInferenceModel.list,
    )


def _model_version(look: _Lookup, model: Any) -> Found | None:
    record = look.state.get(MODEL_VERSION) or {}
    if model is None or record.get("model_id") != model.id or not record.get("id"):
        # A version made before the state file was lost is not trusted: its
        # files cannot be compared, so the plan makes a new one.
        return None
    version = look.remote.fetch(
        f"reading custom model version {record['id']}",
        lambda: dr.CustomModelVersion.get(model.id, record["id"]),
    )
    if version is None:
        look.gone(MODEL_VERSION, record["id"], "custom model version")
        return None
    facts = {
        **record,
        "environment_version_id": version.base_environment_version_id
        or record.get("environment_version_id"),
    }
    return Found(version.id, facts=facts)


def _dependency_build(
    look: _Lookup, model: Any, model_version: Found | None
) -> Found | None:
    if model_version is None or not look.desired.has_requirements:
        return None
    record = _record_for(look, DEPENDENCY_BUILD, model_version)
    status = str((record or {}).get("status") or "")
    if status not in BUILD_FINAL:
        # Also asked when nothing is recorded: a build started by a run that
        # stopped before recording it is resumed, not started twice.
        build = look.remote.fetch(
            f"reading the dependency build of version {model_version.id}",
            lambda: _build_info(model.id, model_version.id),
        )
        status = build.build_status if build is not None else ""
    return Found(model_version.id, status) if status else None


def _build_info(model_id: str, version_id: str) -> Any:
    """Return the version's dependency build, or None if none was started."""
    try:
        return dr.CustomModelVersionDependencyBuild.get_build_info(model_id, version_id)
    except ClientError as exc:
        # DataRobot's answer for "build has not been started".
        if exc.status_code == NOT_STARTED:
            return None
        raise


def _model_test(look: _Lookup, model: Any, model_version: Found | None) -> Found | None:
    record = _record_for(look, MODEL_TEST, model_version)
    if model_version is not None and (record is None or not record.get("id")):
        return _test_by_version(look, model, model_version)
    if record is None:
        return None
    status = str(record.get("status") or "")
    if status in ("", TEST_IN_PROGRESS):
        test = look.remote.fetch(
            f"reading custom model test {record['id']}",
            lambda: dr.CustomModelTest.get(record["id"]),
        )
        if test is None:
            return None
        status = test.overall_status
    return Found(str(record["id"]), status)


def _test_by_version(look: _Lookup, model: Any, model_version: Found) -> Found | None:
    """Find a test of this version that the state missed (a run that stopped
    inside the SDK's ``CustomModelTest.create``), rather than test it twice."""
    with look.remote.errors(f"listing the tests of custom model {model.id}"):
        tests = dr.CustomModelTest.list(model.id)
    # For a version's test, DataRobot puts the version's id in the image id.
    mine = [t for t in tests if t.custom_model_image_id == model_version.id]
    return Found(mine[0].id, mine[0].overall_status) if mine else None


# --- registry and deployment --------------------------------------------------


def _registered_model(look: _Lookup) -> Any:
    recorded = look.state.id_of(REGISTERED_MODEL)
    if recorded:
        found = look.remote.fetch(
            f"reading registered model {recorded}",
            lambda: dr.RegisteredModel.get(recorded),
        )
        if found is not None:
            return found
        look.gone(REGISTERED_MODEL, recorded, "registered model")
    name = look.desired.registered_model_name
    with look.remote.errors(f"looking up the registered model {name!r}"):
        matches = exact(dr.RegisteredModel.list(search=name), "name", name)
    return _only(matches, f"registered models named {name!r}")


def _registered_model_version(
    look: _Lookup, registered: Any, model_version: Found | None
) -> Found | None:
    if registered is None or model_version is None:
        return None
    record = _record_for(look, REGISTERED_MODEL_VERSION, model_version)
    if record and record.get("registered_model_id") == registered.id:
        version = look.remote.fetch(
            f"reading registered model version {record['id']}",
            lambda: registered.get_version(record["id"]),
        )
        if version is not None:
            return Found(version.id, version.build_status or "")
    # Reuse the registration of this version if one exists, however it came.
    with look.remote.errors(f"listing versions of registered model {registered.id}"):
        versions = registered.list_versions()
    mine = [v for v in versions if v.model_id == model_version.id]
    return Found(mine[0].id, mine[0].build_status or "") if mine else None


def _deployment(look: _Lookup, registered: Any) -> Found | None:
    configured = look.settings.deployment.id
    identifier = configured or look.state.id_of(DEPLOYMENT)
    if identifier:
        found = look.remote.fetch(
            f"reading deployment {identifier}", lambda: dr.Deployment.get(identifier)
        )
        if found is not None:
            return _deployment_found(look, found)
        if configured:
            raise ConfigError(
                f"deployment.id in config.yaml is {configured}, but "
                f"{look.remote.endpoint} has no such deployment."
            )
        look.gone(DEPLOYMENT, identifier, "deployment")
    adopted = _deployment_by_label(look, registered)
    return _deployment_found(look, adopted) if adopted is not None else None


def _deployment_by_label(look: _Lookup, registered: Any) -> Any:
    """Find a deployment with the configured label that serves this registered
    model: only then is it surely this release's (another team's deployment
    may carry the same label)."""
    if registered is None:
        return None
    label = look.desired.deployment_label
    with look.remote.errors(f"looking up the deployment {label!r}"):
        candidates = exact(dr.Deployment.list(search=label), "label", label)
    ours = [d for d in candidates if _serves_registered(d, registered.id)]
    return _only(ours, f"deployments labelled {label!r} serving {registered.id}")


def _serves_registered(deployment: Any, registered_id: str) -> bool:
    package: Any = deployment.model_package or {}
    return bool(package.get("registered_model_id") == registered_id)


def _deployment_found(look: _Lookup, deployment: Any) -> Found:
    record = look.state.get(DEPLOYMENT) or {}
    column = record.get("association_id_column")
    if record.get("id") != deployment.id or column is None:
        column = _association_column(look, deployment)
    package: Any = deployment.model_package or {}
    facts = {
        "model_package_id": package.get("id"),
        "association_id_column": column,
    }
    return Found(deployment.id, deployment.status or "", facts)


def _association_column(look: _Lookup, deployment: Any) -> str | None:
    with look.remote.errors(f"reading the settings of deployment {deployment.id}"):
        # Annotated as str by the SDK; a dict (or None) in fact.
        found: Any = deployment.get_association_id_settings()
    columns = (found or {}).get("column_names") or []
    return str(columns[0]) if columns else None


def _check_prediction_target(look: _Lookup) -> None:
    """Refuse, before anything is made, a prediction target that does not exist."""
    settings = look.settings.deployment
    if settings.prediction_environment_id:
        found = look.remote.fetch(
            "reading the prediction environment",
            lambda: dr.PredictionEnvironment.get(settings.prediction_environment_id),
        )
        if found is None:
            raise ConfigError(
                f"deployment.prediction_environment_id "
                f"{settings.prediction_environment_id} does not exist on "
                f"{look.remote.endpoint}."
            )
    if settings.prediction_server_id:
        with look.remote.errors("listing the prediction servers"):
            servers = dr.PredictionServer.list()
        if settings.prediction_server_id not in {s.id for s in servers}:
            raise ConfigError(
                f"deployment.prediction_server_id {settings.prediction_server_id} "
                f"is not one of the prediction servers of {look.remote.endpoint}: "
                f"{', '.join(str(s.id) for s in servers) or 'none'}."
            )


# --- helpers ------------------------------------------------------------------


def _record_for(
    look: _Lookup, name: str, model_version: Found | None
) -> dict[str, Any] | None:
    """Return the record of ``name`` if it was made for ``model_version``."""
    record = look.state.get(name)
    if record is None or model_version is None:
        return None
    return record if record.get("model_version_id") == model_version.id else None


def _only(matches: list[Any], what: str) -> Any:
    if len(matches) > 1:
        log.warning(
            "%d %s; using %s. Rename the others so that one name means one object.",
            len(matches),
            what,
            matches[0].id,
        )
    return matches[0] if matches else None


def _found(item: Any, **facts: Any) -> Found | None:
    if item is None:
        return None
    return Found(item.id, facts={k: v for k, v in facts.items() if v is not None})
