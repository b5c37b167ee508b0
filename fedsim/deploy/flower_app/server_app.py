"""The ServerApp of an exported fedsim experiment: the first round, then the experiment, then its Result.

The server holds no hospital's rows: the first round (``fedsim.deploy.roster``)
gathers the roster and fits the shared preprocessor from the hospitals'
statistics; the hospitals evaluate each global model on their own test
splits. Run config: ``spec`` (the experiment as JSON, ``fedsim.deploy.spec``)
and ``out-dir`` (where the Result and the audit log go; empty: a fresh folder
under $FEDSIM_RESULTS or the temp dir, named in the log).
"""

import time
from collections.abc import Iterable

from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from fedsim.deploy.outputs import write_result
from fedsim.deploy.roster import first_round
from fedsim.deploy.spec import experiment_fields, load_spec
from fedsim.experiment import Experiment

app = ServerApp()


class PromptGrid:
    """The ServerApp's Grid, asking for replies every ``interval`` seconds (Flower's own waits 3 s in between)."""

    def __init__(self, grid: Grid, interval: float = 0.1):
        self.grid, self.interval = grid, interval

    def __getattr__(self, name):
        return getattr(self.grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push ``messages``, then pull until every reply is in or ``timeout`` seconds passed."""
        waiting = set(self.grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting and (deadline is None or time.monotonic() < deadline):
            pulled = list(self.grid.pull_messages(waiting))
            replies.extend(pulled)
            waiting.difference_update(m.metadata.reply_to_message_id for m in pulled)
            if waiting:
                time.sleep(self.interval)
        return replies


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment on the federation behind ``grid``."""
    out = str(context.run_config.get("out-dir", "")) or None
    spec, grid = load_spec(str(context.run_config["spec"])), PromptGrid(grid)
    federation, hospital_of = first_round(grid, spec)
    experiment = Experiment(**experiment_fields(spec, federation=federation), out=out)
    result = experiment.run_on(grid, hospital_of)
    folder = write_result(result, result.audit_path.parent)
    print(f"fedsim: wrote the result of {result.name!r} to {folder}", flush=True)
