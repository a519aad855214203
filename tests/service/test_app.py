"""The service API with FastAPI's TestClient, on the fake square detector and colour encoders of
tests/test_pipeline.py: every endpoint, the pipeline's bad inputs, keys, limits and names."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lrface.calibration import Calibration
from lrface.pipeline import FacePipeline
from lrface.search.names import InvalidName, normalize_name
from lrface.search.store import Enrolment, SqliteStore, open_store
from lrface.service.app import ServiceConfig, create_app
from lrface.service.security import SecurityError, is_loopback, load_api_key
from tests.test_pipeline import ColourEncoder, SquareDetector, scene

KEY = "k" * 24


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


RED = png(scene(("red", 20, 20, 120)))
RED_2 = png(scene(("red", 40, 30, 90)))
BLUE = png(scene(("blue", 20, 20, 120)))
GREEN = png(scene(("green", 30, 30, 100)))


@pytest.fixture
def pipeline() -> FacePipeline:
    return FacePipeline(
        SquareDetector(), ColourEncoder("teacher"), ColourEncoder("student", 32), size_cutoff=40
    )


@pytest.fixture
def store(tmp_path):
    s = SqliteStore.create(tmp_path / "g.db", "teacher", 4)
    yield s
    s.close()


def client_for(store, pipeline, **config) -> TestClient:
    config.setdefault("api_key", KEY)
    app = create_app(store, pipeline, ServiceConfig(**config))
    return TestClient(app, headers={"X-API-Key": config["api_key"]} if config["api_key"] else {})


@pytest.fixture
def client(store, pipeline) -> TestClient:
    return client_for(store, pipeline)


def enroll(client, name, *photos: bytes):
    files = [("files", (f"{name}-{i}.png", p, "image/png")) for i, p in enumerate(photos)]
    return client.post(f"/api/identities/{name}/photos", files=files)


def search(client, data: bytes, k: int = 5, filename: str = "probe.png"):
    return client.post("/api/search", files={"file": (filename, data)}, data={"k": str(k)})


def test_enroll_list_search_thumbnail_remove(client, store):
    # without a key, health says only that the server is up (issue 26, item 6)
    assert client.get("/api/health", headers={"X-API-Key": ""}).json() == {
        "status": "ok",
        "auth": True,
    }
    health = client.get("/api/health").json()
    assert health["identities"] == 0 and health["encoder"] == "teacher"
    assert search(client, RED).json() == {"error": "the gallery is empty: enroll identities first"}

    r = enroll(client, "Ann Lee", RED, RED_2)
    assert r.status_code == 200 and r.json() == {
        "name": "Ann Lee",
        "added": 2,
        "already_enrolled": 0,
        "skipped": [],
        "warnings": [],
    }
    r = enroll(client, "Ann Lee", RED, b"not an image at all")  # same photo again + junk
    assert r.json()["added"] == 0 and r.json()["already_enrolled"] == 1
    # the file is named once, not twice ("text.jpg: text.jpg: not an image"; item 6)
    assert r.json()["skipped"] == [
        {"file": "Ann Lee-1.png", "reason": "not an image file (format not recognised)"}
    ]
    assert enroll(client, "Bo_Li", BLUE).status_code == 200
    assert client.get("/api/identities").json()["identities"] == [
        {"name": "Ann Lee", "photos": 2, "created": pytest.approx(0, abs=1e10)},
        {"name": "Bo_Li", "photos": 1, "created": pytest.approx(0, abs=1e10)},
    ]
    thumb = client.get("/api/identities/Ann Lee/thumbnail")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (112, 112)

    # a probe with a big blue face and a small red one: each face its own encoder and matches
    probe = png(scene(("blue", 10, 10, 100), ("red", 150, 150, 30)))
    r = search(client, probe, k=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 200, "height": 200, "analysed_scale": 1.0}
    faces = {f["decision"]["top"][0]["name"]: f for f in body["faces"]}
    assert faces["Bo_Li"]["role"] == "teacher" and faces["Bo_Li"]["width"] == 100
    assert faces["Ann Lee"]["role"] == "student" and faces["Ann Lee"]["encoder"] == "student"
    assert faces["Ann Lee"]["chip_size"] == 30
    decision = faces["Ann Lee"]["decision"]  # no calibration given: a ranking, no threshold
    assert decision["threshold"] is None and decision["threshold_reason"]
    assert len(faces["Ann Lee"]["decision"]["top"]) == 2

    r = client.post("/api/verify", files={"a": ("a.png", RED), "b": ("b.png", RED_2)})
    assert r.status_code == 200 and r.json()["score"] > 0.99 and r.json()["same"] is None

    assert client.delete("/api/identities/Ann Lee").json() == {
        "removed": "Ann Lee",
        "identities": 1,
    }
    assert client.delete("/api/identities/Ann Lee").status_code == 404
    assert client.get("/api/identities/Ann Lee/thumbnail").status_code == 404
    assert search(client, RED).json()["faces"][0]["decision"]["top"][0]["name"] == "Bo_Li"
    assert client.get("/").text.startswith("<!doctype html>")
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    # no /docs page: it loads its scripts from a CDN, and the server must work offline
    assert client.get("/docs").status_code == 404


def test_bad_inputs_answer_json_errors(client, pipeline, store):
    enroll(client, "Ann", RED)
    cases = {
        "corrupt": (png(scene(("red", 20, 20, 120)))[:60], 422, "corrupt or truncated image"),
        "not an image": (b"%PDF-1.4 hello", 422, "not an image file"),
        "empty": (b"", 422, "empty file"),
        "no face": (png(scene()), 422, "no face found"),
    }
    for what, (data, status, message) in cases.items():
        r = search(client, data, filename="x.jpg")
        assert r.status_code == status and r.json()["error"].startswith("x.jpg: "), what
        assert message in r.json()["error"], what
    # content is decoded, whatever the extension says
    assert search(client, RED, filename="photo.txt").status_code == 200
    r = client.post("/api/verify", files={"a": ("a.png", RED), "b": ("b.png", png(scene()))})
    assert r.status_code == 422 and r.json()["error"] == "b.png: no face found"
    r = enroll(client, "Bo", png(scene()), b"junk")
    assert r.status_code == 422 and r.json()["error"].startswith("nothing enrolled for 'Bo': ")
    assert "Bo-0.png: no face found" in r.json()["error"]
    assert search(client, RED, k=0).status_code == 422
    r = client.post("/api/search")
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request: file")
    assert client.get("/api/nothing").json() == {"error": "Not Found"}


def test_size_and_pixel_limits(store, pipeline):
    client = client_for(store, pipeline, max_upload_bytes=4000, max_pixels=300 * 300, max_files=2)
    assert enroll(client, "Ann", RED).status_code == 200
    big_pixels = png(np.zeros((400, 400, 3), np.uint8))  # small file, too many pixels
    assert len(big_pixels) < 4000
    r = search(client, big_pixels, filename="huge.png")
    assert r.status_code == 413 and "huge.png: image too large (400x400 > 90000" in r.text
    big_file = np.random.default_rng(0).integers(0, 255, (60, 60, 3), np.uint8)
    r = search(client, png(big_file), filename="noise.png")
    assert (
        r.status_code == 413 and r.json()["error"] == "noise.png: file too large (limit 3.91 KiB)"
    )
    r = enroll(client, "Ann", RED, RED, RED)
    assert r.status_code == 413 and r.json()["error"] == "too many files (3 > 2)"
    r = client.post("/api/search", content=b"x" * 100, headers={"content-length": str(10**9)})
    assert r.status_code == 413 and "request too large" in r.json()["error"]


def test_api_key_and_names(store, pipeline):
    client = client_for(store, pipeline)
    for key in (None, "wrong-key-wrong-key-wrong"):
        headers = {"X-API-Key": key} if key else {}
        c = TestClient(client.app, headers=headers)
        for method, path in (("get", "/api/identities"), ("delete", "/api/identities/Ann")):
            r = getattr(c, method)(path)
            assert r.status_code == 401 and "API key" in r.json()["error"]
        assert search(c, RED).status_code == 401
        assert c.get("/api/health").status_code == 200
    open_client = client_for(store, pipeline, api_key=None)
    assert open_client.get("/api/identities").status_code == 200

    for bad in ("..", ".hidden", "a/../b", "tab\there", "x" * 101, " lead", "trail ", "a..b"):
        with pytest.raises(InvalidName, match="invalid identity name"):
            normalize_name(bad)
    for good in ("Ann", "George_W_Bush", "Zoë O'Neil-Smith", "A. B", "李小龙", "7"):
        assert normalize_name(good) == good
    r = enroll(client, "..hidden", RED)
    assert r.status_code == 422 and "invalid identity name" in r.json()["error"]
    r = enroll(client, "a%2F..%2Fb", RED)  # a name with "/" is refused by name, not a bare 404
    assert r.status_code == 422 and "invalid identity name 'a/../b'" in r.json()["error"]
    assert len(store) == 0
    # names enrolled elsewhere (a CLI folder name) can still be looked up and removed
    store.add("Mary (2)", [Enrolment(np.array([1.0, 0, 0, 0]), "m.png")])
    r = client.get("/api/identities/Mary (2)/thumbnail")
    assert r.status_code == 404 and "has no thumbnail" in r.json()["error"]
    assert client.delete("/api/identities/Mary (2)").status_code == 200


def test_index_follows_changes_made_by_another_process(tmp_path, pipeline):
    path = tmp_path / "g.db"
    SqliteStore.create(path, "teacher", 4).close()
    with open_store(path) as served:
        client = client_for(served, pipeline)
        enroll(client, "Ann", RED)
        assert search(client, BLUE).json()["faces"][0]["decision"]["top"][0]["name"] == "Ann"
        with open_store(path) as other:  # e.g. an `lrface gallery enroll` elsewhere
            face = pipeline.embed_image(scene(("blue", 20, 20, 120)))[0]
            other.add("Bo", [Enrolment(face.embedding, "bo.png")])
        assert search(client, BLUE).json()["faces"][0]["decision"]["top"][0]["name"] == "Bo"
        assert client.get("/api/health").json()["identities"] == 2


def test_key_loading_and_loopback(tmp_path, monkeypatch):
    monkeypatch.delenv("LRFACE_API_KEY", raising=False)
    assert load_api_key(None) is None
    monkeypatch.setenv("LRFACE_API_KEY", "short")
    with pytest.raises(SecurityError, match=r"\$LRFACE_API_KEY: the API key must be at least 16"):
        load_api_key(None)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert load_api_key(key_file) == KEY
    with pytest.raises(SecurityError, match="missing: cannot read the API key"):
        load_api_key(tmp_path / "missing")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_search_gives_the_openset_decision_of_the_calibration(tmp_path, store, pipeline):
    import json

    from lrface.pipeline import Calibration

    calib = tmp_path / "openset.json"
    calib.write_text(json.dumps({"encoder": "teacher", "flip": False, "openset": {"full": 0.999}}))
    app = create_app(store, pipeline, ServiceConfig(api_key=None), [Calibration.load(calib)])
    client = TestClient(app)
    enroll(client, "Ann", RED)
    stranger = search(client, BLUE).json()["faces"][0]["decision"]
    assert stranger["identity"] == "unknown" and stranger["threshold"] == 0.999
    assert search(client, RED).json()["faces"][0]["decision"]["identity"] == "Ann"


def _clip(path, frames: int = 12) -> bytes:
    """A red square (side 40) walking across black frames, written as a lossless AVI."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (200, 200))
    for t in range(frames):
        writer.write(cv2.cvtColor(scene(("red", 10 + 8 * t, 60, 40)), cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def test_watch_returns_one_event_per_track(client, tmp_path):
    assert enroll(client, "Ann", RED).status_code == 200
    assert enroll(client, "Bob", BLUE).status_code == 200
    video = _clip(tmp_path / "walk.avi")
    r = client.post("/api/watch", files={"file": ("walk.avi", video)})
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["frames"] == 12 and body["error"] is None
    (event,) = body["events"]
    assert event["identity"] == "Ann" and event["frames_used"] == 12
    strided = client.post("/api/watch", files={"file": ("walk.avi", video)}, data={"stride": "3"})
    assert strided.json()["frames"] == 4


def test_watch_names_a_bad_upload(client, tmp_path):
    assert enroll(client, "Ann", RED).status_code == 200
    r = client.post("/api/watch", files={"file": ("clip.mp4", b"not a video at all")})
    assert r.status_code == 422 and r.json()["error"].startswith("clip.mp4:")
    assert "upload.video" not in r.json()["error"]
    empty = client.post("/api/watch", files={"file": ("clip.mp4", b"")})
    assert empty.status_code == 422 and empty.json()["error"] == "clip.mp4: empty upload"


def test_watch_judges_tracks_by_the_track_calibration_for_the_gallery_s_size(
    store, pipeline, tmp_path
):
    files = []
    for probe in ("teacher", "student"):  # whichever encoder serves the walking face
        path = tmp_path / f"{probe}-tracks.json"
        ladder = {"1": {"16": -1.0}, "2": {"16": 1.01}}  # anyone for 1 identity, no one for 2
        data = {"probes": "tracks", "probe_encoder": probe, "gallery_encoder": "teacher"}
        data |= {"flip": False, "openset": {"16": 1.01}, "openset_fpir": 0.01}
        data |= {"gallery_size": 2, "openset_by_gallery_size": ladder}
        path.write_text(json.dumps(data))
        files.append(Calibration.load(path))
    client = TestClient(
        create_app(store, pipeline, ServiceConfig(api_key=KEY), [], files),
        headers={"X-API-Key": KEY},
    )
    video = _clip(tmp_path / "walk.avi")
    assert enroll(client, "Ann", RED).status_code == 200
    (event,) = client.post("/api/watch", files={"file": ("walk.avi", video)}).json()["events"]
    assert (event["identity"], event["threshold"]) == ("Ann", -1.0)
    assert enroll(client, "Bob", BLUE).status_code == 200
    (event,) = client.post("/api/watch", files={"file": ("walk.avi", video)}).json()["events"]
    assert (event["identity"], event["threshold"]) == ("unknown", 1.01)


def test_search_scores_by_the_normalizer_where_it_covers_the_encoder(store, pipeline, tmp_path):
    import json

    from lrface.calibration import Calibration
    from lrface.search.cohort import Cohort
    from lrface.search.normalize import Normalizer

    rng = np.random.default_rng(0)

    def unit(v):
        return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)

    cohort = Cohort(
        "student", unit(rng.normal(size=(50, 4))), {32: unit(rng.normal(size=(50, 4)))}, {}
    )
    normalizer = Normalizer("asnorm", {"student": cohort}, top_k=10)
    path = tmp_path / "student-asnorm.json"
    path.write_text(
        json.dumps(
            {"gallery_encoder": "teacher", "probe_encoder": "student", "flip": False,
             "scoring": "asnorm", "openset": {"32": -50.0}, "openset_fpir": 0.01}
        )
    )  # fmt: skip
    app = create_app(store, pipeline, ServiceConfig(api_key=KEY), [Calibration.load(path)],
                     normalizer=normalizer)  # fmt: skip
    client = TestClient(app, headers={"X-API-Key": KEY})
    assert enroll(client, "Ann", RED).status_code == 200 and enroll(client, "Bo", BLUE).json()
    assert set(store.identity_stats()) == {"Ann", "Bo"}  # stored at enrolment
    probe = png(scene(("blue", 10, 10, 100), ("red", 150, 150, 30)))
    faces = {f["role"]: f for f in search(client, probe, k=2).json()["faces"]}
    small, large = faces["student"], faces["teacher"]
    assert small["scoring"] == "asnorm"
    assert small["decision"]["identity"] == "Ann"
    assert "asnorm-normalized" in small["decision"]["threshold_reason"]
    # the teacher has no cohort here: raw cosine, and no raw open-set calibration either
    assert large["scoring"] == "raw"
    assert large["decision"]["threshold"] is None


def test_enrolment_stores_the_mirrored_template_and_search_mirrors_the_probe(
    client, store, pipeline
):
    # a face red on its left half and blue on its right: the template sees both halves
    image = scene(("red", 20, 20, 120))
    image[20:140, 80:140] = (30, 30, 220)
    assert enroll(client, "Ann", png(image)).status_code == 200
    ((name, stored),) = list(store.embeddings())
    template = pipeline.embed_template(image)[0].embedding
    probe = pipeline.embed_image(image)[0].embedding
    assert name == "Ann" and np.allclose(stored, template, atol=1e-6)
    assert not np.allclose(template, probe, atol=1e-2)  # mirroring changed it
    # the search mirrors the probe as well (the teacher serves this face): a perfect match
    top = search(client, png(image)).json()["faces"][0]["decision"]["top"][0]
    assert top["name"] == "Ann" and top["score"] == pytest.approx(1.0, abs=1e-4)
