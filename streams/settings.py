"""The one settings object: built once at start-up from the environment and an optional
config file (TOML or YAML), then passed down. Nothing else in the project reads os.environ."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from model_monitoring.tables.trigger import cron_fields

if TYPE_CHECKING:
    from model_monitoring.tables.continuous_detection import DetectionPolicy
    from model_monitoring.tables.incidents import IncidentPolicy
    from model_monitoring.tables.thresholds import Thresholds

DAY_MS = 86_400_000
FAUST_FETCH_MAX_WAIT_MS = 1500  # what faust's worker consumer is built with


def _env(name: str, *more: str) -> Any:
    """Accept the documented variable name and the plain field name (config files)."""
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Every knob of the service; see the README's Configuration table."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Kafka
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"))
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"))
    kafka_sasl_mechanism: str = Field("PLAIN", validation_alias=_env("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"))
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME", "kafka_sasl_username"))
    kafka_sasl_password: str | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD", "kafka_sasl_password"))
    kafka_ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"))
    kafka_ssl_certfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CERTFILE", "kafka_ssl_certfile"))
    kafka_ssl_keyfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_KEYFILE", "kafka_ssl_keyfile"))
    kafka_transport: Literal["mmkafka", "kafka"] = Field(
        "mmkafka", validation_alias=_env("MODEL_MONITORING_KAFKA_TRANSPORT", "kafka_transport"))
    broker_profile: Literal["embedded", "kafka"] = Field(
        "embedded", validation_alias=_env("MODEL_MONITORING_BROKER_PROFILE", "broker_profile"))
    # at_least_once: exactness from idempotent state (DESIGN.md), on every broker; exactly_once:
    # faust's Kafka transactions, which need a broker that has them (not the embedded one)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once", validation_alias=_env("MODEL_MONITORING_PROCESSING_GUARANTEE", "processing_guarantee"))
    replication_factor: int = Field(1, ge=1, validation_alias=_env("MODEL_MONITORING_REPLICATION_FACTOR", "replication_factor"))
    # extra topic configs of every compacted topic the service creates: its tables' changelogs
    # and the baselines topic (e.g. {"segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"})
    compacted_topic_config: dict[str, str] = Field(
        default_factory=dict, validation_alias=_env("MODEL_MONITORING_COMPACTED_TOPIC_CONFIG", "compacted_topic_config"))
    # consumer-group timeouts; unset, the broker profile's (embedded: 6 s / 1 s / 6 s, which
    # the embedded broker needs; kafka: faust's production defaults 60 s / 3 s / 60 s)
    broker_session_timeout_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("MODEL_MONITORING_BROKER_SESSION_TIMEOUT_SECONDS", "broker_session_timeout_seconds"))
    broker_heartbeat_interval_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("MODEL_MONITORING_BROKER_HEARTBEAT_INTERVAL_SECONDS", "broker_heartbeat_interval_seconds"))
    broker_rebalance_timeout_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("MODEL_MONITORING_BROKER_REBALANCE_TIMEOUT_SECONDS", "broker_rebalance_timeout_seconds"))
    # how long the worker's fetch waits for data (None: the profile's; see fetch_max_wait_ms())
    consumer_fetch_max_wait_ms: int | None = Field(
        None, ge=1, le=60_000, validation_alias=_env("MODEL_MONITORING_FETCH_MAX_WAIT_MS", "consumer_fetch_max_wait_ms"))

    # the worker
    app_id: str = Field("model-monitoring", validation_alias=_env("MODEL_MONITORING_APP_ID", "app_id"))
    web_host: str = Field("127.0.0.1", validation_alias=_env("MODEL_MONITORING_WEB_HOST", "web_host"))
    web_port: int = Field(6066, ge=0, le=65535, validation_alias=_env("MODEL_MONITORING_WEB_PORT", "web_port"))
    data_dir: Path = Field(Path("data"), validation_alias=_env("MODEL_MONITORING_DATA_DIR", "data_dir"))
    store: Literal["rocksdb", "memory"] = Field("rocksdb", validation_alias=_env("MODEL_MONITORING_STORE", "store"))
    log_level: str = Field("info", validation_alias=_env("MODEL_MONITORING_LOG_LEVEL", "log_level"))

    # topics
    features_topic: str = Field("ml.inference.features", validation_alias=_env("MODEL_MONITORING_FEATURES_TOPIC", "features_topic"))
    outcomes_topic: str = Field("ml.outcomes", validation_alias=_env("MODEL_MONITORING_OUTCOMES_TOPIC", "outcomes_topic"))
    baselines_topic: str = Field("ml.model.baselines", validation_alias=_env("MODEL_MONITORING_BASELINES_TOPIC", "baselines_topic"))
    trigger_topic: str = Field("workflow.job.trigger", validation_alias=_env("MODEL_MONITORING_TRIGGER_TOPIC", "trigger_topic"))
    drift_topic: str = Field("ml.model.drift.detected", validation_alias=_env("MODEL_MONITORING_DRIFT_TOPIC", "drift_topic"))
    degraded_topic: str = Field("ml.model.performance.degraded", validation_alias=_env("MODEL_MONITORING_DEGRADED_TOPIC", "degraded_topic"))
    drift_resolved_topic: str = Field("ml.model.drift.resolved", validation_alias=_env("MODEL_MONITORING_DRIFT_RESOLVED_TOPIC", "drift_resolved_topic"))
    performance_recovered_topic: str = Field("ml.model.performance.recovered", validation_alias=_env("MODEL_MONITORING_PERFORMANCE_RECOVERED_TOPIC", "performance_recovered_topic"))
    snapshot_topic: str = Field("ml.model.monitoring.snapshot", validation_alias=_env("MODEL_MONITORING_SNAPSHOT_TOPIC", "snapshot_topic"))
    completed_topic: str = Field("workflow.job.completed", validation_alias=_env("MODEL_MONITORING_COMPLETED_TOPIC", "completed_topic"))
    failed_topic: str = Field("workflow.job.failed", validation_alias=_env("MODEL_MONITORING_FAILED_TOPIC", "failed_topic"))
    partitions: int = Field(8, ge=1, le=1024, validation_alias=_env("MODEL_MONITORING_PARTITIONS", "partitions"))

    # state and time
    window_days: float = Field(7.0, gt=0, validation_alias=_env("MODEL_MONITORING_WINDOW_DAYS", "window_days"))
    bucket_days: float = Field(1.0, gt=0, validation_alias=_env("MODEL_MONITORING_BUCKET_DAYS", "bucket_days"))
    retention_days: float = Field(35.0, gt=0, validation_alias=_env("MODEL_MONITORING_RETENTION_DAYS", "retention_days"))
    join_ttl_days: float = Field(90.0, gt=0, validation_alias=_env("MODEL_MONITORING_JOIN_TTL_DAYS", "join_ttl_days"))
    batch_size: int = Field(2000, ge=1, validation_alias=_env("MODEL_MONITORING_BATCH_SIZE", "batch_size"))
    # fold a mispartitioned record in place when this worker holds its partition (at least once;
    # streams/repartition.py, "Folded in place"); false: always through the repartition topic
    forward_in_place: bool = Field(True, validation_alias=_env("MODEL_MONITORING_FORWARD_IN_PLACE", "forward_in_place"))
    max_records_per_fold: int = Field(10000, ge=1, validation_alias=_env("MODEL_MONITORING_MAX_RECORDS_PER_FOLD", "max_records_per_fold"))
    batch_within_seconds: float = Field(0.2, gt=0, validation_alias=_env("MODEL_MONITORING_BATCH_WITHIN_SECONDS", "batch_within_seconds"))
    maintenance_interval_seconds: float = Field(300.0, gt=0, validation_alias=_env("MODEL_MONITORING_MAINTENANCE_INTERVAL_SECONDS", "maintenance_interval_seconds"))
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, validation_alias=_env("MODEL_MONITORING_MAX_MESSAGE_BYTES", "max_message_bytes"))
    max_features: int = Field(2000, ge=1, validation_alias=_env("MODEL_MONITORING_MAX_FEATURES", "max_features"))

    # statistics
    psi_warning: float = Field(0.1, gt=0, validation_alias=_env("MODEL_MONITORING_PSI_WARNING", "psi_warning"))
    psi_critical: float = Field(0.25, gt=0, validation_alias=_env("MODEL_MONITORING_PSI_CRITICAL", "psi_critical"))
    min_samples: int = Field(100, ge=1, validation_alias=_env("MODEL_MONITORING_MIN_SAMPLES", "min_samples"))
    min_outcomes: int = Field(100, ge=1, validation_alias=_env("MODEL_MONITORING_MIN_OUTCOMES", "min_outcomes"))
    tolerance: float = Field(0.10, ge=0, validation_alias=_env("MODEL_MONITORING_TOLERANCE", "tolerance"))
    confidence: float = Field(0.95, gt=0.5, lt=1, validation_alias=_env("MODEL_MONITORING_CONFIDENCE", "confidence"))
    # Benjamini–Hochberg level over a model version's checks in one run; 0 turns it off
    fdr_q: float = Field(0.05, ge=0, lt=1, validation_alias=_env("MODEL_MONITORING_FDR_Q", "fdr_q"))
    # incidents: a drift clears below psi_clear × its warning threshold (plug-in PSI or its lower
    # bound), a metric below baseline × (1 + tolerance/2); either after resolve_after_runs runs
    # in a row no longer in breach
    psi_clear: float = Field(0.8, gt=0, le=1, validation_alias=_env("MODEL_MONITORING_PSI_CLEAR", "psi_clear"))
    resolve_after_runs: int = Field(2, ge=1, validation_alias=_env("MODEL_MONITORING_RESOLVE_AFTER_RUNS", "resolve_after_runs"))
    threshold_overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict, validation_alias=_env("MODEL_MONITORING_THRESHOLD_OVERRIDES", "threshold_overrides"))
    # the outcome clock: which view `performance` and the degraded events use (`outcome`: the
    # outcomes that arrived in the window; `prediction`: the window's predictions labelled so far)
    performance_window: Literal["outcome", "prediction"] = Field(
        "outcome", validation_alias=_env("MODEL_MONITORING_PERFORMANCE_WINDOW", "performance_window"))
    # label_coverage: degraded below this share of the trailing 8-week median, cohorts compared
    # at this age
    label_coverage_share: float = Field(0.5, gt=0, lt=1, validation_alias=_env("MODEL_MONITORING_LABEL_COVERAGE_SHARE", "label_coverage_share"))
    label_coverage_age_days: int = Field(14, ge=1, le=21, validation_alias=_env("MODEL_MONITORING_LABEL_COVERAGE_AGE_DAYS", "label_coverage_age_days"))

    # continuous detection between weekly runs (tables/continuous_detection.py)
    continuous_enabled: bool = Field(True, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_ENABLED", "continuous_enabled"))
    continuous_detector: Literal["adwin", "page_hinkley", "kswin"] = Field(
        "adwin", validation_alias=_env("MODEL_MONITORING_CONTINUOUS_DETECTOR", "continuous_detector"))
    continuous_detector_params: dict[str, Any] = Field(
        default_factory=lambda: {"delta": 0.1}, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_DETECTOR_PARAMS", "continuous_detector_params"))
    continuous_min_events: int = Field(100, ge=1, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_MIN_EVENTS", "continuous_min_events"))
    continuous_min_outcomes: int = Field(30, ge=1, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_MIN_OUTCOMES", "continuous_min_outcomes"))
    continuous_confirm_events: int = Field(300, ge=1, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_CONFIRM_EVENTS", "continuous_confirm_events"))
    continuous_confirm_outcomes: int = Field(150, ge=2, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_CONFIRM_OUTCOMES", "continuous_confirm_outcomes"))
    continuous_false_alarm_budget: float = Field(0.05, gt=0, lt=1, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_FALSE_ALARM_BUDGET", "continuous_false_alarm_budget"))
    continuous_error_budget_share: float = Field(0.5, gt=0, lt=1, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_ERROR_BUDGET_SHARE", "continuous_error_budget_share"))
    continuous_cooldown_minutes: int = Field(360, ge=0, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_COOLDOWN_MINUTES", "continuous_cooldown_minutes"))
    continuous_lateness_seconds: int = Field(60, ge=0, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_LATENESS_SECONDS", "continuous_lateness_seconds"))
    continuous_idle_minutes: int = Field(5, ge=1, validation_alias=_env("MODEL_MONITORING_CONTINUOUS_IDLE_MINUTES", "continuous_idle_minutes"))

    # the weekly run
    cron: str = Field("0 6 * * 0", validation_alias=_env("MODEL_MONITORING_CRON", "cron", "model_monitoring_cron"))
    cron_timezone: str = Field("UTC", validation_alias=_env("MODEL_MONITORING_CRON_TIMEZONE", "cron_timezone"))
    cron_enabled: bool = Field(True, validation_alias=_env("MODEL_MONITORING_CRON_ENABLED", "cron_enabled"))
    dlq_other_jobs: bool = Field(True, validation_alias=_env("MODEL_MONITORING_DLQ_OTHER_JOBS", "dlq_other_jobs"))
    run_deadline_seconds: float = Field(900.0, gt=0, validation_alias=_env("MODEL_MONITORING_RUN_DEADLINE_SECONDS", "run_deadline_seconds"))
    # the weekly run's own events checked against their schemas: the first of each kind, then 1 in N
    outgoing_check_every: int = Field(10, ge=1, validation_alias=_env("MODEL_MONITORING_OUTGOING_CHECK_EVERY", "outgoing_check_every"))

    # the HTTP route's service JWT
    jwt_secret: str | None = Field(None, validation_alias=_env("MODEL_MONITORING_JWT_SECRET", "jwt_secret"))
    jwt_public_key_file: Path | None = Field(None, validation_alias=_env("MODEL_MONITORING_JWT_PUBLIC_KEY_FILE", "jwt_public_key_file"))
    jwt_issuer: str | None = Field(None, validation_alias=_env("MODEL_MONITORING_JWT_ISSUER", "jwt_issuer"))
    jwt_audience: str | None = Field(None, validation_alias=_env("MODEL_MONITORING_JWT_AUDIENCE", "jwt_audience"))
    jwt_scope: str = Field("model-monitoring:run", validation_alias=_env("MODEL_MONITORING_JWT_SCOPE", "jwt_scope"))
    auth_disabled: bool = Field(False, validation_alias=_env("MODEL_MONITORING_AUTH_DISABLED", "auth_disabled"))
    max_body_bytes: int = Field(64 * 1024, ge=256, validation_alias=_env("MODEL_MONITORING_MAX_BODY_BYTES", "max_body_bytes"))
    # how long POST …/run holds the request for the run's end before it answers 202; a caller's
    # `Prefer: wait=N` or `Prefer: respond-async` overrides it (tables/run_request.py)
    run_wait_seconds: float = Field(60.0, ge=0, le=300, validation_alias=_env("MODEL_MONITORING_RUN_WAIT_SECONDS", "run_wait_seconds"))

    # metrics
    metrics_cardinality_cap: int = Field(2000, ge=1, validation_alias=_env("MODEL_MONITORING_METRICS_CARDINALITY_CAP", "metrics_cardinality_cap"))

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        cron_fields(self.cron)  # a schedule faust's crontab could not read fails here, by name
        if self.psi_critical < self.psi_warning:
            raise ValueError("psi_critical must be >= psi_warning")
        if self.retention_days < self.window_days:
            raise ValueError("retention_days must be >= window_days")
        if self.processing_guarantee == "exactly_once" and self.broker_profile == "embedded":
            raise ValueError(
                "processing_guarantee exactly_once needs a broker with transactions, and the embedded "
                "broker (MODEL_MONITORING_BROKER_PROFILE=embedded) rejects InitProducerId: use "
                "at_least_once there, or exactly_once on Apache Kafka (MODEL_MONITORING_BROKER_PROFILE=kafka)")
        if self.processing_guarantee == "exactly_once" and self.kafka_transport != "mmkafka":
            raise ValueError(
                "processing_guarantee exactly_once needs the project's transport "
                "(MODEL_MONITORING_KAFKA_TRANSPORT=mmkafka): faust's own loses table writes across a "
                "crash with transactions (streams/transactions.py)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # explicit arguments > environment > config file (passed in as init kwargs by load())
        return (init_settings, env_settings)

    # derived values -----------------------------------------------------------------
    @property
    def window_ms(self) -> int:
        return int(self.window_days * DAY_MS)

    @property
    def bucket_ms(self) -> int:
        return int(self.bucket_days * DAY_MS)

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * DAY_MS)

    @property
    def join_ttl_ms(self) -> int:
        return int(self.join_ttl_days * DAY_MS)

    @property
    def runs_topic(self) -> str:
        return f"{self.app_id}.runs"

    @property
    def snapshot_requests_topic(self) -> str:
        return f"{self.app_id}.snapshot-requests"

    @property
    def snapshot_parts_topic(self) -> str:
        return f"{self.app_id}.snapshot-parts"

    def repartition_topic(self, source_topic: str) -> str:
        """Where records of an input topic that arrived on another partition than their
        predictionId's are forwarded (streams/repartition.py)."""
        kind = "features" if source_topic == self.features_topic else "outcomes"
        return f"{self.app_id}.{kind}-repartition"

    def dlq_topic(self, source_topic: str) -> str:
        return f"{source_topic}.dlq"

    def fetch_max_wait_ms(self) -> int:
        """The worker's fetch wait: Apache Kafka answers a fetch as soon as data comes, so faust's
        1,500 ms only bounds an idle poll; the embedded broker (Tansu) holds every fetch for the
        whole wait, so each hop of the weekly run (trigger, fan-out, parts, evaluation) would
        cost up to that: 100 ms there."""
        if self.consumer_fetch_max_wait_ms is not None:
            return self.consumer_fetch_max_wait_ms
        return 100 if self.broker_profile == "embedded" else FAUST_FETCH_MAX_WAIT_MS

    def thresholds(self) -> Thresholds:
        from model_monitoring.tables.thresholds import Thresholds

        return Thresholds(
            psi_warning=self.psi_warning, psi_critical=self.psi_critical,
            min_samples=self.min_samples, min_outcomes=self.min_outcomes,
            tolerance=self.tolerance, confidence=self.confidence,
            overrides=self.threshold_overrides, fdr_q=self.fdr_q,
            performance_window=self.performance_window, label_coverage_share=self.label_coverage_share,
            label_coverage_age_days=self.label_coverage_age_days,
        )

    @property
    def detector_buckets_topic(self) -> str:
        return f"{self.app_id}.detector-buckets"

    def detection_policy(self) -> DetectionPolicy:
        from model_monitoring.tables.continuous_detection import DetectionPolicy

        return DetectionPolicy(
            detector=self.continuous_detector, params=dict(self.continuous_detector_params),
            min_events=self.continuous_min_events, min_outcomes=self.continuous_min_outcomes,
            confirm_events=self.continuous_confirm_events, confirm_outcomes=self.continuous_confirm_outcomes,
            tolerance=self.tolerance, false_alarm_budget=self.continuous_false_alarm_budget,
            error_budget_share=self.continuous_error_budget_share,
            cooldown_ms=self.continuous_cooldown_minutes * 60_000,
            idle_ms=self.continuous_idle_minutes * 60_000, partitions=self.partitions)

    def incident_policy(self) -> IncidentPolicy:
        from model_monitoring.tables.incidents import IncidentPolicy

        return IncidentPolicy(psi_clear=self.psi_clear, resolve_after_runs=self.resolve_after_runs)

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security settings in aiokafka's vocabulary (used by the CLI tools and benches)."""
        kw: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap_servers,
                              "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            kw.update(sasl_mechanism=self.kafka_sasl_mechanism,
                      sasl_plain_username=self.kafka_sasl_username,
                      sasl_plain_password=self.kafka_sasl_password)
        if "SSL" in self.kafka_security_protocol:
            import ssl

            ctx = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
            if self.kafka_ssl_certfile:
                ctx.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            kw["ssl_context"] = ctx
        return kw


MAPPING_SETTINGS = ("threshold_overrides", "compacted_topic_config")  # values, not sections


def _flatten(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Config files may group keys in sections ([kafka], [batch_jobs] …); the leaf names are the
    setting names, so `batch_jobs.model_monitoring_cron` sets `cron`."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, Mapping) and key not in MAPPING_SETTINGS:
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into flat setting names."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml  # optional: only needed for YAML config files

        doc = yaml.safe_load(text) or {}
    else:
        doc = tomllib.loads(text)
    if not isinstance(doc, Mapping):
        raise ValueError(f"{path}: the config file must hold a mapping")
    return _flatten(doc)


JSON_VARIABLES = ("MODEL_MONITORING_THRESHOLD_OVERRIDES", "MODEL_MONITORING_COMPACTED_TOPIC_CONFIG")


def load_settings(environ: Mapping[str, str], config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: explicit overrides > environment > config file > defaults."""
    path = config_file or (Path(environ["MODEL_MONITORING_CONFIG"]) if environ.get("MODEL_MONITORING_CONFIG") else None)
    from_file = read_config_file(path) if path else {}
    env_values = {k: v for k, v in environ.items()
                  if k.startswith(("MODEL_MONITORING_", "KAFKA_"))}
    for name in JSON_VARIABLES:  # mappings come from the environment as JSON objects
        raw = env_values.get(name)
        if isinstance(raw, str):
            import orjson

            env_values[name] = orjson.loads(raw)
    merged: dict[str, Any] = {**from_file, **env_values, **overrides}
    return Settings.model_validate(merged)
