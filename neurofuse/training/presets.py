"""Training set-ups by name or file: one reader for every system's ``fit`` configuration."""

from __future__ import annotations

from pathlib import Path

from .._checks import _check_option
from .._io import read_config

__all__ = ["check_not_from_data", "read_fit_config"]


def read_fit_config(config, presets, sections) -> dict:
    """Resolve a preset name, a TOML/JSON file or a dict into one dict of sections.

    Parameters
    ----------
    config : str | path-like | dict
        A key of ``presets``, a ``.toml`` / ``.json`` file, or a dict, with optional keys
        ``preset`` (start from that preset; default ``"paper"``) and each of ``sections``.
    presets : dict of str to dict
        Named set-ups: section name → dict of fields; each preset holds every section.
    sections : tuple of str
        The section names a set-up may hold, e.g. ``("train", "model")``.

    Returns
    -------
    resolved : dict of str to dict
        Section → the preset's fields updated with the config's (not yet validated: the
        caller builds its dataclasses from them).
    """
    if isinstance(config, str) and config in presets:
        config = {"preset": config}
    if not isinstance(config, dict):
        fname = Path(config).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(f"Training config '{fname}' not found. Pass a preset name "
                                    f"({', '.join(presets)}) or a .toml/.json file.")
        config = read_config(fname, what="training config", fix="correct its syntax")
    config = dict(config)
    unknown = sorted(set(config) - {"preset", *sections})
    if unknown:
        expected = ", ".join(repr(s) for s in ("preset", *sections))
        raise ValueError(f"Unknown training config section(s) {unknown}: expected {expected}.")
    base = presets[_check_option("preset", config.get("preset", "paper"), list(presets))]
    return {s: {**base[s], **config.get(s, {})} for s in sections}


def check_not_from_data(section, fields, from_data, why):
    """Refuse a config section that sets fields a system reads from its data.

    Parameters
    ----------
    section : str
        The section's name in the set-up, e.g. ``"model"``.
    fields : dict | iterable of str
        The section's fields (as :func:`read_fit_config` resolved them).
    from_data : tuple of str
        The fields the system takes from the data it is fitted on (e.g. its channel count).
    why : str
        Where in the data they come from, for the error message.

    Raises
    ------
    ValueError
        When ``fields`` holds any of ``from_data``.
    """
    bad = sorted(set(fields) & set(from_data))
    if bad:
        raise ValueError(f"The '{section}' section must not set {bad}: they come from the "
                         f"{why}. Remove them from the set-up.")
