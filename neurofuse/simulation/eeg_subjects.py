"""EEG subjects of a simulated naturalistic study (:func:`~neurofuse.simulation.study.simulate_study`).

An EEG subject has the MEG subjects' physics with its own three-layer-BEM EEG lead field,
referenced to the average: ``EEG = P L M s + noise`` with ``P = I - 1 1^T / n``, the noise
referenced too.
"""

from __future__ import annotations

import math

import numpy as np

from ..physics.measurement import add_noise, make_gain, referenced_noise_sigma


def eeg_subject(sm, config, n_jobs):
    """EEG forward model of an EEG subject: average-referenced lead field, gain and ``Info``.

    The three-layer BEM EEG lead field ``L`` (n_electrodes, n_sources) is referenced to the
    average, ``L - mean(L, axis=0)``, so the EEG is ``L_ref M s``; the ``Info`` carries an
    active average-reference projector (the data are already referenced).

    Parameters
    ----------
    sm : neurofuse.simulation.study._SubjectModel
        The subject; its ``morph``, ``gain`` and ``extra`` (``leadfield``, ``forward``,
        ``vertices``, ``info``) are set here.
    config : StudyConfig
    n_jobs : int | None
        Parallel jobs for MNE's forward computation.
    """
    from ..anatomy import get_leadfield, make_forward, make_morph
    from .eeg_meg.world import _average_reference_info

    fwd = make_forward(sm.subject, spacing=config.spacing, meg=False, eeg=True, n_jobs=n_jobs)
    if list(fwd["info"]["ch_names"]) != list(sm.subject.eeg_info["ch_names"]):
        raise RuntimeError(f"The EEG forward channels of {sm.name} differ from its EEG info.")
    sm.morph = make_morph(sm.subject, spacing=config.spacing, src_to=fwd["src"])
    leadfield = np.asarray(get_leadfield(fwd), np.float64)
    leadfield = leadfield - leadfield.mean(axis=0, keepdims=True)  # average reference
    sm.extra.update(leadfield=leadfield, forward=fwd, vertices=[s["vertno"] for s in fwd["src"]],
                    info=_average_reference_info(sm.subject.eeg_info))
    sm.gain = make_gain(leadfield, sm.morph)  # (n_electrodes, n_src_fsaverage)


def referenced_noise(rng, clean, cnr, n_repeats):
    """Average-referenced noisy EEG, (n_repeats, n_electrodes, n_times), at ``cnr``.

    The noise is drawn per electrode and then referenced to the average like the (already
    referenced) signal, with the s.d. before referencing from
    :func:`neurofuse.physics.measurement.referenced_noise_sigma`, so the *referenced* noise
    has s.d. ``sigma_i / cnr`` on every electrode (the EEG + MEG world uses the same).

    Parameters
    ----------
    rng : numpy.random.Generator
    clean : array, shape (n_electrodes, n_times)
        The noiseless, average-referenced EEG.
    cnr : float
        sigma_signal / sigma_noise per electrode; ``inf``: no noise.
    n_repeats : int

    Returns
    -------
    eeg : array, shape (n_repeats, n_electrodes, n_times)
    """
    sigma = clean.std(axis=-1, keepdims=True)  # (n, 1): signal s.d. per electrode
    if not math.isinf(cnr) and clean.shape[0] >= 2:
        sigma = referenced_noise_sigma(sigma)
    data = add_noise(rng, clean, cnr, sigma_signal=sigma, n_repeats=n_repeats)
    return data - data.mean(axis=1, keepdims=True)
