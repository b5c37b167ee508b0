"""The same experiment on Flower's own runtimes: a spec that travels, an exported Flower app, a loopback launcher.

- ``spec``: an Experiment as plain JSON and back;
- ``app``: ``export(experiment, folder)`` writes a self-contained Flower app
  (its ServerApp and ClientApp: ``flower_app``);
- ``hospital``: one hospital of a deployment, holding its own rows only
  (loaded from its node config), and its part of the first round;
- ``roster``: the server's part of the first round (it holds no rows): the
  roster of hospitals and the preprocessor fitted from their statistics;
- ``outputs``: the Result the app's ServerApp writes, read back elsewhere;
- ``launcher``: a SuperLink and one SuperNode per hospital on 127.0.0.1 (or a
  simulation SuperLink), ``flwr run`` of an app, every process stopped after;
  ``worker``: the long-lived ClientApp process beside each SuperNode;
- ``engine``: the ``deployment`` and ``simulation`` engines, registered on
  import (``Experiment(engine="deployment" | "simulation").run()``).
"""

from fedsim.deploy import engine  # noqa: F401  (registers the deployment and simulation engines)
from fedsim.deploy.spec import experiment_fields, to_spec

__all__ = ["experiment_fields", "to_spec"]
