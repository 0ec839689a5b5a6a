"""The transcoder's four reconstruction losses (paper eq. 5).

``L = w1 L_fMRI→EEG + w2 L_EEG→fMRI + w3 L_fMRI→fMRI + w4 L_EEG→EEG`` with, for an
input EEG ``E`` and fMRI ``F``:

* ``fmri2eeg``: ``Σ (E - Ê)²``, ``Ê = enc_EEG(dec_fMRI(F))`` (transcoded EEG);
* ``eeg2fmri``: ``Σ (F - F̂)²``, ``F̂ = enc_fMRI(dec_EEG(E))`` (transcoded fMRI);
* ``fmri_cycle``: ``Σ (F - F̂')²``, the fMRI back from its cycle;
* ``eeg_cycle``: ``Σ (E - Ê')²``, the EEG back from its cycle.

The paper writes sums of squared errors; ``reduction="mean"`` (default) divides each sum by
its number of elements (the mean squared error), which only rescales each term (and makes
the EEG and fMRI terms comparable whatever their sizes); ``reduction="sum"`` is the paper's
formula. Which cycle is meant (through the other modality, or straight back) is a choice of
:meth:`~neurofuse.systems.transcoder.model.Transcoder.forward`.
"""

from __future__ import annotations

import torch

from ..._checks import _check_keys, _check_option, _check_positive

__all__ = ["LOSS_TERMS", "REDUCTIONS", "check_weights", "transcoder_loss"]

#: The four terms, named as the keys of :meth:`Transcoder.forward`'s outputs they score.
LOSS_TERMS = ("fmri2eeg", "eeg2fmri", "fmri_cycle", "eeg_cycle")
#: The target of each term: the input EEG or fMRI.
_TARGET = {"fmri2eeg": "eeg", "eeg2fmri": "fmri", "fmri_cycle": "fmri", "eeg_cycle": "eeg"}
REDUCTIONS = ("mean", "sum")


def check_weights(weights) -> dict:
    """Validate loss weights: a dict of the terms of :data:`LOSS_TERMS` to numbers >= 0.

    Parameters
    ----------
    weights : dict of str to float | None
        Missing terms weigh 1 (the paper's equal sum); None: all 1.

    Returns
    -------
    weights : dict of str to float
        Every term, in :data:`LOSS_TERMS` order.
    """
    weights = dict(weights or {})
    _check_keys("loss weight", weights, LOSS_TERMS)
    out = {k: _check_positive(f"weights[{k!r}]", weights.get(k, 1.0), allow_zero=True)
           for k in LOSS_TERMS}
    if not any(out.values()):
        raise ValueError(f"The loss weights are all 0: nothing would be trained; give at least "
                         f"one of {list(LOSS_TERMS)} a weight > 0.")
    return out


def transcoder_loss(outputs, eeg, fmri, *, weights=None, reduction="mean"):
    """The weighted sum of the four reconstruction losses.

    Parameters
    ----------
    outputs : dict of str to Tensor
        From :meth:`~neurofuse.systems.transcoder.model.Transcoder.forward`: ``fmri2eeg``
        and ``eeg_cycle`` shaped as ``eeg``, ``eeg2fmri`` and ``fmri_cycle`` as ``fmri``.
        A term whose weight is 0 may be missing.
    eeg : Tensor, shape (batch, n_channels, n_steps)
        The input EEG.
    fmri : Tensor, shape (batch, n_x, n_y, n_z, n_trs)
        The input fMRI.
    weights : dict of str to float | None
        See :func:`check_weights`.
    reduction : 'mean' | 'sum'
        Mean squared error per term, or the paper's sum of squared errors.

    Returns
    -------
    loss : Tensor, shape ()
        ``Σ_k weights[k] * term_k`` (float32).
    terms : dict of str to Tensor
        Each unweighted term, shape () (detached), for the four of :data:`LOSS_TERMS`
        present in ``outputs``.
    """
    weights = check_weights(weights)
    _check_option("reduction", reduction, REDUCTIONS)
    targets = {"eeg": eeg, "fmri": fmri}
    loss = torch.zeros((), device=eeg.device, dtype=torch.float32)
    terms = {}
    for key in LOSS_TERMS:
        if key not in outputs:
            if weights[key]:
                raise ValueError(f"'outputs' lacks {key!r}, whose weight is {weights[key]}; "
                                 "compute it or set its weight to 0.")
            continue
        pred, target = outputs[key].float(), targets[_TARGET[key]].float()
        if pred.shape != target.shape:
            raise ValueError(f"outputs[{key!r}] has shape {tuple(pred.shape)} but the "
                             f"{_TARGET[key]} it reconstructs {tuple(target.shape)}.")
        sq = (pred - target).square()
        term = sq.mean() if reduction == "mean" else sq.sum()
        terms[key] = term.detach()
        if weights[key]:
            loss = loss + weights[key] * term
    return loss, terms
