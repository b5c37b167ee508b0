"""The same experiment on Flower's own runtimes: a spec that travels, an exported Flower app, a loopback launcher.

- ``spec``: an Experiment as plain JSON and back;
- ``app``: ``export(experiment, folder)`` writes a self-contained Flower app
  (its ServerApp and ClientApp: ``flower_app``);
- ``outputs``: the Result the app's ServerApp writes, read back elsewhere;
- ``launcher``: a SuperLink and one SuperNode per hospital on 127.0.0.1 (or a
  simulation SuperLink), ``flwr run`` of an app, every process stopped after;
  ``worker``: the long-lived ClientApp process beside each SuperNode;
- ``engine``: ``Experiment(engine="deployment" | "simulation").run()``.
"""

from fedsim.deploy.spec import experiment_fields, to_spec

__all__ = ["experiment_fields", "to_spec"]
