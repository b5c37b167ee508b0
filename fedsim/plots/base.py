"""What every fedsim figure shares."""

import matplotlib.pyplot as plt


def done(fig):
    """Close ``fig`` so pyplot does not show it a second time, and return it."""
    plt.close(fig)
    return fig
