"""What the simulators' settings share: validated copies and a JSON form.

Private: the base of :class:`~neurofuse.simulation.eeg_meg.EEGMEGWorldConfig` and
:class:`~neurofuse.simulation.eeg_fmri.EEGfMRIConfig`.
"""

from __future__ import annotations

import dataclasses
import math

from .._checks import _check_keys


class JSONSettings:
    """Base of a frozen dataclass of simulation settings: :meth:`replace`, :meth:`to_json`,
    :meth:`from_json`.

    A subclass names in ``_INF_FIELDS`` its float fields that may be infinite (written as the
    string ``'inf'``, which JSON can hold).
    """

    _INF_FIELDS: tuple = ()

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated)."""
        _check_keys(type(self).__name__, changes, [f.name for f in dataclasses.fields(self)])
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """The configuration as JSON-serialisable values (``inf`` as the string ``'inf'``)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and math.isinf(value):
                out[key] = "inf"
            elif isinstance(value, tuple):
                out[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return out

    @classmethod
    def from_json(cls, obj):
        """Inverse of :meth:`to_json`."""
        obj = dict(obj)
        _check_keys(cls.__name__, obj, [f.name for f in dataclasses.fields(cls)])
        for key in cls._INF_FIELDS:
            if obj.get(key) == "inf":
                obj[key] = math.inf
        return cls(**obj)
