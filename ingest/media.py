"""Images and videos -> items of the ``image``, ``clip`` and ``video`` corpora.

The analysers (:class:`ingest.base.ImageAnalyzer`, :class:`ingest.base.VideoAnalyzer`;
mmrag's are in ``ingest/images/`` and ``ingest/video/``) read pixels and sound; this
module turns what they found into items and the files people will see: thumbnails
and keyframes under ``<data_dir>/media``. Models load on first use, so ingesting only
documents never loads the CNN, the OCR or whisper.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from PIL import Image

from ingest import pdfium
from ingest.base import (
    ImageAnalysis,
    ImageAnalyzer,
    ImageRef,
    ParsedDocument,
    VideoAnalysis,
    VideoAnalyzer,
    write_atomic,
)
from ingest.faults import checkpoint
from ingest.images.classify import visual_encoder_info
from ingest.images.decode import IMAGE_SUFFIXES, open_image
from ingest.images.describe import image_text
from ingest.pdfium import DEFAULT_MAX_PAGE_PIXELS
from ingest.roots import Roots, resolved
from ingest.video.analyzer import AUDIO_SUFFIXES, VIDEO_SUFFIXES
from retrieval.base import (
    DEFAULT_WORKSPACE,
    Corpus,
    ImageEncoder,
    Item,
    Vectors,
    item_id,
)
from retrieval.errors import MmragError

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES | AUDIO_SUFFIXES
# A page can show hundreds of icons; the first pictures are the ones it is about.
MAX_LINKED_IMAGES = 32


class CnnImageEncoder:
    """The ImageEncoder of the index: EfficientNet-Lite0 features, loaded on first use.

    ``info`` is known up front, so collections can be checked (and text questions
    answered) without loading the CNN; ``encode_images`` loads it the first time an
    image has to be encoded (a question asked with a photo).
    """

    def __init__(self, analyzer: Callable[[], ImageAnalyzer]) -> None:
        self._analyzer = analyzer
        self.info = visual_encoder_info()

    def encode_images(self, images: Sequence[Image.Image]) -> Vectors:
        _, features = self._analyzer().classify(list(images))
        return np.asarray(features, dtype=np.float32)


@dataclass(frozen=True)
class MediaItems:
    """The items one media file yields, with the visual vectors of those that have one."""

    corpus_items: dict[Corpus, list[Item]]
    visual: Mapping[Corpus, Sequence[Vectors | None]]
    warnings: tuple[str, ...] = ()
    pages: int | None = None


class MediaIngest:
    """Analyses image, video and audio files into items; writes thumbnails and keyframes.

    ``image_analyzer`` and ``video_analyzer`` are factories called on first use.
    ``visual_encoder`` (a factory too), when given, fills the ``visual`` vectors instead
    of the CNN features the image analyser computes anyway: a CLIP-family model whose
    joint space lets text questions reach pictures by their pixels.
    ``max_page_pixels`` bounds the bitmap of a scanned page rendered for OCR.
    """

    def __init__(
        self,
        media_dir: Path,
        *,
        image_analyzer: Callable[[], ImageAnalyzer],
        video_analyzer: Callable[[], VideoAnalyzer],
        visual_encoder: Callable[[], ImageEncoder] | None = None,
        max_page_pixels: int = DEFAULT_MAX_PAGE_PIXELS,
    ) -> None:
        if max_page_pixels < 64 * 64:
            raise ValueError(f"max_page_pixels must be at least 4096, got {max_page_pixels}")
        self.max_page_pixels = max_page_pixels
        self.media_dir = media_dir
        self._image_factory = image_analyzer
        self._video_factory = video_analyzer
        self._visual_factory = visual_encoder

    @cached_property
    def images(self) -> ImageAnalyzer:
        return self._image_factory()

    @cached_property
    def videos(self) -> VideoAnalyzer:
        return self._video_factory()

    def _visual(
        self, images: Sequence[Image.Image], analyses: Sequence[ImageAnalysis]
    ) -> list[Vectors]:
        """The ``visual`` vector of each image: the configured encoder's, or the CNN's."""
        if self._visual_factory is None or not images:
            return [a.features for a in analyses]
        return list(self._visual_factory().encode_images(list(images)))

    def folder(self, workspace: str) -> Path:
        """Where a workspace's thumbnails and keyframes go: the media folder itself for the
        default one, ``ws/<name>`` below it for the others (so that a request for a media
        file can be checked against the caller's workspaces by its path alone)."""
        return (
            self.media_dir if workspace == DEFAULT_WORKSPACE else self.media_dir / "ws" / workspace
        )

    def image(
        self, path: Path, source: str, digest: str, workspace: str = DEFAULT_WORKSPACE
    ) -> MediaItems:
        image = open_image(path)
        (analysis,) = self.images.analyze([image])
        item = self._image_item(source, digest, path.name, analysis, workspace=workspace)
        return MediaItems({Corpus.IMAGE: [item]}, {Corpus.IMAGE: self._visual([image], [analysis])})

    def video(
        self,
        path: Path,
        source: str,
        digest: str,
        progress: Callable[[float], None] | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> MediaItems:
        keyframe_dir = self.folder(workspace) / "keyframes"
        keyframe_dir.mkdir(parents=True, exist_ok=True)
        video_id = item_id(source, digest, "video", workspace=workspace)
        analysis: VideoAnalysis = self.videos.analyze(path, keyframe_dir, progress, name=video_id)
        checkpoint("media")
        clips: list[Item] = []
        visual: list[Vectors | None] = []
        for clip in analysis.clips:
            frames = [open_image(k) for k in clip.keyframes]
            seen = self.images.analyze(frames) if frames else []
            tags: dict[str, float] = {}
            for a in seen:
                for label, weight in a.tags:
                    tags[label] = max(tags.get(label, 0.0), weight)
            ocr = " ".join(dict.fromkeys(w for a in seen for w in a.ocr_text.split()))
            shows = ", ".join(t for t, _ in sorted(tags.items(), key=lambda kv: -kv[1])[:6])
            parts = [analysis.title]
            if clip.transcript:
                parts.append(f"Said: {clip.transcript}")
            if ocr:
                parts.append(f"On screen: {ocr}")
            if shows:
                parts.append(f"Shows: {shows}")
            clips.append(
                Item(
                    id=item_id(source, digest, "clip", clip.index, workspace=workspace),
                    corpus=Corpus.CLIP,
                    text=". ".join(parts),
                    source=source,
                    content_hash=digest,
                    title=analysis.title,
                    parent_id=video_id,
                    extra={
                        "media_type": "video" if analysis.has_video else "audio",
                        "t_start": round(clip.t_start, 3),
                        "t_end": round(clip.t_end, 3),
                        "keyframes": [str(k) for k in clip.keyframes],
                        "thumbnail": str(clip.keyframes[0]) if clip.keyframes else None,
                        "transcript": clip.transcript,
                        "ocr": ocr,
                        "tags": [[t, round(w, 4)] for t, w in tags.items()],
                    },
                    workspace=workspace,
                )
            )
            if seen:
                mean = np.mean(self._visual(frames, seen), axis=0)
                visual.append((mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32))
            else:
                visual.append(None)  # audio only: the clip has no picture to search by
        video = Item(
            id=video_id,
            corpus=Corpus.VIDEO,
            text=f"{analysis.title}. {analysis.transcript}".strip(),
            source=source,
            content_hash=digest,
            title=analysis.title,
            extra={
                "media_type": "video" if analysis.has_video else "audio",
                "duration": round(analysis.duration, 3),
                "clip_ids": [c.id for c in clips],
                "thumbnail": next(
                    (c.extra["thumbnail"] for c in clips if c.extra["thumbnail"]), None
                ),
                "width": analysis.width,
                "height": analysis.height,
            },
            workspace=workspace,
        )
        return MediaItems(
            {Corpus.CLIP: clips, Corpus.VIDEO: [video]},
            {Corpus.CLIP: visual},
            warnings=tuple(analysis.warnings),
        )

    def pdf_figures(
        self,
        path: Path,
        source: str,
        digest: str,
        parent_id: str,
        *,
        doc: ParsedDocument | None = None,
        min_side: int = 128,
        skip_pages: Collection[int] = (),
        workspace: str = DEFAULT_WORKSPACE,
    ) -> MediaItems:
        """The images embedded in a PDF, as ``image`` items with their page and document.

        Images smaller than ``min_side`` pixels on either side (logos, rules, bullets) are
        skipped, as are those on ``skip_pages`` (scanned pages whose text was read by OCR:
        the picture is the page itself); an image pdfium cannot decode is a warning, not
        a failure of the PDF.
        With ``doc`` (the PDF's ParsedDocument) the start of the figure's page text is
        its caption: the words around a figure usually say what it shows.
        """
        found: list[tuple[int, Image.Image]] = []
        warnings: list[str] = []
        for page, image in pdfium.figures(path, min_side, warnings):
            if page not in skip_pages:
                found.append((page, image))
        if not found:
            return MediaItems({}, {}, tuple(warnings))
        analyses = self.images.analyze([image for _, image in found])
        items = [
            self._image_item(
                source,
                digest,
                f"{path.stem} page {page} figure {n + 1}",
                analysis,
                n=n,
                page=page,
                parent_id=parent_id,
                caption=_page_words(doc, page),
                workspace=workspace,
            )
            for n, ((page, _), analysis) in enumerate(zip(found, analyses, strict=True))
        ]
        images = [image for _, image in found]
        return MediaItems(
            {Corpus.IMAGE: items}, {Corpus.IMAGE: self._visual(images, analyses)}, tuple(warnings)
        )

    def ocr_pages(
        self,
        path: Path,
        pages: Sequence[int],
        step: Callable[[float], None] | None = None,
    ) -> dict[int, str]:
        """The text of PDF pages without a text layer (scans), read by OCR.

        Each page is rendered at 200 dpi, a common scanning resolution, within
        ``max_page_pixels`` (so that a poster stays bounded), and read by the analyser's
        page OCR (:meth:`ImageAnalyzer.read_page`). Blank sheets cost no OCR, and next to
        nothing before it (:func:`ingest.pdfium.inked_pages`). ``step`` gets the fraction
        done after each page: a long scan takes a while.
        """
        found: dict[int, str] = {}
        # closing(): the PDF is closed at once when OCR fails, not when the traceback goes.
        renders = pdfium.inked_pages(path, pages, max_pixels=self.max_page_pixels)
        with closing(renders):
            for n, (page, image) in enumerate(renders, 1):
                if image is not None:
                    found[page] = self.images.read_page(image)
                if step is not None:
                    step(n / len(pages))
        return found

    def linked_images(
        self,
        path: Path,
        refs: Sequence[ImageRef],
        source: str,
        digest: str,
        parent_id: str,
        roots: Roots | None = None,
        *,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> MediaItems:
        """The local pictures an HTML or Markdown file shows, as ``image`` items.

        Each is captioned by what the document says about it (alt text, title, figure
        caption) and linked to the document. Only files inside ``roots`` (the folders
        being ingested; default: the document's own folder) are read: a reference that
        leads elsewhere, by an absolute path, ``..`` or a symlink, is refused with a
        warning that does not say whether its target exists. Remote and ``data:``
        sources are skipped (ingestion does not fetch from the network), and a picture
        inside the roots that is missing or unreadable is a warning.
        """
        roots = roots or Roots.of([path])
        warnings: list[str] = []
        found: dict[Path, tuple[Image.Image, list[str]]] = {}
        remote = 0
        for ref in refs:
            target = _local_target(path, ref.src)
            if target is None:
                remote += 1
                continue
            if not roots.holds(target):
                # Decided on the path alone, before any look at the disk.
                warnings.append(f"picture {ref.src!r} skipped: outside the folders being ingested")
                continue
            if target in found:
                found[target][1].append(ref.caption)
                continue
            if len(found) >= MAX_LINKED_IMAGES:
                warnings.append(f"{path}: only the first {MAX_LINKED_IMAGES} pictures are read")
                break
            try:
                # Resolved again right before reading: it may have become a link since.
                found[target] = (open_image(roots.confine(target)), [ref.caption])
            except MmragError as e:
                warnings.append(f"picture {ref.src!r} skipped: {e}")
        if remote:
            warnings.append(f"{remote} remote picture(s) not fetched")
        if not found:
            return MediaItems({}, {}, tuple(warnings))
        images = [image for image, _ in found.values()]
        analyses = self.images.analyze(images)
        items = [
            self._image_item(
                source,
                digest,
                target.name,
                analysis,
                n=n,
                parent_id=parent_id,
                caption=". ".join(dict.fromkeys(c for c in captions if c)),
                file=target,
                workspace=workspace,
            )
            for n, ((target, (_, captions)), analysis) in enumerate(
                zip(found.items(), analyses, strict=True)
            )
        ]
        return MediaItems(
            {Corpus.IMAGE: items}, {Corpus.IMAGE: self._visual(images, analyses)}, tuple(warnings)
        )

    def _image_item(
        self,
        source: str,
        digest: str,
        file_name: str,
        analysis: ImageAnalysis,
        *,
        n: int = 0,
        page: int | None = None,
        parent_id: str | None = None,
        caption: str = "",
        file: Path | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> Item:
        iid = item_id(source, digest, "image", n, workspace=workspace)
        thumbs = self.folder(workspace) / "thumbnails"
        thumbs.mkdir(parents=True, exist_ok=True)
        thumb = thumbs / f"{iid}.jpg"
        write_atomic(thumb, analysis.thumbnail)
        checkpoint("media")
        return Item(
            id=iid,
            corpus=Corpus.IMAGE,
            text=image_text(analysis, file_name=file_name, caption=caption),
            source=source,
            content_hash=digest,
            title=Path(file_name).stem,
            page=page,
            parent_id=parent_id,
            extra={
                "media_type": "image",
                "thumbnail": str(thumb),
                "width": analysis.width,
                "height": analysis.height,
                "tags": [[t, round(w, 4)] for t, w in analysis.tags],
                "ocr": analysis.ocr_text,
                "exif": dict(analysis.exif),
                # A picture shown by a document lives in its own file, not the source.
                **({"file": str(file)} if file is not None else {}),
            },
            workspace=workspace,
        )


def _local_target(document: Path, src: str) -> Path | None:
    """The file a picture's ``src`` names, resolved from ``document``'s folder; None
    when it is remote."""
    parsed = urlsplit(src.strip())
    if parsed.scheme not in ("", "file") or parsed.netloc:
        return None  # http(s), data:, protocol-relative //host/...
    relative = unquote(parsed.path)
    if not relative:
        return None
    target = document.parent / relative
    return resolved(target) or target  # unresolvable (a loop): refused by the roots check


def _page_words(doc: ParsedDocument | None, page: int, words: int = 40) -> str:
    """The first words of a page's text (a figure's surroundings), or ""."""
    if doc is None or not 1 <= page <= len(doc.texts):
        return ""
    return " ".join(doc.page_text(page).split()[:words])
