"""What the strategy's Grid adds: eligibility, reply screening, observers, a participation log.

The engine wraps whatever Grid it runs on in an ``ObservingGrid``, so these
hooks work with every strategy, unmodified, and with both engines:

- eligibility checks decide which hospitals the strategy may sample (a
  privacy budget that is spent, a policy);
- screens reject replies before aggregation (an update validator);
- observers see every exchange after screening (audit log, ledger, attacks),
  and hear when a round's aggregation is over (``on_round_end``).

Every exclusion, failure and rejection goes to the run's decision record
(``fedsim.engine.decisions``), which strategies reach through this grid too,
and the grid advances the run's one round counter (``RunState``) that every
component reads.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fedsim.engine.decisions import Decisions
from fedsim.recipe import ROUND

# A check returns why a hospital may not take part in the next round, or None.
Eligibility = Callable[[str], str | None]
# A cohort check looks at every hospital still eligible at once (a cap whose cost depends on how many
# take part): the hospitals it keeps out of the next round, with the reason.
CohortCheck = Callable[[list[str]], dict[str, str]]


@dataclass
class RunState:
    """Where a run is: the one round counter every component reads, and who was eligible each round."""

    completed_rounds: int = 0
    eligible: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def upcoming(self) -> int:
        """The training round about to start (or running)."""
        return self.completed_rounds + 1


@dataclass(frozen=True)
class Exchange:
    """One round trip: what the server sent each hospital and what came back."""

    server_round: int
    message_type: str
    sent: dict[str, Message]
    replies: dict[str, Message]
    rejected: dict[str, str] = field(default_factory=dict)

    def updates(self) -> dict[str, RecordDict]:
        """Reply contents that reach the strategy (no error, not rejected)."""
        return {h: m.content for h, m in self.replies.items() if m.has_content() and h not in self.rejected}

    def failures(self) -> dict[str, str]:
        """Hospitals whose ClientApp failed, with the reason."""
        return {h: m.error.reason for h, m in self.replies.items() if m.has_error()}

    @property
    def secagg_stage(self) -> str | None:
        """Which SecAgg+ stage this exchange belongs to (setup, share_keys, ...), or None outside SecAgg+.

        Every message of an exchange is at the same stage: the first one tells.
        """
        for message in self.sent.values():
            config = message.content.get(RECORD_KEY_CONFIGS)
            return str(config[SecAggKey.STAGE]) if config is not None and SecAggKey.STAGE in config else None
        return None


class RoundObserver:
    """Base class for observers; override ``on_exchange``. E.g. the update norms of every round::

        class Norms(fs.RoundObserver):
            def __init__(self):
                self.rows = []

            def on_exchange(self, exchange):
                for hospital, content in exchange.updates().items():
                    sent = weights_of(exchange.sent[hospital].content)
                    self.rows.append((exchange.server_round, hospital,
                                      float(np.linalg.norm(flat(weights_of(content)) - flat(sent)))))

        fs.Experiment(..., observers=[Norms()])
    """

    def on_exchange(self, exchange: Exchange) -> None:
        """Called after each round trip, before the strategy aggregates the replies."""

    def on_round_end(self, server_round: int) -> None:
        """Called once the round's aggregation is over (every decision about its replies is recorded)."""


class ReplyScreen:
    """Base class for screens; override ``screen``."""

    def screen(self, exchange: Exchange) -> dict[str, str]:
        """Hospitals whose reply must not be aggregated, with the reason."""
        return {}


class TooFewEligible(RuntimeError):
    """Fewer hospitals may take part than the strategy needs: the run stops here."""


class ObservingGrid(Grid):
    """Delegates to another Grid, adding eligibility, screening and observers."""

    def __init__(
        self,
        grid: Grid,
        hospital_of: Callable[[int], str],
        observers: Sequence[RoundObserver] = (),
        screens: Sequence[ReplyScreen] = (),
        eligibility: Sequence[Eligibility] = (),
        min_nodes: int = 1,
        state: RunState | None = None,
        cohort_checks: Sequence[CohortCheck] = (),
        decisions: Decisions | None = None,
    ):
        self.grid = grid
        self.hospital_of = hospital_of
        self.observers = list(observers)
        self.screens = list(screens)
        self.eligibility = list(eligibility)
        self.cohort_checks = list(cohort_checks)
        self.min_nodes = min_nodes
        self.state = state if state is not None else RunState()
        self.decisions = decisions if decisions is not None else Decisions()
        self.delivered: dict[int, list[str]] = {}  # per round: hospitals whose update reached the strategy

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    @property
    def events(self) -> list[dict]:
        """The participation rows so far (``Decisions.participation``)."""
        return self.decisions.participation()

    def record(self, server_round: int, hospital: str, event: str, reason: str, by: str = "") -> None:
        """Record a decision about ``hospital`` in the run's decision record (once per round, event and maker)."""
        self.decisions.record(server_round, hospital, event, reason, by)

    def close_round(self, server_round: int) -> None:
        """The round's aggregation is over: tell every observer."""
        for observer in self.observers:
            observer.on_round_end(server_round)

    def get_node_ids(self) -> Iterable[int]:
        node_ids = list(self.grid.get_node_ids())
        upcoming = self.state.upcoming
        eligible = []
        for node_id in node_ids:
            hospital = self.hospital_of(node_id)
            reasons = [r for check in self.eligibility if (r := check(hospital))]
            if reasons:
                self.record(upcoming, hospital, "excluded", "; ".join(reasons), "eligibility")
            else:
                eligible.append(node_id)
        for check in self.cohort_checks:
            out = check([self.hospital_of(n) for n in eligible])
            for hospital, reason in out.items():
                self.record(upcoming, hospital, "excluded", reason, "eligibility")
            eligible = [n for n in eligible if self.hospital_of(n) not in out]
        self.state.eligible[upcoming] = tuple(self.hospital_of(n) for n in eligible)
        if len(eligible) < self.min_nodes:
            raise TooFewEligible(f"round {upcoming}: {len(eligible)} hospitals eligible, the strategy needs "
                                 f"{self.min_nodes}")
        return eligible

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        # By hospital, not by arrival: aggregation sums in a fixed order, so identical runs give identical
        # weights on every engine (a real federation answers in any order).
        replies = sorted(self.grid.send_and_receive(messages, timeout=timeout),
                         key=lambda reply: self.hospital_of(reply.metadata.src_node_id))
        if not messages:
            return replies
        first = messages[0]
        config = first.content.get("config") or {}
        exchange = Exchange(
            server_round=int(config.get(ROUND, first.metadata.group_id or 0)),
            message_type=first.metadata.message_type,
            sent={self.hospital_of(m.metadata.dst_node_id): m for m in messages},
            replies={self.hospital_of(r.metadata.src_node_id): r for r in replies},
        )
        for hospital, reason in exchange.failures().items():
            self.record(exchange.server_round, hospital, "failed", reason, "ClientApp")
        for hospital in exchange.sent:
            if hospital not in exchange.replies:
                self.record(exchange.server_round, hospital, "failed", "no reply", "Grid")
        for screen in self.screens:
            for hospital, reason in screen.screen(exchange).items():
                if hospital not in exchange.rejected:
                    exchange.rejected[hospital] = reason
                    self.record(exchange.server_round, hospital, "rejected", reason, type(screen).__name__)
        for observer in self.observers:
            observer.on_exchange(exchange)
        if exchange.message_type == "train" and exchange.secagg_stage in (None, Stage.COLLECT_MASKED_VECTORS):
            self.delivered[exchange.server_round] = sorted(h for h in exchange.updates())
        if exchange.message_type == "train":
            self.state.completed_rounds = max(self.state.completed_rounds, exchange.server_round)
        return [r for r in replies if self.hospital_of(r.metadata.src_node_id) not in exchange.rejected]
