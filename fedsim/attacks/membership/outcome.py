"""The outcome of a membership attack: scores, its metrics at low false-positive rates, its ROC."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from fedsim.plots import plot_roc

METRICS = ("auc", "advantage", "tpr@0.1%fpr", "tpr@1%fpr")
_LOW_FPR = {"tpr@0.1%fpr": 0.001, "tpr@1%fpr": 0.01}


@dataclass(eq=False)
class MembershipAttack:
    """Scores of one membership-inference attack: higher = more likely a member.

    ``groups`` names each candidate's hospital where the candidates come from
    several (``metrics(per_hospital=True)`` breaks the metrics down by it).
    """

    attack: str
    scores: np.ndarray
    is_member: np.ndarray
    hospital: str = "all"
    round: int | None = None
    groups: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.is_member = np.asarray(self.is_member, dtype=bool)
        if self.scores.shape != self.is_member.shape or self.scores.ndim != 1:
            raise ValueError(f"scores: expected one score per candidate ({self.is_member.shape}), "
                             f"got shape {self.scores.shape}")
        if self.is_member.all() or not self.is_member.any():
            raise ValueError("is_member: needs both members and non-members")

    def _values(self, member: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        fpr, tpr, _ = roc_curve(member, scores)
        values = {"auc": float(roc_auc_score(member, scores)), "advantage": float(np.max(tpr - fpr))}
        for name, limit in _LOW_FPR.items():
            values[name] = float(tpr[fpr <= limit].max())  # fpr starts at 0, so never empty
        return values

    def metrics(self, per_hospital: bool = False) -> pd.DataFrame:
        """Tidy metrics: attack, hospital, round, metric, value.

        ``auc``; ``advantage``, the largest TPR - FPR over thresholds; and
        ``tpr@0.1%fpr`` / ``tpr@1%fpr``, the highest TPR at an FPR no larger
        than 0.1% / 1% (with fewer than 1000 / 100 non-members, that is the
        TPR at zero false positives). ``per_hospital`` adds each hospital's rows.
        """
        parts = [(self.hospital, np.ones(len(self.scores), bool))]
        if per_hospital and self.groups is not None:
            parts += [(str(h), self.groups == h) for h in pd.unique(self.groups)]
        rows = []
        for hospital, mask in parts:
            member = self.is_member[mask]
            if member.all() or not member.any():
                continue
            for metric, value in self._values(member, self.scores[mask]).items():
                rows.append({"attack": self.attack, "hospital": hospital, "round": self.round,
                             "metric": metric, "value": value})
        frame = pd.DataFrame(rows, columns=["attack", "hospital", "round", "metric", "value"])
        return frame.astype({"attack": "str", "hospital": "str", "round": "Int64", "metric": "str",
                             "value": "float64"})

    def roc(self) -> pd.DataFrame:
        """The ROC curve: fpr and tpr, both non-decreasing."""
        fpr, tpr, _ = roc_curve(self.is_member, self.scores)
        return pd.DataFrame({"fpr": fpr, "tpr": tpr})

    def plot(self, ax=None):
        """The ROC on log-log axes (low false-positive rates are what matters); see ``plot_attacks``."""
        return plot_attacks([self], ax=ax)

    def curve(self) -> pd.DataFrame:
        """The ROC with what a plot labels it by: label, fpr, tpr, n_non_members (``fedsim.plots.plot_roc``)."""
        label = f"{self.attack}, {self.hospital} (AUC {roc_auc_score(self.is_member, self.scores):.3f})"
        return self.roc().assign(label=label, n_non_members=int((~self.is_member).sum()))[
            ["label", "fpr", "tpr", "n_non_members"]]

    def __repr__(self) -> str:
        auc = roc_auc_score(self.is_member, self.scores)
        return (f"MembershipAttack({self.attack!r}, hospital={self.hospital!r}, {len(self.scores)} candidates, "
                f"AUC {auc:.3f})")


def plot_attacks(attacks, ax=None):
    """ROC curves of one or more attacks on log-log axes, chance as a dashed line (``fedsim.plots.plot_roc``)."""
    attacks = list(attacks) if not isinstance(attacks, MembershipAttack) else [attacks]
    if not attacks or not all(isinstance(a, MembershipAttack) for a in attacks):
        raise ValueError("attacks: expected one or more MembershipAttack")
    return plot_roc(pd.concat([a.curve() for a in attacks], ignore_index=True), ax=ax)
