"""Malicious hospitals for ``Experiment(adversaries=...)`` (the ``adversary`` registry).

One adversary per file, each registered under its name:

- ``label_flip``: trains on flipped outcomes;
- ``sign_flip``: sends its update reversed (and amplified by ``scale``);
- ``gaussian_noise``: sends the global model plus Gaussian noise, no training;
- ``model_replacement``: trains a backdoor and scales its update so that it
  replaces the global model (Bagdasaryan et al. 2020); the backdoor success
  rate per round is ``res.tables["backdoor"]``;
- ``alie``: "A little is enough" (Baruch et al. 2019), colluding hospitals
  send mean - z * std of the honest updates;
- ``ipm``: inner-product manipulation (Xie et al. 2019), colluding hospitals
  send -epsilon * the mean honest update;
- ``free_rider``: sends the global model back without training;
- ``inflated_claim``: trains honestly but claims ``factor`` times its examples.

Write your own by subclassing ``Adversary`` and overriding ``attack(turn)``
(see ``Turn``). Adversaries act at the ``adversary`` stage: outside any
client-side privacy mod, so a malicious hospital controls what it sends.
"""

from fedsim.adversaries.alie import ALIE
from fedsim.adversaries.base import ADVERSARIES, Adversary, Colluders, Turn
from fedsim.adversaries.free_rider import FreeRider
from fedsim.adversaries.gaussian_noise import GaussianNoise
from fedsim.adversaries.inflated_claim import InflatedClaim
from fedsim.adversaries.ipm import IPM
from fedsim.adversaries.label_flip import LabelFlip
from fedsim.adversaries.model_replacement import BackdoorProbe, ModelReplacement
from fedsim.adversaries.sign_flip import SignFlip

__all__ = ["ADVERSARIES", "ALIE", "IPM", "Adversary", "BackdoorProbe", "Colluders", "FreeRider", "GaussianNoise",
           "InflatedClaim", "LabelFlip", "ModelReplacement", "SignFlip", "Turn"]
