"""The server's side of a deployment's first round: who the hospitals are, and the preprocessor they share.

The server holds no hospital's rows. It asks every node for its hospital's
name, row counts and preprocessing statistics (``fedsim.deploy.hospital``),
fits the preprocessor from the statistics (``Preprocessor.from_statistics``:
the pooled fit's parameters without pooling a row), sends it with the roster
to every hospital, and gets back each hospital's data fingerprint. What the
statistics reveal is said in the report (``fedsim.governance.report``).
"""

import json
import time

import pandas as pd
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedsim.deploy.hospital import STEP, describe, held_by, read
from fedsim.federation import ROSTER, Federation, Preprocessor
from fedsim.validation import Integer, check


class FirstRoundError(RuntimeError):
    """A node failed or contradicted the others in the first round (the run cannot start)."""


def expected_hospitals(spec: dict) -> int:
    """How many hospitals the spec's federation has."""
    source = spec["federation"]
    return source["synthetic"]["n_hospitals"] if "synthetic" in source else len(source["table"]["hospitals"])


def ask(grid: Grid, nodes: list[int], step: str, timeout: float, **values) -> dict[int, dict]:
    """Send one first-round step to ``nodes``; every node's JSON reply, or FirstRoundError naming who failed."""
    content = RecordDict({"fedsim": ConfigRecord({STEP: step, "json": json.dumps(values)})})
    replies = grid.send_and_receive([Message(content, node, MessageType.QUERY) for node in nodes], timeout=timeout)
    found, failed = {}, dict.fromkeys(nodes, f"no reply within {timeout:g} s")
    for reply in replies:
        node = reply.metadata.src_node_id
        if reply.has_error():
            failed[node] = reply.error.reason
            continue
        try:
            found[node] = read(reply)
        except (KeyError, TypeError, ValueError) as error:
            failed[node] = f"unreadable reply ({type(error).__name__})"
    if len(found) < len(nodes):
        raise FirstRoundError(f"first round ({step}): " + "; ".join(
            f"node {node}: {why}" for node, why in failed.items() if node not in found))
    return found


def checked(node: int, told: dict) -> None:
    """Refuse a statistics reply that does not say what the first round needs (FirstRoundError naming the node).

    What a hospital tells of itself cannot be verified by a server that holds
    no rows: its counts set the bound the update validator puts on example
    counts and, under DP-SGD, the sampling rate of its own accounting.
    """
    if not isinstance(told.get("hospital"), str) or not told["hospital"]:
        raise FirstRoundError(f"first round: node {node} named no hospital")
    try:
        n_train = check("n_train", told.get("n_train"), Integer(min=1))
        check("n_test", told.get("n_test"), Integer(min=0))
        check("events_train", told.get("events_train"), Integer(min=0, max=n_train))
    except ValueError as error:
        raise FirstRoundError(f"first round: node {node} told {error}") from None
    features = told.get("features")
    if features is not None and not (isinstance(features, list) and isinstance(told.get("statistics"), dict)):
        raise FirstRoundError(f"first round: node {node} sent no preprocessing statistics for its columns")


def first_round(grid: Grid, spec: dict, wait_s: float = 120, timeout: float = 600
                ) -> tuple[Federation, dict[int, str]]:
    """The server's federation (the roster, the preprocessor, no rows) and which node serves which hospital."""
    n = expected_hospitals(spec)
    deadline = time.monotonic() + wait_s
    while len(nodes := sorted(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise FirstRoundError(f"only {len(nodes)} of {n} nodes registered within {wait_s:g} s")
        time.sleep(0.1)  # the runtime registers its nodes while the ServerApp starts
    told = ask(grid, nodes, "statistics", timeout)
    for node, values in told.items():
        checked(node, values)
    hospital_of = {node: str(t["hospital"]) for node, t in told.items()}
    names = sorted(hospital_of.values())
    if len(set(names)) != len(names):
        twice = sorted({h for h in names if names.count(h) > 1})
        raise FirstRoundError(f"first round: two nodes serve the same hospital {twice[:3]}")
    source = spec["federation"]
    if "table" in source and names != sorted(source["table"]["hospitals"]):
        raise FirstRoundError(f"first round: the nodes serve hospitals {names[:5]}, the experiment names "
                              f"{sorted(source['table']['hospitals'])[:5]}")
    by_hospital = {hospital_of[node]: t for node, t in told.items()}
    roster = pd.DataFrame({key: [by_hospital[h].get(key, "") for h in names] for key in ROSTER},
                          index=pd.Index(names, name="hospital"))
    preprocessor = None
    if by_hospital[names[0]]["features"] is not None:
        features = by_hospital[names[0]]["features"]
        differ = [h for h in names if by_hospital[h]["features"] != features]
        if differ:
            raise FirstRoundError(f"first round: hospital {differ[0]} has the columns "
                                  f"{by_hospital[differ[0]]['features']}, {names[0]} has {features}")
        try:
            preprocessor = Preprocessor.from_statistics(features, [by_hospital[h]["statistics"] for h in names])
        except (KeyError, TypeError, ValueError) as error:
            raise FirstRoundError(f"first round: the hospitals' statistics do not combine ({error})") from None
    setup = ask(grid, nodes, "setup", timeout, roster=roster.reset_index().to_dict(orient="list"),
                preprocessor=preprocessor.settings() if preprocessor is not None else None)
    for node, entry in setup.items():
        hospital = hospital_of[node]
        counts = [int(entry[k]) for k in ("n_train", "n_test")]
        if counts != [int(roster.at[hospital, k]) for k in ("n_train", "n_test")]:
            raise FirstRoundError(f"first round: {hospital} told {counts} rows at setup, "
                                  f"{roster.loc[hospital, ['n_train', 'n_test']].tolist()} before")
        roster.at[hospital, "sha256"] = str(entry["sha256"])
    return held_by(describe(spec), roster, None, preprocessor), hospital_of
