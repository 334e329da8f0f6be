"""drtool.atomic: files appear whole or not at all, and no temporary stays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from drtool.atomic import AtomicFiles, atomic_writer


class Boom(Exception):
    pass


def test_atomic_writer_writes_text(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    with atomic_writer(target) as handle:
        handle.write("{}\n")
        # Nothing is visible at the target until the block ends.
        assert not target.exists()
    assert target.read_text(encoding="utf-8") == "{}\n"
    assert sorted(tmp_path.iterdir()) == [target]


def test_atomic_writer_writes_bytes(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    with atomic_writer(target, "wb") as handle:
        handle.write(b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"


def test_atomic_writer_keeps_text_newlines_as_written(tmp_path: Path) -> None:
    # newline="" as csv wants: no translation of "\n" or "\r\n".
    target = tmp_path / "rows.csv"
    with atomic_writer(target) as handle:
        handle.write("a\r\nb\n")
    assert target.read_bytes() == b"a\r\nb\n"


def test_atomic_writer_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(Boom), atomic_writer(target) as handle:
        handle.write("new, half")
        raise Boom
    assert target.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [target]


def test_replacing_keeps_the_file_permissions(tmp_path: Path) -> None:
    target = tmp_path / "kept.txt"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_writer(target) as handle:
        handle.write("new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_new_file_gets_the_umask_permissions(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        with atomic_writer(tmp_path / "new.txt") as handle:
            handle.write("x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644


def test_several_files_commit_together(tmp_path: Path) -> None:
    names = ["a.csv", "b.csv", "c.bin"]
    with AtomicFiles() as files:
        files.open(tmp_path / names[0]).write("a\n")
        files.open(tmp_path / names[1]).write("b\n")
        files.open(tmp_path / names[2], "wb").write(b"c")
        # All written, none visible yet: only temporaries exist.
        assert not any((tmp_path / n).exists() for n in names)
    assert (tmp_path / "a.csv").read_text() == "a\n"
    assert (tmp_path / "b.csv").read_text() == "b\n"
    assert (tmp_path / "c.bin").read_bytes() == b"c"
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_an_exception_inside_leaves_no_output_and_no_temporary(
    tmp_path: Path,
) -> None:
    (tmp_path / "b.csv").write_text("old b")
    with pytest.raises(Boom), AtomicFiles() as files:
        files.open(tmp_path / "a.csv").write("new a")
        files.open(tmp_path / "b.csv").write("new b")
        raise Boom
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]
    assert (tmp_path / "b.csv").read_text() == "old b"


def test_keyboard_interrupt_discards_too(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), AtomicFiles() as files:
        files.open(tmp_path / "a.csv").write("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_failing_commit_changes_no_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("old a")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"), AtomicFiles() as files:
        files.open(tmp_path / "a.csv").write("new a")
        files.open(tmp_path / "b.csv").write("new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    assert (tmp_path / "a.csv").read_text() == "old a"


def test_discard_called_directly(tmp_path: Path) -> None:
    files = AtomicFiles()
    files.open(tmp_path / "a.csv").write("x")
    files.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="already committed or discarded"):
        files.open(tmp_path / "b.csv")


def test_misuse_is_refused(tmp_path: Path) -> None:
    with AtomicFiles() as files:
        with pytest.raises(ValueError, match="mode must be"):
            files.open(tmp_path / "a.csv", "a")
        files.open(tmp_path / "a.csv").write("x")
        with pytest.raises(ValueError, match="already open"):
            files.open(tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_text() == "x"
