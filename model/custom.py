"""DRUM hooks of the chest-CT classifier, an unstructured custom model.

DRUM calls ``load_model`` once per worker and ``score_unstructured`` once per
/predictUnstructured/ request. The work is done in ``utils``: see
utils/scoring.py for the request and response formats, and
model-settings.yaml for the weights and class labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from utils.loading import LoadedModel, load
from utils.scoring import RequestError, score_request


def load_model(code_dir: str) -> LoadedModel:
    """Load the weights named in model-settings.yaml, once."""
    return load(Path(code_dir))


def score_unstructured(
    model: LoadedModel, data: str | bytes, **kwargs: Any
) -> tuple[str, dict[str, str]]:
    """Score a CSV body of images and boxes; answer JSON, one entry per row."""
    try:
        body = score_request(
            model, data, kwargs.get("charset"), mlops=kwargs.get("mlops")
        )
    except RequestError as exc:
        raise http_error(str(exc), status_code=422) from None
    return body, {"mimetype": "application/json"}


def http_error(message: str, status_code: int) -> Exception:
    """Return DRUM's CustomHTTPError, which DRUM answers with that status.

    Imported here rather than at the top so the hooks also run where DRUM is
    absent (unit tests, the training script); there the plain error is kept.
    """
    try:
        from datarobot_drum import CustomHTTPError
    except ImportError:
        return RequestError(message)
    return CustomHTTPError(message, status_code=status_code)
