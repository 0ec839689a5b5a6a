"""Choosing among fitted joint models by what they predict on the validation stories.

Refits of one set-up that differ only by seed compare on their kept epoch's validation loss
(:func:`~neurofuse.evaluation.variants.kept_validation_loss`). Set-ups that change the loss
itself cannot: the fMRI term's weight ``alpha_fmri`` (0 for the ``meg-only`` variant) scales
part of that loss. What every set-up is asked to do is the same, though: predict the held-out
recordings. :func:`validation_prediction` scores a model on the *validation* stories with
:func:`~neurofuse.evaluation.prediction.prediction_table`, the test tables' scoring (mean r
per subject over the temporal-lobe MEG sensors, every EEG electrode and the fMRI sources;
the fMRI sources restricted to the top quartile by repeatability when the validation stories
were repeated, else all of them: no ridge ceiling is fitted for them), and
:func:`choose_by_validation` keeps the model whose mean over modalities of the subjects' mean
r is highest. No test story and no ground truth are used, so the rule can set a default
(e.g. ``alpha_fmri``) the way validation loss set ``min_epochs``. Every candidate picked its
kept epoch by validation loss, a bias they share; a set-up that also *trained* on the
validation stories (a ``'mixture'`` source prior fitted on them, ``fmri_denoise='auto'``'s
pilots) would be scored partly in sample, so :func:`validation_choice` scores it but does
not let it be chosen.
"""

from __future__ import annotations

import numpy as np

from .._logging import logger

__all__ = ["choose_by_validation", "trained_on_validation", "validation_choice",
           "validation_prediction"]

_ORDER = ("meg", "eeg", "fmri")


def validation_prediction(ds, model, *, stories=None) -> dict:
    """Held-out r of a joint model on the validation stories, per modality.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
        A store with ``val`` stories recorded for the model's subjects.
    model : JointModel
        The fitted model (its subjects the dataset lacks are not scored).
    stories : list of str | None
        The stories to score, each recorded for every subject the model predicts (default:
        the store's ``val`` split, each subject scored on the stories of it that it has).

    Returns
    -------
    scores : dict
        ``{"stories": [...], "rows": [...], "by_modality": {modality: mean r},
        "score": float}``: ``rows`` as :func:`~neurofuse.evaluation.prediction.prediction_table`'s
        (without ``targets``), ``by_modality`` the mean over subjects of each subject's mean
        r, ``score`` the mean of ``by_modality`` over the modalities the model predicts.
    """
    from .prediction import prediction_table

    explicit = stories is not None
    stories = list(stories if explicit else ds.splits.get("val", []))
    test = set(ds.splits.get("test", []))
    if not stories:
        raise ValueError("validation_prediction scores the validation stories, and the "
                         "dataset has none (split 'val'); add some to the store or pass "
                         "stories=[...].")
    if test & set(stories):
        raise ValueError(f"'stories' must not hold test stories (choosing on them would "
                         f"choose on the test): got {sorted(test & set(stories))}.")
    # scored as the test tables are: by default each subject on the validation stories it
    # has (split "val"), named stories on every subject (refused where one lacks a story)
    rows, _ = prediction_table(ds, model=model, stories=stories if explicit else None,
                               split="val", verbose="warning")
    rows = [{k: v for k, v in r.items() if k != "targets"} for r in rows]
    by_modality = {}
    for modality in _ORDER:
        values = [r["r_mean"] for r in rows if r["modality"] == modality]
        if values:
            by_modality[modality] = float(np.mean(values))
    if not by_modality:
        raise ValueError("validation_prediction: the model predicts no subject of the "
                         "dataset with validation recordings.")
    return {"stories": stories, "rows": rows, "by_modality": by_modality,
            "score": float(np.mean(list(by_modality.values())))}


def choose_by_validation(scores: dict) -> str:
    """The name of the model with the highest validation score.

    Parameters
    ----------
    scores : dict of str -> dict
        ``{name: validation_prediction(...)}`` of models fitted on one store. Every model
        must predict the same modalities, or the scores would average different things.

    Returns
    -------
    name : str
        The highest ``score``; a tie goes to the first name given.
    """
    if not scores:
        raise ValueError("'scores' is empty: there is nothing to choose from.")
    kinds = {name: tuple(s["by_modality"]) for name, s in scores.items()}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"'scores' must cover the same modalities for every model to be "
                         f"comparable, got {kinds}.")
    bad = {name: s["score"] for name, s in scores.items() if not np.isfinite(s["score"])}
    if bad:
        raise ValueError(f"'scores' must be finite to be ranked, got {bad}: a model whose "
                         f"validation prediction is not a number (a constant prediction, a "
                         f"diverged fit) cannot be chosen; leave it out.")
    best = max(scores, key=lambda name: scores[name]["score"])  # max keeps the first tie
    logger.info("Chosen by validation prediction: %s (%s)", best,
                ", ".join(f"{n} {s['score']:.4f}" for n, s in scores.items()))
    return best


def validation_choice(ds, fits) -> dict:
    """Score finished fits on the validation stories and choose among them.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
        The store the fits were trained on.
    fits : dict of str -> path-like
        ``{name: fit folder}`` (each with its ``model/``), e.g. the main fit's ``fit/`` as
        ``"neurofuse"`` and each variant's ``variants/<name>/fit/``.

    Returns
    -------
    choice : dict
        ``{"scores": {name: {"by_modality", "score"}}, "chosen": name,
        "trained_on_validation": [names]}`` (per-subject rows left out:
        :func:`validation_prediction` has them). Fits whose set-up trained on the validation
        stories (:func:`trained_on_validation`) are scored but not chosen.
    """
    from pathlib import Path

    from ..systems.joint.model import JointModel

    fits = {name: Path(f).expanduser() for name, f in fits.items()}
    scores = {name: validation_prediction(ds, JointModel.load(f / "model"))
              for name, f in fits.items()}
    in_sample = [name for name, f in fits.items() if trained_on_validation(f)]
    eligible = {n: s for n, s in scores.items() if n not in in_sample}
    if not eligible:
        raise ValueError(f"Every fit in 'fits' trained on the validation stories "
                         f"({in_sample}): none can be chosen by them.")
    chosen = choose_by_validation(eligible)
    return {"scores": {n: {"by_modality": s["by_modality"], "score": s["score"]}
                       for n, s in scores.items()},
            "chosen": chosen, "trained_on_validation": in_sample}


def trained_on_validation(fit_dir) -> bool:
    """Whether a finished fit's set-up (its ``done.json``) trained on the validation stories:
    a ``'mixture'`` source prior whose weights minimise the validation loss, or
    ``fmri_denoise='auto'``, whose pilots are compared on it."""
    import json
    from pathlib import Path

    done = Path(fit_dir).expanduser() / "done.json"
    if not done.is_file():
        raise FileNotFoundError(f"'fit_dir' must be a finished fit with done.json, got "
                                f"'{fit_dir}'. Let the fit finish first.")
    record = json.loads(done.read_text())
    train, encoder = record.get("train", {}), record.get("encoder", {})
    mixture = (encoder.get("source_prior") == "mixture"
               and encoder.get("source_mixture_loss", "validation") == "validation")
    return bool(mixture or train.get("fmri_denoise") == "auto")
