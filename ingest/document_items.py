"""A parsed document's items: its passages (``paragraph`` corpus) and the item that
stands for the whole document (``document`` corpus), which marks the file done.

Passages carry their page, heading path and character span, so a citation can show
the page and highlight the passage; they are embedded with the document title and
heading path in front (``embed_text``), which places a short passage in its context.
"""

from __future__ import annotations

from ingest.base import ParsedDocument, Passage
from ingest.chunking import chunk
from retrieval.base import Corpus, Item, item_id
from retrieval.errors import LoaderError


def document_items(
    source: str,
    digest: str,
    doc: ParsedDocument,
    *,
    workspace: str,
    target_words: int,
    max_words: int,
) -> tuple[list[Item], Item]:
    """The passage items of ``doc`` (chunked to ``target_words``, at most ``max_words``)
    and its document item; ``LoaderError`` when there is no text to index."""
    passages = chunk(doc, target_words=target_words, max_words=max_words)
    if not passages:
        raise LoaderError(f"{source}: no text to index")
    doc_id = item_id(source, digest, "document", workspace=workspace)
    items = [
        _passage_item(source, digest, doc, p, n, doc_id, workspace) for n, p in enumerate(passages)
    ]
    body = "\n\n".join(doc.texts)
    # The first 200 words; splitting only the start keeps a huge file from becoming
    # a list of every word it holds.
    head = " ".join(body[:20_000].split()[:200])
    document = Item(
        id=doc_id,
        corpus=Corpus.DOCUMENT,
        text=f"{doc.title}\n\n{head}" if doc.title else head,
        source=source,
        content_hash=digest,
        title=doc.title,
        sparse_text=f"{doc.title}\n{body}",
        extra={
            "media_type": doc.media_type,
            "pages": doc.page_count,
            "passages": len(items),
            "passage_ids": [i.id for i in items],
            "warnings": list(doc.warnings),
        },
        workspace=workspace,
    )
    return items, document


def _passage_item(
    source: str,
    digest: str,
    doc: ParsedDocument,
    p: Passage,
    n: int,
    doc_id: str,
    workspace: str,
) -> Item:
    context = " > ".join(x for x in (doc.title, *p.heading) if x)
    return Item(
        id=item_id(source, digest, "passage", n, workspace=workspace),
        corpus=Corpus.PARAGRAPH,
        text=p.text,
        source=source,
        content_hash=digest,
        title=doc.title,
        page=p.page,
        heading=p.heading,
        char_start=p.char_start,
        char_end=p.char_end,
        parent_id=doc_id,
        embed_text=f"{context}\n{p.text}" if context else p.text,
        extra={"media_type": doc.media_type, "n": n},
        workspace=workspace,
    )
