"""The in-process Grid: Flower messages delivered to the ClientApp by a direct call.

Flower's own runtime serialises every message and routes it through a
SuperLink and Ray actors; in one process that costs more than the training
itself. This Grid keeps Flower's message contract (ids, reply metadata, error
replies, each node's own Context) and calls the ClientApp synchronously.

Each node gets its own copy of the records it receives (mods change or pop
what they read); the arrays inside, immutable, are shared and decoded once
(``DecodedArray``). ``prepare`` (the cohort engine) sees a batch of messages
before they are delivered.
"""

import copy
from collections.abc import Callable, Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedsim.engine.messages import arrays, decoded_record, own_copy

SERVER_NODE_ID = 0


class InProcessGrid(Grid):
    """Nodes ``1..n_nodes`` run ``client_app`` in this process; node ``i + 1`` is partition ``i``."""

    def __init__(self, client_app: ClientApp, n_nodes: int, run_id: int = 1,
                 prepare: Callable[[list[Message]], None] | None = None):
        self.client_app = client_app
        self.prepare = prepare
        self._node_ids = list(range(1, n_nodes + 1))
        self._contexts: dict[int, Context] = {}
        self._replies: dict[str, Message] = {}
        self._run = Run.create_empty(run_id)
        # Flower's Message constructor reads the sender's identity from here.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SERVER_NODE_ID

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return self._node_ids

    def context(self, node_id: int) -> Context:
        """The node's Context, kept across rounds like a SuperNode keeps it."""
        if node_id not in self._contexts:
            self._contexts[node_id] = Context(
                run_id=self._run.run_id,
                node_id=node_id,
                node_config={"partition-id": node_id - 1, "num-partitions": len(self._node_ids)},
                state=RecordDict(),
                run_config={},
            )
        return self._contexts[node_id]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        shared: dict[int, object] = {}  # strategies send one shared record: decoded once
        for message in messages:
            for key, record in list(arrays(message.content).items()):
                if id(record) not in shared:
                    shared[id(record)] = decoded_record(record)
                message.content[key] = shared[id(record)]
        if self.prepare is not None:
            self.prepare(messages)
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            self._replies[message.metadata.message_id] = self._deliver(message)
            ids.append(message.metadata.message_id)
        return ids

    def _deliver(self, message: Message) -> Message:
        """Run the ClientApp on the node's own copy of the message; exceptions become error replies."""
        # Strategies send one shared RecordDict to every node; a real runtime
        # serialises it, and mods (SecAgg+) mutate what they receive.
        received = Message(content=own_copy(message.content), metadata=copy.copy(message.metadata))
        try:
            reply = self.client_app(received, self.context(message.metadata.dst_node_id))
        except Exception as error:  # a failing hospital must not stop the experiment
            reply = Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(error).__name__}: {error}"),
                reply_to=received,
            )
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        reply.metadata.__dict__["_src_node_id"] = message.metadata.dst_node_id
        return reply

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
