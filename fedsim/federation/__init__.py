"""Hospital federations: each hospital's rows, its train/test split, one preprocessor.

Hospitals are data, not objects: all training rows live in one float32 matrix,
hospital ``i`` owns rows ``train_offsets[i]:train_offsets[i + 1]`` (same for
test). The pooled per-hospital test splits form the global held-out test set.
An image federation's rows are flattened pixels (``image_shape`` gives them back).
"""

from fedsim.federation.federation import SCHEMES, Federation
from fedsim.federation.preprocessing import Preprocessor, hospital_statistics
from fedsim.federation.roster import ROSTER, roster_of
from fedsim.federation.rows import split_rows
from fedsim.federation.synthetic import synthetic_federation, synthetic_provenance

__all__ = ["ROSTER", "SCHEMES", "Federation", "Preprocessor", "hospital_statistics", "roster_of", "split_rows",
           "synthetic_federation", "synthetic_provenance"]
