"""A model's sections of the configuration: its source, columns, schedule, window, drift,
policy, retrain and estimation options (monitor.core.config loads them; `defaults` merge in)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, ByteSize, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from monitor.core.config_types import Duration, NOfM, NOfMField, PluginConfig, PositiveDuration, SecretURL, Strict, _exactly_one, _section_of
from monitor.core.plugins import COMPRESSORS, SOURCES, PluginError


class SourceConfig(PluginConfig):
    """Base of a prediction-log or label source's section; a source plug-in subclasses it."""

    # Keys whose relative paths are taken relative to the configuration file, not the cwd.
    relative_paths: ClassVar[tuple[str, ...]] = ()


class FilesSource(SourceConfig):
    relative_paths = ("path",)

    type: Literal["files"]
    path: str = Field(description="glob of Parquet, CSV or JSON-lines files")
    format: Literal["parquet", "csv", "jsonl"] | None = None


class SqlSource(SecretURL, SourceConfig):
    type: Literal["sql"]
    table: str | None = None
    query: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        _exactly_one(self, "table", "query")
        return self


# Any registered source type; SerializeAsAny dumps a plug-in's own fields too (fingerprint).
Source = Annotated[SerializeAsAny[SourceConfig], _section_of(SOURCES, SourceConfig)]


class Columns(Strict):
    timestamp: str
    id: str
    prediction: str
    probability: str | None = None
    target: str | None = None
    # The registered-model version that served each row, as the serving layer logs it: quality
    # is then attributed to that version (see monitor.check.attribution). Optional.
    model_version: str | None = None
    numerical: list[str] = []
    categorical: list[str] = []

    @model_validator(mode="after")
    def _distinct(self) -> Columns:
        features = self.numerical + self.categorical
        if not features:
            raise ValueError("list at least one feature under numerical or categorical")
        dupes = sorted({c for c in features if features.count(c) > 1})
        if dupes:
            raise ValueError(f"columns listed twice among the features: {dupes}")
        roles = {self.timestamp, self.id, self.prediction, *([self.model_version] if self.model_version else [])}
        clash = sorted(roles & set(features))
        if clash:
            raise ValueError(f"{clash} cannot be both a feature and timestamp/id/prediction/model_version")
        return self

    @property
    def features(self) -> list[str]:
        return self.numerical + self.categorical

    def to_read(self, *, features: bool = True, target: bool = False, version: bool = False) -> tuple[str, ...]:
        """The prediction-log columns to read, in a stable order and without duplicates;
        `target` when the labels are logged with the predictions rather than joined later;
        `version` for the serving version, when configured (quality reads it)."""
        wanted = [self.timestamp, self.id, self.prediction, self.probability, *(self.features if features else ())]
        wanted += [self.target if target else None, self.model_version if version else None]
        return tuple(dict.fromkeys(c for c in wanted if c))


class Schedule(Strict):
    every: PositiveDuration | None = None
    cron: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        _exactly_one(self, "every", "cron")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from None
        return self


# Below this many rows no drift verdict means anything: a two-sample test at a 1% false-alarm
# rate can then only tell shifts of more than about 0.6 standard deviations from noise (the KS
# critical distance is 1.63/sqrt(n) = 0.23 at n = 50), and a categorical with a dozen levels
# leaves most levels with a handful of rows.
MIN_ROWS_FLOOR = 50


class Window(Strict):
    size: PositiveDuration = timedelta(hours=1)
    min_rows: int = 500
    max_rows: int | None = Field(default=200_000, ge=1)
    # Rows are often committed a little after their own timestamp (buffered writers, open
    # transactions): a window ends `lateness` before now, so most of them are in place when read.
    lateness: Duration = timedelta(minutes=1)
    # Rows committed later still land behind the watermark. Each check re-reads the keys of the
    # last `lookback` behind the watermark and checks the rows it has not checked yet (late
    # rows) with the next window. 0s turns the re-read off.
    lookback: Duration = timedelta(hours=1)
    # Labels arrive late, so quality is measured on the labelled rows of a longer trailing span.
    quality_span: PositiveDuration | None = Field(default=None, description="default: 4 x size")

    @field_validator("min_rows")
    @classmethod
    def _meaningful(cls, value: int) -> int:
        if value < MIN_ROWS_FLOOR:
            raise ValueError(
                f"{value} is below the floor of {MIN_ROWS_FLOOR}: with fewer rows a drift test cannot tell a shift "
                "of less than about 0.6 standard deviations from noise at a 1% false-alarm rate. Collect more rows "
                f"per check with a longer window.size (or schedule), and keep min_rows >= {MIN_ROWS_FLOOR}"
            )
        return value

    @property
    def effective_quality_span(self) -> timedelta:
        return self.quality_span or 4 * self.size


DRIFT_METHODS = {
    "numerical": {"wasserstein", "psi", "ks", "kl_div", "jensenshannon", "hellinger", "ed", "anderson", "t_test", "mannw", "cramer_von_mises", "empirical_mmd"},
    "categorical": {"jensenshannon", "psi", "chisquare", "z", "kl_div", "hellinger", "TVD", "fisher_exact", "g_test"},
}
# The methods whose decision is calibrated (a p-value from the reference's own null
# distribution, monitor.check.calibrate); any other method decides by its fixed threshold.
CALIBRATED_METHODS = {"numerical": "wasserstein", "categorical": "jensenshannon"}


class Method(Strict):
    method: str
    # For a calibrated method (wasserstein, jensenshannon): an effect floor, the score below which
    # a significant change is ignored (None: no floor). For any other method: Evidently's fixed
    # threshold (None: the method's own default).
    threshold: float | None = Field(default=None, gt=0)


class MinEffect(Strict):
    """Effect floors: a test that rejects only counts as drift when its effect reaches the floor.
    0 (the default) turns a floor off: every significant change counts."""

    numerical: float = Field(default=0.0, ge=0, description="normed Wasserstein score")
    categorical: float = Field(default=0.0, ge=0, description="Jensen-Shannon distance")
    missing: float = Field(default=0.0, ge=0, description="window's missing share minus the reference's")
    unseen: float = Field(default=0.0, ge=0, description="share of window values the reference never saw")


class Multivariate(Strict):
    """The domain-classifier test (monitor.check.multivariate) run on every window beside the per-column tests.

    On by default: it is the only signal for changes in how features move together, and costs
    one small boosted-tree fit on at most 2 x `max_rows` rows per check (README, "Multivariate drift")."""

    enabled: bool = True
    # No alpha of its own: its exact p-value (a Mann-Whitney test on held-out rows) is one more
    # hypothesis in the model's family at drift.false_alarm_rate, so one budget covers every test.
    min_auroc: float = Field(default=0.5, ge=0.5, lt=1, description="effect-size floor on the held-out AUROC")
    max_rows: int = Field(default=5000, ge=50, description="window rows tested (a seeded sample)")
    learner: Literal["hgb", "hgb_axis", "logistic"] = "hgb"


class Drift(Strict):
    numerical: Method = Method(method="wasserstein")
    categorical: Method = Method(method="jensenshannon")
    # Budget of false dataset-drift verdicts per model per window with no drift at all, held
    # across every test of the model's features (Benjamini-Hochberg).
    false_alarm_rate: float = Field(default=0.005, gt=0, lt=0.5)
    # any: dataset drift when any feature drifted after the correction; share: when at least
    # dataset_share of the features drifted.
    dataset_rule: Literal["any", "share"] = "any"
    dataset_share: float = Field(default=0.3, gt=0, le=1)
    min_effect: MinEffect = MinEffect()
    columns: dict[str, Method] = {}
    multivariate: Multivariate = Multivariate()

    @model_validator(mode="after")
    def _known_methods(self) -> Drift:
        for kind in ("numerical", "categorical"):
            method = getattr(self, kind).method
            if method not in DRIFT_METHODS[kind]:
                raise ValueError(f"{kind}.method {method!r} is not one of {sorted(DRIFT_METHODS[kind])}")
        return self


class Policy(Strict):
    alert_after: NOfMField = NOfM(2, 3)
    resolve_after: int = Field(default=3, ge=1)
    retrain_after: NOfMField = NOfM(3, 4)
    quality_drop: float = Field(default=0.05, ge=0)
    # The same rule on the label-free estimate (monitor.check.estimates), judged on the band's side
    # nearest the champion; None: `quality_drop`.
    estimated_drop: float | None = Field(default=None, ge=0)
    cooldown: Duration = timedelta(hours=6)
    max_retrains_per_day: int = Field(default=2, ge=0)


def _compressor(name: str) -> str:
    if name not in COMPRESSORS.names():
        raise PluginError(f"unknown compression strategy {name!r}; available: {', '.join(COMPRESSORS.names())}")
    return name


# A compression strategy's name: built in (onnx, prune, quantize) or a plug-in's (monitor.core.plugins).
Strategy = Annotated[str, AfterValidator(_compressor)]


class RetrainOptions(Strict):
    training_window: PositiveDuration = timedelta(days=14)
    min_labelled_rows: int = Field(default=2000, ge=1)
    reference_blend: float = Field(default=0.0, ge=0, le=1, description="share of reference rows mixed into training data")
    tune: bool = False
    compression: list[Strategy] = ["onnx", "prune", "quantize"]
    max_quality_loss: float = Field(default=0.01, ge=0)
    min_improvement: float = 0.0
    # Gates decide on one-sided bounds at this confidence (paired bootstrap on the holdout).
    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    # Below this many holdout rows a lossy variant (pruned, quantized) may not serve: a
    # variant at exactly the loss budget passed the 95% bound in up to 23% (100 rows) / 9%
    # (200) of holdouts, 4-7% from 500 rows on (bench/gates.py, part 2).
    min_holdout_rows: int = Field(default=500, ge=1)
    # Threads a retrain trains on (estimators with n_jobs, OpenMP ones); unset: every core the process may use.
    n_jobs: int | None = Field(default=None, ge=1)
    # Each retrain runs in its own process (monitor.service.isolation): killed past `timeout`, and on Linux
    # refused memory beyond `memory_limit` bytes of address space ("4GiB", "500MB" or a number).
    timeout: PositiveDuration = timedelta(hours=2)
    memory_limit: ByteSize | None = Field(default=None, gt=0)
    enabled: bool = True


Task = Literal["binary_classification", "multiclass_classification", "regression"]


class Estimation(Strict):
    """Label-free quality estimates (CBPE for classifiers, DLE for regressors), fitted once per
    champion version on labelled rows it was not trained on (monitor.check.estimates)."""

    enabled: bool = True
    # Multiclass one-vs-rest needs one probability column per class (class label -> column);
    # with only `columns.probability` (the predicted class's confidence) accuracy is estimated.
    probabilities: dict[str, str] = {}
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="coverage of the band")


# The state store's model columns are VARCHAR(200); a longer name would fail every write.
MODEL_NAME_MAX_LENGTH = 200


class ModelConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MODEL_NAME_MAX_LENGTH)
    registered_model: str | None = None
    source: Source
    labels: Source | None = None
    columns: Columns
    task: Task
    reference: Path | None = None
    schedule: Schedule = Schedule(every=timedelta(minutes=15))
    window: Window = Window()
    drift: Drift = Drift()
    policy: Policy = Policy()
    retrain: RetrainOptions = RetrainOptions()
    estimation: Estimation = Estimation()
    alerts: list[str] = []

    @property
    def mlflow_name(self) -> str:
        return self.registered_model or self.name

    def method_for(self, column: str) -> Method:
        if column in self.drift.columns:
            return self.drift.columns[column]
        return self.drift.categorical if column in self.columns.categorical else self.drift.numerical

    @model_validator(mode="after")
    def _overrides_name_features(self) -> ModelConfig:
        known = set(self.columns.features) | {self.columns.prediction, self.columns.probability}
        unknown = sorted(set(self.drift.columns) - known)
        if unknown:
            raise ValueError(f"drift.columns names {unknown}, which are not features of this model")
        for column, method in self.drift.columns.items():
            kind = "categorical" if column in self.columns.categorical else "numerical"
            if column == self.columns.prediction and self.task != "regression":
                kind = "categorical"  # a classifier's predicted label
            if method.method not in DRIFT_METHODS[kind]:
                raise ValueError(f"drift.columns.{column}.method {method.method!r} does not apply to the {kind} column "
                                 f"{column!r}; use one of {sorted(DRIFT_METHODS[kind])}")
        return self
