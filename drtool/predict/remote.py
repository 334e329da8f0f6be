"""The remote target: a DataRobot deployment's ``predictionsUnstructured`` route.

Only where the requests go and which headers they carry come from here; the
rows are chunked, sent, retried and journalled by the same ``predict_file`` as
for a local server. The deployment itself is read through the SDK, with the
client and the error translation the release uses (``drtool.release.sdk``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datarobot as dr

from drtool.credentials import get_client, require_credentials
from drtool.errors import ConfigError, RemoteError
from drtool.predict import PredictReport, SendOptions, predict_file
from drtool.predict.targets import Target
from drtool.release.sdk import Remote
from drtool.release.state import recorded_deployment_id
from drtool.settings import Settings

log = logging.getLogger(__name__)

SERVERLESS_PLATFORM = "datarobotServerless"
ROUTE = "predictionsUnstructured"


def predict_remotely(
    settings: Settings,
    deployment_id: str,
    input_path: Path,
    output_path: Path,
    options: SendOptions,
    on_progress: Callable[[int], None] | None = None,
) -> PredictReport:
    """Predict every row of ``input_path`` on deployment ``deployment_id``."""
    target = remote_target(settings, deployment_id)
    return predict_file(
        input_path,
        output_path,
        target,
        settings.model.class_labels,
        options,
        on_progress,
    )


def resolve_deployment_id(settings: Settings, option: str | None = None) -> str:
    """Return the deployment to use: the option, config.yaml, or the release's."""
    if option:
        return option
    if settings.deployment.id:
        return settings.deployment.id
    recorded = recorded_deployment_id(settings)
    if recorded:
        return recorded
    raise ConfigError(
        "no deployment to use. Pass --deployment-id ID, set deployment.id in "
        "config.yaml, or run `drtool release`, which records the deployment it "
        f"makes in {settings.state_file}."
    )


def remote_target(settings: Settings, deployment_id: str) -> Target:
    """Return the prediction target of deployment ``deployment_id``.

    The token goes in ``Authorization: Bearer``, and the prediction server's
    DataRobot-Key, when it has one, in ``DataRobot-Key``: both are secret
    headers, sent and never shown.
    """
    remote = connect(settings)
    deployment = fetch_deployment(remote, deployment_id)
    headers = {"Authorization": f"Bearer {remote.credentials.token.reveal()}"}
    if is_serverless(deployment):
        # Serverless predictions are served by the API itself and need no key.
        url = f"{remote.endpoint}/deployments/{deployment.id}/{ROUTE}"
    else:
        server = _prediction_server(deployment)
        base = str(server["url"]).rstrip("/")
        url = f"{base}/predApi/v1.0/deployments/{deployment.id}/{ROUTE}"
        if server.get("datarobot-key"):
            headers["DataRobot-Key"] = str(server["datarobot-key"])
    log.info("Deployment %s predicts at %s", deployment.id, url)
    return Target(name=f"deployment {deployment.id}", url=url, secret_headers=headers)


def connect(settings: Settings) -> Remote:
    """Install the SDK client for the configured credentials; return both."""
    credentials = require_credentials(settings)
    return Remote(client=get_client(settings), credentials=credentials)


def fetch_deployment(remote: Remote, deployment_id: str) -> dr.Deployment:
    """Read deployment ``deployment_id`` from DataRobot; say so if it is not there."""
    deployment = remote.fetch(
        f"reading deployment {deployment_id}",
        lambda: dr.Deployment.get(deployment_id),
    )
    if deployment is None:
        raise RemoteError(
            f"deployment {deployment_id} does not exist on {remote.endpoint}, or "
            f"this token cannot see it. Check --deployment-id, deployment.id of "
            f"config.yaml, or the deployment `drtool release` recorded."
        )
    return deployment


def is_serverless(deployment: dr.Deployment) -> bool:
    environment = deployment.prediction_environment or {}
    return bool(environment.get("platform") == SERVERLESS_PLATFORM)


def _prediction_server(deployment: dr.Deployment) -> dict[str, Any]:
    server: Any = deployment.default_prediction_server or {}
    if not server.get("url"):
        raise ConfigError(
            f"deployment {deployment.id} has no prediction server and is not "
            f"serverless, so it cannot serve real-time predictions. Deploy it "
            f"with deployment.prediction_server_id or a serverless "
            f"deployment.prediction_environment_id in config.yaml."
        )
    return dict(server)
