"""What every defense shares: the table of what each defense did, round by round."""

from fedsim.tables import Schema

DEFENSES = Schema("defenses", ("round", "hospital", "defense", "action", "value"))
