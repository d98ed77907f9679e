import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vigil.vision.dlib.detector import DlibDetector
from vigil.vision.image import decode_image, load_image


def _deepface_photos(shared_data: Path) -> list[Path]:
    root = shared_data / "deepface-13"
    return sorted(p for p in root.glob("*/*.jpg") if not p.parent.name.startswith("_"))


def test_two_people(engine, people: Path) -> None:
    faces = engine.analyze(load_image(people / "two_people.jpg").bgr)
    assert len(faces) == 2
    assert faces.landmark_scheme == "dlib5" and faces.landmarks is not None
    assert faces.embedding is not None and faces.embedding.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(faces.embedding, axis=1), 1.0, atol=1e-5)
    assert faces.quality is not None and np.all((faces.quality > 0.5) & (faces.quality <= 1))
    # two different people: below even the loose FMR 0.1 threshold
    assert float(faces.embedding[0] @ faces.embedding[1]) < engine.card.threshold_for_fmr(0.1)


def test_one_face_in_every_deepface_photo(engine, shared_data: Path) -> None:
    photos = _deepface_photos(shared_data)
    assert len(photos) == 61
    counts = {p.name: len(engine.detect(load_image(p).bgr)) for p in photos}
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}


def test_exif_rotated_photo_is_found(engine, people: Path) -> None:
    upright = Image.open(people / "obama.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif.tobytes())
    rotated = decode_image(buf.getvalue())
    assert rotated.size_wh == upright.size
    assert len(engine.detect(rotated.bgr)) == 1
    # without applying EXIF the sideways face is not found by the frontal detector
    raw = np.ascontiguousarray(np.asarray(stored)[:, :, ::-1])
    assert len(engine.detect(raw)) == 0


def test_quality_prefers_sharp_large_faces(engine, people: Path) -> None:
    bgr = load_image(people / "obama.jpg").bgr
    sharp = engine.detect(bgr)
    blurred = engine.detect(cv2.GaussianBlur(bgr, (0, 0), 6))
    small = engine.detect(cv2.resize(bgr, None, fx=0.12, fy=0.12, interpolation=cv2.INTER_AREA))
    assert len(sharp) == len(blurred) == len(small) == 1
    assert sharp.quality[0] > blurred.quality[0] + 0.05
    assert sharp.quality[0] > small.quality[0] + 0.05


def test_mmod_detector(people: Path) -> None:
    det = DlibDetector(method="mmod", max_side_px=800)
    faces = det.detect(load_image(people / "two_people.jpg").bgr)
    assert det.name == "dlib-mmod"
    assert len(faces) == 2 and faces.landmarks is not None


def test_no_face_in_a_blank_image(engine) -> None:
    assert len(engine.detect(np.full((300, 400, 3), 127, np.uint8))) == 0


def test_alignment_follows_the_detector_and_the_setting() -> None:
    from vigil.core.modelcard import bundled_card
    from vigil.vision.dlib.embedder import dlib_alignment

    card = bundled_card("dlib-resnet-v1")
    assert card.preprocessing.alignment == "dlib68-chip"
    assert dlib_alignment("hog", card) == "dlib68-chip"
    assert dlib_alignment("mmod", card) == "dlib5-chip"
    assert dlib_alignment("yunet", card) == "dlib5-chip"
    assert dlib_alignment("hog", card, "5") == "dlib5-chip"
    assert dlib_alignment("mmod", card, "68") == "dlib68-chip"


def test_both_alignments_tell_obama_from_biden(engine, people: Path) -> None:
    from vigil.vision.dlib.embedder import DlibEmbedder

    images = {n: load_image(people / n).bgr for n in ("obama.jpg", "obama2.jpg", "biden.jpg")}
    faces = {n: engine.detect(bgr)[0] for n, bgr in images.items()}
    for alignment in ("dlib68-chip", "dlib5-chip"):
        emb = DlibEmbedder(card=engine.card, alignment=alignment)
        v = {n: emb.embed(images[n], faces[n])[0] for n in images}
        assert all(abs(float(np.linalg.norm(x)) - 1) < 1e-5 for x in v.values())
        assert float(v["obama.jpg"] @ v["obama2.jpg"]) > float(v["obama.jpg"] @ v["biden.jpg"]) + 0.05


def test_detector_and_embedder_are_safe_from_many_threads(shared_data: Path) -> None:
    """The server detects on a thread pool and the video pipeline on worker threads: same results."""
    from concurrent.futures import ThreadPoolExecutor

    from vigil.vision.dlib.embedder import DlibEmbedder

    detector, embedder = DlibDetector(), DlibEmbedder()
    images = [load_image(p).bgr for p in sorted((shared_data / "deepface-13").glob("*/*"))[:8]]

    def run(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = detector.detect(bgr)
        return faces.xyxy, embedder.embed(bgr, faces)

    serial = [run(b) for b in images]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(run, images * 3))
    for (xyxy, vec), (xyxy_t, vec_t) in zip(serial * 3, threaded, strict=True):
        np.testing.assert_array_equal(xyxy, xyxy_t)
        np.testing.assert_allclose(vec, vec_t, atol=1e-6)
