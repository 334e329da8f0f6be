"""`run_release` against a fake DataRobot, driven through the real SDK."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from drtool.errors import LockedError
from drtool.release import ReleaseReport, run_release
from drtool.release.state import StateLock
from drtool.settings import Settings, load_settings

# The fake DataRobot and its fixtures (project, settings, fake).
pytest_plugins = ["tests.fake_datarobot"]

FIRST_RELEASE_WRITES = [
    ("POST", "executionEnvironments/"),
    ("POST", "executionEnvironments/{id}/versions/"),
    ("POST", "customModels/"),
    ("POST", "customModels/{id}/versions/"),
    ("POST", "customModelTests/"),
    ("POST", "modelPackages/fromCustomModelVersion/"),
    ("POST", "deployments/fromModelPackage/"),
    ("PATCH", "deployments/{id}/settings/"),
]
NEW_MODEL_VERSION_WRITES = [
    ("POST", "customModels/{id}/versions/"),
    ("POST", "customModelTests/"),
    ("POST", "modelPackages/fromCustomModelVersion/"),
    ("POST", "deployments/{id}/model/validation/"),
    ("PATCH", "deployments/{id}/model/"),
]


def release(settings: Settings) -> ReleaseReport:
    return run_release(settings, dry_run=False, target="remote")


def actions(report: ReleaseReport) -> dict[str, str]:
    return {step.object: step.action for step in report.steps}


def state_of(settings: Settings) -> dict:
    return json.loads(settings.state_file.read_text())["objects"]


# --- a first release ----------------------------------------------------------


def test_a_first_release_creates_everything_in_order(fake, settings):
    report = release(settings)

    assert fake.writes() == FIRST_RELEASE_WRITES
    assert set(actions(report).values()) - {"packed"} <= {
        "create",
        "new version",
        "update",
    }
    recorded = state_of(settings)
    deployment = recorded["deployment"]
    assert deployment["id"] in fake.deployments
    assert deployment["association_id_column"] == "id"
    assert recorded["model_version"]["id"] in fake.model_versions


def test_the_environment_zip_holds_the_context_at_its_root(fake, settings, project):
    (project / "environment" / ".env").write_text("SECRET=1\n")
    release(settings)

    (upload,) = fake.calls_to("POST", r"executionEnvironments/[^/]+/versions/")
    (field, filename, content) = upload.files[0]
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert field == "docker_context"
    assert filename == "environment.zip"
    assert names == [
        "Dockerfile",
        "requirements.txt",
        "start_server.sh",
        "sub/extra.txt",
    ]
    assert content == (project / "environment.zip").read_bytes()
    assert "drtool-context-sha256: " in upload.form["description"]


def test_the_model_is_created_as_unstructured_binary(fake, settings):
    release(settings)

    (create,) = fake.calls_to("POST", "customModels/")
    assert create.json == {
        "customModelType": "inference",
        "name": "test-model",
        "description": "",
        "language": "python",
        "targetType": "Binary",
        "targetName": "covid19",
        "isUnstructuredModelKind": True,
        "positiveClassLabel": "1",
        "negativeClassLabel": "0",
    }


def test_plain_unstructured_stays_a_choice(fake, project):
    kind = "  memory_mb: 512\n  datarobot_kind: unstructured"
    config = fake.config.replace("  memory_mb: 512", kind)
    (project / "config.yaml").write_text(config)
    release(load_settings(project / "config.yaml"))

    (create,) = fake.calls_to("POST", "customModels/")
    assert create.json["targetType"] == "Unstructured"
    assert "isUnstructuredModelKind" not in create.json


def test_the_model_version_uploads_exactly_the_selected_files(fake, settings, project):
    (project / "model" / ".env").write_text("DATAROBOT_API_TOKEN=x\n")
    (project / "model" / "__pycache__").mkdir()
    (project / "model" / "__pycache__" / "custom.cpython-311.pyc").write_bytes(b"\0")
    report = release(settings)

    (upload,) = fake.calls_to("POST", r"customModels/[^/]+/versions/")
    paths = [v for k, v in upload.form.items() if k.startswith("filePath")]
    assert paths == ["custom.py", "utils/__init__.py", "utils/helpers.py"]
    files = fake.model_files[upload_version_id(fake)]
    assert files["utils/helpers.py"] == b"VALUE = 1\n"
    environment_version = next(
        s for s in report.steps if s.object == "environment version"
    )
    assert upload.form["baseEnvironmentVersionId"] == environment_version.id
    assert upload.form["maximumMemory"] == str(512 * 1024 * 1024)
    assert upload.form["networkEgressPolicy"] == "NONE"
    assert upload.form["replicas"] == "1"


def upload_version_id(fake) -> str:
    (version_id,) = fake.model_versions
    return version_id


def test_the_registration_deployment_and_association_bodies(fake, settings):
    release(settings)

    (version_id,) = fake.model_versions
    (register,) = fake.calls_to("POST", "modelPackages/fromCustomModelVersion/")
    assert register.json["customModelVersionId"] == version_id
    assert register.json["registeredModelName"] == "test-registered"
    (deploy,) = fake.calls_to("POST", "deployments/fromModelPackage/")
    (package_id,) = fake.registered_versions
    assert deploy.json == {
        "modelPackageId": package_id,
        "label": "Test deployment",
        "importance": "LOW",
    }
    (association,) = fake.calls_to("PATCH", r"deployments/[^/]+/settings/")
    assert association.json == {
        "associationId": {"columnNames": ["id"], "requiredInPredictionRequests": False}
    }


def test_each_step_has_an_id_and_a_link(fake, settings):
    report = release(settings)

    for step in report.steps[1:]:
        assert step.id, step
        assert step.link.startswith(f"{fake.ui}/"), step
    deployment = next(s for s in report.steps if s.object == "deployment")
    assert deployment.link == f"{fake.ui}/deployments/{deployment.id}/overview"
    assert report.endpoint == fake.endpoint


# --- later releases -----------------------------------------------------------


def test_a_second_release_with_nothing_changed_makes_no_write_call(fake, settings):
    release(settings)
    before = len(fake.calls)

    report = release(settings)

    assert [c.method for c in fake.calls[before:]] == ["GET"] * (
        len(fake.calls) - before
    )
    assert set(actions(report).values()) == {"packed", "unchanged"}


def test_a_changed_model_file_makes_a_version_test_registration_replacement(
    fake, settings, project
):
    release(settings)
    first_package = state_of(settings)["deployment"]["model_package_id"]
    before = len(fake.writes())
    (project / "model" / "utils" / "helpers.py").write_text("VALUE = 2\n")

    report = release(settings)

    assert fake.writes()[before:] == NEW_MODEL_VERSION_WRITES
    version = next(s for s in report.steps if s.object == "model version")
    assert version.reason == "files changed: utils/helpers.py (modified)"
    deployment = state_of(settings)["deployment"]
    assert deployment["model_package_id"] != first_package
    served = fake.deployments[deployment["id"]]["modelPackage"]["id"]
    assert served == deployment["model_package_id"]


def test_a_changed_environment_makes_a_new_environment_version_too(
    fake, settings, project
):
    release(settings)
    before = len(fake.writes())
    (project / "environment" / "requirements.txt").write_text(
        "datarobot-drum==1.18.2\n"
    )

    report = release(settings)

    expected = [
        ("POST", "executionEnvironments/{id}/versions/"),
        *NEW_MODEL_VERSION_WRITES,
    ]
    assert fake.writes()[before:] == expected
    steps = {s.object: s for s in report.steps}
    assert steps["environment version"].reason == (
        "files changed: requirements.txt (modified)"
    )
    assert "a new environment version" in steps["model version"].reason


def test_changed_version_settings_make_a_new_model_version(fake, project):
    release(load_settings(project / "config.yaml"))
    config = fake.config.replace("memory_mb: 512", "memory_mb: 1024")
    (project / "config.yaml").write_text(config)

    report = release(load_settings(project / "config.yaml"))

    version = next(s for s in report.steps if s.object == "model version")
    assert version.action == "new version"
    assert version.reason == "settings changed: memory_mb 512 -> 1024"


def test_a_reverted_context_reuses_the_version_built_from_it(fake, settings, project):
    requirements = project / "environment" / "requirements.txt"
    original = requirements.read_text()
    release(settings)
    requirements.write_text("changed\n")
    release(settings)
    requirements.write_text(original)
    before = len(fake.writes())

    report = release(settings)

    assert ("POST", "executionEnvironments/{id}/versions/") not in fake.writes()[
        before:
    ]
    assert actions(report)["environment version"] == "unchanged"


def test_a_model_with_requirements_gets_a_dependency_build(fake, settings, project):
    (project / "model" / "requirements.txt").write_text("pillow==11.0\n")

    report = release(settings)

    assert ("POST", "customModels/{id}/versions/{id}/dependencyBuild/") in fake.writes()
    assert actions(report)["dependency build"] == "create"
    assert state_of(settings)["dependency_build"]["status"] == "success"


# --- objects gone from the server, and a lost state file ----------------------


def test_a_deployment_deleted_on_the_server_is_recreated(fake, settings):
    release(settings)
    old = state_of(settings)["deployment"]["id"]
    del fake.deployments[old]

    report = release(settings)

    deployment = next(s for s in report.steps if s.object == "deployment")
    assert deployment.action == "create"
    assert f"the recorded deployment {old} no longer exists" in deployment.reason
    assert state_of(settings)["deployment"]["id"] != old


def test_a_model_deleted_on_the_server_is_recreated_with_what_follows(fake, settings):
    release(settings)
    del fake.models[state_of(settings)["model"]["id"]]

    report = release(settings)

    assert actions(report)["model"] == "create"
    assert actions(report)["model version"] == "new version"
    assert actions(report)["deployment"] == "replace"
    assert actions(report)["environment"] == "unchanged"


def test_a_lost_state_file_is_rebuilt_from_the_server(fake, settings):
    release(settings)
    settings.state_file.unlink()
    before = len(fake.writes())

    report = release(settings)

    writes = fake.writes()[before:]
    assert ("POST", "executionEnvironments/") not in writes
    assert ("POST", "executionEnvironments/{id}/versions/") not in writes
    assert ("POST", "customModels/") not in writes
    assert ("POST", "deployments/fromModelPackage/") not in writes
    # Model files cannot be compared with the server's: a new version, replaced.
    assert actions(report)["model version"] == "new version"
    assert actions(report)["deployment"] == "replace"
    assert len(fake.deployments) == 1


# --- dry run ------------------------------------------------------------------


def test_a_dry_run_makes_no_write_call_and_says_why(fake, settings, project):
    release(settings)
    state_before = settings.state_file.read_text()
    (project / "model" / "custom.py").write_text("# changed\n")
    (project / "model" / "new.py").write_text("")
    before = len(fake.calls)

    report = run_release(settings, dry_run=True, target="remote")

    assert {c.method for c in fake.calls[before:]} == {"GET"}
    assert settings.state_file.read_text() == state_before
    steps = {s.object: s for s in report.steps}
    assert steps["model version"].action == "new version"
    assert steps["model version"].reason == (
        "files changed: custom.py (modified), new.py (added)"
    )
    assert steps["deployment"].action == "replace"
    assert report.dry_run and report.server_checked


def test_a_first_dry_run_plans_to_create_everything(fake, settings, project):
    report = run_release(settings, dry_run=True, target="remote")

    assert fake.writes() == []
    assert not (project / "environment.zip").exists()
    assert actions(report)["environment"] == "create"
    assert actions(report)["deployment"] == "create"


def test_a_dry_run_without_credentials_plans_from_the_state_file(
    fake, settings, project, monkeypatch
):
    release(settings)
    (project / "model" / "custom.py").write_text("# changed\n")
    monkeypatch.delenv("DATAROBOT_API_TOKEN")
    before = len(fake.calls)

    report = run_release(settings, dry_run=True, target="remote")

    assert len(fake.calls) == before
    assert not report.server_checked
    assert "could not be checked against the server" in report.notes[0]
    assert actions(report)["model version"] == "new version"
    assert actions(report)["environment version"] == "unchanged"


# --- locking ------------------------------------------------------------------


def test_a_second_run_on_the_same_state_refuses_to_start(fake, settings):
    with StateLock(settings.state_file), pytest.raises(LockedError, match="another"):
        release(settings)
    assert fake.calls == []


def test_the_lock_is_released_after_a_run(fake, settings):
    release(settings)
    assert not Path(f"{settings.state_file}.lock").exists()


def test_runtime_parameters_are_sent_and_dropped_ones_unset(fake, project):
    parameters = (
        "  runtime_parameters:\n"
        "    THRESHOLD: 0.5\n"
        "    MODE: fast\n"
        "    VERBOSE: true\n"
        "    API_KEY: {type: credential, value: cred-1}\n"
    )
    config = fake.config.replace("  replicas: 1\n", f"  replicas: 1\n{parameters}")
    (project / "config.yaml").write_text(config)
    release(load_settings(project / "config.yaml"))
    (project / "config.yaml").write_text(config.replace("    MODE: fast\n", ""))

    report = release(load_settings(project / "config.yaml"))

    first, second = fake.calls_to("POST", r"customModels/[^/]+/versions/")
    assert json.loads(first.form["runtimeParameterValues"]) == [
        {"fieldName": "API_KEY", "type": "credential", "value": "cred-1"},
        {"fieldName": "MODE", "type": "string", "value": "fast"},
        {"fieldName": "THRESHOLD", "type": "numeric", "value": 0.5},
        {"fieldName": "VERBOSE", "type": "boolean", "value": True},
    ]
    sent = json.loads(second.form["runtimeParameterValues"])
    assert {"fieldName": "MODE", "type": "string", "value": None} in sent
    version = next(s for s in report.steps if s.object == "model version")
    assert version.reason.startswith("settings changed: runtime_parameters")
