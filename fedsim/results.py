"""Result: the tidy metrics of a run plus the final model, for any way of training."""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim._tf import tf
from fedsim.federation import Federation
from fedsim.governance.audit import read
from fedsim.metrics import METRICS
from fedsim.models import ModelFn
from fedsim.plots import plot_rounds
from fedsim.tables import METRICS as METRICS_TABLE
from fedsim.tables import PARTICIPATION
from fedsim.validation import Instance, check


@dataclass(eq=False)
class Result:
    """Metrics in long format (round, scope, metric, value) and the final weights.

    ``scope`` is ``"global"`` for the pooled held-out test set, otherwise a
    hospital id (that hospital's own test split).
    """

    name: str
    metrics: pd.DataFrame
    weights: list[np.ndarray]
    federation: Federation
    model_fn: ModelFn
    config: dict = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    audit_path: Path | None = None  # the run's audit.jsonl (see fedsim.governance)

    @property
    def participation(self) -> pd.DataFrame:
        """Hospitals excluded, failed or rejected, per round (round, hospital, event, reason)."""
        return self.tables.get("participation", PARTICIPATION.frame())

    @property
    def privacy(self) -> pd.DataFrame:
        """The privacy ledger: one row per hospital and unit of privacy (empty without DP)."""
        return self.tables.get("privacy", pd.DataFrame())

    @property
    def adversaries(self) -> pd.DataFrame:
        """The malicious hospitals of the run: adversary, hospital, settings (empty without adversaries)."""
        return self.tables.get("adversaries", pd.DataFrame(columns=["adversary", "hospital", "settings"]))

    @property
    def attacks(self) -> pd.DataFrame:
        """What the attacks observing the run achieved (``fedsim.attacks``): attack, hospital, round,
        metric, value, details; empty without an attack."""
        return self.tables.get("attacks", pd.DataFrame(columns=["attack", "hospital", "round", "metric", "value",
                                                                "details"]))

    @property
    def audit(self) -> pd.DataFrame:
        """The audit log, one row per entry (seq, time, kind, round, data); empty without a log."""
        if self.audit_path is None or not Path(self.audit_path).exists():
            return pd.DataFrame(columns=["seq", "time", "kind", "round", "data"])
        entries = read(self.audit_path)
        return pd.DataFrame([{"seq": e["seq"], "time": e["time"], "kind": e["kind"],
                              "round": e["data"].get("round"), "data": e["data"]} for e in entries])

    def final(self, metric: str = "auroc", scope: str = "global") -> float:
        """The metric after the last round."""
        if metric not in METRICS:
            raise ValueError(f"metric: unknown {metric!r}; allowed: {list(METRICS)}")
        rows = self.metrics[(self.metrics.metric == metric) & (self.metrics.scope == scope)]
        if rows.empty:
            raise ValueError(f"scope: no {scope!r} rows; allowed: 'global' or a hospital id")
        return float(rows.loc[rows["round"].idxmax(), "value"])

    @cached_property
    def model(self) -> tf.keras.Model:
        """A standalone tf.keras model holding the final weights."""
        model = self.model_fn(self.federation.n_features)
        model.build((None, self.federation.n_features))
        model.set_weights(self.weights)
        return model

    def predict(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Risk scores for raw rows with the training columns (preprocessing included),
        or for images (n, height, width) with pixels in [0, 1] for an image federation."""
        fed = self.federation
        if fed.image_shape is None:
            check("data", data, Instance(pd.DataFrame, what="a pandas DataFrame with the training columns"))
            x = fed.preprocessor.transform(data)
        else:
            wanted = f"data: expected images of shape (n, {fed.image_shape[0]}, {fed.image_shape[1]})"
            try:
                x = np.asarray(data, np.float32)
            except (TypeError, ValueError):  # not numbers, or ragged
                raise ValueError(f"{wanted}, got {type(data).__name__}") from None
            if x.ndim != 3 or x.shape[1:] != tuple(fed.image_shape):
                raise ValueError(f"{wanted}, got {type(data).__name__} of shape {x.shape}")
            x = x.reshape(len(x), -1)
        return tf.sigmoid(self.model(x, training=False)[:, 0]).numpy()

    def plot(self, metric: str = "auroc"):
        """The global metric by round over each hospital's; returns the Figure."""
        return plot_rounds(self.metrics, metric, title=self.name)

    def __repr__(self) -> str:
        return f"Result({self.name!r}, final auroc={self.final('auroc'):.3f})"


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Metric rows as a DataFrame with fixed column order and dtypes."""
    frame = METRICS_TABLE.frame(rows)
    return frame.astype({"round": "int64", "scope": "str", "metric": "str", "value": "float64"})
