"""A round observer for tests: it keeps the exchanges it sees."""

import fedsim as fs


class Recorder(fs.RoundObserver):
    """Keeps every exchange (only those of ``message_type``, e.g. ``"train"``, when given)."""

    def __init__(self, message_type: str | None = None):
        self.message_type = message_type
        self.exchanges = []

    def on_exchange(self, exchange):
        if self.message_type in (None, exchange.message_type):
            self.exchanges.append(exchange)
