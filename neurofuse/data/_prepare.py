"""What the ``prepare_*`` loaders share: the resumable work folder, its cache entries, the
identity of input files and language models, WAV durations, splits, and the cached
per-story stimulus features.

Private: used by :mod:`neurofuse.data.datasets.lebel`, :mod:`neurofuse.data.datasets.bids_meg` and
:mod:`neurofuse.data.datasets.podcast`.

The work folder
---------------
Each loader caches its intermediate results (features per story, preprocessed data per
recording...) in a work folder, default ``<out>.work`` next to the output. It holds a
marker file naming the loader (so a folder the user made is never filled or removed) and,
per result, ``<name>.npy`` plus ``<name>.json`` = ``{"key": ..., **info}``, both written
atomically, the JSON last: an entry counts only if its key — a hash of every input
(:func:`signature` of the files, settings) — matches.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from .._checks import _check_int, _check_option, _check_type
from .._docs import fill_doc
from .._io import check_writable_dir, hash_arrays, hash_file, save_npy, write_json
from .._logging import logger

REAL_EXTRA = 'pip install "neurofuse[real]"'


def import_real(module: str, purpose: str):
    """Import an optional dependency of the real-data loaders, or say how to install it.

    ``purpose`` completes "<purpose> needs <module>", e.g. ``"Reading BIDS MEG"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{purpose} needs {module.replace('_', '-')}: install it with "
                          f"{REAL_EXTRA}.") from None


def check_root(root, *, dataset, holds) -> Path:
    """``root`` as a Path to an existing folder, or a FileNotFoundError naming the folder
    wanted: the ``dataset`` (e.g. ``"ds003020"``) folder, "the one that holds ``holds``"."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'root' = '{root}' is not a folder. Pass the {dataset} folder "
                                f"(the one that holds {holds}).")
    return root


def check_out(out, overwrite) -> Path:
    """``out`` as a Path; refuse an existing one unless ``overwrite`` (before any work)."""
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise FileExistsError(f"The output location '{out}' already exists. Choose a new folder "
                              "or pass overwrite=True (--overwrite) to replace it.")
    return out


def check_feature_options(layer, context_tokens, *, features_fn=None, repeatability=None):
    """Check the options every loader shares; returns ``(layer, context_tokens)``."""
    layer = _check_int("layer", layer, minimum=0)
    context_tokens = _check_int("context_tokens", context_tokens)
    if repeatability is not None:
        from .repeatability import METHODS

        _check_option("repeatability", repeatability, [*METHODS, None])
    if features_fn is not None and not callable(features_fn):
        raise TypeError(f"'features_fn' must be callable, got {type(features_fn).__name__}.")
    return layer, context_tokens


def as_list(name, value) -> list | None:
    """``None``, one string, or a sequence of strings, as a list of strings (or ``None``)."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(_check_type(name, value, (list, tuple)))
    return [_check_type(name, v, str) for v in values]


# --------------------------------------------------------------------------------------
# Identity of inputs
# --------------------------------------------------------------------------------------

def signature(path) -> list:
    """A cheap identity of a (large) file: resolved path, size and modification time."""
    st = Path(path).stat()
    return [str(Path(path).resolve()), int(st.st_size), int(st.st_mtime_ns)]


def lm_name(language_model) -> str:
    """A readable name of a language model (path, hub name or ``Class:name``)."""
    if isinstance(language_model, (str, os.PathLike)):
        return str(language_model)
    return f"{type(language_model).__name__}:{getattr(language_model, 'name', '?')}"


def lm_id(language_model) -> list:
    """What identifies a language model for the cache: a folder's files (name, size, mtime),
    a hub name, or a loaded model's name and a hash of its first and last weights."""
    if isinstance(language_model, (str, os.PathLike)):
        path = Path(language_model).expanduser()
        if path.is_dir():
            return ["dir", [[f.name, *signature(f)[1:]] for f in sorted(path.rglob("*"))
                            if f.is_file()]]
        return ["name", str(language_model)]
    model = getattr(language_model, "model", None)
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    digest = hash_arrays([p.detach().cpu().numpy() for p in params[:1] + params[-1:]]) \
        if params else None
    return [lm_name(language_model), digest]


def audio_duration(path) -> float:
    """Duration of a WAV file in s, from its header when possible."""
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path, mmap=True)
    except ValueError:
        try:
            rate, data = wavfile.read(path, mmap=False)
        except ValueError as err:
            stem = Path(path).stem
            raise ValueError(f"Cannot read '{path}' as a WAV file ({err}). Convert it to PCM "
                             f"WAV, e.g. ffmpeg -i {stem}.mp3 {stem}.wav.") from None
    return data.shape[0] / float(rate)


def read_json(path):
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------

def read_splits_file(path) -> dict:
    """``{story: split}`` from a JSON file (the values are not checked here)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"'splits' file '{path}' not found: give a JSON file "
                                '{"story": "val", ...} or a dict.')
    splits = read_json(path)
    if not isinstance(splits, dict):
        raise TypeError(f"'splits' file '{path}' must hold a JSON object "
                        '{"story": "train" | "val" | "test" | "anchor"}.')
    return splits


@fill_doc
def resolve_splits(splits, stories, *, default=None) -> dict:
    """``{story: split}`` for every story; unlisted stories are ``"train"``.

    Parameters
    ----------
    %(splits)s
        Naming a story that is not in ``stories`` is an error.
    stories : list of str
    default : dict | None
        Used when ``splits`` is None; its stories not in ``stories`` are ignored.
    """
    from .store import SPLITS

    if splits is None:
        splits = {k: v for k, v in (default or {}).items() if k in stories}
    else:
        if isinstance(splits, (str, os.PathLike)):
            splits = read_splits_file(splits)
        splits = dict(_check_type("splits", splits, dict))
    for story, split in splits.items():
        _check_option("split", split, SPLITS, extra=f"(splits[{story!r}])")
    unknown = sorted(set(splits) - set(stories))
    if unknown:
        raise ValueError(f"'splits' names stories that are not prepared: {unknown}. "
                         f"Prepared stories: {stories}.")
    return {s: splits.get(s, "train") for s in stories}


def split_counts(story_splits) -> dict:
    """``{split: number of stories}`` for a summary line."""
    values = list(story_splits.values())
    return {k: values.count(k) for k in sorted(set(values))}


# --------------------------------------------------------------------------------------
# Work folder
# --------------------------------------------------------------------------------------

@fill_doc
def open_work_dir(work_dir, out, *, marker, generator, cache_version) -> Path:
    """Create (or reopen) the work folder of a loader.

    Parameters
    ----------
    %(work_dir)s
    out : Path
        The loader's output.
    marker : str
        Name of the marker file that says which loader made the folder.
    generator : str
        Dotted name of the loader, e.g. ``"neurofuse.data.datasets.lebel.prepare_lebel"``.
    cache_version : int
        Bumped when cache entries change meaning.

    Raises
    ------
    FileExistsError
        ``work_dir`` is a non-empty folder without the marker (not made by this loader).
    """
    work = Path(out.parent / f"{out.name}.work" if work_dir is None else work_dir).expanduser()
    path = work / marker
    if work.exists() and any(work.iterdir()) and not path.is_file():
        raise FileExistsError(
            f"'work_dir' = '{work}' is a non-empty folder that {generator.rsplit('.', 1)[-1]} "
            f"did not create (no {marker}); choose an empty or new folder.")
    check_writable_dir(work / "x", name="work_dir")
    if not path.is_file():
        write_json(path, {"generator": generator, "cache_version": cache_version,
                          "out": str(out)}, what="work folder marker")
    return work


def cached(npy, key):
    """The info of the cache entry ``npy`` (+ ``.json``) if it exists with this ``key``."""
    npy = Path(npy)
    if not npy.is_file():
        return None
    info = read_json(npy.with_suffix(".json"))
    return info if isinstance(info, dict) and info.get("key") == key else None


def store_cached(npy, key, array, info):
    """Write a cache entry: the array, then (last) its JSON ``{"key": key, **info}``."""
    save_npy(npy, array, what="cached array")
    write_json(Path(npy).with_suffix(".json"), {"key": key, **info}, what="cache entry")


# --------------------------------------------------------------------------------------
# Stimulus features of stories (cached)
# --------------------------------------------------------------------------------------

class LazyLanguageModel:
    """Loads the language model once, and only when a story's features need computing.

    With a custom ``features_fn`` the language model is passed on as given.
    """

    def __init__(self, language_model, *, device=None, load=True):
        self.language_model, self.device, self.load = language_model, device, load
        self._lm = None

    def get(self):
        if not self.load:
            return self.language_model
        if self._lm is None:
            from ..stimulus.language_model import as_language_model

            self._lm = as_language_model(self.language_model, device=self.device)
        return self._lm


@fill_doc
def story_features(work, files, *, cache_name, cache_version, language_model, layer,
                   context_tokens, sfreq, device=None, features_fn=None, n_times=None,
                   rate_what=None, desc="features"):
    """Compute (or reuse from the work folder) the stimulus features of every story.

    Parameters
    ----------
    work : Path
        The work folder; features go to ``features/<story>.npy``.
    files : dict of str to (path, path)
        ``{story: (wav, TextGrid)}``, in the order to process them.
    cache_name : str
        Prefix of the cache keys (one per loader).
    cache_version : int
    language_model, layer, context_tokens, sfreq, device
        As :func:`neurofuse.stimulus.features.extract_features` takes them.
    %(features_fn)s
    n_times : dict of str to int | None
        Frames each story must have ("stories of inconsistent length" otherwise).
    rate_what : str | None
        End of the wrong-rate message (default "expected <sfreq> Hz").
    desc : str
        Progress-bar label.

    Returns
    -------
    streams : dict of str to [int, int]
        The feature streams (the same for every story, or an error).
    infos : dict of str to dict
        Per story: ``n_times``, ``streams``, ``metadata``... as cached.
    counts : dict
        ``{"computed": int, "cached": int}``.
    """
    from tqdm.auto import tqdm

    from .._logging import progress_enabled

    real = features_fn is None
    lm = LazyLanguageModel(language_model, device=device, load=real)
    if real:
        from ..stimulus.features import extract_features as features_fn
    fn_id = f"{getattr(features_fn, '__module__', '?')}.{getattr(features_fn, '__qualname__', '?')}"
    rate_what = rate_what or f"expected {sfreq:g} Hz"
    streams, infos, counts = None, {}, {"computed": 0, "cached": 0}
    for story, (wav, grid) in tqdm(files.items(), desc=desc, leave=False,
                                   disable=not progress_enabled()):
        key = hash_arrays(cache_name, cache_version, story, lm_id(language_model), layer,
                          context_tokens, sfreq, fn_id, signature(wav), hash_file(grid))
        npy = work / "features" / f"{story}.npy"
        info = cached(npy, key)
        if info is None:
            kwargs = {"language_model": lm.get(), "layer": layer,
                      "context_tokens": context_tokens, "sfreq": sfreq}
            if real and device is not None:
                kwargs["device"] = device
            feats = features_fn(wav, grid, **kwargs)
            data = np.asarray(feats.data, np.float32)
            got = float(getattr(feats, "sfreq", sfreq))
            if abs(got - sfreq) > 1e-6 * sfreq:
                raise ValueError(f"Wrong sampling rate: the features of story {story!r} are at "
                                 f"{got:g} Hz, {rate_what}.")
            if data.ndim != 2 or data.shape[0] != int(feats.n_times):
                raise ValueError(f"The features of story {story!r} have shape {data.shape}, "
                                 f"expected ({int(feats.n_times)}, d_stim).")
            if n_times is not None and data.shape[0] != n_times[story]:
                raise ValueError(
                    f"stories of inconsistent length: the features of story {story!r} have "
                    f"{data.shape[0]} frames but its audio '{Path(wav).name}' gives "
                    f"floor(duration * {sfreq:g}) = {n_times[story]}.")
            if not np.isfinite(data).all():
                raise ValueError(f"The features of story {story!r} contain NaN or Inf.")
            info = {"streams": {k: [int(v[0]), int(v[1])] for k, v in feats.streams.items()},
                    "n_times": int(data.shape[0]), "d_stim": int(data.shape[1]),
                    "metadata": getattr(feats, "metadata", {}) or {}}
            store_cached(npy, key, data, info)
            counts["computed"] += 1
        else:
            counts["cached"] += 1
        if streams is None:
            streams = info["streams"]
        elif info["streams"] != streams:
            raise ValueError(f"The feature streams of story {story!r} ({info['streams']}) differ "
                             f"from those of the other stories ({streams}).")
        infos[story] = info
    logger.debug("Features: %d computed, %d reused.", counts["computed"], counts["cached"])
    return streams, infos, counts
