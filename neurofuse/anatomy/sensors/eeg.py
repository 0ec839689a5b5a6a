"""EEG caps from MNE's built-in montages.

Positions are in **head** coordinates (Neuromag convention: x towards RPA, y towards the
nasion, z up), derived from the montage's fiducials.
"""

from __future__ import annotations

from ..._checks import _check_positive
from ..._logging import logger, verbose

__all__ = ["make_eeg_info"]

# MNE 1.13 renamed the 'standard_*' montages (the Colin27 head, with the fsaverage fiducials)
# to 'colin27_*' and will drop the old names in 1.14; map either name to what is installed.
_MONTAGE_ALIASES = {
    f"standard_{s}": f"colin27_{s}"
    for s in ("1005", "1020", "alphabetic", "postfixed", "prefixed", "primed")
}


def _resolve_montage_name(name: str) -> str:
    import mne

    builtin = list(mne.channels.get_builtin_montages())
    if name in builtin:
        return name
    reverse = {v: k for k, v in _MONTAGE_ALIASES.items()}
    for table in (_MONTAGE_ALIASES, reverse):
        if table.get(name) in builtin:
            return table[name]
    raise ValueError(
        f"Invalid value for the 'montage' parameter: {name!r} is not a built-in MNE montage. "
        f"Valid names include {builtin[:6]}...; list all {len(builtin)} with "
        "mne.channels.get_builtin_montages(), or pass an mne.channels.DigMontage."
    )


@verbose
def make_eeg_info(montage="colin27_1020", sfreq: float = 50.0, *, verbose=None):
    """Make the measurement info of an EEG cap from an MNE built-in montage.

    Parameters
    ----------
    montage : str | mne.channels.DigMontage
        Name of a built-in montage (see ``mne.channels.get_builtin_montages()``), e.g.
        ``'colin27_1020'`` (94 extended 10-20 positions; the default), ``'fsaverage_1010'``
        (70 positions on the fsaverage head), ``'biosemi64'``, ``'GSN-HydroCel-129'``; the
        deprecated ``'standard_1020'``/``'standard_1005'`` names are accepted as aliases of
        ``'colin27_1020'``/``'colin27_1005'``. A ``DigMontage`` with fiducials is used as is.
    sfreq : float
        Sampling frequency in Hz.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    info : mne.Info
        One ``'eeg'`` channel per montage electrode, positions in head coordinates (metres)
        computed from the montage's fiducials. The ``colin27_*`` and ``fsaverage_*`` montages
        carry the fsaverage fiducials (or close to them), so they line up with the fsaverage
        head (``trans='fsaverage'``) within a few mm; spherical montages (``biosemi*``,
        ``easycap-*``, ``spherical_*``) do not.

    Notes
    -----
    The channels are left **unreferenced**: no reference channel position and no average
    reference projector are set. Before inverse modelling call
    ``mne.set_eeg_reference(inst, projection=True)`` (MNE's inverse requires it); for
    simulation, apply the reference of the system you mimic to the simulated data.
    """
    import mne

    sfreq = _check_positive("sfreq", sfreq)
    if isinstance(montage, str):
        name = _resolve_montage_name(montage)
        if name != montage:
            logger.debug("Montage %r is called %r in this mne version; using it.", montage, name)
        mon = mne.channels.make_standard_montage(name)
        if name.startswith("artinis"):
            raise ValueError(
                f"Invalid value for the 'montage' parameter: {montage!r} is an fNIRS optode "
                "montage, not EEG. Choose an EEG montage such as 'colin27_1020'."
            )
    elif isinstance(montage, mne.channels.DigMontage):
        mon, name = montage, "custom DigMontage"
    else:
        raise TypeError(
            f"'montage' must be a montage name (str) or an mne.channels.DigMontage, got "
            f"{type(montage).__name__}."
        )
    if len(mon.ch_names) == 0:
        raise ValueError("'montage' has no electrode positions.")
    info = mne.create_info(list(mon.ch_names), sfreq, "eeg")
    info.set_montage(mon, verbose=False)
    logger.debug("Made a %d-channel EEG info from %s (head coordinates).", len(mon.ch_names), name)
    return info
