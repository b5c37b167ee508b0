"""Engines by name: registered objects that run an Experiment and return its Result.

An engine has a ``name``, ``check(experiment)`` (refuse, before anything
runs, what it cannot run as specified) and ``run(experiment) -> Result``;
most build the run's plan and execute it with ``experiment.execute(run_plan)``
(``run_plan(plan) -> Outcome``). ``fedsim.engine`` registers ``inprocess``
and ``sequential``, and ``fedsim.deploy`` registers ``deployment`` and
``simulation`` (alias ``ray``); ``register`` adds an engine of your own,
which ``Experiment(engine=...)``, the CLI and the study cache then take by
name::

    class Logged:
        name = "logged"

        def check(self, experiment):
            pass

        def run(self, experiment):
            print("running", experiment.label)
            return experiment.execute(lambda plan: fs.engine.run_inprocess(plan))

    fs.engine.register(Logged())
"""

from fedsim.validation import Options, check

ENGINES: dict[str, object] = {}
ALIASES: dict[str, str] = {}


def register(engine, aliases: tuple[str, ...] = ()) -> object:
    """Make ``engine`` (an object with ``name``, ``check`` and ``run``) available by its name and ``aliases``."""
    for method in ("check", "run"):
        if not callable(getattr(engine, method, None)):
            raise ValueError(f"engine: {type(engine).__name__} has no {method}(experiment) method")
    ENGINES[engine.name] = engine
    ALIASES.update(dict.fromkeys(aliases, engine.name))
    return engine


def names() -> list[str]:
    """Every name an engine answers to (aliases included)."""
    return [*ENGINES, *ALIASES]


def engine_named(name: str) -> object:
    """The engine ``name`` (or an alias of it) designates; a clear error naming the allowed ones otherwise."""
    name = check("engine", name, Options(*names()))
    return ENGINES[ALIASES.get(name, name)]
