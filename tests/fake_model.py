"""A tiny DRUM model whose behaviour a test sets, to drive a real `drum server`.

It answers in the same JSON contract as model/custom.py but needs no
TensorFlow, so a server with it is ready in a couple of seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

CUSTOM_PY = """
import csv, io, json, os, time

csv.field_size_limit(2**31 - 1)


def load_model(code_dir):
    with open(os.path.join(code_dir, "behaviour.json")) as handle:
        behaviour = json.load(handle)
    if behaviour.get("fail_load"):
        raise RuntimeError(behaviour["fail_load"])
    if behaviour.get("exit_in_load"):
        # A worker that exits with code 1 is respawned by gunicorn forever.
        os._exit(1)
    return behaviour


def score_unstructured(model, data, **kwargs):
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(data)))
    if model.get("requests_log"):
        with open(model["requests_log"], "a") as log:
            log.write(" ".join(r["id"] for r in rows) + "\\n")
    time.sleep(model.get("delay", 0))
    answers = []
    for row in rows:
        if row["id"] in model.get("reject", []):
            answers.append({"id": row["id"], "error": "rejected by the test model"})
        else:
            answers.append(
                {"id": row["id"], "label": "1", "probabilities": {"0": 0.25, "1": 0.75}}
            )
    return json.dumps({"predictions": answers}), {"mimetype": "application/json"}
"""


def make_fake_model(folder: Path, **behaviour: object) -> Path:
    """Write the fake model into ``folder`` with ``behaviour`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "custom.py").write_text(CUSTOM_PY)
    (folder / "behaviour.json").write_text(json.dumps(behaviour))
    return folder


def write_prepared(path: Path, count: int, image: str = "aGVsbG8=") -> list[str]:
    """Write a prepared_data.csv of ``count`` rows and return their ids."""
    ids = [f"row-{i:05d}" for i in range(count)]
    lines = ["id,img,x1,y1,x2,y2", *(f"{i},{image},0,0,8,8" for i in ids)]
    path.write_text("\n".join(lines) + "\n")
    return ids
