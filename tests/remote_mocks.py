"""Fake DataRobot answers for the remote tests, on hosts `responses` intercepts.

Nothing here can reach a network: every URL is on ``dr.test`` or ``pred.test``,
and a request `responses` does not know fails with ConnectionError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses

from drtool.settings import Settings, load_settings

ENDPOINT = "https://dr.test/api/v2"
PREDICTION_SERVER = "https://pred.test"
TOKEN = "tok-SECRET-7f3a9c"
DATAROBOT_KEY = "key-SECRET-21b8e4"
DEPLOYMENT_ID = "65f0aa00bb11cc22dd33ee44"
DEPLOYMENT_URL = f"{ENDPOINT}/deployments/{DEPLOYMENT_ID}/"
SECRETS = (TOKEN, DATAROBOT_KEY)


def use_fake_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point drtool.credentials at the fake endpoint, and at nothing else."""
    monkeypatch.setenv("DATAROBOT_API_TOKEN", TOKEN)
    monkeypatch.setenv("DATAROBOT_ENDPOINT", ENDPOINT)
    monkeypatch.delenv("DATAROBOT_CONFIG_FILE", raising=False)
    # No real ~/.config/datarobot/drconfig.yaml is read.
    monkeypatch.setenv("HOME", str(home))


def write_config(folder: Path, extra: str = "") -> Path:
    """Write a config.yaml for the remote tests and return its path."""
    (folder / "data").mkdir(exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(
        f"model:\n  class_labels: ['0', '1']\ndata:\n  dir: {folder / 'data'}\n" + extra
    )
    return config


def settings_for(folder: Path, extra: str = "") -> Settings:
    return load_settings(write_config(folder, extra))


def deployment_json(serverless: bool = False, key: str | None = DATAROBOT_KEY) -> dict:
    """Return a deployment as GET deployments/{id}/ answers it."""
    server: dict[str, Any] = {"id": "ps1", "url": PREDICTION_SERVER}
    if key is not None:
        server["datarobot-key"] = key
    document: dict[str, Any] = {
        "id": DEPLOYMENT_ID,
        "label": "drtool deployment",
        "defaultPredictionServer": server,
        "predictionEnvironment": {"id": "pe1", "name": "env", "platform": "aws"},
    }
    if serverless:
        document.pop("defaultPredictionServer")
        document["predictionEnvironment"]["platform"] = "datarobotServerless"
    return document


def mock_deployment(mock: responses.RequestsMock, **kwargs: Any) -> None:
    mock.get(DEPLOYMENT_URL, json=deployment_json(**kwargs))


def sent_ids(request: Any) -> list[str]:
    """Return the ids of a prediction request's CSV body."""
    lines = request.body.decode().splitlines()[1:]
    return [line.split(",")[0] for line in lines]


def prediction_answer(request: Any) -> tuple[int, dict[str, str], str]:
    """Answer a prediction request as model/custom.py does: every row label 1."""
    rows = [
        {"id": i, "label": "1", "probabilities": {"0": 0.1, "1": 0.9}}
        for i in sent_ids(request)
    ]
    return 200, {"Content-Type": "application/json"}, json.dumps({"predictions": rows})
