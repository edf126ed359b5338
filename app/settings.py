"""Settings, read once (environment ``MMRAG_*``, an optional TOML file) and passed down.

Precedence, highest first: explicit arguments, environment variables, the TOML file
named by ``MMRAG_CONFIG`` (or ``./mmrag.toml`` when present), then the defaults below.
Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from retrieval.errors import ConfigError


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
    collection_prefix: str = Field("mmrag", description="Prefix of the collection names.")

    # Encoders and ingestion
    text_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Dense text encoder: the packaged default or a sentence-transformers folder.",
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per encoder forward pass.")
    ingest_batch_size: int = Field(256, ge=1, description="Passages embedded/stored together.")
    chunk_target_words: int = Field(180, ge=20, description="Target passage length in words.")
    chunk_max_words: int = Field(300, ge=40, description="Maximum passage length in words.")

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
    context_chars: int = Field(
        7000, ge=500, description="Budget of source text in the prompt, in characters."
    )

    # Generation
    generator: Literal["llamacpp", "openai"] = Field("llamacpp", description="LLM backend.")
    llm_model_path: Path | None = Field(
        None, description="GGUF for llamacpp; default: the packaged Qwen2.5-Coder-0.5B."
    )
    llm_context: int = Field(4096, ge=512, description="Context window of the model in tokens.")
    llm_threads: int = Field(2, ge=1, description="CPU threads for llama.cpp.")
    max_tokens: int = Field(384, ge=1, description="Most tokens generated per answer.")
    temperature: float = Field(0.1, ge=0.0, description="Sampling temperature.")
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="OpenAI-compatible server (vLLM)."
    )
    openai_model: str = Field("qwen2.5-0.5b-instruct", description="Model name on that server.")
    openai_api_key: str = Field("EMPTY", description="API key for that server.")
    openai_timeout: float = Field(60.0, gt=0, description="Read timeout in seconds.")

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
