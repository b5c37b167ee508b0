"""A fedsim experiment as a Flower app: ``export`` copies this package into the app folder as ``fedsim_app``."""
