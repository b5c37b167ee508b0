"""Claims: a sentence a notebook's text states, checked against the numbers the notebook shows.

A notebook that writes "DP-SGD leaves the attacker with noise" calls, in the
cell below the figure::

    fs.claim("DP-SGD leaves the attacker with noise", psnr["DP-SGD"] < psnr_prior + 1,
             dp_sgd=psnr["DP-SGD"], prior=psnr_prior)

and prints ``✓ DP-SGD leaves the attacker with noise (dp_sgd=11.2, prior=11.5)``,
or the same line with ``✗`` when the numbers disagree with the words (``–`` when
the claim is about a run of another size, e.g. only full mode shows it). In
JupyterLab a failed claim only prints (change a setting and a sentence may
stop being true: that is worth seeing, not a crash); with ``FEDSIM_CLAIMS=strict``
(the notebook tests set it) it raises ``ClaimFailed``, so that text the
figures contradict fails the build.
"""

from fedsim.settings import strict_claims


class ClaimFailed(AssertionError):
    """A notebook's text says something its numbers do not show."""


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def claim(statement: str, holds, skip: str | None = None, **numbers) -> None:
    """Print ``✓ statement`` (or ``✗``) with the ``numbers`` behind it; under ``FEDSIM_CLAIMS=strict`` a false
    claim raises ``ClaimFailed``.

    ``skip``: why the claim does not apply to this run (e.g. ``"quick mode"`` for a claim about full-size
    runs, whose text then says so): it prints ``– statement (not checked: <skip>)`` instead.
    """
    shown = ", ".join(f"{name}={_shown(value)}" for name, value in numbers.items())
    if skip:
        print(f"– {statement} (not checked: {skip}" + (f"; {shown})" if shown else ")"), flush=True)
        return
    ok = bool(holds)
    line = f"{'✓' if ok else '✗'} {statement}" + (f" ({shown})" if shown else "")
    if not ok and strict_claims():
        raise ClaimFailed(line)
    print(line if ok else f"{line}: not what these numbers show", flush=True)
