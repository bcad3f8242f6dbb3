"""The wiring: one faust.App built from the settings, with its topics and tables.

A factory rather than a module-level app, so the settings are read once at start-up and passed
down, and tests can build as many apps as they need. The agents register themselves on it
(`agents/service.py`); this layer knows nothing of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TableT

from model_monitoring.schemas.validation import Validators
from model_monitoring.streams.join_store import JoinLogTable, JoinStore, create_join_store
from model_monitoring.streams.metrics import Metrics
from model_monitoring.streams.partition_locks import PartitionLocks
from model_monitoring.streams.partitioned import PartitionKeyedGlobalTable, PartitionKeyedTable
from model_monitoring.streams.settings import Settings
from model_monitoring.streams.topics import Topics, declare_topics
from model_monitoring.tables.baseline_lookup import BaselineCache

FETCH_BYTES = 16 * 1024 * 1024
# The producer's batch per partition, at most. aiokafka's default, 16 KiB, is less than one weekly
# snapshot (~33 KB at 25 features), so each snapshot filled a batch alone; a message that finds its
# partition's last batch full waits until the sender has taken that batch, and the sender keeps
# one request in flight per broker: every snapshot after the first on a partition waited for a
# broker round trip, and the evaluator published at the broker's pace (measured in the worker,
# 1,000 keys: 1.2-1.4 ms a send, 0.36 ms with larger batches). Below the 1 MB a stock broker
# accepts in one batch (message.max.bytes); a single larger message still goes alone, as before.
PRODUCER_BATCH_BYTES = 512 * 1024


@dataclass(frozen=True)
class Tables:
    """The changelog-backed tables; their keys are `tables/keys.py`'s."""

    partials: TableT      # PartialKey -> PartialState bytes; MetaKey -> high-water marks JSON
    join_log: TableT      # JoinBatchKey -> JoinBatch bytes (streams/join_store.py)
    join_buffer: TableT   # JoinKey -> JoinEntry bytes: the previous release's, moved into join_log
    baselines: TableT     # BaselineKey -> baseline JSON (global)
    job_runs: TableT      # RunKey -> JobRun bytes; ReportKey, EvaluatedKey -> JSON
    evaluations: TableT   # EvaluationKey -> Evaluation bytes
    incidents: TableT     # IncidentBookKey -> IncidentBook bytes
    run_status: TableT    # RunStatusKey -> run summary JSON (global: any worker answers GET)
    detect_buckets: TableT | None = None  # (source partition, tenant:model) -> BucketBook bytes
    detectors: TableT | None = None       # (partition, tenant:model) -> ModelDetectors bytes


@dataclass
class Monitor:
    """Everything an agent needs, passed down explicitly."""

    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables
    validators: Validators
    metrics: Metrics
    baselines: BaselineCache          # parsed view of tables.baselines
    partition_locks: PartitionLocks   # one fold (or expiry) at a time per partition
    joins: JoinStore                  # the join log and its local index


def faust_settings(s: Settings) -> dict[str, Any]:
    broker = s.kafka_bootstrap_servers
    conf: dict[str, Any] = dict(
        # the project transport (streams/transport.py); "kafka" would be faust's own
        broker=",".join(f"{s.kafka_transport}://{b.strip()}" for b in broker.split(",")),
        store="mmrocksdb://" if s.store == "rocksdb" else "memory://",
        datadir=str(s.data_dir),
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        web_host=s.web_host, web_port=s.web_port, web_bind=s.web_host,
        autodiscover=False,
        # a revoked partition's actor stops without a crash or a supervisor restart (streams/agent.py)
        Agent="model_monitoring.streams.agent:Agent",
        Table=PartitionKeyedTable,
        # recovery seeks the stream partitions before it resumes them (streams/recovery.py)
        TableManager="model_monitoring.streams.recovery:TableManager",
        # the project's Topic publishes through the running producer without three event-loop
        # turns per message (streams/transport.py); with faust's own transport, faust's Topic
        **({"Topic": "model_monitoring.streams.transport:Topic"} if s.kafka_transport == "mmkafka" else {}),
        GlobalTable=PartitionKeyedGlobalTable,
        consumer_max_fetch_size=FETCH_BYTES,
        producer_max_request_size=FETCH_BYTES,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # exactly_once: faust's transactions (a transactional producer per assigned partition,
        # input offsets committed inside them, read_committed consumers), as the project's
        # transport fixes them (streams/transactions.py)
        processing_guarantee=s.processing_guarantee,
        table_standby_replicas=0,
        stream_wait_empty=False,
        logging_config=None,
    )
    if s.broker_profile == "embedded":
        # the embedded broker needs short group timeouts to form a group quickly (DESIGN.md)
        conf.update(broker_session_timeout=6.0, broker_heartbeat_interval=1.0,
                    broker_rebalance_timeout=6.0)
    for name, value in (("broker_session_timeout", s.broker_session_timeout_seconds),
                        ("broker_heartbeat_interval", s.broker_heartbeat_interval_seconds),
                        ("broker_rebalance_timeout", s.broker_rebalance_timeout_seconds)):
        if value is not None:
            conf[name] = value
    if s.kafka_security_protocol != "PLAINTEXT":
        conf["broker_credentials"] = _credentials(s)
    return conf


def _credentials(s: Settings) -> Any:
    ssl_context = None
    if "SSL" in s.kafka_security_protocol:
        ssl_context = s.kafka_client_kwargs()["ssl_context"]
    if s.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.kafka_sasl_username, password=s.kafka_sasl_password,
                                     mechanism=s.kafka_sasl_mechanism, ssl_context=ssl_context)
    return faust.SSLCredentials(ssl_context)


def create_monitor(s: Settings) -> Monitor:
    """The app, its topics and tables; no agent registered yet."""
    app = faust.App(s.app_id, **faust_settings(s))
    # Tansu's end offsets are off by a batch (streams/highwater.py); Apache Kafka's are right
    app.mm_correct_highwaters = s.broker_profile == "embedded"  # type: ignore[attr-defined]
    # Tansu holds a fetch for its whole wait even when data comes (streams/highwater.py)
    app.mm_fetch_max_wait_ms = s.fetch_max_wait_ms()  # type: ignore[attr-defined]
    topics = declare_topics(app, s)
    # faust creates the changelogs compacted; the operator's extra configs go with them
    changelog: dict[str, Any] = dict(extra_topic_configs=dict(s.compacted_topic_config))
    common: dict[str, Any] = dict(key_type=bytes, value_type=bytes, partitions=s.partitions, **changelog)
    join_log = JoinLogTable(app, name="join_log", beacon=app.tables.beacon, **common)
    app.tables.add(join_log)
    tables = Tables(
        partials=app.Table("partials", **common),
        join_log=join_log,
        join_buffer=app.Table("join_buffer", **common),
        baselines=app.GlobalTable("baselines", key_type=bytes, value_type=bytes, partitions=1,
                                  recovery_buffer_size=1, **changelog),
        job_runs=app.Table("job_runs", **common),
        evaluations=app.Table("evaluations", **common),
        incidents=app.Table("incidents", **common),
        run_status=app.GlobalTable("run_status", key_type=bytes, value_type=bytes, partitions=1,
                                   recovery_buffer_size=1, **changelog),
        detect_buckets=app.Table("detect_buckets", **common),
        detectors=app.Table("detectors", **common),
    )
    return Monitor(settings=s, app=app, topics=topics, tables=tables,
                   validators=Validators(max_features=s.max_features),
                   metrics=Metrics(cardinality_cap=s.metrics_cardinality_cap, input_topics=(
                       s.features_topic, s.outcomes_topic, s.baselines_topic, s.trigger_topic),
                       joined_topics=(s.features_topic, s.outcomes_topic)),
                   baselines=BaselineCache(tables.baselines), partition_locks=PartitionLocks(),
                   joins=create_join_store(app, join_log, tables.join_buffer,
                                           s.data_dir / f"{s.app_id}-join-index" if s.store == "rocksdb" else None))
