"""ClipEncoder on a tiny randomly initialised CLIP built here (code path and shapes only).

No CLIP weights exist on this machine, so the model, tokenizer and image processor are
made from scratch and saved into a tmp folder; nothing is fetched from a hub. The
vectors mean nothing: these tests check loading, shapes, normalisation, batching and
determinism, never retrieval quality.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.service import Service
from app.settings import Settings
from retrieval.base import Corpus, ImageEncoder, TextEncoder
from retrieval.clip_encoder import ClipEncoder
from retrieval.errors import EncoderMismatchError, ModelError

PROJECTION_DIM = 16
IMAGE_SIZE = 32
SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def _save_tiny_clip(folder: Path) -> None:
    import torch
    import transformers

    # A character-level vocabulary (no merges): enough for lowercase ASCII words.
    chars = string.ascii_lowercase + string.digits + ".,!?'"
    tokens = [*chars, *(c + "</w>" for c in chars), *SPECIAL]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok_dir = folder.with_name(f"{folder.name}-tokenizer-files")
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tok_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # from_pretrained on the folder reads vocab.json and merges.txt in transformers 4 and 5.
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tok_dir)
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)

    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    config = transformers.CLIPConfig(
        text_config={
            **tiny,
            "num_attention_heads": 2,
            "vocab_size": len(vocab),
            "max_position_embeddings": 32,
            "bos_token_id": vocab[SPECIAL[0]],
            "eos_token_id": vocab[SPECIAL[1]],
            "pad_token_id": vocab[SPECIAL[1]],
        },
        vision_config={
            **tiny,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-clip")
    _save_tiny_clip(folder)
    return folder


@pytest.fixture(scope="module")
def enc(clip_dir: Path) -> ClipEncoder:
    return ClipEncoder(clip_dir, batch_size=2)


def _image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_satisfies_both_protocols(enc: ClipEncoder, clip_dir: Path) -> None:
    assert isinstance(enc, ImageEncoder)
    assert isinstance(enc, TextEncoder)
    assert enc.info.dim == PROJECTION_DIM
    assert enc.info.name == clip_dir.name
    assert enc.info.version


def test_image_vectors_are_normalised_and_deterministic(enc: ClipEncoder) -> None:
    # Five images with batch_size=2: three batches, one of them short.
    images = [_image(1), _image(1), _image(2), _image(3), _image(4).convert("L")]
    vectors = enc.encode_images(images)
    assert vectors.shape == (5, PROJECTION_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[2], atol=1e-3)
    # Batching does not change a vector.
    np.testing.assert_allclose(enc.encode_images([_image(2)])[0], vectors[2], atol=1e-5)


def test_text_vectors_share_the_joint_space(enc: ClipEncoder) -> None:
    texts = ["a photo of a cat", "a dog", "a photo of a cat"]
    vectors = enc.encode(texts, query=True)
    assert vectors.shape == (3, PROJECTION_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    # A text can be scored against an image: same dimension, a cosine in [-1, 1].
    image = enc.encode_images([_image(1)])
    assert image.shape[1] == vectors.shape[1]
    assert np.all(np.abs(vectors @ image.T) <= 1.0 + 1e-5)


def test_empty_inputs(enc: ClipEncoder) -> None:
    assert enc.encode([]).shape == (0, PROJECTION_DIM)
    assert enc.encode_images([]).shape == (0, PROJECTION_DIM)


def test_siglip_family_loads_through_the_same_path(clip_dir: Path, tmp_path: Path) -> None:
    """A tiny SigLIP (no projection layer, text padded to full length) via the Auto classes.

    It reuses the tiny CLIP's processor files: SigLIP's own tokenizer needs a
    SentencePiece model that cannot be made offline; the model path is what is tested.
    """
    import torch
    import transformers

    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (clip_dir / name).is_file():
            (tmp_path / name).write_bytes((clip_dir / name).read_bytes())
    vocab_size = json.loads((clip_dir / "config.json").read_text())["text_config"]["vocab_size"]
    tiny = {"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1}
    config = transformers.SiglipConfig(
        text_config={
            **tiny,
            "num_attention_heads": 2,
            "vocab_size": vocab_size,
            "max_position_embeddings": 16,
        },
        vision_config={**tiny, "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": 8},
    )
    torch.manual_seed(0)
    transformers.SiglipModel(config).save_pretrained(tmp_path)

    enc = ClipEncoder(tmp_path)
    assert enc.info.dim == 24
    texts = enc.encode(["a cat", "a much longer text " * 10])
    images = enc.encode_images([_image(1), _image(2)])
    assert texts.shape == images.shape == (2, 24)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)


def test_missing_folder_is_a_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-clip"
    with pytest.raises(ModelError, match="no-such-clip"):
        ClipEncoder(missing)


def test_folder_without_a_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"config\.json"):
        ClipEncoder(tmp_path)


def test_unloadable_folder_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelError, match="could not load"):
        ClipEncoder(tmp_path)


# -- wired into the app: MMRAG_CLIP_MODEL ------------------------------------------


@pytest.fixture(scope="module")
def clip_service(
    clip_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, list[Path]]]:
    """A Service built from settings naming the tiny CLIP, with three photos ingested."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for n in range(3):
        path = folder / f"photo{n}.png"
        _image(10 + n).resize((96, 80)).save(path)
        paths.append(path)
    data = tmp_path_factory.mktemp("data")
    service = Service(Settings(data_dir=data, clip_model=clip_dir))
    report = service.ingest([folder])
    assert report.ok, report
    yield service, paths
    service.store.close()


def test_clip_model_setting_fills_the_visual_vectors(
    clip_service: tuple[Service, list[Path]], clip_dir: Path
) -> None:
    service, paths = clip_service
    assert isinstance(service.visual_encoder, ClipEncoder)
    assert service.index.counts()[Corpus.IMAGE] == len(paths)
    # The collection records the CLIP model as its visual encoder (name and joint dim).
    shard = service.settings.store_path / f"{service.settings.collection_prefix}_image"
    meta = json.loads((shard / "encoders.json").read_text())
    assert meta["visual_encoder"]["name"] == clip_dir.name
    assert meta["visual_encoder"]["dim"] == PROJECTION_DIM


def test_text_question_searches_the_joint_space(
    clip_service: tuple[Service, list[Path]], enc: ClipEncoder
) -> None:
    service, paths = clip_service
    question = "a photo of a cat"
    # What the joint space alone says: the text tower against the stored image vectors.
    with_images = [Image.open(p).convert("RGB") for p in paths]
    cosines = enc.encode([question]) @ enc.encode_images(with_images).T
    expected = [paths[i].name for i in np.argsort(-cosines[0])]
    hits = service.index.search(question, [Corpus.IMAGE], mode="visual", limit=3)[Corpus.IMAGE]
    assert [Path(h.item.source).name for h in hits] == expected
    # Hybrid search fuses that list with the tag/OCR text lists and still finds them all.
    fused = service.index.search(question, [Corpus.IMAGE], limit=3)[Corpus.IMAGE]
    assert {Path(h.item.source).name for h in fused} == {p.name for p in paths}


def test_search_by_image_uses_the_clip_image_tower(
    clip_service: tuple[Service, list[Path]],
) -> None:
    service, paths = clip_service
    photo = Image.open(paths[1]).convert("RGB")
    hits = service.index.search("which photo is this?", [Corpus.IMAGE], image=photo, limit=3)
    assert Path(hits[Corpus.IMAGE][0].item.source).name == paths[1].name
    assert hits[Corpus.IMAGE][0].relevance == pytest.approx(1.0, abs=1e-4)


def test_switching_to_clip_on_a_cnn_store_is_refused(
    clip_dir: Path, enc: ClipEncoder, tmp_path: Path
) -> None:
    from ingest.images.classify import visual_encoder_info
    from retrieval.edge_store import EdgeStore
    from retrieval.encoders import SentenceTransformerEncoder
    from retrieval.index import Index

    store = EdgeStore(tmp_path / "store")
    text = SentenceTransformerEncoder()
    cnn = Index(store, text)
    store.ensure(Corpus.IMAGE, text.info, cnn.sparse[Corpus.IMAGE].info, visual_encoder_info())
    with pytest.raises(EncoderMismatchError, match=clip_dir.name):
        Index(store, text, visual=enc).check()
    store.close()
