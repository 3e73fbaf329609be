"""Settings from `SKETCHTEXT_*` environment variables and an optional TOML file.

Built once in an entry point (CLI, worker, host code) and passed down; nothing reads it at import time.
Nested groups use a double underscore: `SKETCHTEXT_MODEL__SPEC`, `SKETCHTEXT_STORE__URL`, ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import platformdirs
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sketchtext.plugin.errors import ConfigError

DEFAULT_MODEL_SPEC = "open_clip:ViT-B-32@laion2b_s34b_b79k"


class ModelSettings(BaseModel):
    spec: str = DEFAULT_MODEL_SPEC
    checkpoint: Path | None = None  # a trained sketchtext checkpoint directory (composed queries)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: fp16 on a GPU, bf16 on a CPU with native bf16, else int8; each only when it agrees with fp32 (int8 always)
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    models_dir: Path | None = None  # where int8 image towers are exported once per model; defaults to <data_dir>/models
    batch_size: Annotated[int, Field(ge=1)] = 32


class StoreSettings(BaseModel):
    url: str | None = None  # a Qdrant server; unset means the embedded store under data_dir
    api_key: SecretStr | None = None
    path: Path | None = None  # embedded store folder; defaults to <data_dir>/qdrant
    backend: Literal["edge", "local"] = "edge"  # embedded engine: Qdrant Edge, or qdrant-client's local mode
    collection: str = "sketchtext"
    vector_name: str | None = None  # a named vector inside a host's collection
    point_ids: Literal["asset", "host"] = "asset"  # "host": point id = the sidecar's host_id (host-owned points)
    regions: bool | None = None  # photo regions in new collections; None: with a trained checkpoint only
    timeout_s: float = 30.0


class DatabaseSettings(BaseModel):
    url: str | None = None  # SQLAlchemy URL; unset means sqlite:///<data_dir>/sketchtext.db


class QueueSettings(BaseModel):
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None  # defaults to the broker URL
    queue: str = "gpu"
    remote_encode: bool = False  # encode queries on a Celery worker instead of in-process
    encode_timeout_s: float = 30.0
    # Redis redelivers a batch whose worker died after this long; it must exceed the longest batch.
    visibility_timeout_s: Annotated[float, Field(gt=0)] = 3600.0


class WebSettings(BaseModel):
    token: SecretStr | None = None  # bearer token required by `sketchtext serve` on the page and the API when set
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024  # largest search request body (sketch included)
    catalog_root: Path | None = None  # where photos are served from; defaults to the folder last ingested


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("sketchtext", appauthor=False))


class Settings(BaseSettings):
    """Everything sketchtext can be configured with; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SKETCHTEXT_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    model: ModelSettings = Field(default_factory=ModelSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    web: WebSettings = Field(default_factory=WebSettings)

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
        config_file = settings_cls.model_config.get("toml_file") or os.environ.get("SKETCHTEXT_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(str(config_file))))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        return self.db.url or f"sqlite:///{self.data_dir / 'sketchtext.db'}"

    @property
    def store_path(self) -> Path:
        return self.store.path or self.data_dir / "qdrant"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, then `config_file` (or $SKETCHTEXT_CONFIG), with explicit overrides on top.

    Paths (the file, `data_dir`, `model.checkpoint`, `store.path`, ...) may be `str` or `Path`.
    """
    cls: type[Settings] = Settings
    config_file = config_file or os.environ.get("SKETCHTEXT_CONFIG") or None
    config_file = Path(config_file).expanduser() if config_file else None
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"Config file {config_file} does not exist; pass an existing TOML file.")
        # A subclass carries the file, so two callers with different files never share state.
        cls = cast(
            type[Settings],
            type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": config_file}}),
        )
    try:
        return cls(**overrides)
    except ValueError as exc:
        raise ConfigError(f"Invalid settings: {exc}. See the README's configuration table.") from exc
