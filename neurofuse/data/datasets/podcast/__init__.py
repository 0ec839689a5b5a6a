"""The "Podcast" ECoG dataset (Zada et al. 2025, OpenNeuro ds005574) into the ECoG format.

* :mod:`.layout` — the files of a ds005574 copy (:func:`read_podcast_layout`) and what
  they hold;
* :mod:`.transcript` — the word-level transcript (:func:`read_transcript`), phones, coverage;
* :mod:`.electrodes` — electrode positions (:func:`read_podcast_electrodes`) placed on
  fsaverage;
* :mod:`.subject` — one subject: checks, onset, channels, then its signal;
* :mod:`.prepare` — :func:`prepare_podcast`, what is written into the ECoG dataset.
"""

from .electrodes import read_podcast_electrodes
from .layout import PODCAST_STORY, PodcastLayout, read_podcast_layout
from .prepare import SIGNALS, prepare_podcast
from .transcript import read_transcript

__all__ = [
    "PODCAST_STORY",
    "SIGNALS",
    "PodcastLayout",
    "prepare_podcast",
    "read_podcast_electrodes",
    "read_podcast_layout",
    "read_transcript",
]
