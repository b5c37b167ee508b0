"""Membership inference on one hospital's update by an honest-but-curious server, as an Experiment observer."""

from dataclasses import dataclass

from fedsim.attacks.membership import METHODS, attack_update
from fedsim.attacks.membership.lira import check_shadows
from fedsim.attacks.update_attack import UpdateAttack
from fedsim.validation import Integer, Options, param


@dataclass(frozen=True)
class MembershipInference(UpdateAttack):
    """Membership inference on ``hospital``'s update of round ``round``: its training vs test records.

    LiRA's ``n_shadows`` shadows repeat the hospital's local training (same
    epochs, batch size, learning rate, step cap and DP-SGD) from the same
    global weights; ``method="loss"`` needs none.
    """

    name = "membership_inference"
    threats = ("membership inference",)

    method: str = param("lira", Options(*METHODS))
    n_shadows: int = param(8, Integer(min=2))
    seed: int = param(0, Integer(min=0))

    def __post_init__(self):
        super().__post_init__()
        if self.method != "loss":
            check_shadows(self.n_shadows)

    @property
    def label(self) -> str:
        return f"membership inference ({self.method})"

    def evaluate(self, plan, index, sent, returned):
        attack = attack_update(
            plan.federation, plan.federation.hospitals[index], plan.model_fn, sent, returned, recipe=plan.recipe,
            method=self.method, n_shadows=self.n_shadows, round=self.round, seed=self.seed, progress=False)
        return attack.metrics().set_index("metric")["value"].to_dict(), []
