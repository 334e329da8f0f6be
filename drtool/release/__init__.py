"""`drtool release`: from environment/ and model/ to a tested deployment.

The flow: build (select the files, hash them, pack the Docker context) ->
desired state -> compare with the state file and the server -> a plan of
actions with reasons (``plan``) -> applied step by step through the SDK
(``apply``), each step recorded in the state file (``state``) before the next
begins, every long job waited on by one rule (``waiting``).

``dry_run`` stops after the plan and sends nothing but GET requests (none at
all without credentials: the plan then comes from the state file and the local
hashes). ``target="local"`` builds the same bundle and validates the model
with DRUM on this machine (``local``) instead of DataRobot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from drtool.bundle import ContextArchive, FileSet, build_context, require_dockerfile
from drtool.bundle import select_files as select_bundle_files
from drtool.credentials import (
    Credentials,
    find_credentials,
    get_client,
    require_credentials,
)
from drtool.errors import ConfigError
from drtool.release import apply
from drtool.release.local import validate_locally
from drtool.release.observe import observe
from drtool.release.plan import (
    ASSOCIATION_ID,
    DEPENDENCY_BUILD,
    DEPLOYMENT,
    ENVIRONMENT,
    ENVIRONMENT_VERSION,
    MODEL,
    MODEL_TEST,
    MODEL_VERSION,
    REGISTERED_MODEL,
    REGISTERED_MODEL_VERSION,
    Desired,
    Observed,
    PlannedStep,
    make_plan,
    observed_from_state,
)
from drtool.release.sdk import Remote, ui_link
from drtool.release.state import State, StateLock, load_state
from drtool.settings import Settings

__all__ = ["ReleaseReport", "ReleaseStep", "run_release"]

log = logging.getLogger(__name__)

ARCHIVE_NAME = "environment.zip"
CUSTOM_PY = "custom.py"
TARGETS = ("remote", "local")

# Which UI page shows each object.
_PAGE_OF = {
    ENVIRONMENT: "environment",
    ENVIRONMENT_VERSION: "environment",
    MODEL: "model",
    MODEL_VERSION: "model",
    DEPENDENCY_BUILD: "model",
    MODEL_TEST: "model",
    REGISTERED_MODEL: "registered_model",
    REGISTERED_MODEL_VERSION: "registered_model",
    DEPLOYMENT: "deployment",
    ASSOCIATION_ID: "deployment",
}


@dataclass(frozen=True)
class ReleaseStep:
    """One line of the report: an object, what was (or would be) done, and why."""

    object: str
    action: str
    reason: str
    id: str = ""
    link: str = ""


@dataclass
class ReleaseReport:
    """What a release did, or with ``dry_run``, would do."""

    target: str
    dry_run: bool
    steps: list[ReleaseStep] = field(default_factory=list)
    endpoint: str = ""
    # False when the plan could not be checked against the server.
    server_checked: bool = False
    state_file: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OnStep = Callable[[ReleaseStep], None] | None


@dataclass(frozen=True)
class _Bundle:
    """The local half of a release: the packed context and the model files."""

    context: ContextArchive
    model_files: FileSet


def run_release(
    settings: Settings,
    *,
    dry_run: bool,
    target: str,
    on_step: OnStep = None,
) -> ReleaseReport:
    """Release the model to DataRobot (``remote``) or validate it with DRUM here
    (``local``); with ``dry_run``, only say what would be done.

    ``on_step`` is called with each line of the report as soon as its step is
    done, for a caller that shows progress.
    """
    if target not in TARGETS:
        raise ConfigError(f"--target must be one of {', '.join(TARGETS)}.")
    if target == "local":
        return _release_locally(settings, dry_run, on_step)
    if dry_run:
        return _plan_only(settings, on_step)
    credentials = require_credentials(settings)
    with StateLock(settings.state_file):
        return _release_remotely(settings, credentials, on_step)


def _release_remotely(
    settings: Settings, credentials: Credentials, on_step: OnStep
) -> ReleaseReport:
    bundle = _build(settings, pack=True)
    desired = Desired.from_settings(settings, bundle.context.files, bundle.model_files)
    state = load_state(settings.state_file, credentials.endpoint)
    client = get_client(settings, credentials=credentials)
    remote = Remote(client=client, credentials=credentials)
    observed = observe(remote, settings, desired, state)
    plan = make_plan(desired, observed, state.objects)

    run = apply.Run(
        settings,
        remote,
        state,
        desired,
        bundle.context,
        bundle.model_files,
        plan=plan,
        observed=observed,
    )
    report = _report(settings, "remote", False, credentials.endpoint, True)
    _add(report, _build_step(bundle, packed=True), on_step)
    for step in plan:
        _add(report, _apply_step(run, step), on_step)
    report.notes += run.notes
    return report


def _plan_only(settings: Settings, on_step: OnStep) -> ReleaseReport:
    """Plan from the server when credentials exist, else from the state file."""
    bundle = _build(settings, pack=False)
    desired = Desired.from_settings(settings, bundle.context.files, bundle.model_files)
    credentials = find_credentials(settings)
    endpoint = credentials.endpoint if credentials else ""
    state = load_state(settings.state_file, endpoint)
    observed = _observe_for_plan(settings, desired, state, credentials)
    plan = make_plan(desired, observed, state.objects)

    report = _report(settings, "remote", True, endpoint, observed.checked)
    _add(report, _build_step(bundle, packed=False), on_step)
    ui = credentials.ui_base if credentials else ""
    ids = {s.object: s.id for s in plan}
    for step in plan:
        _add(report, _report_step(step, ui, ids), on_step)
    if not observed.checked:
        report.notes.append(
            "no DataRobot credentials found: the plan comes from the state file "
            "and the local files, and could not be checked against the server."
        )
    return report


def _observe_for_plan(
    settings: Settings, desired: Desired, state: State, credentials: Credentials | None
) -> Observed:
    if credentials is None:
        return observed_from_state(state.objects)
    client = get_client(settings, credentials=credentials)
    return observe(
        Remote(client=client, credentials=credentials), settings, desired, state
    )


def _release_locally(
    settings: Settings, dry_run: bool, on_step: OnStep
) -> ReleaseReport:
    bundle = _build(settings, pack=not dry_run)
    report = _report(settings, "local", dry_run, "", False)
    _add(report, _build_step(bundle, packed=not dry_run), on_step)
    if dry_run:
        reason = "would serve the model files with DRUM and score sample rows"
        _add(report, ReleaseStep("local validation", "run", reason), on_step)
        return report
    checked = validate_locally(settings, bundle.model_files)
    reason = f"DRUM labelled each of {checked.rows} sample rows"
    _add(report, ReleaseStep("local validation", "passed", reason), on_step)
    return report


# --- building -----------------------------------------------------------------


def _build(settings: Settings, *, pack: bool) -> _Bundle:
    """Select and hash the files; with ``pack``, write the context's zip too."""
    archive = settings.root / ARCHIVE_NAME
    context_dir = settings.environment.dir
    if pack:
        context = build_context(context_dir, archive)
    else:
        files = select_bundle_files(context_dir, exclude=[archive])
        require_dockerfile(files)
        context = ContextArchive(path=archive, sha256="", files=files)
    model_files = select_bundle_files(settings.model.dir)
    if not model_files.has(CUSTOM_PY):
        raise ConfigError(
            f"{settings.model.dir} has no {CUSTOM_PY} at its top level; "
            f"model.dir in config.yaml must name the DRUM model folder."
        )
    return _Bundle(context=context, model_files=model_files)


def _build_step(bundle: _Bundle, *, packed: bool) -> ReleaseStep:
    context, model = bundle.context, bundle.model_files
    where = f"{context.path} (zip sha256 {context.sha256[:12]})" if packed else ""
    reason = (
        f"{len(context.files.files)} context files, sha256 "
        f"{context.files.digest[:12]}{f' -> {where}' if where else ''}; "
        f"{len(model.files)} model files, sha256 {model.digest[:12]}"
    )
    return ReleaseStep("build", "packed" if packed else "hashed", reason)


# --- applying -----------------------------------------------------------------


def _apply_step(run: apply.Run, step: PlannedStep) -> ReleaseStep:
    """Carry out one planned step; return its line of the report."""
    log.info("%s: %s (%s)", step.object.replace("_", " "), step.action, step.reason)
    made = apply.APPLIERS[step.object](run, step)
    if made:
        run.ids[step.object] = made
    return _report_step(step, run.remote.ui, run.ids, made or step.id)


# --- reporting ----------------------------------------------------------------


def _add(report: ReleaseReport, step: ReleaseStep, on_step: OnStep) -> None:
    report.steps.append(step)
    if on_step is not None:
        on_step(step)


def _report(
    settings: Settings, target: str, dry_run: bool, endpoint: str, checked: bool
) -> ReleaseReport:
    return ReleaseReport(
        target=target,
        dry_run=dry_run,
        endpoint=endpoint,
        server_checked=checked,
        state_file=str(settings.state_file),
    )


def _report_step(
    step: PlannedStep, ui: str, ids: dict[str, str], made: str = ""
) -> ReleaseStep:
    identifier = made or step.id
    link_ids = {
        "environment": ids.get(ENVIRONMENT, ""),
        "model": ids.get(MODEL, ""),
        "registered_model": ids.get(REGISTERED_MODEL, ""),
        "deployment": ids.get(DEPLOYMENT, ""),
    }
    page = _PAGE_OF[step.object]
    link = ui_link(ui, page, link_ids) if ui and link_ids[page] else ""
    return ReleaseStep(
        object=step.object.replace("_", " "),
        action=step.action,
        reason=step.reason,
        id=identifier,
        link=link,
    )
