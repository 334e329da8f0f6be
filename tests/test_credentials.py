"""Where the token and endpoint come from, the hidden token, and the SDK client."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import requests
import responses
from datarobot import client as dr_client
from datarobot.errors import ServerError

from drtool.credentials import (
    DEFAULT_ENDPOINT,
    Token,
    find_credentials,
    get_client,
    read_dotenv,
    require_credentials,
    ui_base,
)
from drtool.errors import ConfigError
from drtool.settings import Settings, load_settings

pytest_plugins = ["tests.fake_datarobot"]

EP = "https://dr.test/api/v2"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder, and none of the user's DataRobot variables."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    for name in (
        "DATAROBOT_API_TOKEN",
        "DATAROBOT_ENDPOINT",
        "DATAROBOT_CONFIG_FILE",
        "DATAROBOT_SSL_VERIFY",
    ):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def root(tmp_path: Path, home: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def settings_in(root: Path, endpoint: str = "") -> Settings:
    config = root / "config.yaml"
    config.write_text(f"datarobot:\n  endpoint: {endpoint}\n" if endpoint else "")
    return load_settings(config)


def write_drconfig(path: Path, token: str, endpoint: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"token: {token}"] + ([f"endpoint: {endpoint}"] if endpoint else [])
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the token ----------------------------------------------------------------


def test_a_token_never_shows_itself():
    token = Token("abc-secret")

    assert "abc-secret" not in repr(token)
    assert "abc-secret" not in str(token)
    assert "abc-secret" not in f"{token} {token!r} {token:>20}"
    assert token.reveal() == "abc-secret"
    with pytest.raises(TypeError):
        pickle.dumps(token)


# --- where the token and endpoint come from -----------------------------------


def test_the_environment_comes_first(root, monkeypatch):
    (root / ".env").write_text("DATAROBOT_API_TOKEN=from-dotenv\n")
    monkeypatch.setenv("DATAROBOT_API_TOKEN", "from-env")
    monkeypatch.setenv("DATAROBOT_ENDPOINT", EP)

    found = find_credentials(settings_in(root))

    assert found is not None
    assert found.token.reveal() == "from-env"
    assert found.endpoint == EP
    assert found.token_source == "the environment variable DATAROBOT_API_TOKEN"


def test_a_dotenv_beside_config_yaml_is_read(root):
    (root / ".env").write_text(
        "# DataRobot\n"
        "export DATAROBOT_API_TOKEN='quoted token'\n"
        'DATAROBOT_ENDPOINT="https://dr.test/api/v2"  \n'
        "\n"
        "OTHER=value # a comment\n"
    )

    found = find_credentials(settings_in(root))

    assert found is not None
    assert found.token.reveal() == "quoted token"
    assert found.endpoint == EP
    assert found.token_source == str(root / ".env")
    assert read_dotenv(root / ".env")["OTHER"] == "value"


def test_a_malformed_dotenv_line_is_named_by_number_only(root):
    (root / ".env").write_text("DATAROBOT_API_TOKEN=ok\nthis secret line\n")

    with pytest.raises(ConfigError) as bad:
        find_credentials(settings_in(root))

    assert "line 2: expected KEY=VALUE" in str(bad.value)
    assert "secret" not in str(bad.value)


def test_the_sdk_config_file_is_the_last_resort(root, home):
    write_drconfig(home / ".config/datarobot/drconfig.yaml", "from-drconfig", EP)

    found = find_credentials(settings_in(root))

    assert found is not None
    assert found.token.reveal() == "from-drconfig"
    assert found.endpoint == EP


def test_datarobot_config_file_names_another_sdk_config(root, tmp_path, monkeypatch):
    chosen = write_drconfig(tmp_path / "elsewhere.yaml", "chosen", EP)
    monkeypatch.setenv("DATAROBOT_CONFIG_FILE", str(chosen))

    found = find_credentials(settings_in(root))

    assert found is not None and found.token.reveal() == "chosen"


def test_a_missing_datarobot_config_file_is_an_error(root, tmp_path, monkeypatch):
    monkeypatch.setenv("DATAROBOT_CONFIG_FILE", str(tmp_path / "missing.yaml"))

    with pytest.raises(ConfigError, match="does not exist"):
        find_credentials(settings_in(root))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("env", "https://env.test/api/v2"),
        ("dotenv", "https://dotenv.test/api/v2"),
        ("config", "https://config.test/api/v2"),
        ("drconfig", "https://drconfig.test/api/v2"),
        ("nowhere", DEFAULT_ENDPOINT),
    ],
)
def test_endpoint_precedence(root, home, monkeypatch, where, expected):
    order = ["env", "dotenv", "config", "drconfig", "nowhere"]
    present = order[order.index(where) :]
    monkeypatch.setenv("DATAROBOT_API_TOKEN", "t")
    if "env" in present:
        monkeypatch.setenv("DATAROBOT_ENDPOINT", "https://env.test/api/v2")
    if "dotenv" in present:
        (root / ".env").write_text("DATAROBOT_ENDPOINT=https://dotenv.test/api/v2\n")
    if "drconfig" in present:
        write_drconfig(
            home / ".config/datarobot/drconfig.yaml",
            "t2",
            "https://drconfig.test/api/v2",
        )
    endpoint = "https://config.test/api/v2" if "config" in present else ""

    found = find_credentials(settings_in(root, endpoint))

    assert found is not None and found.endpoint == expected


def test_a_token_meant_for_another_endpoint_is_warned_about(root, home, caplog):
    write_drconfig(
        home / ".config/datarobot/drconfig.yaml", "t", "https://onprem.test/api/v2"
    )

    with caplog.at_level(logging.WARNING):
        found = find_credentials(settings_in(root, EP))

    assert found is not None and found.endpoint == EP
    assert "belongs with https://onprem.test/api/v2" in caplog.text


def test_no_token_anywhere(root):
    settings = settings_in(root)

    assert find_credentials(settings) is None
    with pytest.raises(ConfigError) as missing:
        require_credentials(settings)
    message = str(missing.value)
    assert "DATAROBOT_API_TOKEN" in message
    assert str(root / ".env") in message
    assert "drconfig.yaml" in message
    assert "command line" in message


def test_an_endpoint_that_is_not_a_url_is_refused(root, monkeypatch):
    monkeypatch.setenv("DATAROBOT_API_TOKEN", "t")
    monkeypatch.setenv("DATAROBOT_ENDPOINT", "app.datarobot.com")

    with pytest.raises(ConfigError, match="must be a URL"):
        find_credentials(settings_in(root))


def test_the_ui_base_is_the_endpoint_without_api_v2():
    assert ui_base("https://app.datarobot.com/api/v2/") == "https://app.datarobot.com"
    assert ui_base("https://dr.example/custom") == "https://dr.example/custom"


# --- the client ---------------------------------------------------------------


@pytest.fixture
def client(root, monkeypatch, sdk_client, no_sleep):
    monkeypatch.setenv("DATAROBOT_API_TOKEN", "tok-123")
    monkeypatch.setenv("DATAROBOT_ENDPOINT", EP)
    return get_client(settings_in(root))


def test_get_client_installs_a_client_without_a_request(client):
    assert dr_client.get_client() is client
    assert client.endpoint == EP
    assert client.headers["Authorization"] == "Token tok-123"
    assert "tok-123" not in repr(client)


@responses.activate
def test_reads_are_retried_on_busy_answers(client):
    responses.get(f"{EP}/thing/", status=503, json={"message": "busy"})
    responses.get(f"{EP}/thing/", status=200, json={"ok": True})

    assert client.get("thing/").json() == {"ok": True}
    assert len(responses.calls) == 2


@responses.activate
def test_writes_are_never_retried(client):
    responses.post(f"{EP}/thing/", status=503, json={"message": "busy"})

    with pytest.raises(ServerError):
        client.post("thing/", json={"a": 1})
    assert len(responses.calls) == 1


@responses.activate
def test_a_write_whose_connection_was_reset_is_not_sent_again(client):
    reset = requests.exceptions.ConnectionError(ConnectionResetError(104, "reset"))
    responses.post(f"{EP}/thing/", body=reset)
    responses.get(f"{EP}/thing/", body=reset)

    with pytest.raises(requests.exceptions.ConnectionError):
        client.post("thing/", json={"a": 1})
    posts = len(responses.calls)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.get("thing/")

    assert posts == 1
    assert len(responses.calls) - posts > 1


@responses.activate
def test_a_read_that_stays_busy_ends_in_the_sdks_own_error(client):
    responses.get(f"{EP}/thing/", status=503, json={"message": "busy"})

    with pytest.raises(ServerError, match="503"):
        client.get("thing/")
    assert len(responses.calls) == 6
