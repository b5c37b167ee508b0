"""One hospital of a deployment: its own rows only, loaded from its node config, and its part of the first round.

Node config: ``partition-id`` (the hospital's index in the federation, as
Flower's simulation runtime sets it) and, for a table federation,
``data-path`` (this hospital's own table, parquet or CSV). A synthetic
hospital is generated from the spec's scenario, knobs and seed and its index
alone (``data_synthetic``'s per-hospital streams draw no other hospital's
patients). Without ``data-path``, a table hospital reads the spec's ``path``
and keeps its own site's rows only (one shared file on one machine).
``noise-seed`` (optional) is the secret of this hospital's DP noise, set by
its own operator (``fedsim.randomness``); the server never sends one, and
without it the node draws a fresh secret.

The first round (``fedsim.deploy.roster``) has two steps:

1. ``statistics``: the hospital tells the server its name, row counts, events
   and, for a table, ``hospital_statistics`` of its training rows;
2. ``setup``: the server sends the roster of every hospital and the
   preprocessor it fitted from every hospital's statistics; the hospital
   preprocesses its rows, builds its federation (``federation``) and its
   ClientApp, and tells the server the SHA-256 of its rows (the audit log's
   data fingerprint).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp

import data_synthetic
from fedsim.federation import Federation, Preprocessor, hospital_statistics, split_rows, synthetic_provenance
from fedsim.validation import Integer, check

STEP = "fedsim-step"  # the query's ConfigRecord key naming the first round's step
TABLE_FILES = (".parquet", ".csv")


SYNTHETIC = ("scenario", "n_hospitals", "n_patients", "seed", "test_size", "preprocessing")  # the rest: knobs


def describe(spec: dict) -> dict:
    """What every party derives from the spec alone (no rows): ``Federation.held_by``'s fields and the split's.

    ``target``, ``site``, ``seed``, ``test_size``, ``positive``, and ``fields``
    (``name``, ``provenance``, ``image_shape``).
    """
    source = spec["federation"]
    if "table" in source:
        table = source["table"]
        return {"target": table["target"], "site": table["site"], "seed": table.get("seed", 0),
                "test_size": table.get("test_size", 0.2), "positive": table.get("positive"),
                "fields": {"name": table.get("name", "custom")}}
    settings = source["synthetic"]
    knobs = {k: v for k, v in settings.items() if k not in SYNTHETIC}
    provenance = synthetic_provenance(settings["scenario"], settings["n_hospitals"], settings["n_patients"],
                                      settings["seed"], settings.get("test_size", 0.2), knobs)
    images = settings["scenario"] in data_synthetic.IMAGE_SCENARIOS
    if not images:
        provenance["preprocessing"] = settings.get("preprocessing", "federated")
    return {"target": "lesion" if images else data_synthetic.load_card(settings["scenario"]).target,
            "site": "hospital", "seed": settings["seed"], "test_size": settings.get("test_size", 0.2),
            "positive": None, "fields": {"name": settings["scenario"], "provenance": provenance,
                                         "image_shape": (knobs["image_size"],) * 2 if images else None}}


class Hospital:
    """The rows one node's hospital holds, and (after ``setup``) its ClientApp."""

    def __init__(self, spec: dict, node_config):
        self.spec, self.about = spec, describe(spec)
        # The secret of this hospital's DP noise: its operator's (node config), never the server's; None: fresh.
        seed = node_config.get("noise-seed")
        self.noise_seed = None if seed is None else check("noise-seed", int(seed), Integer(min=0, max=2**63 - 1))
        source = spec["federation"]
        index = node_config.get("partition-id")
        self.images = None
        if "synthetic" in source:
            settings = source["synthetic"]
            index = check("partition-id", index, Integer(min=0, max=settings["n_hospitals"] - 1))
            df, self.features = self._generate(settings, index)
        else:
            df, self.features = self._table(source["table"], node_config.get("data-path"), index)
        about = self.about
        self.rows, self.y, order = split_rows(df, about["target"], about["site"], about["test_size"], about["seed"],
                                              about["positive"], local=True)
        if self.images is not None:
            self.images = self.images[order]
        self.held: Federation | None = None  # this hospital's federation (its rows, the roster), built at setup
        self.app: ClientApp | None = None  # its ClientApp

    def _generate(self, settings: dict, index: int) -> tuple[pd.DataFrame, list[str] | None]:
        """Generate this hospital alone: its rows and feature columns (None for scans)."""
        knobs = {k: v for k, v in settings.items() if k not in SYNTHETIC}
        common = {"n_hospitals": settings["n_hospitals"], "n_patients": settings["n_patients"],
                  "seed": settings["seed"], "hospitals": [index]}
        if settings["scenario"] in data_synthetic.IMAGE_SCENARIOS:
            scans = data_synthetic.generate_scans(**common, **knobs)
            self.images, self.about["fields"]["sites"] = scans.images, scans.hospitals
            return scans.patients, None
        cohort = data_synthetic.generate(settings["scenario"], **common, **knobs)
        self.about["fields"]["sites"] = cohort.hospitals
        target = self.about["target"]
        return cohort.patients, [c for c in cohort.patients.columns if c not in (target, "hospital")]

    def _table(self, table: dict, data_path, index) -> tuple[pd.DataFrame, list[str]]:
        """Read this hospital's own table (``data-path``), or its site's rows of the spec's shared table."""
        if data_path is None and "path" not in table:
            raise ValueError("data-path: this node's config names no table of its hospital's rows; start the "
                             "SuperNode with --node-config \"data-path='/path/to/own.parquet'\"")
        path = Path(str(data_path if data_path is not None else table["path"]))
        if path.suffix not in TABLE_FILES or not path.is_file():
            raise ValueError(f"data-path: {str(path)!r} is not a parquet or CSV file of this hospital's rows")
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        target, site = self.about["target"], self.about["site"]
        for field, column in (("target", target), ("site", site)):
            if column not in df.columns:
                raise ValueError(f"{field}: column {column!r} not found in {str(path)!r}; columns are "
                                 f"{list(df.columns)}")
        sites = sorted(df[site].astype(str).unique())
        if data_path is None:  # the shared table: this node's site by index
            check("partition-id", index, Integer(min=0, max=len(sites) - 1))
            df, sites = df[df[site].astype(str) == sites[index]], [sites[index]]
        if len(sites) != 1:
            raise ValueError(f"data-path: {str(path)!r} holds the rows of {len(sites)} sites ({sites[:3]}); a "
                             f"hospital's file holds its own rows only")
        return df, table.get("features") or [c for c in df.columns if c not in (target, site)]

    @property
    def hospital(self) -> str:
        """This hospital's id (its site value)."""
        return str(self.rows[self.about["site"]].iloc[0])

    def statistics(self) -> dict:
        """What this hospital tells the server in the first step: counts and its preprocessing statistics."""
        is_train = (self.rows["split"] == "train").to_numpy()
        train = self.rows[is_train]
        told = {"hospital": self.hospital, "n_train": len(train), "n_test": int((~is_train).sum()),
                "events_train": int(self.y[is_train].sum()), "features": self.features}
        if self.features is not None:
            told["statistics"] = hospital_statistics(train, self.features)
        return told

    def federation(self, roster: pd.DataFrame, preprocessor: Preprocessor | None) -> Federation:
        """This hospital's federation: its rows, preprocessed as the server says, and the roster of all."""
        return held_by(self.about, roster, self.rows, preprocessor, self.images)


def held_by(about: dict, roster: pd.DataFrame, rows: pd.DataFrame | None, preprocessor: Preprocessor | None,
            images: np.ndarray | None = None) -> Federation:
    """``Federation.held_by`` with the fields ``describe`` derived from the spec."""
    return Federation.held_by(roster, rows, preprocessor, about["target"], about["site"], seed=about["seed"],
                              positive=about["positive"], images=images, **about["fields"])


def reply(message: Message, **values) -> Message:
    """A query reply holding ``values`` as one JSON text."""
    return Message(RecordDict({"fedsim": ConfigRecord({"json": json.dumps(values)})}), reply_to=message)


def read(message: Message) -> dict:
    """The JSON values of a first-round message (``reply``'s form)."""
    return json.loads(str(message.content["fedsim"]["json"]))


def roster_from(values: dict) -> pd.DataFrame:
    """The roster the server sent at setup, as a DataFrame indexed by hospital."""
    roster = pd.DataFrame(values).set_index("hospital")
    return roster.astype({"n_train": "int64", "n_test": "int64", "events_train": "int64"})
