"""`drtool release` on the command line: output, JSON, exit codes, secrets."""

from __future__ import annotations

import json
import logging
import zipfile

from click.testing import CliRunner, Result

from drtool.cli import cli
from drtool.release.state import StateLock

pytest_plugins = ["tests.fake_datarobot"]


def invoke(project, *arguments: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(project / "config.yaml"), "release", *arguments]
    )


def test_a_release_prints_a_line_per_step_with_id_and_link(fake, project):
    result = invoke(project)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    deployment = next(line for line in lines if line.startswith("deployment "))
    (deployment_id,) = fake.deployments
    assert "create" in deployment
    assert deployment_id in deployment
    assert f"{fake.ui}/deployments/{deployment_id}/overview" in deployment
    objects = [line.split("  ")[0].strip() for line in lines if line[:1] != " "]
    assert objects == [
        "build",
        "environment",
        "environment version",
        "model",
        "model version",
        "model test",
        "registered model",
        "registered model version",
        "deployment",
        "association id",
    ]


def test_json_prints_one_report(fake, project):
    result = invoke(project, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"] == "remote"
    assert report["endpoint"] == fake.endpoint
    steps = {step["object"]: step for step in report["steps"]}
    assert steps["deployment"]["action"] == "create"
    assert steps["deployment"]["id"] in fake.deployments
    assert steps["model version"]["link"].startswith(f"{fake.ui}/model-registry/")


def test_a_dry_run_says_so_and_changes_nothing(fake, project):
    result = invoke(project, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was changed." in result.stderr
    assert "no environment named 'test-env' yet" in result.stdout
    assert fake.writes() == []


def test_a_failed_test_exits_4_with_its_error(fake, project):
    fake.test_outcome = "failed"
    fake.test_checks = {"error_check": {"status": "failed", "message": "boom"}}

    result = invoke(project)

    assert result.exit_code == 4
    assert result.stderr.startswith("Error: DataRobot's test of model version")
    assert "error_check: boom" in result.stderr


def test_a_failed_build_exits_6(fake, project):
    fake.build_outcome = "failed"

    result = invoke(project)

    assert result.exit_code == 6
    assert "Error: the image build of environment version" in result.stderr


def test_a_locked_state_exits_1(fake, project):
    with StateLock(project / ".drtool-state.json"):
        result = invoke(project)

    assert result.exit_code == 1
    assert "Error: another drtool release is running" in result.stderr


def test_no_token_exits_1_saying_where_to_put_one(fake, project, monkeypatch):
    monkeypatch.delenv("DATAROBOT_API_TOKEN")

    result = invoke(project)

    assert result.exit_code == 1
    assert "Error: no DataRobot API token found. Set DATAROBOT_API_TOKEN" in (
        result.stderr
    )
    assert fake.calls == []


def test_an_unknown_target_is_a_usage_error(fake, project):
    result = invoke(project, "--target", "elsewhere")

    assert result.exit_code == 2


def test_the_token_is_in_no_output_log_state_or_archive(fake, project, caplog):
    caplog.set_level(logging.DEBUG)
    for folder in ("environment", "model"):
        (project / folder / ".env").write_text(f"DATAROBOT_API_TOKEN={fake.token}\n")
    (project / "model" / "custom.py").write_text("# uses no secret\n")

    first = invoke(project, "--json")
    fake.reject_with = 401
    rejected = invoke(project)

    assert first.exit_code == 0, first.output
    assert rejected.exit_code == 1
    archive = (project / "environment.zip").read_bytes()
    uploaded = [content for c in fake.calls for _, _, content in c.files]
    uploaded += [b"".join(f.values()) for f in fake.model_files.values()]
    for name, text in {
        "output": first.output + rejected.output,
        "log": caplog.text,
        "state": (project / ".drtool-state.json").read_text(),
    }.items():
        assert fake.token not in text, name
    assert fake.token.encode() not in archive
    for content in uploaded:
        assert fake.token.encode() not in content
    with zipfile.ZipFile(project / "environment.zip") as packed:
        assert ".env" not in packed.namelist()
    # The token did go where it belongs: the Authorization header.
    assert fake.calls[0].headers["Authorization"] == f"Token {fake.token}"
