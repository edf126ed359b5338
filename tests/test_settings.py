"""Settings: environment, TOML file, validation, and that the docs list every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings
from retrieval.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent)  # no mmrag.toml here
    s = Settings()
    assert s.qdrant_url is None
    assert s.store_path == Path("mmrag-data") / "qdrant"
    assert s.generator == "llamacpp"


def test_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('top_k = 7\ngenerator = "openai"\ndata_dir = "/srv/x"\n')
    monkeypatch.setenv("MMRAG_CONFIG", str(config))
    monkeypatch.setenv("MMRAG_TOP_K", "3")
    s = Settings()
    assert s.top_k == 3  # the environment wins over the file
    assert s.generator == "openai"
    assert s.data_dir == Path("/srv/x")


def test_conflicting_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="MMRAG_QDRANT_URL"):
        Settings(qdrant_url="http://localhost:6333", qdrant_path=tmp_path)
    monkeypatch.setenv("MMRAG_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        Settings()


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`MMRAG_{name.upper()}`" in text, name
