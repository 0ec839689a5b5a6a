"""Which ground truth (simulations) the merged store carries, and from which store."""

from __future__ import annotations

import numpy as np

from .blocks import _arrays_equal, _rows_per_chunk, _tree_digest


def _plan_ground_truth(datasets, names, story_list, windows, holders):
    """Where each ground-truth array and folder of the merged store comes from.

    Returns
    -------
    gt_arrays : dict of str to (int, str | None)
        Per array name, the store it is copied from and the story whose time axis it follows
        (``None``: copied whole).
    gt_dirs : dict of str to int
        Per folder name, the store it is copied from.

    Raises
    ------
    ValueError
        The same name holds different content in two stores.
    """
    gt_arrays, gt_dirs = {}, {}  # name -> (store index, story or None); name -> store index
    for i, ds in enumerate(datasets):
        for name in ds.ground_truth_names:
            arr = ds.ground_truth(name)
            stem = name.rsplit("/", 1)[-1].removesuffix(".npy")
            story = stem if (stem in ds.stories and arr.ndim >= 1
                             and arr.shape[-1] == ds.n_times(stem)) else None
            if story is not None and story not in story_list:
                continue
            if name in gt_arrays:
                j, story_j = gt_arrays[name]
                if not _same_ground_truth(datasets, windows, holders, name, (j, story_j),
                                          (i, story)):
                    raise ValueError(
                        f"Ground truth {name!r} is in {names[j]} and {names[i]} with "
                        "different content; the merged store can keep only one. Pass "
                        "ground_truth=False (--no-ground-truth) to leave ground truth out.")
                continue
            gt_arrays[name] = (i, story)
        for name in ds._m.get("ground_truth_dirs", []):
            if name in gt_dirs:
                j = gt_dirs[name]
                if _tree_digest(datasets[j].ground_truth_dir(name)) != \
                        _tree_digest(ds.ground_truth_dir(name)):
                    raise ValueError(
                        f"Ground-truth folder {name!r} is in {names[j]} and {names[i]} "
                        "with different content; pass ground_truth=False "
                        "(--no-ground-truth) to leave ground truth out.")
                continue
            gt_dirs[name] = i
    return gt_arrays, gt_dirs


def _same_ground_truth(datasets, windows, holders, name, first, second) -> bool:
    """Whether two stores' ground truth ``name`` holds the same content (after cropping)."""
    (i, story_i), (j, story_j) = first, second
    a, b = datasets[i].ground_truth(name), datasets[j].ground_truth(name)
    if (story_i is None) != (story_j is None):
        return False
    if story_i is None:
        return _arrays_equal(a, b)
    crops = dict(zip(holders[story_i], windows[story_i]["crops"]))
    n = windows[story_i]["n_times"]
    ca, cb = crops[i]["crop"], crops[j]["crop"]
    if a.shape[:-1] != b.shape[:-1] or a.dtype != b.dtype:
        return False
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    step = _rows_per_chunk(n * a.dtype.itemsize)
    return all(np.array_equal(np.asarray(a2[k:k + step, ca:ca + n]),
                              np.asarray(b2[k:k + step, cb:cb + n]))
               for k in range(0, a2.shape[0], step))
