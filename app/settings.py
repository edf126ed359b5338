"""Settings, read once (environment ``MMRAG_*``, an optional TOML file) and passed down.

Precedence, highest first: explicit arguments, environment variables, the TOML file
named by ``MMRAG_CONFIG`` (or ``./mmrag.toml`` when present), then the defaults below.
Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from retrieval.base import DEFAULT_WORKSPACE
from retrieval.errors import ConfigError

Role = Literal["read", "ingest", "admin"]
"""What a key may do: ``read`` asks and loads media; ``ingest`` also uploads, follows its
jobs and lists sources; ``admin`` also deletes sources. Each role includes the ones before."""

_WORKSPACE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ApiKey(BaseModel):
    """One API key: who holds it (``name``), what it may do and which workspaces it sees.

    Give the key itself (``key``) or only its SHA-256 (``key_sha256``, hex: what
    ``mmrag keys new`` prints), so the configuration need not hold the secret.
    ``workspaces`` ``["*"]`` means all of them; none given means ``MMRAG_WORKSPACE``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    key: str | None = Field(None, min_length=16)
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    role: Role = "read"
    workspaces: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"API key {self.name!r}: give exactly one of key or key_sha256")
        for w in self.workspaces:
            if w != "*" and not re.match(_WORKSPACE_NAME, w):
                raise ValueError(f"API key {self.name!r}: {w!r} is not a workspace name")
        return self


class Settings(BaseSettings):
    """Everything configurable about mmrag, with the embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="MMRAG_", extra="forbid")

    # Storage
    data_dir: Path = Field(Path("mmrag-data"), description="Folder for the index and models.")
    qdrant_url: str | None = Field(None, description="Qdrant server URL; unset = embedded.")
    qdrant_engine: Literal["edge", "local"] = Field(
        "edge",
        description=(
            "Embedded engine: edge = Qdrant Edge (the Qdrant engine in-process); "
            "local = qdrant-client's pure-Python local mode."
        ),
    )
    qdrant_path: Path | None = Field(
        None, description="Embedded Qdrant folder; default <data_dir>/qdrant."
    )
    qdrant_api_key: str | None = Field(None, description="API key of the Qdrant server.")
    qdrant_shards: int | None = Field(
        None, ge=1, description="Shards per collection on a Qdrant cluster (new collections)."
    )
    qdrant_replication: int | None = Field(
        None, ge=1, description="Copies of each shard on a Qdrant cluster (new collections)."
    )
    collection_prefix: str = Field("mmrag", description="Prefix of the collection names.")

    # Encoders and ingestion
    text_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Dense text encoder: the packaged default or a sentence-transformers folder.",
    )
    clip_model: Path | None = Field(
        None,
        description=(
            "A local CLIP-family model folder (save_pretrained output). When set it fills the "
            "image and clip corpora's visual vectors and text questions also search them."
        ),
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per encoder forward pass.")
    ingest_batch_size: int = Field(256, ge=1, description="Passages embedded/stored together.")
    chunk_target_words: int = Field(180, ge=20, description="Target passage length in words.")
    chunk_max_words: int = Field(300, ge=40, description="Maximum passage length in words.")
    # What one file may cost. Each default refuses no normal file (the FinanceBench
    # filings, at most 140 pages and 0.43 M characters, all ingest unchanged; a long book
    # is ~3 M characters) and stops what took minutes and GBs: a DOCX of 300 KB unpacking
    # to 100 MB, a PDF of 5,000 blank pages, a 50 MB file of one line.
    ingest_max_text_mb: int = Field(
        50, ge=1, description="Text, Markdown and HTML files larger than this (MB) are refused."
    )
    ingest_max_chars: int = Field(
        20_000_000,
        ge=1_000,
        description="Most characters of text taken from one file; a file with more is refused.",
    )
    ingest_max_pages: int = Field(
        2_000, ge=1, description="Most pages of one PDF; a PDF with more is refused."
    )
    ingest_max_unpacked_mb: int = Field(
        256,
        ge=1,
        description="Most a DOCX (a zip) may unpack to, in MB; a zip bomb is refused unread.",
    )
    ingest_max_page_pixels: int = Field(
        2400 * 2400,
        ge=4096,
        description=(
            "Most pixels of a scanned PDF page rendered for OCR (longer side at most the "
            "square root); larger pages are rendered at a lower resolution."
        ),
    )

    # Routing
    router: Literal["trained", "llm", "all"] = Field(
        "trained",
        description=(
            "Which corpora a question searches: trained = the shipped classifier; "
            "llm = ask the generator; all = every non-empty corpus."
        ),
    )
    router_llm_fallback: bool = Field(
        False, description="Ask the LLM router when the trained router is unsure."
    )
    router_unsure_below: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="The trained router is unsure when its top probability is below this.",
    )

    router_probe: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description=(
            "When the router says no, search passages anyway if one is at least this "
            "close (dense cosine); 0 = trust the router."
        ),
    )

    # Retrieval and selection
    search_mode: Literal["hybrid", "dense", "sparse"] = Field(
        "hybrid", description="How each corpus is searched."
    )
    search_limit: int = Field(20, ge=1, description="Hits fetched per corpus.")
    rrf_k: int = Field(60, ge=1, description="RRF constant of hybrid fusion.")
    dense_weight: float = Field(
        1.0, gt=0, description="Weight of the dense list in hybrid fusion (sparse: 1)."
    )
    top_k: int = Field(5, ge=1, description="Most sources given to the generator.")
    min_relevance: float = Field(
        0.2,
        description="Cosine similarity under which a hit is not used as evidence.",
    )
    router_probes: bool = Field(
        True,
        description=(
            "Weigh the router's call with a top-1 probe of every non-empty corpus "
            "(scores on one scale, see docs/architecture.md); false = the question alone."
        ),
    )
    corpus_gap: float = Field(
        3.0,
        ge=0.0,
        description=(
            "Across corpora, drop a searched corpus whose best match trails the best "
            "corpus' by more than this many robust standard deviations of its null."
        ),
    )
    calibrate_corpora: bool = Field(
        True,
        description=(
            "Put every corpus' scores on one scale (against its own scores for unrelated "
            "questions) before fusing and cutting; false = each corpus' best counts 1.0."
        ),
    )
    keep_ratio: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Adaptive k: keep sources whose fused score is at least this share of the "
            "best of their corpus (0 = always top_k)."
        ),
    )
    evidence_tokens: int | None = Field(
        None,
        ge=100,
        description=(
            "Token budget of the sources in the prompt; default: the model's window "
            "minus max_tokens minus 600 for the prompt's fixed text."
        ),
    )
    reranker: Literal["none", "llm"] = Field(
        "none",
        description="Re-rank candidate sources: llm = the generator judges each one's relevance.",
    )
    rerank_candidates: int = Field(8, ge=1, description="Candidates the reranker judges.")

    # Generation
    generator: Literal["llamacpp", "openai"] = Field("llamacpp", description="LLM backend.")
    llm_model_path: Path | None = Field(
        None, description="GGUF for llamacpp; default: the packaged Qwen2.5-Coder-0.5B."
    )
    llm_context: int = Field(4096, ge=512, description="Context window of the model in tokens.")
    llm_threads: int = Field(2, ge=1, description="CPU threads for llama.cpp.")
    max_tokens: int = Field(384, ge=1, description="Most tokens generated per answer.")
    temperature: float = Field(0.1, ge=0.0, description="Sampling temperature.")
    injection_filter: bool = Field(
        True,
        description=(
            "Keep sentences that sources address to an AI assistant out of the prompt, and "
            "what they ask for out of answers."
        ),
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="OpenAI-compatible server (vLLM)."
    )
    openai_model: str = Field(
        "qwen2.5-coder-0.5b-instruct", description="Model name on that server."
    )
    openai_api_key: str = Field("EMPTY", description="API key for that server.")
    openai_timeout: float = Field(60.0, gt=0, description="Read timeout in seconds.")
    llm_vision: bool = Field(
        False,
        description=(
            "The openai-backend model sees images (e.g. Qwen2.5-VL on vLLM): image and "
            "video sources are sent as pictures as well as text."
        ),
    )
    llm_max_images: int = Field(4, ge=0, description="Most pictures in one prompt.")
    llm_image_max_side: int = Field(
        448, ge=64, description="Pictures are scaled so their longer side is at most this."
    )

    # Serving (mmrag serve: REST API, UI, widget)
    host: str = Field("127.0.0.1", description="Address mmrag serve listens on.")
    port: int = Field(7860, ge=1, le=65535, description="Port mmrag serve listens on.")
    workspace: str = Field(
        DEFAULT_WORKSPACE,
        pattern=_WORKSPACE_NAME,
        description=(
            "The workspace the CLI (and an API without keys) ingests into and searches; "
            "each key names its own."
        ),
    )
    api_keys: list[str | ApiKey] = Field(
        default_factory=list,
        description=(
            "Keys the API requires (JSON list in the env): objects with name, key or "
            "key_sha256, role and workspaces; a plain string is an admin key for every "
            "workspace. Empty = no auth."
        ),
    )
    auth_failures_per_minute: int = Field(
        10,
        ge=1,
        description="Failed key checks (API or UI login) per client address per minute before 429.",
    )
    media_secret: str | None = Field(
        None,
        min_length=32,
        description=(
            "Secret that signs media links; default: a random one kept in "
            "<data_dir>/secret.key. Set the same value on every replica."
        ),
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description=(
            "Host names the server answers to (JSON list; '*' = any, '*.example.com' = its "
            "subdomains). Default: localhost names when bound to a loopback address, else any."
        ),
    )
    rate_limit_per_minute: int = Field(
        60,
        ge=0,
        description=(
            "Requests per minute per API key (or client address); 0 = off. Media and page "
            "images do not count."
        ),
    )
    rate_limit_storage: str = Field(
        "memory://",
        description=(
            "Where rate-limit counts live (a `limits` storage URI): memory:// for one "
            "process; redis://host:6379 when several replicas serve (pip install redis)."
        ),
    )
    media_link_ttl_s: int = Field(
        3600,
        ge=60,
        description=(
            "With API keys, answers link media with signed URLs that a browser can load "
            "without the key; they stay valid between one and two of these periods."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins (scheme://host:port) allowed to call the API from a browser, e.g. "
            'pages embedding the widget; other origins are refused. ["*"] allows all.'
        ),
    )
    max_upload_mb: int = Field(
        200, ge=1, description="Largest request body accepted (uploads, chat images), in MB."
    )
    page_renders_per_minute: int = Field(
        30,
        ge=0,
        description=(
            "PDF page images rendered per minute per key or address (cached ones are "
            "free); 0 = off."
        ),
    )
    max_page_pixels: int = Field(
        4_000_000,
        ge=10_000,
        description="Most pixels of a rendered PDF page image (larger pages are scaled down).",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.qdrant_url and self.qdrant_path:
            raise ConfigError(
                "set either MMRAG_QDRANT_URL (a server) or MMRAG_QDRANT_PATH (embedded), not both"
            )
        if self.chunk_target_words > self.chunk_max_words:
            raise ConfigError("chunk_target_words must not exceed chunk_max_words")
        return self

    @property
    def evidence_budget(self) -> int:
        """Tokens the sources may take in the prompt (``evidence_tokens`` or derived)."""
        if self.evidence_tokens is not None:
            return self.evidence_tokens
        return max(self.llm_context - self.max_tokens - 600, 200)

    @property
    def store_path(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("MMRAG_CONFIG")
        path = Path(config) if config else Path("mmrag.toml")
        if config and not path.is_file():
            raise ConfigError(f"MMRAG_CONFIG names {path}, which does not exist")
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
