"""An Experiment as a plain JSON spec, and back: what travels to the processes of a Flower federation.

The spec holds how to rebuild the federation (a synthetic federation's
generator settings, or a table's path and columns) and the Experiment's
``settings()`` (every component as ``{"name": ..., <settings>}``). A ServerApp or
ClientApp in another process (or on another machine) rebuilds the same
Experiment with ``Experiment(**experiment_fields(spec))``.

What cannot travel is refused with the field named: a model or strategy
given as a Python object, ``client_mods``, observers that are not fedsim
components, a signing key, and a federation built from an in-memory table
(save it and give its path).
"""

import json
from pathlib import Path

import pandas as pd

from fedsim.components import FIELDS, Component, from_settings
from fedsim.federation import Federation, synthetic_federation

VERSION = 1
TABLE_KEYS = ("path", "target", "site", "test_size", "seed", "features", "positive", "name", "preprocessing")


def to_spec(experiment, federation: dict | None = None) -> dict:
    """``experiment`` as plain JSON-ready data (``experiment_fields`` rebuilds it).

    ``federation``: how to load the data when the experiment's federation was
    built from a table, ``{"path": table.csv|.parquet, "target": ..., "site": ...}``
    (plus ``Federation.from_dataframe``'s other arguments); a synthetic
    federation travels as its generator settings without it.
    """
    spec = {"fedsim_spec": VERSION, "federation": federation_spec(experiment.federation, federation)}
    for field in ("model", "strategy"):
        if not isinstance(getattr(experiment, field), str):
            raise ValueError(f"{field}: {getattr(experiment, field)!r} is a Python object and cannot travel to "
                             f"other processes; give its registry name (a string)")
    if experiment.client_mods:
        raise ValueError("client_mods: Python functions cannot travel to other processes; write the mod as a "
                         "fedsim Component (registered by name) instead")
    if experiment.audit_key is not None:
        raise ValueError("audit_key: a signing key does not travel in a spec; sign the exported app's audit log "
                         "where the ServerApp runs")
    for observer in experiment.observers:
        component_spec("observers", observer)  # a Python observer cannot travel
    for component in experiment.components():
        component_spec(FIELDS[component.family], component)  # each rebuilds from its settings, none reads rows
    spec["experiment"] = experiment.settings()
    try:
        return json.loads(json.dumps(spec, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"experiment: a setting is not plain JSON data ({error})") from None


def federation_spec(fed: Federation, table: dict | None = None) -> dict:
    """How every hospital loads its own rows: ``fed``'s synthetic provenance, or the ``table`` it came from.

    A table's entry names its columns and hospitals; each hospital reads its
    own file (node config ``data-path``) or its rows of the entry's ``path``.
    The preprocessing must be ``"federated"``: no party of a Flower federation
    holds the pooled rows a ``"pooled"`` fit needs.
    """
    if fed.preprocessor is not None and fed.preprocessor.fitting != "federated":
        raise ValueError("federation.preprocessing: 'pooled' fits on every hospital's rows together, which no party "
                         "of a Flower federation holds; build the federation with preprocessing='federated' (the "
                         "default)")
    if table is not None:
        table = dict(table)
        unknown = sorted(set(table) - set(TABLE_KEYS))
        if unknown or not {"target", "site"} <= set(table):
            raise ValueError(f"federation: expected {{target: ..., site: ..., path: ...}}"
                             f"{f', unknown keys {unknown}' if unknown else ''}; allowed: {list(TABLE_KEYS)}")
        if "path" in table:
            table["path"] = str(Path(table["path"]).resolve())
        if table.setdefault("preprocessing", "federated") != "federated":
            raise ValueError(f"federation.preprocessing: {table['preprocessing']!r}; a Flower federation fits it "
                             f"'federated' (from each hospital's statistics)")
        return {"table": {**table, "hospitals": list(fed.hospitals)}}
    provenance = fed.provenance
    if provenance is None or provenance.get("source") != "synthetic":
        raise ValueError("federation: built from an in-memory table, it cannot travel to other processes (the "
                         "deployment and simulation engines, an exported Flower app); save the table (parquet or "
                         "CSV) and export with federation={'path': ..., 'target': ..., 'site': ...}")
    settings = {k: provenance[k] for k in ("scenario", "n_hospitals", "n_patients", "seed", "test_size",
                                           "preprocessing") if k in provenance}  # images: no preprocessing
    return {"synthetic": {**settings, **provenance["knobs"]}}


def component_spec(field: str, component) -> dict:
    """``{"name": ..., <settings>}`` of a component, checked to rebuild an equal one."""
    if not isinstance(component, Component):
        raise ValueError(f"{field}: {component!r} is a Python object, not a fedsim component; only components "
                         f"(registered by name) travel to other processes")
    if component.server_reads_rows is not None:
        raise ValueError(f"{field}: {component.name} {component.server_reads_rows}, and the server of a Flower "
                         f"federation holds no hospital's rows; run it with engine='inprocess'")
    spec = {"name": component.name, **component.settings()}
    try:
        rebuilt = from_settings(spec, component.family, field)
    except ValueError as error:
        raise ValueError(f"{field}: {component.name} cannot be rebuilt from its settings ({error})") from None
    if rebuilt.settings() != component.settings():
        raise ValueError(f"{field}: {component.name} does not rebuild equal from its settings {spec}")
    return spec


def load_federation(spec: dict) -> Federation:
    """The federation a spec's ``federation`` entry describes."""
    if "synthetic" in spec:
        return synthetic_federation(**spec["synthetic"])
    table = {k: v for k, v in spec["table"].items() if k != "hospitals"}
    path = Path(table.pop("path", ""))
    if not path.is_file():
        raise ValueError(f"federation.path: file {str(path)!r} not found")
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return Federation.from_dataframe(df, **table)


def load_spec(spec: dict | str) -> dict:
    """A spec (or its JSON text), checked to be one of this version."""
    spec = json.loads(spec) if isinstance(spec, str) else spec
    if not isinstance(spec, dict) or spec.get("fedsim_spec") != VERSION:
        raise ValueError(f"spec: not a fedsim spec of version {VERSION}")
    return spec


def experiment_fields(spec: dict | str, federation: Federation | None = None) -> dict:
    """The keyword arguments of ``fedsim.Experiment`` a spec (or its JSON text) describes.

    ``federation``: the federation to use instead of loading the spec's (a
    deployment's party builds the one it holds: ``fedsim.deploy.hospital``).
    """
    spec = load_spec(spec)
    fields = dict(spec["experiment"])  # components as {"name": ..., <settings>}: the Experiment rebuilds them
    fields["federation"] = federation if federation is not None else load_federation(spec["federation"])
    return fields
