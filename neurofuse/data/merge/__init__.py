"""Merge dataset stores, e.g. a MEG store and the LeBel fMRI store, into one for joint training.

The paper trains one model on MEG subjects and on the fMRI subjects of LeBel et al. (2023)
who heard the same stories. :func:`neurofuse.data.datasets.bids_meg.prepare_meg_bids` and
:func:`neurofuse.data.datasets.lebel.prepare_lebel` write one store each; :func:`merge_datasets`
combines them (or any stores of the format, ``docs/dataset-format.md``) into a new store
that ``neurofuse joint fit`` reads.

* :mod:`~neurofuse.data.merge.windows`: story offsets and each story's common window;
* :mod:`~neurofuse.data.merge.checks`: what is checked before anything is written;
* :mod:`~neurofuse.data.merge.ground_truth`: which ground truth the merged store carries;
* :mod:`~neurofuse.data.merge.blocks`: copies and comparisons a block at a time (bounded
  memory);
* :mod:`~neurofuse.data.merge.write`: :func:`merge_datasets`, which plans and writes.

Story offsets and the common window
-----------------------------------
A story present in several stores may have been cut differently. Every store records, per
story, the audio time of its first sample: ``metadata["story_offsets"][story]`` (seconds).
LeBel stores keep only the part of the audio that the fMRI covers (offset ~10.06 s), MEG
stores keep whole stories (offset 0). A store without the key (older stores) is read with
offset ``metadata["lebel"]["windows"][story]["start_s"]`` when it has that, else 0.

Sample ``k`` of a story in a store with offset ``o`` (in samples) is audio sample ``o + k``,
so the merged story keeps the **intersection** of the stores' windows: it starts at
``start = max(o_i)`` and ends at ``min(o_i + n_times_i)``. When a store holds fMRI for the
story, its volume ``j`` covers audio samples ``[o + j R, o + (j + 1) R)`` (``R = tr * sfreq``),
and volumes cannot be split: the start is then moved *later*, to the first fMRI volume
boundary at or after ``max(o_i)``, and the other stores' data (MEG, features) are cropped to
that grid. Stores with fMRI for the same story must share the grid (offsets differing by
whole TRs). The merged store records its own offsets (``story_offsets``), so merged stores
can be merged again.

What is checked (before anything is written)
--------------------------------------------
* the same ``sfreq``, the same ``feature_streams``, and the same ``tr`` among the stores that
  hold fMRI (stores without fMRI take the merged ``tr``);
* subject names unique across stores (or made unique with ``subject_prefixes``);
* a story's split the same in every store that has it (or set with ``splits``);
* the features of a shared story the same in every store after cropping, within
  ``|a - b| <= atol + rtol * |b|`` (same audio, alignment, language model and layer), with
  the difference per stream, and the shift that would make them agree, in the error;
* every subject's fsaverage source space (``n_sources_fsaverage``) the same;
* offsets on the sample grid, a non-empty common window (at least one TR with fMRI).
"""

from .windows import story_offset
from .write import merge_datasets

__all__ = ["merge_datasets", "story_offset"]
