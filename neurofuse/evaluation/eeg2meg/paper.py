"""The numbers Li & Wang report (``shared/papers/eeg-to-meg-generative.md``), to stand beside ours.

Their 2-class task is the Somatomotor dataset (median-nerve stimulation, like our
``somatomotor``), their 3-class task NOD-MEG (visual recognition, in place of our ``faces``).
Decoding numbers are medians over 10 runs of 10-fold CV (Table I does not say; its full
model's F1 is the text's 0.7259); Table I's ablations are on Somatomotor. The band Pearson r
(means ± s.d. over test epochs) are the end points of the range the text gives ("from
0.55 ± 0.10 in the Beta band to 0.67 ± 0.03 in the Gamma band", Somatomotor); the RMSE is
"below 0.1" in every band, on a scale the paper does not state.
"""

from __future__ import annotations

__all__ = ["PAPER_BAND_PEARSON", "PAPER_DECODING_F1", "PAPER_RMSE_BELOW", "PAPER_TABLE_I",
           "paper_rows"]

#: Band → (mean, s.d.) Pearson r of the full model's MEG (Somatomotor; the range's ends).
PAPER_BAND_PEARSON = {"beta": (0.55, 0.10), "gamma": (0.67, 0.03)}
#: The RMSE bound reported for every band.
PAPER_RMSE_BELOW = 0.1
#: Our task → feature set → F1 (EEG alone; EEG + each variant's MEG: Table I on Somatomotor).
PAPER_DECODING_F1 = {"somatomotor": {"eeg_only": 0.6460, "generator": 0.7259,
                                     "no_pretrained": 0.7047, "no_sfm": 0.6644,
                                     "no_bsc": 0.6921},
                     "faces": {"eeg_only": 0.3900, "generator": 0.4381}}
#: Table I: accuracy of EEG + each variant's synthetic MEG (Somatomotor).
PAPER_TABLE_I = {"generator": 0.7086, "no_pretrained": 0.6850, "no_sfm": 0.6500,
                 "no_bsc": 0.6700}


def paper_rows(decoding):
    """Table I and the decoding F1 beside ours, one row per feature set.

    Parameters
    ----------
    decoding : list of dict
        Decoding rows ``{"method", "task", "accuracy", "f1", ...}`` (``results["decoding"]``
        of :func:`~neurofuse.evaluation.eeg2meg_pipeline.evaluate_eeg2meg`).

    Returns
    -------
    rows : list of dict
        For ``eeg_only`` and each method of :data:`PAPER_TABLE_I` that ``decoding`` scored:
        ``method``, the paper's Table I accuracy and its F1 on both tasks (None where it
        reports none), and ours (``accuracy_<task>``, ``f1_<task>``; None where not scored).
    """
    ours = {(r["method"], r["task"]): r for r in decoding}
    rows = []
    for method in ("eeg_only", *PAPER_TABLE_I):
        if not any(m == method for m, _ in ours):
            continue
        row = {"method": method, "paper_accuracy_somatomotor": PAPER_TABLE_I.get(method)}
        for task in ("somatomotor", "faces"):
            row[f"paper_f1_{task}"] = PAPER_DECODING_F1[task].get(method)
        for task in ("somatomotor", "faces"):
            mine = ours.get((method, task), {})
            row[f"accuracy_{task}"] = mine.get("accuracy")
            row[f"f1_{task}"] = mine.get("f1")
        rows.append(row)
    return rows
