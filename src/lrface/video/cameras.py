"""Several cameras from one command: a YAML file names the cameras, and ``Supervisor`` runs one
``lrface watch`` worker process per camera against one gallery, restarts a worker that dies
(waiting longer after each quick death) and stops them all cleanly.

    gallery: postgresql://lrface@db.internal/watchlist   # or a gallery file (one machine)
    out: out/cameras              # camera NAME writes events.jsonl etc. to out/cameras/NAME
    defaults:                     # `lrface watch` options for every camera (CLI names, no --)
      stride: 2
      min-face: 20
    cameras:
      - name: door
        source: rtsp://10.0.0.5/stream1
      - name: desk
        source: 0                 # a device index
      - name: replay
        source: videos/arcade.mp4
        options: {stride: 1, annotate: true}

The same file can be shared by several machines, each running the cameras it is told
(``--only door,desk``); they meet in the gallery's database. A worker that exits 0 has
finished its input (a file) and is not restarted; one that fails or is killed is restarted
after ``backoff`` seconds, doubled after every death within ``stable_s`` of its start (at most
``max_backoff``), back to ``backoff`` once it ran longer. ``SIGTERM``/``SIGINT`` stop the
supervisor: every worker gets ``SIGINT`` (``lrface watch`` ends its open tracks, writes them
and exits), and ``SIGKILL`` after ``grace`` seconds.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lrface.search.store import is_database_url

log = logging.getLogger("lrface.cameras")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class CameraConfigError(ValueError):
    """A cameras file that cannot be used; the message names the file and the problem."""


@dataclass
class Camera:
    """One camera: its name (in the event log), its source and its ``lrface watch`` options."""

    name: str
    source: str
    options: dict = field(default_factory=dict)


@dataclass
class CamerasConfig:
    gallery: str
    out: Path
    cameras: list[Camera]


def load_cameras(path: str | Path, only: list[str] | None = None) -> CamerasConfig:
    """Read a cameras file; ``only`` keeps the cameras so named (every name must exist)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CameraConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CameraConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise CameraConfigError(f"{path}: expected a mapping with a 'cameras' list")
    gallery = data.get("gallery")
    if not isinstance(gallery, str) or not gallery:
        raise CameraConfigError(f"{path}: 'gallery' (a file or postgresql:// URL) is missing")
    if not is_database_url(gallery) and not Path(gallery).is_absolute():
        gallery = str(path.parent / gallery)  # relative to the file, like 'out'
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise CameraConfigError(f"{path}: 'defaults' must be a mapping of watch options")
    cameras: list[Camera] = []
    for i, entry in enumerate(data["cameras"]):
        where = f"{path}: camera {i + 1}"
        if not isinstance(entry, dict) or "name" not in entry or "source" not in entry:
            raise CameraConfigError(f"{where}: needs 'name' and 'source'")
        name, source = str(entry["name"]), str(entry["source"])
        if not name or not set(name) <= NAME_CHARS:
            raise CameraConfigError(f"{where}: name {name!r} must be letters, digits, - _ .")
        if any(c.name == name for c in cameras):
            raise CameraConfigError(f"{where}: name {name!r} is used twice")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise CameraConfigError(f"{where} ({name}): 'options' must be a mapping")
        cameras.append(Camera(name, source, {**defaults, **options}))
    if only:
        unknown = sorted(set(only) - {c.name for c in cameras})
        if unknown:
            raise CameraConfigError(f"{path}: no camera named {', '.join(unknown)}")
        cameras = [c for c in cameras if c.name in only]
    out = Path(data.get("out", "out/cameras"))
    return CamerasConfig(gallery, out if out.is_absolute() else path.parent / out, cameras)


def watch_arguments(camera: Camera, config: CamerasConfig) -> list[str]:
    """The arguments after ``lrface watch`` for ``camera``: source, gallery, camera name, its
    own output directory and its options (``true``/``false`` as ``--x``/``--no-x``, a list as
    the option repeated)."""
    args = [camera.source, "--gallery", config.gallery, "--camera", camera.name]
    args += ["--out", str(config.out / camera.name)]
    for key, value in camera.options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + flag[2:])
        else:
            for item in value if isinstance(value, list) else [value]:
                args += [flag, str(item)]
    return args


@dataclass
class Worker:
    """A camera's process and its restart state."""

    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    wait: float = 0.0
    next_start: float = 0.0
    finished: bool = False


class Supervisor:
    """Runs ``commands`` (camera name -> argv), one process each, until every one finished
    or ``stop`` is called (from a signal handler, another thread)."""

    def __init__(
        self,
        commands: dict[str, list[str]],
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        stable_s: float = 60.0,
        grace: float = 20.0,
        poll: float = 0.2,
    ):
        self.workers = [Worker(name, argv, wait=backoff) for name, argv in commands.items()]
        self.backoff, self.max_backoff, self.stable_s = backoff, max_backoff, stable_s
        self.grace, self.poll = grace, poll
        self._stop = threading.Event()

    def stop(self, *_signal) -> None:
        self._stop.set()

    def _start(self, worker: Worker) -> None:
        if worker.started:
            worker.restarts += 1
        # a session of its own: a terminal's Ctrl-C reaches the supervisor, which stops each
        # worker itself (and so knows it asked them to stop)
        worker.process = subprocess.Popen(worker.argv, start_new_session=True)
        worker.started = time.monotonic()
        log.info("%s: worker started (pid %d)", worker.name, worker.process.pid)

    def _reap(self, worker: Worker, now: float) -> None:
        """Handle a worker whose process exited: finished, or restarted after its wait."""
        code = worker.process.returncode
        worker.process = None
        if code == 0:
            worker.finished = True
            log.info("%s: worker finished its input", worker.name)
            return
        if now - worker.started >= self.stable_s:
            worker.wait = self.backoff
        worker.next_start = now + worker.wait
        log.warning(
            "%s: worker exited with %s; restart %d in %.1f s",
            worker.name,
            f"signal {-code}" if code < 0 else f"status {code}",
            worker.restarts + 1,
            worker.wait,
        )
        worker.wait = min(worker.wait * 2, self.max_backoff)

    def run(self, handle_signals: bool = True) -> dict[str, int]:
        """Supervise until done or stopped; restarts per camera."""
        if handle_signals:
            previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for worker in self.workers:
                self._start(worker)
            while not self._stop.is_set():
                now = time.monotonic()
                for worker in self.workers:
                    if worker.process is not None and worker.process.poll() is not None:
                        self._reap(worker, now)
                    elif (
                        worker.process is None and not worker.finished and now >= worker.next_start
                    ):
                        self._start(worker)
                if all(w.finished for w in self.workers):
                    break
                self._stop.wait(self.poll)
        finally:
            self._shutdown()
            if handle_signals:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return {w.name: w.restarts for w in self.workers}  # restarts that happened

    def _shutdown(self) -> None:
        """SIGINT to every running worker, SIGKILL to those still running after ``grace``."""
        running = [w for w in self.workers if w.process is not None and w.process.poll() is None]
        for worker in running:
            worker.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + self.grace
        for worker in running:
            try:
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s: worker did not stop within %.0f s; killed", worker.name, self.grace
                )
                worker.process.kill()
                worker.process.wait()
