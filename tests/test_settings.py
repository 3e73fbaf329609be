"""Settings: defaults that work with no configuration, environment groups, a TOML file, and precedence."""

from __future__ import annotations

import pytest

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.settings import DEFAULT_MODEL_SPEC, load_settings


def test_defaults_are_the_embedded_mode(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SKETCHTEXT_CONFIG", raising=False)
    settings = load_settings(data_dir=tmp_path)
    assert settings.model.spec == DEFAULT_MODEL_SPEC
    assert settings.store.url is None and settings.store_path == tmp_path / "qdrant"
    assert settings.database_url == f"sqlite:///{tmp_path / 'sketchtext.db'}"


def test_environment_file_and_overrides_in_that_order(monkeypatch, tmp_path) -> None:
    config = tmp_path / "sketchtext.toml"
    config.write_text('[model]\nspec = "open_clip:from-file"\nbatch_size = 7\n[store]\ncollection = "file"\n')
    monkeypatch.setenv("SKETCHTEXT_MODEL__SPEC", "open_clip:from-env")
    monkeypatch.setenv("SKETCHTEXT_STORE__URL", "http://qdrant:6333")
    settings = load_settings(config, store={"collection": "flag"})
    assert settings.model.spec == "open_clip:from-env"  # environment beats the file
    assert settings.model.batch_size == 7  # the file fills what the environment leaves
    assert settings.store.collection == "flag"  # explicit overrides beat everything
    assert settings.store.url == "http://qdrant:6333"


def test_bad_values_and_missing_file_are_config_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SKETCHTEXT_MODEL__DEVICE", "tpu")
    with pytest.raises(ConfigError, match="configuration table"):
        load_settings()
    monkeypatch.delenv("SKETCHTEXT_MODEL__DEVICE")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
