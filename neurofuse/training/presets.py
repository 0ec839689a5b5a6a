"""Training set-ups by name or file: one reader for every system's ``fit`` configuration."""

from __future__ import annotations

from pathlib import Path

from .._checks import _check_option
from .._io import read_config

__all__ = ["read_fit_config"]


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
