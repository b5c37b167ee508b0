"""Round observers: see every message exchanged with the hospitals, before aggregation.

An observer is any object with ``on_exchange(exchange)``. The engine wraps
whatever Grid it runs on in an ``ObservingGrid``, so observers work with every
strategy, unmodified, and with both engines. Later layers (audit log, privacy
ledger, attacks) are observers.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run


@dataclass(frozen=True)
class Exchange:
    """One round trip: what the server sent each hospital and what came back."""

    server_round: int
    message_type: str
    sent: dict[str, Message]
    replies: dict[str, Message]

    def updates(self) -> dict[str, RecordDict]:
        """Reply contents of the hospitals that answered without an error."""
        return {h: m.content for h, m in self.replies.items() if m.has_content()}

    def failures(self) -> dict[str, str]:
        """Hospitals whose ClientApp failed, with the reason."""
        return {h: m.error.reason for h, m in self.replies.items() if m.has_error()}


class RoundObserver:
    """Base class for observers; override ``on_exchange``."""

    def on_exchange(self, exchange: Exchange) -> None:
        """Called after each round trip, before the strategy aggregates the replies."""


class ObservingGrid(Grid):
    """Delegates to another Grid and shows every exchange to the observers."""

    def __init__(self, grid: Grid, observers: Sequence[RoundObserver], hospital_of: Callable[[int], str]):
        self.grid = grid
        self.observers = list(observers)
        self.hospital_of = hospital_of

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        if messages and self.observers:
            first = messages[0]
            config = first.content.config_records.get("config", {})
            exchange = Exchange(
                server_round=int(config.get("server-round", first.metadata.group_id or 0)),
                message_type=first.metadata.message_type,
                sent={self.hospital_of(m.metadata.dst_node_id): m for m in messages},
                replies={self.hospital_of(r.metadata.src_node_id): r for r in replies},
            )
            for observer in self.observers:
                observer.on_exchange(exchange)
        return replies
