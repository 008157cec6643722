"""One settings object for every command and the worker (env prefix ``NBP_``; flags beat env)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_BROKER = "kafka://127.0.0.1:9092"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``NBP_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="NBP_", extra="ignore", frozen=True)

    # --- Kafka -----------------------------------------------------------------------------
    broker: str = Field(DEFAULT_BROKER, description="Bootstrap address, kafka://HOST:PORT[;...]")
    input_topic: str = Field("behavior-events", description="Topic the events arrive on")
    output_topic: str = Field("behavior-predictions", description="Topic predictions go to")
    dlq_topic: str = Field("behavior-events.dlq", description="Dead-letter topic for bad events")
    partitions: int = Field(4, ge=1, description="Partition count used by `topics create`")
    replication_factor: int = Field(1, ge=1, description="Replication factor for new topics")
    broker_compat: Literal["auto", "tansu", "kafka"] = Field(
        "auto",
        description="Broker quirk fixes: `tansu` applies them, `kafka` never, `auto` when the "
        "broker is the embedded one (detected from its ApiVersions answer)",
    )
    app_id: str = Field("nextbehavior", description="Faust app id = consumer group id")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol for every client"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: Path | None = Field(None, description="CA bundle that verifies the broker")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS)")
    session_timeout_s: float = Field(10.0, gt=0, description="Consumer group session timeout")
    request_timeout_s: float = Field(30.0, gt=0, description="Kafka request timeout")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="Faust processing guarantee; exactly_once needs Apache Kafka (transactions)",
    )
    broker_wait_s: float = Field(
        300.0, ge=0, description="At start, wait this long for the broker and input topic"
    )

    # --- Model / inference -----------------------------------------------------------------
    bundle: Path | None = Field(None, description="Model bundle dir, or a dir of bundles")
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime providers in order of preference (comma-separated in env)",
    )
    intra_op_threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads")
    batch_size: int = Field(64, ge=1, description="Max events per inference micro-batch")
    batch_wait_ms: float = Field(5.0, ge=0, description="Max wait to fill a micro-batch")
    batch_idle_ms: float = Field(
        1.0, ge=0, description="A micro-batch goes once no event came for this long (0: off)"
    )
    explain: bool = Field(False, description="Add `because` to predictions")
    text_encoder: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "nextbehavior" / "text-encoder",
        description="Sentence-encoder dir (encoder.onnx + tokenizer.json) for text-aware items; "
        "`train --items` exports it there once if missing",
    )

    # --- State -----------------------------------------------------------------------------
    history_horizon_s: int = Field(
        30 * 24 * 3600, ge=0, description="Events older than this (vs the user's newest) drop out"
    )
    state_dir: Path = Field(Path(".nextbehavior"), description="Worker's local table state dir")
    pseudonymize_key: SecretStr | None = Field(
        None, description="HMAC key: if set, user ids are hashed before being stored or published"
    )
    max_event_bytes: int = Field(65536, ge=256, description="Larger input records are rejected")

    # --- Web / ops -------------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="Worker web server bind address")
    web_port: int = Field(6066, ge=0, le=65535, description="Worker web server port")
    log_level: str = Field("INFO", description="Logging level")
    log_json: bool = Field(False, description="Log JSON lines instead of text")
    reload_interval_s: float = Field(
        5.0, ge=0, description="Poll a directory of bundles this often for a newer one (0: never)"
    )
    health_interval_s: float = Field(
        5.0, gt=0, description="Broker probe and consumer-lag refresh interval (/healthz, /readyz)"
    )
    liveness_stall_s: float = Field(
        60.0, gt=0, description="/healthz fails after this long stuck with input or no broker"
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        bootstrap_servers(value)  # raises ValueError with a clear reason
        return value

    @property
    def bootstrap(self) -> str:
        """Comma-separated HOST:PORT list for Kafka clients."""
        return bootstrap_servers(self.broker)


def bootstrap_servers(url: str) -> str:
    """Turn ``kafka://h1:9092;h2:9092`` (or plain ``h1:9092,h2:9092``) into ``h1:9092,h2:9092``."""
    text = url.strip()
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme != "kafka":
            raise ValueError(f"broker URL must start with kafka://, got {url!r}")
    hosts = [h.strip() for h in text.replace(";", ",").split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"broker URL has no host: {url!r}")
    for host in hosts:
        parts = urlsplit(f"//{host}")
        try:
            port = parts.port
        except ValueError:  # "h:port", "h:99999"
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"broker address must be HOST:PORT, got {host!r}")
    return ",".join(hosts)


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with non-None keyword overrides (CLI flags) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)
