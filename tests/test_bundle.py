"""File selection, ignore rules, links and the deterministic zip."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from drtool.bundle import (
    build_context,
    content_hash,
    diff_hashes,
    select_files,
)
from drtool.errors import ConfigError


def make_context(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


@pytest.fixture
def context(tmp_path: Path) -> Path:
    folder = make_context(
        tmp_path / "environment",
        {
            "Dockerfile": "FROM python:3.11\n",
            "requirements.txt": "drum\n",
            "start_server.sh": "#!/bin/sh\n",
            "scripts/setup.py": "print()\n",
        },
    )
    (folder / "start_server.sh").chmod(0o755)
    return folder


def entries(archive: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(archive) as packed:
        return packed.infolist()


# --- the zip ------------------------------------------------------------------


def test_the_context_sits_at_the_zip_root_sorted(context, tmp_path):
    built = build_context(context, tmp_path / "out" / "environment.zip")

    names = [e.filename for e in entries(built.path)]
    assert names == [
        "Dockerfile",
        "requirements.txt",
        "scripts/setup.py",
        "start_server.sh",
    ]


def test_timestamps_and_modes_are_fixed(context, tmp_path):
    built = build_context(context, tmp_path / "environment.zip")

    for entry in entries(built.path):
        assert entry.date_time == (1980, 1, 1, 0, 0, 0)
        mode = stat.S_IMODE(entry.external_attr >> 16)
        assert mode == (0o755 if entry.filename == "start_server.sh" else 0o644)


def test_the_same_content_gives_the_same_bytes(context, tmp_path):
    first = build_context(context, tmp_path / "a.zip")
    for path in context.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (context / "requirements.txt").chmod(0o600)
    second = build_context(context, tmp_path / "b.zip")

    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    assert first.files.digest == second.files.digest


def test_the_same_files_made_in_another_order_give_the_same_bytes(tmp_path):
    files = {"Dockerfile": "FROM x\n", "b/z.txt": "z", "a.txt": "a"}
    one = make_context(tmp_path / "one", files)
    other = make_context(tmp_path / "other", dict(reversed(list(files.items()))))

    assert (
        build_context(one, tmp_path / "1.zip").sha256
        == build_context(other, tmp_path / "2.zip").sha256
    )


def test_a_change_of_content_name_or_executable_bit_changes_the_hash(context):
    digest = select_files(context).digest

    (context / "requirements.txt").write_text("drum==2\n")
    changed_content = select_files(context).digest
    (context / "requirements.txt").chmod(0o755)
    changed_mode = select_files(context).digest
    (context / "requirements.txt").rename(context / "reqs.txt")
    renamed = select_files(context).digest

    assert len({digest, changed_content, changed_mode, renamed}) == 4


def test_an_archive_written_inside_the_context_is_not_packed_into_itself(context):
    first = build_context(context, context / "environment.zip")
    second = build_context(context, context / "environment.zip")

    assert "environment.zip" not in first.files.names()
    assert first.sha256 == second.sha256


def test_a_context_without_a_dockerfile_is_refused(context, tmp_path):
    (context / "Dockerfile").unlink()

    with pytest.raises(ConfigError, match="no Dockerfile at its top level"):
        build_context(context, tmp_path / "environment.zip")
    assert not (tmp_path / "environment.zip").exists()


def test_a_nested_dockerfile_is_pointed_at(context, tmp_path):
    (context / "Dockerfile").rename(context / "scripts" / "Dockerfile")

    with pytest.raises(ConfigError, match="There is one at scripts/Dockerfile"):
        build_context(context, tmp_path / "environment.zip")


def test_an_ignored_dockerfile_is_refused_too(context, tmp_path):
    (context / ".drtoolignore").write_text("Dockerfile\n")

    with pytest.raises(ConfigError, match="no Dockerfile"):
        build_context(context, tmp_path / "environment.zip")


# --- ignore rules -------------------------------------------------------------


ALWAYS_LEFT_OUT = [
    ".env",
    ".env.local",
    "sub/.env",
    ".git/config",
    "__pycache__/x.cpython-311.pyc",
    "pkg/__pycache__/y.pyc",
    "stray.pyc",
    ".pytest_cache/v/cache",
    ".mypy_cache/3.11/x.json",
    ".DS_Store",
    "notes.txt~",
    ".custom.py.swp",
    "#custom.py#",
    ".drtoolignore",
]


def test_secrets_and_clutter_are_always_left_out(context):
    make_context(context, dict.fromkeys(ALWAYS_LEFT_OUT, "x"))

    names = select_files(context).names()

    assert names == [
        "Dockerfile",
        "requirements.txt",
        "scripts/setup.py",
        "start_server.sh",
    ]


def test_drtoolignore_patterns_apply_with_gitignore_syntax(context):
    make_context(
        context,
        {
            "data/big.csv": "x",
            "logs/a.log": "x",
            "keep.log": "x",
            "other.log": "x",
            "scripts/deep/tmp.bin": "x",
        },
    )
    (context / ".drtoolignore").write_text(
        "# comments are fine\ndata/\n*.log\n!keep.log\n**/tmp.bin\n"
    )

    names = select_files(context).names()

    assert "keep.log" in names
    assert not {
        "data/big.csv",
        "logs/a.log",
        "other.log",
        "scripts/deep/tmp.bin",
    } & set(names)


def test_a_drtoolignore_cannot_bring_back_a_secret(context):
    (context / ".env").write_text("TOKEN=x\n")
    (context / ".drtoolignore").write_text("!.env\n")

    assert ".env" not in select_files(context).names()


# --- links --------------------------------------------------------------------


def test_a_link_out_of_the_folder_is_refused(context, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    (context / "linked.txt").symlink_to(secret)

    with pytest.raises(ConfigError, match="outside"):
        select_files(context)


def test_a_relative_link_climbing_out_is_refused(context):
    (context / "scripts" / "up.txt").symlink_to("../../../etc/hostname")

    with pytest.raises(ConfigError, match="outside|broken"):
        select_files(context)


def test_a_link_to_a_folder_is_refused(context, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (context / "more").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(ConfigError, match="link to a folder"):
        select_files(context)


def test_a_broken_link_is_refused(context):
    (context / "gone.txt").symlink_to(context / "missing.txt")

    with pytest.raises(ConfigError, match="broken"):
        select_files(context)


def test_a_link_to_an_ignored_secret_is_refused(context):
    (context / ".env").write_text("TOKEN=x\n")
    (context / "settings.txt").symlink_to(context / ".env")

    with pytest.raises(ConfigError, match="leaves out"):
        select_files(context)


def test_a_link_inside_the_folder_is_packed_as_its_content(context, tmp_path):
    (context / "alias.txt").symlink_to(context / "requirements.txt")

    built = build_context(context, tmp_path / "environment.zip")

    with zipfile.ZipFile(built.path) as packed:
        assert packed.read("alias.txt") == b"drum\n"
        assert packed.getinfo("alias.txt").external_attr >> 16 & stat.S_IFLNK != (
            stat.S_IFLNK
        )


def test_an_ignored_link_out_is_simply_left_out(context, tmp_path):
    (context / "outside").symlink_to(tmp_path)
    (context / ".drtoolignore").write_text("outside\n")

    assert "outside" not in select_files(context).names()


# --- hashes and differences ---------------------------------------------------


def test_diff_names_added_removed_and_modified_files():
    changes = diff_hashes(
        {"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"}
    )

    assert changes.describe() == "b (modified), d (added), c (removed)"
    assert not diff_hashes({"a": "1"}, {"a": "1"})


def test_diff_shortens_long_lists():
    changes = diff_hashes({}, {f"f{i}": "x" for i in range(8)})

    assert changes.describe(limit=3) == "f0 (added), f1 (added), f2 (added) and 5 more"


def test_the_content_hash_does_not_depend_on_order(context):
    files = select_files(context).files

    assert content_hash(files) == content_hash(tuple(reversed(files)))


def test_the_upload_list_pairs_local_paths_with_model_paths(context):
    pairs = select_files(context).upload_list()

    assert pairs[2] == (
        str((context / "scripts" / "setup.py").resolve()),
        "scripts/setup.py",
    )
