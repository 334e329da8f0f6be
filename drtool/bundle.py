"""Which files of a folder travel to DataRobot, packed the same way every time.

One selection rule serves both folders: the Docker context of the environment
(packed into a zip) and the model folder (uploaded file by file). It leaves out
secrets and clutter that must never leave the machine (``ALWAYS_IGNORED``,
which no ``!`` line can undo), then whatever a ``.drtoolignore`` in the folder
names, with .gitignore syntax.

Links: a link to a file inside the folder is packed as that file's content
under the link's own name. A link that leads out of the folder, a broken link
and a link to a folder are refused, so packing can never pick up a file from
elsewhere on the machine (``~/.ssh``, a credentials file) or loop forever.

What DataRobot expects at the zip's root: the Docker context itself, with the
Dockerfile at the top level and no enclosing folder (``Dockerfile``, not
``environment/Dockerfile``). The manual workflow zipped the folder itself,
which puts everything one level down. Sources:

- the SDK (datarobot 3.20.0, ``ExecutionEnvironmentVersion.create``): given a
  folder, it packs it with ``shutil.make_archive(base, "zip", folder)``, whose
  entries are relative to the folder, so the folder's own files sit at the root;
- DataRobot's documentation, "Add an execution environment": "Build from source
  archive: provide the archive containing a Dockerfile and any other files
  needed to build the environment image" (docs.datarobot.com, NextGen registry,
  nxt-add-custom-env);
- DataRobot's own tools pack it that way: datarobotx's ``deploy`` writes
  ``Dockerfile``, ``requirements.txt``, ``start_server.sh`` at the zip root, and
  DataRobot's Pulumi app templates zip a context "at the root of the ZIP (no
  leading custom_environment/ folder)".

Determinism: entries are sorted by path, every timestamp is 1980-01-01 00:00
(the earliest a zip can hold), modes are 0644 or 0755 (executable or not) and
the compression settings are fixed, so the same files give the same bytes and the
same SHA-256. Change detection does not rely on the zip's bytes, which also
depend on the zlib build: it uses ``FileSet.digest``, a hash of the paths,
executable bits and contents alone.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from drtool.atomic import atomic_writer
from drtool.errors import ConfigError

IGNORE_FILE = ".drtoolignore"
DOCKERFILE = "Dockerfile"

# Left out of every bundle, whatever .drtoolignore says (gitignore syntax).
ALWAYS_IGNORED = (
    # Secrets: a .env holds tokens; .env.* its variants (.env.local, ...).
    ".env",
    ".env.*",
    # Version control and caches.
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
    # Operating system and editor leftovers.
    ".DS_Store",
    "Thumbs.db",
    "*~",
    "*.swp",
    "*.swo",
    ".#*",
    # A leading "#" starts a comment in this syntax, hence the backslash.
    "\\#*#",
    # drtool's own files.
    IGNORE_FILE,
    ".drtool-state.json",
    ".drtool-state.json.lock",
)

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleFile:
    """One selected file: where it is on disk and its path inside the bundle."""

    source: Path
    name: str
    executable: bool
    sha256: str
    size: int


@dataclass(frozen=True)
class FileSet:
    """The selected files of a folder, sorted by their path in the bundle."""

    root: Path
    files: tuple[BundleFile, ...]
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", content_hash(self.files))

    def names(self) -> list[str]:
        return [f.name for f in self.files]

    def hashes(self) -> dict[str, str]:
        """Return each file's SHA-256 by its path in the bundle."""
        return {f.name: f.sha256 for f in self.files}

    def upload_list(self) -> list[tuple[str, str]]:
        """Return ``(local path, path in the model)`` pairs, as the SDK takes them."""
        return [(str(f.source), f.name) for f in self.files]

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.files)


@dataclass(frozen=True)
class ContextArchive:
    """A packed Docker context: the zip, its SHA-256 and the files in it."""

    path: Path
    sha256: str
    files: FileSet


@dataclass(frozen=True)
class FileChanges:
    """How one set of file hashes differs from another."""

    added: list[str]
    removed: list[str]
    modified: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def describe(self, limit: int = 5) -> str:
        """Return e.g. ``custom.py (modified), utils/new.py (added)``."""
        labelled = [
            *(f"{n} (modified)" for n in self.modified),
            *(f"{n} (added)" for n in self.added),
            *(f"{n} (removed)" for n in self.removed),
        ]
        shown = ", ".join(labelled[:limit])
        more = len(labelled) - limit
        return f"{shown} and {more} more" if more > 0 else shown


def select_files(folder: Path, *, exclude: Iterable[Path] = ()) -> FileSet:
    """Return the files of ``folder`` that belong in a bundle.

    ``exclude`` names files to leave out as well, such as an archive being
    written inside the folder itself.
    """
    root = folder.resolve()
    if not root.is_dir():
        raise ConfigError(f"{folder} is not a folder; check config.yaml.")
    rules = ignore_rules(root)
    skipped = {Path(p).resolve() for p in exclude}
    files = [
        _describe(path, name)
        for path, name in _walk(root, rules)
        if path.resolve() not in skipped
    ]
    return FileSet(root=root, files=tuple(sorted(files, key=lambda f: f.name)))


@dataclass(frozen=True)
class IgnoreRules:
    """The fixed rules and the folder's own .drtoolignore.

    Kept apart so that either one leaving a path out wins: a ``!.env`` line
    in .drtoolignore cannot bring a secret back.
    """

    fixed: pathspec.GitIgnoreSpec
    own: pathspec.GitIgnoreSpec

    def ignores(self, relative: str) -> bool:
        """Tell whether the path (``dir/`` for a folder) is left out."""
        return bool(self.fixed.match_file(relative) or self.own.match_file(relative))


def ignore_rules(root: Path) -> IgnoreRules:
    """Return the ignore rules of ``root``."""
    ignore_file = root / IGNORE_FILE
    own = (
        ignore_file.read_text(encoding="utf-8").splitlines()
        if ignore_file.is_file()
        else []
    )
    return IgnoreRules(
        fixed=pathspec.GitIgnoreSpec.from_lines(ALWAYS_IGNORED),
        own=pathspec.GitIgnoreSpec.from_lines(own),
    )


def content_hash(files: Iterable[BundleFile]) -> str:
    """Return one SHA-256 over the paths, executable bits and contents."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda item: item.name):
        # NUL cannot occur in a path, so entries cannot run into each other.
        mode = "x" if f.executable else "-"
        digest.update(f"{f.name}\0{mode}\0{f.sha256}\n".encode())
    return digest.hexdigest()


def build_context(folder: Path, archive: Path) -> ContextArchive:
    """Pack the Docker context ``folder`` into ``archive``; refuse it without a
    Dockerfile at its top level."""
    files = select_files(folder, exclude=[archive])
    require_dockerfile(files)
    write_zip(files, archive)
    return ContextArchive(path=archive, sha256=file_sha256(archive), files=files)


def require_dockerfile(files: FileSet) -> None:
    """Refuse a Docker context whose top level has no Dockerfile."""
    if files.has(DOCKERFILE):
        return
    nested = [n for n in files.names() if n.endswith(f"/{DOCKERFILE}")]
    hint = (
        f" There is one at {nested[0]}: point environment.dir in config.yaml at "
        f"{(files.root / nested[0]).parent}."
        if nested
        else ""
    )
    raise ConfigError(
        f"{files.root} has no {DOCKERFILE} at its top level (or {IGNORE_FILE} "
        f"leaves it out). DataRobot builds the environment from the Dockerfile "
        f"at the root of the context.{hint}"
    )


def write_zip(files: FileSet, archive: Path) -> None:
    """Write ``files`` to ``archive`` deterministically, replacing it atomically."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(archive, "wb") as handle, zipfile.ZipFile(handle, "w") as zipped:
        for item in files.files:
            _add_entry(zipped, item)


def diff_hashes(old: dict[str, str], new: dict[str, str]) -> FileChanges:
    """Compare two ``{path: sha256}`` maps."""
    return FileChanges(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        modified=sorted(n for n in set(old) & set(new) if old[n] != new[n]),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path, rules: IgnoreRules) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, name in bundle)`` for every file not ignored, refusing
    links that could lead out of ``root``."""
    for current, folders, names in os.walk(root, followlinks=False):
        here = Path(current)
        base = here.relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        # Pruning in place stops os.walk from entering ignored folders.
        folders[:] = sorted(d for d in folders if not rules.ignores(f"{prefix}{d}/"))
        for folder in folders:
            _refuse_folder_link(root, here / folder, f"{prefix}{folder}")
        for name in sorted(names):
            relative = f"{prefix}{name}"
            if not rules.ignores(relative):
                yield _checked_file(root, here / name, rules), relative


def _refuse_folder_link(root: Path, path: Path, relative: str) -> None:
    if path.is_symlink():
        raise ConfigError(
            f"{root / relative} is a link to a folder; drtool packs real files "
            f"only. Replace it with a copy, or list it in {root / IGNORE_FILE}."
        )


def _checked_file(root: Path, path: Path, rules: IgnoreRules) -> Path:
    """Return ``path`` if it is a regular file that stays inside ``root``."""
    if path.is_symlink():
        _check_link(root, path, rules)
    elif not stat.S_ISREG(path.lstat().st_mode):
        raise ConfigError(
            f"{path} is not a regular file (a socket, pipe or device); list it "
            f"in {root / IGNORE_FILE}."
        )
    return path


def _check_link(root: Path, path: Path, rules: IgnoreRules) -> None:
    target = path.resolve()
    if not target.is_relative_to(root):
        raise ConfigError(
            f"{path} links to {target}, outside {root}; drtool never packs "
            f"files from outside the folder. Copy the file in, or list the "
            f"link in {root / IGNORE_FILE}."
        )
    if not target.is_file():
        raise ConfigError(
            f"{path} is a broken link or a link to a folder; remove it or "
            f"list it in {root / IGNORE_FILE}."
        )
    # Otherwise a link would smuggle an ignored file (a .env) in under its name.
    if rules.ignores(target.relative_to(root).as_posix()):
        raise ConfigError(
            f"{path} links to {target}, which drtool leaves out of bundles; "
            f"remove the link or list it in {root / IGNORE_FILE}."
        )


def _describe(path: Path, name: str) -> BundleFile:
    info = path.stat()
    return BundleFile(
        source=path,
        name=name,
        executable=bool(info.st_mode & stat.S_IXUSR),
        sha256=file_sha256(path),
        size=info.st_size,
    )


def _add_entry(zipped: zipfile.ZipFile, item: BundleFile) -> None:
    info = zipfile.ZipInfo(item.name, date_time=ZIP_EPOCH)
    # Unix host, so the permission bits below are what unzip tools read.
    info.create_system = 3
    mode = EXECUTABLE_MODE if item.executable else FILE_MODE
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with item.source.open("rb") as source, zipped.open(info, "w") as target:
        while block := source.read(CHUNK):
            target.write(block)
