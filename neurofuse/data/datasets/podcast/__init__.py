"""The "Podcast" ECoG dataset (Zada et al. 2025, OpenNeuro ds005574) into the ECoG dataset format."""

from .prepare import (
    PODCAST_STORY,
    SIGNALS,
    PodcastLayout,
    prepare_podcast,
    read_podcast_electrodes,
    read_podcast_layout,
    read_transcript,
)

__all__ = [
    "PODCAST_STORY",
    "SIGNALS",
    "PodcastLayout",
    "prepare_podcast",
    "read_podcast_electrodes",
    "read_podcast_layout",
    "read_transcript",
]
