"""SQLAlchemy 2.0 tables of the result database (all prefixed `pb_`).

Runs link to Optuna trials by study name and trial number, never by foreign keys into Optuna's tables,
so the two schemas migrate independently in one database.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("pending", "running", "ok", "oom", "failed", "timeout", "nonfinite", "skipped", "cancelled")
FINISHED = ("ok", "oom", "nonfinite")  # deterministic outcomes: a config with one of these is not rerun
UNFINISHED = ("pending", "running")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "pb_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|interrupted|cancelled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    driver: Mapped[str | None] = mapped_column(String(255), nullable=True)  # host:pid holding the lease
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # epoch seconds (store/lease.py)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    runs: Mapped[list[Run]] = relationship(back_populates="batch", order_by="Run.index")


class Environment(Base):
    __tablename__ = "pb_environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    device: Mapped[str] = mapped_column(String(16), default="cpu")
    gpu_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    driver: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cuda: Mapped[str | None] = mapped_column(String(32), nullable=True)
    torch: Mapped[str] = mapped_column(String(64), default="")
    triton: Mapped[str | None] = mapped_column(String(64), nullable=True)
    python: Mapped[str] = mapped_column(String(64), default="")
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Run(Base):
    __tablename__ = "pb_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex, written once
    batch_id: Mapped[int] = mapped_column(ForeignKey("pb_batches.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    config_hash: Mapped[str] = mapped_column(String(16), index=True)
    config: Mapped[dict] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(String(16))
    params: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reused_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # status skipped: the cached run
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    study_name: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # `phasebench runs note`

    batch: Mapped[Batch] = relationship(back_populates="runs")
    result: Mapped[Result | None] = relationship(back_populates="run", uselist=False)

    __table_args__ = (Index("ix_pb_runs_batch_index", "batch_id", "index", unique=True),)


class Result(Base):
    """What a finished run measured; one row per run (the run id is the key: writes are idempotent)."""

    __tablename__ = "pb_results"

    run_id: Mapped[str] = mapped_column(ForeignKey("pb_runs.id"), primary_key=True)
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("pb_environments.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)  # reached: build|forward|backward|step|done
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    weights_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    static_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    peak_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    activation_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reserved_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    device_used_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # NVML view: total - free
    alloc_retries: Mapped[int | None] = mapped_column(Integer, nullable=True)
    num_ooms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    logits_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    saved_tensor_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    step_time_median_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    step_time_iqr_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    flops_per_token: Mapped[float | None] = mapped_column(Float, nullable=True)
    mfu: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[Run] = relationship(back_populates="result")
    environment: Mapped[Environment | None] = relationship()


class RunTag(Base):
    """A label on a run (`phasebench runs tag`, `run --tag`); a run holds each tag once."""

    __tablename__ = "pb_run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("pb_runs.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class TrainMetric(Base):
    """One training step (`kind` train) or evaluation (`kind` eval) of a run; (run, kind, step) is unique,
    so a metric streamed twice (a retried worker) is stored once."""

    __tablename__ = "pb_train_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pb_runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    step: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(BigInteger)  # tokens seen so far
    elapsed_s: Mapped[float] = mapped_column(Float)  # wall time since the run's first step
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    grad_norm: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    step_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    bits_per_byte: Mapped[float | None] = mapped_column(Float, nullable=True)
    perplexity: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_pb_train_metrics_run_kind_step", "run_id", "kind", "step", unique=True),)


METRIC_FIELDS = (
    "tokens",
    "elapsed_s",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "step_time_s",
    "peak_bytes",
    "val_loss",
    "bits_per_byte",
    "perplexity",
)


METRIC_COLUMNS = tuple(
    c.name
    for c in Result.__table__.columns
    if c.name not in ("run_id", "environment_id", "status", "stage", "error", "extra", "created_at")
)
