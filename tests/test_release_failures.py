"""A release that meets failures: builds, tests, tokens, servers, deadlines."""

from __future__ import annotations

import json

import pytest

from drtool.errors import (
    AuthError,
    BuildFailed,
    ConfigError,
    ModelTestFailed,
    RemoteError,
    WaitTimeout,
)
from drtool.release import ReleaseReport, run_release
from drtool.release import waiting as waiting_module
from drtool.settings import Settings, load_settings

pytest_plugins = ["tests.fake_datarobot"]


def release(settings: Settings) -> ReleaseReport:
    return run_release(settings, dry_run=False, target="remote")


def state_of(settings: Settings) -> dict:
    return json.loads(settings.state_file.read_text())["objects"]


def writes_after(fake, count: int) -> list[tuple[str, str]]:
    return fake.writes()[count:]


# --- builds and tests ---------------------------------------------------------


def test_a_failed_image_build_stops_with_the_build_log_tail(fake, settings):
    fake.build_outcome = "failed"

    with pytest.raises(BuildFailed) as failed:
        release(settings)

    message = str(failed.value)
    assert "failed: pip failed" in message
    assert "ERROR: no such package" in message
    assert "step 0\n" not in message  # only the tail
    assert state_of(settings)["environment_version"]["build_status"] == "failed"
    assert ("POST", "customModels/") not in fake.writes()


def test_after_a_failed_build_a_rerun_builds_again(fake, settings):
    fake.build_outcome = "failed"
    with pytest.raises(BuildFailed):
        release(settings)
    fake.build_outcome = "success"

    report = release(settings)

    version = next(s for s in report.steps if s.object == "environment version")
    assert version.action == "new version"
    assert "failed" in version.reason
    assert len(fake.environment_versions) == 2


def test_a_failed_dependency_build_stops_before_the_test(fake, settings, project):
    (project / "model" / "requirements.txt").write_text("tensorflow==0.0.1\n")
    fake.dependency_outcome = "failed"

    with pytest.raises(BuildFailed, match="No matching distribution") as failed:
        release(settings)

    assert "requirements.txt" in str(failed.value)
    assert ("POST", "customModelTests/") not in fake.writes()


def test_a_failed_test_names_each_failed_check_and_deploys_nothing(fake, settings):
    fake.test_outcome = "failed"
    fake.test_checks = {
        "error_check": {"status": "failed", "message": "score raised ValueError"},
        "side_effects": {"status": "failed", "message": "predictions differ"},
    }

    with pytest.raises(ModelTestFailed) as failed:
        release(settings)

    message = str(failed.value)
    assert "error_check: score raised ValueError" in message
    assert "side_effects: predictions differ" in message
    assert "Traceback: ValueError: bad input" in message
    assert "nothing was deployed" in message
    assert failed.value.exit_code == 4
    writes = fake.writes()
    assert ("POST", "modelPackages/fromCustomModelVersion/") not in writes
    assert ("POST", "deployments/fromModelPackage/") not in writes


def test_a_failed_test_is_run_again_on_the_next_release(fake, settings):
    fake.test_outcome = "failed"
    with pytest.raises(ModelTestFailed):
        release(settings)
    fake.test_outcome = "succeeded"
    before = len(fake.writes())

    release(settings)

    assert writes_after(fake, before)[0] == ("POST", "customModelTests/")
    assert len(fake.model_versions) == 1


def test_test_warnings_are_shown_and_do_not_block(fake, settings, caplog):
    fake.test_outcome = "warning"
    fake.test_checks = {
        "null_value_imputation": {"status": "warning", "message": "NaN"}
    }

    report = release(settings)

    assert "null_value_imputation: NaN" in caplog.text
    assert "1 warning" in report.notes[0]
    assert ("POST", "deployments/fromModelPackage/") in fake.writes()


def test_test_warnings_block_when_config_says_so(fake, project):
    config = fake.config.replace(
        "release:\n", "release:\n  block_on_test_warning: true\n"
    )
    (project / "config.yaml").write_text(config)
    fake.test_outcome = "warning"
    fake.test_checks = {
        "null_value_imputation": {"status": "warning", "message": "NaN"}
    }

    with pytest.raises(ModelTestFailed, match="null_value_imputation: NaN"):
        release(load_settings(project / "config.yaml"))


# --- the token and the server -------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_token_names_the_endpoint_and_nothing_more(fake, settings, status):
    fake.reject_with = status

    with pytest.raises(AuthError) as rejected:
        release(settings)

    message = str(rejected.value)
    assert message.startswith(f"{fake.endpoint} rejected the API token from ")
    assert f"HTTP {status}" in message
    assert fake.token not in message
    assert "Invalid API token" not in message


def test_a_5xx_on_a_get_is_retried(fake, settings):
    release(settings)
    fake.fail("GET", r"customModels/[^/]+/", 503, times=2)

    release(settings)

    model_id = state_of(settings)["model"]["id"]
    gets = fake.calls_to("GET", f"customModels/{model_id}/")
    assert len(gets) == 1 + 3


def test_a_5xx_on_a_create_is_not_retried(fake, settings):
    fake.fail("POST", "customModels/", 503, times=1)

    with pytest.raises(RemoteError, match="503") as failed:
        release(settings)

    assert len(fake.calls_to("POST", "customModels/")) == 1
    assert "a rerun resumes" in str(failed.value)


def test_a_rerun_after_a_server_error_resumes(fake, settings):
    fake.fail("POST", "customModels/", 503, times=1)
    with pytest.raises(RemoteError):
        release(settings)

    release(settings)

    assert len(fake.environments) == 1
    assert len(fake.environment_versions) == 1
    assert len(fake.models) == 1


def test_a_model_of_another_kind_is_refused(fake, project, settings):
    release(settings)
    model_id = state_of(settings)["model"]["id"]
    fake.models[model_id]["targetType"] = "Unstructured"

    with pytest.raises(ConfigError, match="cannot change a model's kind"):
        release(settings)


# --- deadlines ----------------------------------------------------------------


class Clock:
    """A monotonic clock that moves on only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_wait_past_its_deadline_raises_and_a_rerun_resumes_it(
    fake, settings, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr(waiting_module, "monotonic", clock.monotonic)
    monkeypatch.setattr(waiting_module, "sleep", clock.sleep)
    fake.build_polls = 10_000

    with pytest.raises(WaitTimeout) as timed_out:
        release(settings)

    message = str(timed_out.value)
    assert "after 600 s (release.timeouts.environment_build" in message
    assert "last status: processing" in message
    assert timed_out.value.exit_code == 5
    assert clock.now - 1000.0 == pytest.approx(600.0)

    # Still running when the rerun looks, done at its first poll.
    fake.finish_running_jobs(after=1)
    report = release(settings)

    version = next(s for s in report.steps if s.object == "environment version")
    assert version.action == "resume"
    assert len(fake.environment_versions) == 1


# --- replacement --------------------------------------------------------------


def test_a_replacement_validated_as_failing_changes_nothing(fake, settings, project):
    release(settings)
    served = state_of(settings)["deployment"]["model_package_id"]
    (project / "model" / "custom.py").write_text("# new\n")
    fake.validation = {
        "status": "failing",
        "message": "target type differs",
        "checks": {"targetType": {"status": "failing", "message": "Binary vs Other"}},
    }

    with pytest.raises(RemoteError, match="target type differs") as refused:
        release(settings)

    # The SDK snake-cases the names of the checks.
    assert "target_type (Binary vs Other)" in str(refused.value)
    assert ("PATCH", "deployments/{id}/model/") not in fake.writes()
    deployment = state_of(settings)["deployment"]
    assert deployment["model_package_id"] == served
    assert fake.deployments[deployment["id"]]["modelPackage"]["id"] == served


def test_a_replacement_datarobot_silently_undid_is_an_error(fake, settings, project):
    release(settings)
    (project / "model" / "custom.py").write_text("# new\n")
    fake.falls_back = True

    with pytest.raises(RemoteError, match="fell back to the previous model"):
        release(settings)

    # The next run sees the deployment still serving the old package.
    fake.falls_back = False
    report = release(settings)
    deployment = next(s for s in report.steps if s.object == "deployment")
    assert deployment.action == "replace"


def test_an_association_id_datarobot_refuses_is_a_note(fake, settings):
    release(settings)
    deployment = state_of(settings)["deployment"]["id"]
    fake.deployment_settings[deployment]["associationId"]["columnNames"] = ["other"]
    state = json.loads(settings.state_file.read_text())
    del state["objects"]["deployment"]["association_id_column"]
    settings.state_file.write_text(json.dumps(state))
    fake.fail("PATCH", r"deployments/[^/]+/settings/", 422)

    report = release(settings)

    association = next(s for s in report.steps if s.object == "association id")
    assert association.action == "update"
    assert "is 'other'" in association.reason
    assert "association id" in report.notes[0]


# --- preflight ----------------------------------------------------------------


def test_a_missing_prediction_environment_stops_before_anything_is_made(fake, project):
    config = fake.config.replace(
        "deployment:\n", "deployment:\n  prediction_environment_id: pe-404\n"
    )
    (project / "config.yaml").write_text(config)

    with pytest.raises(ConfigError, match="pe-404 does not exist"):
        release(load_settings(project / "config.yaml"))
    assert fake.writes() == []


def test_a_configured_deployment_that_does_not_exist_is_refused(fake, project):
    config = fake.config.replace("deployment:\n", "deployment:\n  id: dep-404\n")
    (project / "config.yaml").write_text(config)

    with pytest.raises(ConfigError, match="deployment.id in config.yaml is dep-404"):
        release(load_settings(project / "config.yaml"))
    assert fake.writes() == []
