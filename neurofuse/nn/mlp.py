"""Fully connected stacks (e.g. system C's generators map a MEG vector through one)."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp_layers"]


def mlp_layers(widths) -> list:
    """``Linear(widths[i], widths[i + 1])`` then ``ReLU`` for each consecutive pair.

    Parameters
    ----------
    widths : sequence of int
        Input width, then each layer's output width.

    Returns
    -------
    layers : list of nn.Module
        ``2 * (len(widths) - 1)`` modules, to extend and wrap in :class:`torch.nn.Sequential`
        (their indices are part of the state-dict keys).
    """
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return layers
