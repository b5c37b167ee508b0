"""The ClientApp of an exported fedsim experiment: it serves the hospital its node config names (``partition-id``).

The experiment is rebuilt from the run config once per process (and kept for
the next messages, so a long-lived ClientApp process builds it once).
"""

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedsim.deploy.spec import experiment_fields
from fedsim.engine import client_app
from fedsim.experiment import Experiment

app = ClientApp()
_BUILT: dict[str, ClientApp] = {}  # the run config's spec -> the experiment's ClientApp


def hospital_app(context: Context) -> ClientApp:
    """The experiment's own ClientApp (mods included), built on the first message of a run."""
    spec = str(context.run_config["spec"])
    if spec not in _BUILT:
        _BUILT.clear()
        plan = Experiment(**experiment_fields(spec)).build_plan()
        plan.seal()
        _BUILT[spec] = client_app(plan)
    return _BUILT[spec]


@app.train()
def train(message: Message, context: Context) -> Message:
    """Local training of this node's hospital."""
    return hospital_app(context)(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """The global model on this node's hospital's test split."""
    return hospital_app(context)(message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Which hospital this node serves."""
    return hospital_app(context)(message, context)
