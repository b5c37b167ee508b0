"""The ClientApp of an exported fedsim experiment: one hospital, holding its own rows only.

The node config names the hospital (``partition-id``, and ``data-path`` for
a table federation: ``fedsim.deploy.hospital``). The first round's queries
load its rows and build its federation and ClientApp; they are kept for the
run's later messages (a long-lived ClientApp process loads them once; one
process of Flower's simulation runtime may serve several hospitals). What
the server sent at setup is also kept in the node's ``context.state``, so a
ClientApp process started for a later message (Flower's default isolation
starts one per message) builds the same ClientApp again.
"""

import json

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from fedsim.deploy.hospital import STEP, Hospital, read, reply, roster_from
from fedsim.deploy.spec import experiment_fields, load_spec
from fedsim.engine import client_app
from fedsim.experiment import Experiment
from fedsim.federation import Preprocessor

app = ClientApp()
_HOSPITALS: dict[tuple, Hospital] = {}  # (spec, node config) -> the hospital this process serves
SETUP = "fedsim-setup"  # the node's context.state record holding what the server sent at setup


def hospital(context: Context) -> Hospital:
    """This node's hospital, its rows loaded on the run's first message."""
    spec = str(context.run_config["spec"])
    key = (spec, tuple(sorted((k, str(v)) for k, v in context.node_config.items())))
    if key not in _HOSPITALS:
        for old in [k for k in _HOSPITALS if k[0] != spec]:  # another run's hospitals
            del _HOSPITALS[old]
        _HOSPITALS[key] = Hospital(load_spec(spec), context.node_config)
    return _HOSPITALS[key]


def built(context: Context) -> ClientApp:
    """The hospital's ClientApp (mods included), built at the first round's setup (again from ``context.state``)."""
    own = hospital(context)
    if own.app is None:
        if SETUP not in context.state.config_records:
            raise RuntimeError("this hospital got a training or evaluation message before the first round's setup")
        set_up(own, json.loads(str(context.state[SETUP]["json"])))
    return own.app


def set_up(own: Hospital, sent: dict) -> None:
    """Build ``own``'s federation (its rows, the roster) and ClientApp from what the server sent at setup."""
    pre = Preprocessor.from_settings(sent["preprocessor"]) if sent["preprocessor"] is not None else None
    fed = own.held = own.federation(roster_from(sent["roster"]), pre)
    plan = Experiment(**experiment_fields(own.spec, federation=fed), noise_seed=own.noise_seed).build_plan()
    plan.seal()
    own.app = client_app(plan)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Local training on this hospital's rows."""
    return built(context)(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """The global model on this hospital's test split."""
    return built(context)(message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """The first round: this hospital's statistics, then its setup with the server's roster and preprocessor."""
    own = hospital(context)
    step = str(message.content["fedsim"][STEP])
    if step == "statistics":
        return reply(message, **own.statistics())
    sent = read(message)
    set_up(own, sent)
    context.state[SETUP] = ConfigRecord({"json": json.dumps(sent)})
    entry = own.held.roster.loc[own.hospital]
    return reply(message, **{k: (int(v) if k != "sha256" else v) for k, v in entry.items()})
