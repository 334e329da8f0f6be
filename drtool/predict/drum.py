"""Start, wait for and stop a local DRUM server on the loopback interface.

DRUM 1.18 serves through gunicorn by default, which brings three traps this
module exists to defuse:

- A configuration error makes the gunicorn master respawn its worker forever;
  the server never becomes ready and never exits. So readiness has a deadline,
  each poll checks that the process is still alive, and a failure quotes the
  tail of DRUM's own log.
- DRUM turns environment variables such as TARGET_TYPE, ADDRESS or MAX_WORKERS
  into command-line arguments. The server therefore starts with a clean,
  explicit environment, never a copy of ours.
- Workers are child processes. The server runs in its own session, and stopping
  it signals the whole process group, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType

import requests

from drtool.errors import ConfigError, ServerStartError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# How often readiness is polled, and how long one poll may hang: under gunicorn
# the socket accepts before the worker has loaded the model.
POLL_INTERVAL = 0.25
POLL_TIMEOUT = 2.0
# Grace between SIGTERM and SIGKILL when stopping.
STOP_GRACE = 10.0
# Two workers that fail to boot write two tracebacks: keep room for both.
LOG_TAIL_LINES = 60
# Signals that stop drtool and so the server it started.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# A port picked as free can be taken before DRUM binds it; try a few.
PORT_ATTEMPTS = 3
# Variables the server may inherit; everything else is left out (see above).
INHERITED_VARIABLES = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


class DrumServer:
    """A DRUM server for one model folder, as a context manager.

    >>> with DrumServer(Path("model")) as server:
    ...     requests.post(f"{server.url}/predictUnstructured/", ...)
    """

    def __init__(
        self,
        code_dir: Path,
        *,
        workers: int = 1,
        start_timeout: float = 180.0,
    ) -> None:
        self.code_dir = code_dir.resolve()
        self.workers = workers
        self.start_timeout = start_timeout
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._previous_handlers: dict[int, signal._HANDLER] = {}

    @property
    def pid(self) -> int | None:
        """The process id (and process group id) of the server, while it runs."""
        return self._process.pid if self._process else None

    def __enter__(self) -> DrumServer:
        self._check_code_dir()
        self._scratch = tempfile.TemporaryDirectory(prefix="drtool-drum-")
        self._catch_sigterm()
        try:
            self._start_with_retries()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server's whole process group and remove its scratch files."""
        if self._process is not None:
            stop_process_group(self._process)
            self._process = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
        self._restore_sigterm()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines DRUM wrote, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _check_code_dir(self) -> None:
        if not (self.code_dir / "custom.py").is_file():
            raise ConfigError(
                f"{self.code_dir} has no custom.py; model.dir in config.yaml "
                f"must name the DRUM model folder."
            )

    def _start_with_retries(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_loopback_port()
            self._spawn(port)
            try:
                self._wait_until_ready()
                return
            except ServerStartError:
                if attempt == PORT_ATTEMPTS or not self._lost_port_race():
                    raise
                log.info("Port %d was taken before DRUM bound it; retrying.", port)
                self._kill()

    def _spawn(self, port: int) -> None:
        assert self._scratch is not None
        scratch = Path(self._scratch.name)
        self._log_path = scratch / f"drum-{port}.log"
        self.url = f"http://{LOOPBACK}:{port}"
        command = [
            drum_executable(),
            "server",
            "--code-dir",
            str(self.code_dir),
            "--target-type",
            "unstructured",
            "--address",
            f"{LOOPBACK}:{port}",
            "--logging-level",
            "warning",
        ]
        with self._log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=server_environment(scratch, self.workers),
                cwd=scratch,
                start_new_session=True,
            )
        log.info(
            "Starting DRUM on %s for %s (process group %d)",
            self.url,
            self.code_dir,
            self._process.pid,
        )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(
                    f"DRUM exited with code {code} before it was ready. "
                    f"The end of its log:\n{self.log_tail()}"
                )
            if is_ready(self.url):
                log.info("DRUM is ready at %s", self.url)
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"DRUM was not ready after {self.start_timeout:.0f} s "
                    f"(predict.local.start_timeout in config.yaml). The end of "
                    f"its log:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def _lost_port_race(self) -> bool:
        # gunicorn says "Connection in use", werkzeug "Address already in use".
        tail = self.log_tail(200)
        return "Connection in use" in tail or "Address already in use" in tail

    def _kill(self) -> None:
        if self._process is not None:
            stop_process_group(self._process)
            self._process = None

    def _catch_sigterm(self) -> None:
        # `kill drtool` or a closed terminal (SIGHUP) must stop the server too,
        # which runs in its own session and sees neither: turn both into the
        # same unwinding as Ctrl-C. Signal handlers can only be set from the
        # main thread; elsewhere the caller owns signal handling.
        if threading_is_main():
            self._previous_handlers = {
                signum: signal.signal(signum, _raise_interrupt)
                for signum in STOP_SIGNALS
            }

    def _restore_sigterm(self) -> None:
        if threading_is_main():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
        self._previous_handlers = {}


def drum_executable() -> str:
    """Return the `drum` command of this Python environment."""
    beside_python = Path(sys.executable).parent / "drum"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("drum")
    if found:
        return found
    raise ConfigError(
        "DRUM is not installed here. Install drtool's local extra: "
        "pip install 'drtool[local]'."
    )


def server_environment(scratch: Path, workers: int) -> dict[str, str]:
    """Return the clean environment a DRUM server starts with."""
    environment = {
        name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ
    }
    environment.update(
        {
            # gunicorn keeps a control socket under $HOME; one home per server
            # lets several servers run side by side.
            "HOME": str(scratch),
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # Runtime parameters are how DRUM 1.18 takes gunicorn settings;
            # --max-workers is ignored by gunicorn.
            "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": json.dumps(
                {"type": "numeric", "payload": workers}
            ),
        }
    )
    return environment


def is_ready(url: str) -> bool:
    """Tell whether the server at ``url`` answers its readiness route with 200."""
    try:
        response = requests.get(f"{url}/", timeout=POLL_TIMEOUT)
    except requests.RequestException:
        return False
    return response.status_code == 200


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and every process of its group: SIGTERM, then SIGKILL."""
    group = process.pid
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        log.warning("DRUM did not stop within %.0f s; killing it.", STOP_GRACE)
    # Workers can outlive the master; nothing of the group may stay behind.
    _signal_group(group, signal.SIGKILL)
    process.wait()


def process_group_alive(group: int) -> bool:
    """Tell whether any process of process group ``group`` still exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def threading_is_main() -> bool:
    return threading.current_thread() is threading.main_thread()
