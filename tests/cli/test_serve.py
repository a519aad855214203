"""``lrface serve`` refuses to start unsafely, with one line and exit status 1."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from lrface.cli import common
from lrface.cli import serve as serve_cli
from tests.test_pipeline import ColourEncoder, SquareDetector


def _run(monkeypatch, tmp_path, *args, env=None):
    monkeypatch.setattr(common, "make_detector", lambda *a, **k: SquareDetector())
    monkeypatch.setattr(common, "load_encoder", lambda name, *a, **k: ColourEncoder(name))
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append(kw))
    app = typer.Typer()
    app.command()(serve_cli.serve)
    result = CliRunner().invoke(
        app, ["--gallery", str(tmp_path / "g.db"), *args], env={"LRFACE_API_KEY": "", **(env or {})}
    )
    return result, started


def test_serve_needs_a_key_or_no_auth_on_loopback(monkeypatch, tmp_path):
    result, started = _run(monkeypatch, tmp_path)
    assert result.exit_code == 1 and "error: no API key: set $LRFACE_API_KEY" in result.output
    result, started = _run(monkeypatch, tmp_path, "--no-auth", "--host", "0.0.0.0")
    assert (
        result.exit_code == 1 and "only allowed on a loopback address, not 0.0.0.0" in result.output
    )
    result, started = _run(monkeypatch, tmp_path, env={"LRFACE_API_KEY": "short"})
    assert result.exit_code == 1 and "at least 16 characters" in result.output
    assert not started and not (tmp_path / "g.db").exists()

    args = ("--no-auth", "--encoder", "teacher", "--student", "none")
    result, started = _run(monkeypatch, tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert "no API key" in result.output and started == [
        {"host": "127.0.0.1", "port": 8000, "log_level": "warning"}
    ]
    assert (tmp_path / "g.db").stat().st_mode & 0o777 == 0o600
    key_file = tmp_path / "key"
    key_file.write_text("x" * 20)
    result, started = _run(monkeypatch, tmp_path, "--api-key-file", key_file, "--host", "0.0.0.0")
    assert result.exit_code == 0 and "API key required" in result.output
    (tmp_path / "junk.db").write_bytes(b"junk")
    result, _ = _run(monkeypatch, tmp_path, "--no-auth", "--gallery", tmp_path / "junk.db")
    assert result.exit_code == 1 and "junk.db: not an lrface gallery" in result.output


def test_serve_refuses_an_unknown_runtime(monkeypatch, tmp_path):
    args = ("--no-auth", "--student", "none", "--runtime", "tensorrt")
    result, started = _run(monkeypatch, tmp_path, *args)
    assert result.exit_code == 1 and "--runtime must be one of torch, onnx" in result.output
    assert not started and "Traceback" not in result.output
    result, started = _run(
        monkeypatch, tmp_path, "--no-auth", "--student", "none", "--runtime", "torch"
    )
    assert result.exit_code == 0 and started


def test_serve_threads_and_admin_key(monkeypatch, tmp_path):
    """Issue 26, item 5: threads are chosen, overridable, and a bad setting is one line."""
    args = ("--no-auth", "--encoder", "teacher", "--student", "none", "--runtime", "torch")
    result, started = _run(monkeypatch, tmp_path, *args, env={"LRFACE_THREADS": "many"})
    assert result.exit_code == 1 and "$LRFACE_THREADS must be a whole number" in result.output
    assert not started
    result, started = _run(monkeypatch, tmp_path, *args, "--threads", "3", "--workers", "4")
    assert result.exit_code == 0 and "4+1 workers x 3 thread(s)" in result.output
    import torch

    assert torch.get_num_threads() == 3
    admin = tmp_path / "admin"
    admin.write_text("a" * 20)
    key = tmp_path / "key"
    key.write_text("k" * 20)
    result, _ = _run(
        monkeypatch,
        tmp_path,
        "--api-key-file",
        key,
        "--admin-key-file",
        admin,
        "--encoder",
        "teacher",
        "--student",
        "none",
        "--runtime",
        "torch",
    )
    assert result.exit_code == 0 and "API key required, admin key set" in result.output
    torch.set_num_threads(1)
