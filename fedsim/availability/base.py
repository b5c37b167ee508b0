"""What availability models share: the failure they raise and how they read a train message."""

from flwr.app import Message, MessageType

from fedsim import recipe
from fedsim.components import pick_hospitals
from fedsim.engine import Plan


class Unavailable(RuntimeError):
    """A simulated hospital did not reply this round (offline, too slow)."""


def train_config(message: Message):
    """The config of a train message (Message API or SecAgg+'s legacy fit format)."""
    return message.content.config_records.get("config") or message.content.config_records.get("fitins.config")


def round_and_seed(message: Message) -> tuple[int, int]:
    """The server round and the experiment seed a train message carries."""
    return recipe.round_and_seed(train_config(message))


def is_train(message: Message) -> bool:
    return message.metadata.message_type == MessageType.TRAIN


def targets(hospitals, plan: Plan, salt: int) -> frozenset[int]:
    """Indices of ``hospitals`` (None: every hospital)."""
    if hospitals is None:
        return frozenset(range(plan.federation.n_hospitals))
    return frozenset(pick_hospitals(plan, hospitals, salt=salt))
