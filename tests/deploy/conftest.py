"""The ``deployment`` mark: tests that start Flower processes on this machine (each costs TensorFlow imports)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "deployment: starts a Flower SuperLink and SuperNodes on this machine "
                                       "(deselect with -m 'not deployment')")
