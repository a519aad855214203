"""Issue 26 on the API (TestClient, fake square detector and colour encoders): one rule set
for names with the CLI, warnings for a photo enrolled under two names, bounded decoding and
work lanes with a time budget, the audit log for the admin key, and watch's video."""

from __future__ import annotations

import io
import json
import re
import threading
import time

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from lrface.data.images import BadImageError, decode_bounded
from lrface.machine import THREADS_ENV, intra_op_threads
from lrface.pipeline import FacePipeline
from lrface.search.store import SqliteStore, json_strings, open_store
from lrface.service.app import ServiceConfig, create_app
from tests.service.test_app import BLUE, KEY, RED, RED_2, _clip, enroll, png, search
from tests.test_pipeline import ColourEncoder, SquareDetector, scene

ADMIN = "admin-key-" + "a" * 20


def _client(store, pipeline, headers_key=KEY, **config) -> TestClient:
    config = {"api_key": KEY, "admin_key": ADMIN} | config
    app = create_app(store, pipeline, ServiceConfig(**config))
    return TestClient(app, headers={"X-API-Key": headers_key})


@pytest.fixture
def pipeline() -> FacePipeline:
    return FacePipeline(SquareDetector(), ColourEncoder("teacher"), None)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore.create(tmp_path / "g.db", "teacher", 4)
    yield s
    s.close()


def test_names_that_look_the_same_are_one_identity(store, pipeline):
    client = _client(store, pipeline)
    assert enroll(client, "Tony_Blair", RED).status_code == 200
    for same in ("TONY_BLAIR", "Tony Blair", "tony-blair"):
        r = enroll(client, same, RED_2)
        assert r.status_code == 409, same
        assert "same identity as the enrolled 'Tony_Blair'" in r.json()["error"]
    r = enroll(client, "\u0430dmin", BLUE)  # Cyrillic а, Latin dmin
    assert r.status_code == 422 and "mixes scripts (CYRILLIC, LATIN)" in r.json()["error"]
    assert enroll(client, "админ", BLUE).status_code == 200  # all Cyrillic: a name
    r = enroll(client, "Ｔｏｎｙ＿Ｂｌａｉｒ", RED_2)  # full-width: NFKC makes it the same name
    assert r.json()["name"] == "Tony_Blair" and r.json()["added"] == 1
    # any spelling reaches the enrolled identity
    assert client.get("/api/identities/tony blair/thumbnail").status_code == 200
    assert client.delete("/api/identities/TONY-BLAIR").json()["removed"] == "Tony_Blair"


def test_the_same_photo_under_another_name_is_warned(store, pipeline):
    client = _client(store, pipeline)
    assert enroll(client, "Ann", RED).json()["warnings"] == []
    r = enroll(client, "Bob", RED)  # the same bytes
    assert r.json()["added"] == 1
    assert r.json()["warnings"] == [
        "Bob-0.png: the same photo (same bytes) is already enrolled for 'Ann'"
    ]
    r = enroll(client, "Cy", RED_2)  # another red square: a near-identical face
    (warning,) = [w for w in r.json()["warnings"] if "'Ann'" in w]
    assert "a near-identical face (cosine 1.000) is already enrolled for 'Ann'" in warning
    assert enroll(client, "Di", BLUE).json()["warnings"] == []


def test_cli_enroll_applies_the_same_name_rules_and_warns(tmp_path, monkeypatch):
    from lrface.cli import app, common

    monkeypatch.setattr(common, "make_detector", lambda *a, **k: SquareDetector())
    monkeypatch.setattr(common, "load_encoder", lambda name, *a, **k: ColourEncoder(name))
    photos = tmp_path / "people"
    for folder, image in (
        ("Tony_Blair", RED),
        ("tony blair", BLUE),
        ("\u0430dmin", BLUE),
        ("Twin", RED),
    ):
        (photos / folder).mkdir(parents=True)
        (photos / folder / "1.png").write_bytes(image)
    gallery = tmp_path / "g.db"
    result = CliRunner().invoke(
        app, ["gallery", "enroll", str(photos), "--gallery", str(gallery), "--encoder", "teacher"]
    )
    assert result.exit_code == 0, result.output
    assert "same identity as the enrolled 'Tony_Blair'" in result.output
    assert "mixes scripts (CYRILLIC, LATIN)" in result.output
    assert "the same photo (same bytes) is already enrolled for 'Tony_Blair'" in result.output
    with open_store(gallery) as store:
        assert sorted(i.name for i in store.identities()) == ["Tony_Blair", "Twin"]
        assert {e.target for e in store.audit_log()} == {"Tony_Blair", "Twin"}


def test_decoding_is_bounded_by_declared_size_and_work_pixels():
    def encoded(width, height, fmt):
        buf = io.BytesIO()
        Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buf, fmt)
        return buf.getvalue()

    with pytest.raises(BadImageError, match=r"big.png: image too large \(3000x2000 > 5000000"):
        decode_bounded(encoded(3000, 2000, "PNG"), "big.png", 5_000_000, 1_000_000)
    for fmt in ("JPEG", "PNG"):
        image, scale = decode_bounded(encoded(3000, 2000, fmt), "x", 25_000_000, 1_000_000)
        assert image.shape[0] * image.shape[1] <= 1_000_000 and scale == pytest.approx(2.45, 0.01)
    image, scale = decode_bounded(encoded(300, 200, "PNG"), "x", 25_000_000, 1_000_000)
    assert image.shape == (200, 300, 3) and scale == 1.0


def test_a_large_probe_is_analysed_downscaled_and_answered_in_its_own_pixels(store, pipeline):
    client = _client(store, pipeline, max_work_pixels=100 * 100)
    enroll(client, "Ann", RED)
    r = search(client, png(scene(("red", 100, 40, 60), size=400)))  # 160,000 px: 4x down
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 400, "height": 400, "analysed_scale": 4.0}
    assert body["faces"][0]["box"] == pytest.approx([100, 40, 160, 100], abs=4)


class GatedDetector(SquareDetector):
    """Squares, but an image larger than 300x300 waits until ``release`` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.waiting = threading.Event()

    def detect(self, image):
        if image.shape[0] > 300:
            self.waiting.set()
            assert self.release.wait(30)
        return super().detect(image)


def test_small_searches_are_answered_while_large_ones_hold_the_heavy_lane(store):
    detector = GatedDetector()
    pipeline = FacePipeline(detector, ColourEncoder("teacher"), None)
    client = _client(store, pipeline, heavy_pixels=300 * 300, request_budget_s=20)
    enroll(client, "Ann", RED)
    large = png(scene(("red", 100, 100, 80), size=600))
    answers = []
    slow = threading.Thread(target=lambda: answers.append(search(client, large).status_code))
    slow.start()
    try:
        assert detector.waiting.wait(10)
        start = time.monotonic()
        for _ in range(3):  # the light lane is free: answered at once
            assert search(client, RED).status_code == 200
        assert time.monotonic() - start < 10
        # the heavy lane's one worker is busy and its queue (32 // 8 = 4) takes four more...
        queued = [
            threading.Thread(target=lambda: answers.append(search(client, large).status_code))
            for _ in range(4)
        ]
        for t in queued:
            t.start()
        heavy = client.app.state.service.pool.heavy
        deadline = time.monotonic() + 10  # the four are read and decoded, then queued
        while heavy.held < heavy.capacity and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heavy.held == heavy.capacity == 5
        r = search(client, large)  # ...and refuses the next at once
        assert r.status_code == 503 and "busy" in r.json()["error"]
    finally:
        detector.release.set()
        slow.join(30)
        for t in queued:
            t.join(30)
    assert answers == [200] * 5


def test_a_request_past_its_time_budget_is_answered_503(store):
    detector = GatedDetector()
    pipeline = FacePipeline(detector, ColourEncoder("teacher"), None)
    client = _client(store, pipeline, request_budget_s=0.5)
    enroll(client, "Ann", RED)
    try:
        r = search(client, png(scene(("red", 100, 100, 80), size=600)))
        assert r.status_code == 503 and "time budget (0.5 s)" in r.json()["error"]
    finally:
        detector.release.set()


def test_the_audit_log_is_for_the_admin_key_and_holds_no_image(store, pipeline):
    user = _client(store, pipeline)
    enroll(user, "Ann", RED)
    assert search(user, RED).status_code == 200
    assert user.delete("/api/identities/Ann").status_code == 200
    r = user.get("/api/audit")
    assert r.status_code == 403 and "admin key" in r.json()["error"]
    admin = _client(store, pipeline, headers_key=ADMIN)
    entries = admin.get("/api/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["remove", "search", "enroll"]
    assert {e["actor"] for e in entries} == {f"user:{_sha8(KEY)}"}
    removal, searched, enrolled = entries
    assert removal["target"].startswith("[erased identity #")
    assert enrolled["target"] == removal["target"]  # redacted when Ann was removed
    assert searched["request"]["probe"]["bytes"] == len(RED)
    assert searched["answer"]["faces"][0]["identity"] == removal["target"]
    assert "RED" not in str(entries) and len(str(entries)) < 2000  # hashes, not images
    assert admin.get("/api/health").json()["role"] == "admin"


def test_audited_requests_hold_no_string_a_user_typed(store, pipeline, tmp_path):
    """The audit index lists only the target and the enrolled names of an entry
    (``AUDIT_NAMES``), which is enough because the routes log uploads by hash and size and no
    text a user typed but the target. Every audited route gets files named after Dee, never
    enrolled: the requests hold their keys and 64-digit hashes only, and Dee is nowhere."""
    client = _client(store, pipeline)
    dee = "Dee Walker"
    photo = {"files": (f"{dee}.png", RED, "image/png")}
    assert client.post("/api/identities/Ann/photos", files=photo).status_code == 200
    assert search(client, RED, filename=f"{dee}.png").status_code == 200
    pair = {"a": (f"{dee}.png", RED), "b": (f"{dee} 2.png", BLUE)}
    assert client.post("/api/verify", files=pair).status_code == 200
    video = {"file": (f"{dee}.avi", _clip(tmp_path / "walk.avi"))}
    assert client.post("/api/watch", files=video).status_code == 200
    entries = store.audit_log()
    assert [e.action for e in entries] == ["watch", "verify", "search", "enroll"]
    strings = set().union(*(json_strings(json.dumps(e.request)) for e in entries))
    typed = {s for s in strings if not re.fullmatch("[0-9a-f]{64}", s)}
    assert typed <= {"probe", "k", "a", "b", "video", "stride", "photos", "sha256", "bytes"}
    assert dee not in repr([e.to_dict() for e in entries])


def _sha8(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:8]


def test_annotated_videos_make_their_folder_on_first_use_and_remove_it_at_close(
    tmp_path, monkeypatch
):
    import tempfile

    from lrface.service.routes.watch import AnnotatedVideos

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    AnnotatedVideos().close()  # a service that never watched
    assert list(tmp_path.iterdir()) == []
    videos = AnnotatedVideos()
    workspace = videos.workspace()
    (workspace / "annotated.webm").write_bytes(b"video")
    monkeypatch.setattr("lrface.service.routes.watch.ANNOTATED_VIDEO", "annotated.webm")
    video_id = videos.keep_video(workspace)
    assert videos.path(video_id).read_bytes() == b"video"
    videos.close()
    assert list(tmp_path.iterdir()) == []


def test_watch_gives_events_with_thumbnails_and_a_video_browsers_play(store, pipeline, tmp_path):
    client = _client(store, pipeline, max_work_pixels=120 * 120)  # frames analysed at 120x120
    enroll(client, "Ann", RED)
    clip = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (200, 200))
    for t in range(12):
        writer.write(cv2.cvtColor(scene(("red", 10 + 8 * t, 60, 40)), cv2.COLOR_RGB2BGR))
    writer.release()
    r = client.post(
        "/api/watch", files={"file": ("walk.avi", clip.read_bytes())}, data={"annotate": "true"}
    )
    assert r.status_code == 200, r.text
    (event,) = r.json()["events"]
    assert event["identity"] == "Ann" and event["thumbnail"].startswith("data:image/jpeg;base64,")
    video = client.get(r.json()["video"])
    assert (
        video.headers["content-type"] == "video/webm" and video.content[:4] == b"\x1a\x45\xdf\xa3"
    )
    assert client.get(r.json()["video"], headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/api/watch/videos/nope").status_code == 404


def test_threads_default_to_half_the_cpus_and_can_be_set(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr("lrface.machine.available_cpus", lambda: 16)
    assert intra_op_threads() == 8 and intra_op_threads(workers=3) == 2
    assert intra_op_threads(workers=64) == 1 and intra_op_threads(5) == 5
    monkeypatch.setattr("lrface.machine.available_cpus", lambda: 2)
    assert intra_op_threads() == 1  # a 2-core host: one thread, not the libraries' two
    monkeypatch.setenv(THREADS_ENV, "3")
    assert intra_op_threads() == 3 and intra_op_threads(2) == 2
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match=r"\$LRFACE_THREADS must be a whole number"):
        intra_op_threads()
