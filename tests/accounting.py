"""Epsilons recomputed for tests with dp-accounting alone, independently of fedsim's ledger."""

import dp_accounting
from dp_accounting import rdp


def poisson_epsilon(z, events, delta):
    """RDP epsilon of Gaussians of noise multiplier ``z`` over (Poisson rate, count) events, add or remove one."""
    accountant = rdp.RdpAccountant()
    for q, count in events:
        event = dp_accounting.GaussianDpEvent(z)
        accountant.compose(dp_accounting.PoissonSampledDpEvent(q, event) if q < 1 else event, count)
    return accountant.get_epsilon(delta) if events else 0.0


def without_replacement_epsilon(z, events, delta):
    """RDP epsilon of a sum of clipped updates with noise ``z`` x the clip, over ((population, sample), count)
    events of fixed-size sampling without replacement, replace one: the sum moves by up to 2 x the clip."""
    accountant = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for (population, sample), count in events:
        event = dp_accounting.GaussianDpEvent(z / 2)
        accountant.compose(dp_accounting.SampledWithoutReplacementDpEvent(population, sample, event)
                           if sample < population else event, count)
    return accountant.get_epsilon(delta) if events else 0.0
