"""Several cameras from one file: the YAML is read and checked, each camera's watch arguments
are built, and the supervisor restarts a dying worker with growing waits, leaves a finished one
alone and stops the rest with SIGINT (then SIGKILL)."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lrface.video.cameras import CameraConfigError, Supervisor, load_cameras, watch_arguments

CONFIG = """
gallery: postgresql://lrface@db/watchlist
out: runs
defaults: {stride: 2, min-face: 20, annotate: false}
cameras:
  - {name: door, source: "rtsp://10.0.0.5/s1"}
  - {name: desk, source: 0, options: {stride: 1, calibration: [a.json, b.json]}}
  - {name: replay, source: clip.mp4}
"""


def test_config_is_read_split_and_turned_into_watch_arguments(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text(CONFIG)
    config = load_cameras(path, only=["desk", "door"])
    assert [c.name for c in config.cameras] == ["door", "desk"]
    assert watch_arguments(config.cameras[1], config) == [
        "0", "--gallery", "postgresql://lrface@db/watchlist", "--camera", "desk",
        "--out", str(tmp_path / "runs" / "desk"), "--stride", "1", "--min-face", "20",
        "--no-annotate", "--calibration", "a.json", "--calibration", "b.json",
    ]  # fmt: skip
    with pytest.raises(CameraConfigError, match="cams.yaml: no camera named nope"):
        load_cameras(path, only=["nope"])
    for text, problem in [
        ("cameras: [{name: a, source: x}]", "'gallery' .* is missing"),
        ("gallery: g.db\ncameras: [{name: a}]", "camera 1: needs 'name' and 'source'"),
        ("gallery: g.db\ncameras: [{name: a, source: 0}, {name: a, source: 1}]", "used twice"),
        ("gallery: g.db\ncameras: [{name: 'a/b', source: 0}]", "must be letters"),
        ("gallery: g.db\ncameras: {a: 1}", "a 'cameras' list"),
        ("gallery: [", "not valid YAML"),
    ]:
        path.write_text(text)
        with pytest.raises(CameraConfigError, match=problem):
            load_cameras(path)
    path.write_text("gallery: g.db\ncameras: [{name: a, source: 0}]")
    assert load_cameras(path).gallery == str(tmp_path / "g.db")  # relative to the file


WORKER = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    log, mode = Path(sys.argv[1]), sys.argv[2]
    def stopped(*_):
        log.open("a").write("stopped\\n")
        sys.exit(130)
    if mode == "run":
        signal.signal(signal.SIGINT, stopped)
    elif mode == "stubborn":  # ignores SIGINT
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with log.open("a") as f:  # only once the handler is in place
        f.write("start\\n")
    if mode == "die":
        sys.exit(3)
    if mode == "finish":
        sys.exit(0)
    while True:
        time.sleep(0.05)
    """
)


def test_supervisor_restarts_backs_off_finishes_and_stops(tmp_path):
    logs = {mode: tmp_path / f"{mode}.log" for mode in ("die", "finish", "run", "stubborn")}
    commands = {mode: [sys.executable, "-c", WORKER, str(log), mode] for mode, log in logs.items()}
    supervisor = Supervisor(commands, backoff=0.1, max_backoff=0.4, stable_s=60, grace=1.0)
    threading.Timer(2.5, supervisor.stop).start()
    start = time.monotonic()
    restarts = supervisor.run(handle_signals=False)
    took = time.monotonic() - start
    assert 3.4 <= took < 20  # the stubborn worker is killed after the 1 s grace
    starts = lambda mode: logs[mode].read_text().count("start")  # noqa: E731
    # waits 0.1, 0.2, 0.4, 0.4, ... between deaths: at most 7 restarts in 2.5 s
    assert 1 <= restarts["die"] <= 7  # (the last one may be stopped before it logs its start)
    assert starts("die") in (restarts["die"], restarts["die"] + 1)
    assert supervisor.workers[0].wait > 0.1  # the wait grew after quick deaths
    assert restarts["finish"] == 0 and starts("finish") == 1
    assert restarts["run"] == 0 and logs["run"].read_text().endswith("stopped\n")
    assert all(w.process is None or w.process.poll() is not None for w in supervisor.workers)


def test_a_worker_killed_is_restarted(tmp_path):
    log = tmp_path / "run.log"
    supervisor = Supervisor(
        {"cam": [sys.executable, "-c", WORKER, str(log), "run"]}, backoff=0.05, grace=2
    )
    thread = threading.Thread(target=supervisor.run, kwargs={"handle_signals": False})
    thread.start()
    deadline = time.monotonic() + 10
    while supervisor.workers[0].process is None or not Path(log).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    supervisor.workers[0].process.kill()
    while supervisor.workers[0].restarts == 0 or log.read_text().count("start") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    supervisor.stop()
    thread.join(timeout=10)
    assert log.read_text().count("start") == 2 and log.read_text().endswith("stopped\n")


def test_cameras_command_names_a_bad_file_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from lrface.cli import app

    path = tmp_path / "cams.yaml"
    path.write_text(CONFIG)
    result = CliRunner().invoke(app, ["cameras", str(path), "--only", "door,roof"])
    assert result.exit_code == 1 and "cams.yaml: no camera named roof" in result.output
    assert "Traceback" not in result.output


def test_sigterm_stops_the_supervisor_and_its_workers(tmp_path):
    import os
    import signal
    import subprocess

    log = tmp_path / "run.log"
    script = (
        "import sys\nfrom lrface.video.cameras import Supervisor\n"
        "s = Supervisor({'cam': sys.argv[1:]}, grace=5)\nprint(s.run())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    supervisor = subprocess.Popen(
        [sys.executable, "-c", script, sys.executable, "-c", WORKER, str(log), "run"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not log.exists():
        assert time.monotonic() < deadline and supervisor.poll() is None
        time.sleep(0.05)
    supervisor.send_signal(signal.SIGTERM)
    out, _ = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0 and out.strip() == "{'cam': 0}"
    assert log.read_text() == "start\nstopped\n"
