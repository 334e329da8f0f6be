"""A small DataRobot in memory, for the real SDK to talk to through `responses`.

Objects live in dicts; every answer has the JSON shape the datarobot 3.20 SDK
parses (the minimal keys of datarobot_api.md section 10.3). Every request is
recorded as a ``Call`` with its parsed body, so tests assert on what was sent
and on which writes (non-GET requests) happened.

Knobs a test sets:
- ``build_polls`` / ``test_polls``: how many polls answer "still running";
- ``build_outcome``, ``dependency_outcome``, ``test_outcome``, ``test_checks``;
- ``validation``: the answer to a replacement's validation;
- ``falls_back``: a replacement that leaves the old package in place;
- ``reject_with``: 401 or 403 on every request;
- ``fail(method, pattern, status, times)``: error answers before normal ones;
- ``interrupt_before_write(n)``: raise ``Interrupted`` instead of the n-th
  write (1-based), as if the process died between two steps;
- ``interrupt_on(method, pattern, skip, served)``: raise ``Interrupted`` on a
  request after ``skip`` matching ones (a death in the middle of a wait); with
  ``served``, after the server acted on it (the answer never arrived).

The fixtures at the end (``project``, ``fake``, ``settings``) are shared by the
release tests through ``pytest_plugins``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from datarobot import client as dr_client
from requests_toolbelt.multipart.decoder import MultipartDecoder

from drtool.release import waiting
from drtool.settings import Settings, load_settings

ENDPOINT = "https://dr.test/api/v2"
UI = "https://dr.test"
TOKEN = "tok-7f3c0e9a5b1d-do-not-leak"
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
NOW = "2025-01-01T00:00:00.000000Z"

Answer = tuple[int, dict[str, str], str]

CONFIG = """\
environment:
  name: test-env
model:
  name: test-model
  target_name: covid19
  class_labels: ["0", "1"]
  memory_mb: 512
  replicas: 1
deployment:
  label: Test deployment
  association_id_column: id
release:
  registered_model_name: test-registered
  timeouts:
    environment_build: 600
    dependency_build: 600
    model_test: 600
    deployment: 600
    poll_interval: 5
"""


class Interrupted(BaseException):  # noqa: N818 - reads as what happened
    """The process 'died' here (not an Exception: nothing may catch it)."""


@dataclass
class Call:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    # (field name, file name, content) of each uploaded file, in order.
    files: list[tuple[str, str, bytes]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        return self.method != "GET"


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int


class FakeDataRobot:
    """DataRobot's REST API for one release flow, kept in memory."""

    # For tests, which reach this module only through pytest_plugins (so that
    # pytest can rewrite its asserts) and so never import its names.
    endpoint = ENDPOINT
    ui = UI
    token = TOKEN
    config = CONFIG
    Interrupted = Interrupted

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.calls: list[Call] = []
        self.environments: dict[str, dict[str, Any]] = {}
        self.environment_versions: dict[str, dict[str, Any]] = {}
        self.contexts: dict[str, bytes] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.model_versions: dict[str, dict[str, Any]] = {}
        self.model_files: dict[str, dict[str, bytes]] = {}
        self.dependency_builds: dict[str, dict[str, Any]] = {}
        self.tests: dict[str, dict[str, Any]] = {}
        self.registered_models: dict[str, dict[str, Any]] = {}
        self.registered_versions: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.deployment_settings: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, str] = {}
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)

        self.build_polls = 1
        self.build_outcome = "success"
        self.dependency_outcome = "success"
        self.test_polls = 1
        self.test_outcome = "succeeded"
        self.test_checks: dict[str, dict[str, str]] = {}
        self.validation: dict[str, Any] = {"status": "passing", "message": "ok"}
        self.falls_back = False
        self.reject_with: int | None = None
        self._failures: list[_Failure] = []
        self._interrupt_at: int | None = None
        self._interrupt_on: tuple[str, re.Pattern[str], int] | None = None
        self._interrupt_served = False

        self._routes = self._route_table()
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            mock.add_callback(
                method, re.compile(re.escape(ENDPOINT) + r"/.*"), callback=self._serve
            )

    # --- knobs ----------------------------------------------------------------

    def fail(self, method: str, pattern: str, status: int, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` requests matching ``pattern``."""
        self._failures.append(_Failure(method, re.compile(pattern), status, times))

    def finish_running_jobs(self, after: int = 0) -> None:
        """Let every running build and test end after ``after`` more polls."""
        self._polls = dict.fromkeys(self._polls, after)

    def interrupt_before_write(self, number: int | None) -> None:
        """Raise ``Interrupted`` instead of serving the ``number``-th write."""
        self._interrupt_at = number

    def interrupt_on(
        self, method: str, pattern: str, skip: int = 0, served: bool = False
    ) -> None:
        """Raise ``Interrupted`` on the request after ``skip`` matching ones;
        with ``served``, once the request has had its effect."""
        self._interrupt_on = (method, re.compile(pattern), skip)
        self._interrupt_served = served

    # --- what happened --------------------------------------------------------

    def writes(self) -> list[tuple[str, str]]:
        """Return ``(method, path)`` of every write, ids replaced by ``{id}``."""
        return [(c.method, _generic(c.path)) for c in self.calls if c.is_write]

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and re.fullmatch(pattern, c.path)
        ]

    # --- serving --------------------------------------------------------------

    def _serve(self, request: Any) -> Answer:
        call = _parse(request)
        self._interrupt_before_write(call)
        if not self._interrupt_served:
            self._interrupt_on_match(call)
        answer = self._answer(call)
        if self._interrupt_served:
            self._interrupt_on_match(call)
        return answer

    def _answer(self, call: Call) -> Answer:
        self.calls.append(call)
        if self.reject_with:
            return self.reject_with, JSON, json.dumps({"message": "Invalid API token"})
        failed = self._failure_for(call)
        if failed is not None:
            return failed
        for method, pattern, handler in self._routes:
            found = re.fullmatch(pattern, call.path)
            if method == call.method and found:
                return handler(call, *found.groups())
        return 404, JSON, json.dumps({"message": f"no route {call.method} {call.path}"})

    def _interrupt_before_write(self, call: Call) -> None:
        if call.is_write and self._interrupt_at is not None:
            done = sum(1 for c in self.calls if c.is_write)
            if done + 1 == self._interrupt_at:
                self._interrupt_at = None
                raise Interrupted(f"interrupted before {call.method} {call.path}")

    def _interrupt_on_match(self, call: Call) -> None:
        if self._interrupt_on is not None:
            method, pattern, skip = self._interrupt_on
            if call.method == method and pattern.fullmatch(call.path):
                if skip == 0:
                    self._interrupt_on = None
                    raise Interrupted(f"interrupted at {call.method} {call.path}")
                self._interrupt_on = (method, pattern, skip - 1)

    def _failure_for(self, call: Call) -> Answer | None:
        for failure in self._failures:
            if (
                failure.times > 0
                and failure.method == call.method
                and failure.pattern.fullmatch(call.path)
            ):
                failure.times -= 1
                body = json.dumps({"message": f"failure {failure.status}"})
                return failure.status, JSON, body
        return None

    def _route_table(self) -> list[tuple[str, str, Callable[..., Answer]]]:
        i = r"([^/]+)"
        return [
            ("GET", r"executionEnvironments/", self._list_environments),
            ("POST", r"executionEnvironments/", self._create_environment),
            ("GET", rf"executionEnvironments/{i}/", self._get_environment),
            ("GET", rf"executionEnvironments/{i}/versions/", self._list_env_versions),
            ("POST", rf"executionEnvironments/{i}/versions/", self._create_env_version),
            ("GET", rf"executionEnvironments/{i}/versions/{i}/", self._get_env_version),
            (
                "GET",
                rf"executionEnvironments/{i}/versions/{i}/buildLog/",
                self._build_log,
            ),
            ("GET", r"customModels/", self._list_models),
            ("POST", r"customModels/", self._create_model),
            ("GET", rf"customModels/{i}/", self._get_model),
            ("POST", rf"customModels/{i}/versions/", self._create_model_version),
            ("GET", rf"customModels/{i}/versions/{i}/", self._get_model_version),
            (
                "POST",
                rf"customModels/{i}/versions/{i}/dependencyBuild/",
                self._start_dep,
            ),
            ("GET", rf"customModels/{i}/versions/{i}/dependencyBuild/", self._get_dep),
            (
                "GET",
                rf"customModels/{i}/versions/{i}/dependencyBuildLog/",
                self._dep_log,
            ),
            ("POST", r"customModelTests/", self._create_test),
            ("GET", r"customModelTests/", self._list_tests),
            ("GET", rf"customModelTests/{i}/", self._get_test),
            ("GET", rf"customModelTests/{i}/tail/", self._test_tail),
            ("GET", rf"status/{i}/", self._status),
            ("POST", r"modelPackages/fromCustomModelVersion/", self._register),
            ("GET", r"registeredModels/", self._list_registered),
            ("GET", rf"registeredModels/{i}/", self._get_registered),
            ("GET", rf"registeredModels/{i}/versions/", self._list_registered_versions),
            (
                "GET",
                rf"registeredModels/{i}/versions/{i}/",
                self._get_registered_version,
            ),
            ("POST", r"deployments/fromModelPackage/", self._create_deployment),
            ("GET", r"deployments/", self._list_deployments),
            ("GET", rf"deployments/{i}/", self._get_deployment),
            ("POST", rf"deployments/{i}/model/validation/", self._validate),
            ("PATCH", rf"deployments/{i}/model/", self._replace),
            ("GET", rf"deployments/{i}/settings/", self._get_settings),
            ("PATCH", rf"deployments/{i}/settings/", self._patch_settings),
        ]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"

    def _job(self, resource_path: str, status: int = 202, body: Any = None) -> Answer:
        """Answer an asynchronous job: 202 and a status URL that resolves at once."""
        status_id = self._new_id("status")
        self.statuses[status_id] = resource_path
        headers = {**JSON, "Location": f"{ENDPOINT}/status/{status_id}/"}
        return status, headers, json.dumps(body or {})

    def _status(self, call: Call, status_id: str) -> Answer:
        target = self.statuses.get(status_id)
        if target is None:
            return _missing("status")
        headers = {**JSON, "Location": f"{ENDPOINT}/{target}"}
        return 303, headers, json.dumps({"status": "COMPLETED"})

    # --- environments ---------------------------------------------------------

    def _list_environments(self, call: Call) -> Answer:
        wanted = _first(call.query, "searchFor")
        found = [e for e in self.environments.values() if wanted in e["name"]]
        return _page(found)

    def _create_environment(self, call: Call) -> Answer:
        body = call.json or {}
        environment = {
            "id": self._new_id("env"),
            "name": body["name"],
            "description": body.get("description", ""),
            "programmingLanguage": body.get("programmingLanguage", "other"),
            "created": NOW,
        }
        self.environments[environment["id"]] = environment
        return _ok(environment, 201)

    def _get_environment(self, call: Call, env_id: str) -> Answer:
        return _ok_or_missing(self.environments.get(env_id), "environment")

    def _list_env_versions(self, call: Call, env_id: str) -> Answer:
        versions = [
            v
            for v in self.environment_versions.values()
            if v["environmentId"] == env_id
        ]
        return _page(versions)

    def _create_env_version(self, call: Call, env_id: str) -> Answer:
        if env_id not in self.environments:
            return _missing("environment")
        version = {
            "id": self._new_id("envver"),
            "environmentId": env_id,
            "buildStatus": "processing",
            "imageId": self._new_id("image"),
            "label": call.form.get("label", ""),
            "description": call.form.get("description", ""),
            "created": NOW,
        }
        self.environment_versions[version["id"]] = version
        self.contexts[version["id"]] = next(c for f, _, c in call.files)
        self._polls[version["id"]] = self.build_polls
        return _ok({"id": version["id"]}, 202)

    def _get_env_version(self, call: Call, env_id: str, version_id: str) -> Answer:
        version = self.environment_versions.get(version_id)
        if version is None or version["environmentId"] != env_id:
            return _missing("environment version")
        if self._progressed(version_id) and version["buildStatus"] == "processing":
            version["buildStatus"] = self.build_outcome
        return _ok(version)

    def _build_log(self, call: Call, env_id: str, version_id: str) -> Answer:
        error = "" if self.build_outcome == "success" else "pip failed"
        log = "\n".join(f"step {n}" for n in range(100)) + "\nERROR: no such package"
        return _ok({"log": log, "error": error})

    # --- models ---------------------------------------------------------------

    def _list_models(self, call: Call) -> Answer:
        wanted = _first(call.query, "searchFor")
        return _page([m for m in self.models.values() if wanted in m["name"]])

    def _create_model(self, call: Call) -> Answer:
        body = call.json or {}
        model = {
            "id": self._new_id("model"),
            "name": body["name"],
            "description": body.get("description") or "",
            "createdBy": "tester",
            "created": NOW,
            "updated": NOW,
            "language": body.get("language", ""),
            "trainingDataAssignmentInProgress": False,
            "deploymentsCount": 0,
            "targetType": body["targetType"],
            "customModelType": "inference",
        }
        for key in ("targetName", "positiveClassLabel", "negativeClassLabel"):
            if key in body:
                model[key] = body[key]
        self.models[model["id"]] = model
        return _ok(model, 201)

    def _get_model(self, call: Call, model_id: str) -> Answer:
        return _ok_or_missing(self.models.get(model_id), "custom model")

    def _create_model_version(self, call: Call, model_id: str) -> Answer:
        if model_id not in self.models:
            return _missing("custom model")
        uploads = _uploads(call)
        version_id = self._new_id("modelver")
        count = sum(
            1 for v in self.model_versions.values() if v["customModelId"] == model_id
        )
        version = {
            "id": version_id,
            "customModelId": model_id,
            "versionMajor": count + 1,
            "versionMinor": 0,
            "isFrozen": False,
            "items": [
                {
                    "id": f"item{n}",
                    "fileName": p.rsplit("/", 1)[-1],
                    "filePath": p,
                    "fileSource": "local",
                    "created": NOW,
                }
                for n, p in enumerate(uploads)
            ],
            "baseEnvironmentId": call.form.get("baseEnvironmentId"),
            "baseEnvironmentVersionId": call.form.get("baseEnvironmentVersionId"),
            "networkEgressPolicy": call.form.get("networkEgressPolicy", "NONE"),
            "dependencies": _dependencies(uploads.get("requirements.txt")),
            "created": NOW,
        }
        for key in ("maximumMemory", "replicas"):
            if key in call.form:
                version[key] = int(call.form[key])
        self.model_versions[version_id] = version
        self.model_files[version_id] = uploads
        return _ok(version, 201)

    def _get_model_version(self, call: Call, model_id: str, version_id: str) -> Answer:
        version = self.model_versions.get(version_id)
        if version is None or version["customModelId"] != model_id:
            return _missing("custom model version")
        return _ok(version)

    def _start_dep(self, call: Call, model_id: str, version_id: str) -> Answer:
        build = {"buildStatus": "submitted", "buildStart": NOW, "buildEnd": None}
        self.dependency_builds[version_id] = build
        self._polls[f"dep-{version_id}"] = self.build_polls
        return _ok(build, 202)

    def _get_dep(self, call: Call, model_id: str, version_id: str) -> Answer:
        build = self.dependency_builds.get(version_id)
        if build is None:
            message = f"Custom model version {version_id} build has not been started"
            return 422, JSON, json.dumps({"message": message})
        if (
            self._progressed(f"dep-{version_id}")
            and build["buildStatus"] == "submitted"
        ):
            build["buildStatus"] = self.dependency_outcome
            build["buildEnd"] = NOW
        return _ok(build)

    def _dep_log(self, call: Call, model_id: str, version_id: str) -> Answer:
        return 200, TEXT, "Collecting tensorflow\nERROR: No matching distribution"

    # --- tests ----------------------------------------------------------------

    def _create_test(self, call: Call) -> Answer:
        body = call.json or {}
        test_id = self._new_id("test")
        self.tests[test_id] = {
            "id": test_id,
            "customModelImageId": body["customModelVersionId"],
            "imageType": "customModelVersion",
            "overallStatus": "in_progress",
            "createdBy": "tester",
            "created": NOW,
            "testingStatus": _checks("in_progress", {}),
            "customModelId": body["customModelId"],
            "body": body,
        }
        self._polls[test_id] = self.test_polls
        return self._job(f"customModelTests/{test_id}/")

    def _list_tests(self, call: Call) -> Answer:
        model_id = _first(call.query, "customModelId")
        mine = [t for t in self.tests.values() if t["customModelId"] == model_id]
        return _page([_public_test(t) for t in reversed(mine)])

    def _get_test(self, call: Call, test_id: str) -> Answer:
        test = self.tests.get(test_id)
        if test is None:
            return _missing("custom model test")
        if self._progressed(test_id) and test["overallStatus"] == "in_progress":
            test["overallStatus"] = self.test_outcome
            test["testingStatus"] = _checks("succeeded", self.test_checks)
        return _ok(_public_test(test))

    def _test_tail(self, call: Call, test_id: str) -> Answer:
        return 200, TEXT, "model loaded\nTraceback: ValueError: bad input\n"

    # --- registry -------------------------------------------------------------

    def _register(self, call: Call) -> Answer:
        body = call.json or {}
        registered_id = body.get("registeredModelId") or self._new_registered(
            body["registeredModelName"]
        )
        registered = self.registered_models[registered_id]
        registered["lastVersionNum"] += 1
        version = {
            "id": self._new_id("package"),
            "registeredModelId": registered_id,
            "registeredModelVersion": registered["lastVersionNum"],
            "name": body.get("name") or "version",
            "modelId": body["customModelVersionId"],
            "modelExecutionType": "custom_inference_model",
            "isArchived": False,
            "importMeta": {},
            "sourceMeta": {},
            "modelKind": {},
            "target": {},
            "modelDescription": {"description": body.get("description", "")},
            "datasets": {},
            "timeseries": {},
            "isDeprecated": False,
            "permissions": [],
            "activeDeploymentCount": 0,
            "buildStatus": "complete",
        }
        self.registered_versions[version["id"]] = version
        return _ok(version, 201)

    def _new_registered(self, name: str) -> str:
        registered = {
            "id": self._new_id("regmodel"),
            "name": name,
            "description": "",
            "createdAt": NOW,
            "modifiedAt": NOW,
            "target": {},
            "createdBy": {},
            "lastVersionNum": 0,
            "isArchived": False,
        }
        self.registered_models[registered["id"]] = registered
        return str(registered["id"])

    def _list_registered(self, call: Call) -> Answer:
        wanted = _first(call.query, "search")
        return _page(
            [r for r in self.registered_models.values() if wanted in r["name"]]
        )

    def _get_registered(self, call: Call, registered_id: str) -> Answer:
        return _ok_or_missing(
            self.registered_models.get(registered_id), "registered model"
        )

    def _list_registered_versions(self, call: Call, registered_id: str) -> Answer:
        versions = [
            v
            for v in self.registered_versions.values()
            if v["registeredModelId"] == registered_id
        ]
        return _page(versions)

    def _get_registered_version(
        self, call: Call, registered_id: str, version_id: str
    ) -> Answer:
        version = self.registered_versions.get(version_id)
        if version is None or version["registeredModelId"] != registered_id:
            return _missing("registered model version")
        return _ok(version)

    # --- deployments ----------------------------------------------------------

    def _create_deployment(self, call: Call) -> Answer:
        body = call.json or {}
        package = self.registered_versions[body["modelPackageId"]]
        deployment = {
            "id": self._new_id("deployment"),
            "label": body["label"],
            "description": body.get("description"),
            "status": "active",
            "importance": body.get("importance"),
            "modelPackage": _package_ref(package),
            "model": {"id": package["modelId"], "type": "custom"},
        }
        self.deployments[deployment["id"]] = deployment
        self.deployment_settings[deployment["id"]] = {
            "associationId": {"columnNames": [], "requiredInPredictionRequests": False},
            "predictionIntervals": {"enabled": False, "percentiles": []},
        }
        return self._job(
            f"deployments/{deployment['id']}/", body={"id": deployment["id"]}
        )

    def _list_deployments(self, call: Call) -> Answer:
        wanted = _first(call.query, "search").lower()
        found = [d for d in self.deployments.values() if wanted in d["label"].lower()]
        return _page(found)

    def _get_deployment(self, call: Call, deployment_id: str) -> Answer:
        return _ok_or_missing(self.deployments.get(deployment_id), "deployment")

    def _validate(self, call: Call, deployment_id: str) -> Answer:
        return _ok({"checks": {}, **self.validation})

    def _replace(self, call: Call, deployment_id: str) -> Answer:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            return _missing("deployment")
        package = self.registered_versions[(call.json or {})["modelPackageId"]]
        if not self.falls_back:
            deployment["modelPackage"] = _package_ref(package)
        return self._job(f"deployments/{deployment_id}/")

    def _get_settings(self, call: Call, deployment_id: str) -> Answer:
        return _ok_or_missing(self.deployment_settings.get(deployment_id), "settings")

    def _patch_settings(self, call: Call, deployment_id: str) -> Answer:
        settings = self.deployment_settings.get(deployment_id)
        if settings is None:
            return _missing("deployment")
        settings.update(call.json or {})
        return self._job(f"deployments/{deployment_id}/settings/")

    # --- helpers --------------------------------------------------------------

    def _progressed(self, key: str) -> bool:
        """Count one poll of a running job; tell whether it has now finished."""
        left = self._polls.get(key, 0)
        self._polls[key] = left - 1
        return left <= 0


def _parse(request: Any) -> Call:
    parts = urlsplit(request.url)
    path = parts.path[len(urlsplit(ENDPOINT).path) + 1 :]
    call = Call(
        method=request.method,
        path=path,
        query=parse_qs(parts.query),
        headers=dict(request.headers),
    )
    content_type = request.headers.get("Content-Type", "")
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    if body and content_type.startswith("multipart/"):
        _read_multipart(call, body, content_type)
    elif body:
        call.json = json.loads(body)
    return call


def _read_multipart(call: Call, body: bytes, content_type: str) -> None:
    for part in MultipartDecoder(body, content_type).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        field_name = name.group(1) if name else ""
        if filename:
            call.files.append((field_name, filename.group(1), part.content))
        else:
            value = part.content.decode()
            # Repeated fields (filePath) keep every value, in order.
            key = field_name
            while key in call.form:
                key += "+"
            call.form[key] = value


def _uploads(call: Call) -> dict[str, bytes]:
    """Pair each uploaded file with the filePath part that follows it."""
    paths = [v for k, v in call.form.items() if k.rstrip("+") == "filePath"]
    contents = [content for name, _, content in call.files if name == "file"]
    return dict(zip(paths, contents, strict=True))


def _dependencies(requirements: bytes | None) -> list[dict[str, Any]]:
    if not requirements:
        return []
    lines = [
        (n, line.strip())
        for n, line in enumerate(requirements.decode().splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]
    return [
        {
            "packageName": re.split(r"[<>=!~ ]", line)[0],
            "constraints": [],
            "line": line,
            "lineNumber": n,
        }
        for n, line in lines
    ]


def _checks(status: str, overrides: dict[str, dict[str, str]]) -> dict[str, Any]:
    names = (
        "error_check",
        "null_value_imputation",
        "long_running_service",
        "side_effects",
    )
    return {
        name: overrides.get(name, {"status": status, "message": ""}) for name in names
    }


def _public_test(test: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in test.items() if k not in ("body", "customModelId")}


def _package_ref(package: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": package["id"],
        "name": package["name"],
        "registeredModelId": package["registeredModelId"],
    }


def _page(items: list[dict[str, Any]]) -> Answer:
    body = {"count": len(items), "next": None, "previous": None, "data": items}
    return 200, JSON, json.dumps(body)


def _ok(body: Any, status: int = 200) -> Answer:
    return status, JSON, json.dumps(body)


def _ok_or_missing(item: dict[str, Any] | None, what: str) -> Answer:
    return _ok(item) if item is not None else _missing(what)


def _missing(what: str) -> Answer:
    return 404, JSON, json.dumps({"message": f"{what} not found"})


def _first(query: dict[str, list[str]], key: str) -> str:
    return (query.get(key) or [""])[0]


def _generic(path: str) -> str:
    """Replace the fake's ids in a path by ``{id}``, for comparisons."""
    return re.sub(r"(?<=/)[a-z]+\d{4}(?=/)", "{id}", path)


# --- fixtures ---------------------------------------------------------------


def make_project(root: Path, config: str = CONFIG) -> Path:
    """Write a small project: config.yaml, environment/ and model/."""
    environment = root / "environment"
    (environment / "sub").mkdir(parents=True)
    (environment / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (environment / "requirements.txt").write_text("datarobot-drum==1.18.1\n")
    (environment / "start_server.sh").write_text("#!/bin/sh\nexec drum server\n")
    (environment / "start_server.sh").chmod(0o755)
    (environment / "sub" / "extra.txt").write_text("extra\n")
    model = root / "model"
    (model / "utils").mkdir(parents=True)
    (model / "custom.py").write_text("def score_unstructured(m, d, **k):\n    pass\n")
    (model / "utils" / "__init__.py").write_text("")
    (model / "utils" / "helpers.py").write_text("VALUE = 1\n")
    (root / "config.yaml").write_text(config)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def credentials_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for the fake endpoint, and no drconfig.yaml of the user's."""
    monkeypatch.setenv("DATAROBOT_API_TOKEN", TOKEN)
    monkeypatch.setenv("DATAROBOT_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("DATAROBOT_CONFIG_FILE", "DATAROBOT_SSL_VERIFY", "DRTOOL_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real sleeping: the SDK's waiters and ours return at once."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    monkeypatch.setattr(waiting, "sleep", lambda seconds: None)


@pytest.fixture
def sdk_client() -> Iterator[None]:
    """Put the SDK's process-wide client back as it was after the test."""
    before = dr_client._context_client.get(None)
    before_global = dr_client._global_client
    yield
    dr_client._context_client.set(before)  # type: ignore[arg-type]
    dr_client._global_client = before_global


@pytest.fixture
def fake(
    credentials_env: None, no_sleep: None, sdk_client: None
) -> Iterator[FakeDataRobot]:
    """A fake DataRobot; any request to another address fails (strict mock)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeDataRobot(mock)


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "config.yaml")
