"""A machine-readable description of the embedded template anatomy (``neurofuse anatomy``)."""

from __future__ import annotations

from .._logging import verbose


@verbose
def describe_template(*, spacing="oct6", montage="standard_1020", verbose=None) -> dict:
    """Describe the default template subject: sources, sensors and lead-field shape.

    Builds (or loads from the cache) the template source space and MEG lead field.

    Parameters
    ----------
    spacing : str
        Source space spacing.
    montage : str
        Built-in EEG montage used to count EEG channels.

    Returns
    -------
    desc : dict
        ``n_sources``, ``n_sources_per_hemi``, ``n_meg_channels`` (with ``n_magnetometers``,
        ``n_gradiometers``), ``n_eeg_channels``, ``leadfield_shape`` (MEG), ``subject``,
        ``spacing``, ``montage``, ``subjects_dir``.
    """
    import mne

    from .forward import get_leadfield, get_source_space, make_forward
    from .subjects import make_template_subject

    subject = make_template_subject(meg=True, eeg=montage)
    src = get_source_space(subject, spacing)
    leadfield = get_leadfield(make_forward(subject, spacing=spacing))
    info = subject.meg_info
    return {
        "subject": subject.name,
        "spacing": spacing,
        "n_sources": int(sum(s["nuse"] for s in src)),
        "n_sources_per_hemi": [int(s["nuse"]) for s in src],
        "n_meg_channels": len(info["ch_names"]),
        "n_magnetometers": len(mne.pick_types(info, meg="mag")),
        "n_gradiometers": len(mne.pick_types(info, meg="grad")),
        "n_eeg_channels": len(subject.eeg_info["ch_names"]),
        "montage": montage,
        "leadfield_shape": list(leadfield.shape),
        "subjects_dir": str(subject.subjects_dir),
    }
