"""One settings object, read from ``TIERLINE_*`` environment variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'data' / 'tierline.db'}"
DEV_SECRET = "tierline-dev-secret-not-for-production"
#: Shortest secrets production accepts (a key or secret of one letter is guessed at once).
MIN_SECRET_LENGTH = 32
MIN_ADMIN_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Server configuration; every field maps to ``TIERLINE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    admin_key: str | None = None
    secret: str | None = None
    # signs webhook deliveries instead of ``secret`` when set: a receiver then never holds
    # the key that signs model snapshots (which the API unpickles)
    webhook_secret: str | None = None
    env: str = "prod"
    api_url: str = "http://127.0.0.1:8000"

    lease_seconds: float = Field(600.0, gt=0)
    ageing_seconds: float = Field(3600.0, gt=0)
    snapshot_every: int = Field(200, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_batch: int = Field(1000, ge=1)
    max_string_length: int = Field(10_000, ge=1)
    max_comment_length: int = Field(2_000, ge=1)
    busy_timeout_ms: int = Field(10_000, ge=0)

    # abuse limits: per-key request rate (token bucket; 0 = off), slow clients
    rate_limit_per_second: float = Field(0.0, ge=0)  # requests/s per key; 0: no limit
    rate_limit_burst: float = Field(0.0, ge=0)  # bucket size; 0: twice the rate (at least 1)
    body_timeout_seconds: float = Field(30.0, gt=0)  # the whole request body must arrive by then
    keep_alive_seconds: float = Field(5.0, gt=0)  # idle keep-alive connections are closed

    # PostgreSQL: fail fast while the database is away (answered 503), share the models
    db_connect_timeout_seconds: float = Field(2.0, gt=0)
    db_statement_timeout_ms: int = Field(5_000, ge=0)  # 0: no limit
    db_lock_timeout_ms: int = Field(4_000, ge=0)
    db_pool_size: int = Field(10, ge=1)  # per process; up to twice this under bursts
    db_pool_timeout_seconds: float = Field(2.0, gt=0)
    sync_seconds: float = Field(0.2, gt=0)  # leader publishes / followers load this often

    # webhooks: delivered by a background dispatcher from the outbox table
    webhook_dispatch: bool = True  # run the dispatcher in this process
    webhook_backoff_seconds: float = Field(5.0, gt=0)  # first retry; doubles per failure
    webhook_max_backoff_seconds: float = Field(600.0, gt=0)
    webhook_retry_seconds: float = Field(86_400.0, gt=0)  # give up after this long failing
    webhook_timeout_seconds: float = Field(5.0, gt=0)  # per attempt
    webhook_poll_seconds: float = Field(0.5, gt=0)
    webhook_workers: int = Field(4, ge=1, le=64)  # attempts in flight (different cases)

    @model_validator(mode="after")
    def _strong_enough(self) -> "Settings":
        """Outside dev mode, the secrets and the bootstrap admin key must be long enough."""
        if self.is_dev:
            return self
        for name, value, least in (
            ("TIERLINE_SECRET", self.secret, MIN_SECRET_LENGTH),
            ("TIERLINE_WEBHOOK_SECRET", self.webhook_secret, MIN_SECRET_LENGTH),
            ("TIERLINE_ADMIN_KEY", self.admin_key, MIN_ADMIN_KEY_LENGTH),
        ):
            if value is not None and len(value) < least:
                raise ValueError(
                    f"{name} must be at least {least} characters outside TIERLINE_ENV=dev "
                    f"(got {len(value)}); e.g. python -c \"import secrets; "
                    "print(secrets.token_urlsafe(32))\""
                )
        return self

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def signing_secret(self) -> bytes:
        """Secret that signs snapshots and webhooks; dev mode falls back to a fixed one."""
        if self.secret:
            return self.secret.encode()
        if self.is_dev:
            return DEV_SECRET.encode()
        raise RuntimeError("TIERLINE_SECRET must be set unless TIERLINE_ENV=dev")

    @property
    def webhook_signing_secret(self) -> bytes:
        """Secret that signs webhook deliveries: ``TIERLINE_WEBHOOK_SECRET``, else the
        signing secret (receivers then hold the key that signs snapshots too)."""
        return self.webhook_secret.encode() if self.webhook_secret else self.signing_secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
