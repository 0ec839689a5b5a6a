"""Where the runs of SMN4Lang (OpenNeuro ds004078) are, and which MEG run goes with which BOLD run.

What it expects
---------------
The loader reads a BIDS-like folder ``bids_root`` with one folder per subject,
``sub-<label>/``, holding (at any depth below it, so ``meg/`` and ``func/`` of the raw
BIDS dataset, ``ses-<label>/`` folders, or the ``MEG/`` and ``MNI/`` folders of the
dataset's ``derivatives/preprocessed_data/`` all work):

* MEG runs ``sub-<label>[_ses-<label>]_task-<task>[_..]_run-<index>[_..]_meg.fif``, each
  with its ``..._events.tsv`` (same name, ``_meg.fif`` → ``_events.tsv``) and optionally
  ``..._meg.json`` (``PowerLineFrequency``);
* BOLD runs ``..._task-<task>[_..]_run-<index>[_..]_bold.nii[.gz]``, each with its
  ``..._events.tsv`` and its JSON sidecar (``..._bold.json``, or a BIDS-inherited
  ``[sub-<label>_]task-<task>_bold.json`` higher up) holding ``RepetitionTime``.
  CIFTI files (``_bold.dtseries.nii``) are not BOLD volumes and are ignored.

ds004078 names its runs ``sub-XX_task-RDR_run-N`` (N = 1..60, one story each) for both MEG
and fMRI (as third-party code that reads the dataset shows: raw ``sub-XX/meg/`` and
``sub-XX/func/``, preprocessed ``derivatives/preprocessed_data/sub-XX/MEG/`` and
``.../MNI/``). We could not check the dataset itself here: the README is said to state
that run N is story N in both modalities, but some users map MEG runs to stories with a
table of their own; if your copy needs that, pass ``run_map`` to
:func:`~neurofuse.data.datasets.smn4lang.prepare_smn4lang`.

Pairing
-------
A MEG run and a BOLD run are paired by their BIDS entities ``(subject, task, run)`` —
parsed from the file names, never by the order of files in a folder (the MEG2fMRI authors'
code pairs by listing order, which silently mispairs as soon as one run is missing or the
folders sort differently). Sessions are ignored in the key (MEG and fMRI were recorded in
different sessions). A run with one modality only is reported and skipped; two files for one
key and modality are an error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...._logging import logger

__all__ = ["Run", "find_runs", "pair_runs", "read_events", "read_tr"]

_ENTITY = re.compile(r"([a-zA-Z0-9]+)-([a-zA-Z0-9]+)")
_MEG = re.compile(r"_meg\.fif$")
_BOLD = re.compile(r"_bold\.nii(\.gz)?$")


def parse_entities(name: str) -> dict:
    """The BIDS entities of a file name, e.g. ``{"sub": "01", "task": "RDR", "run": "1"}``."""
    stem = name.rsplit("_", 1)[0]
    return {k: v for k, v in (m.groups() for m in _ENTITY.finditer(stem))}


def _run_label(value: str) -> str:
    """Run labels compare as numbers when they are numbers ("01" is run 1)."""
    return str(int(value)) if value.isdigit() else value


@dataclass
class Run:
    """One MEG run and its BOLD run: the same subject, task and run.

    Attributes
    ----------
    subject : str
        ``"sub-01"``.
    task, run : str
        BIDS task and run labels (the run as in the MEG file name).
    meg, bold : Path
        The recordings.
    meg_events, bold_events : Path
        Their ``events.tsv`` (checked to exist).
    meg_head, bold_head, meg_ev, bold_ev, line_freq
        Filled by the loader's header pass: headers, events (:func:`read_events`) and the
        ``PowerLineFrequency`` of the MEG sidecar.
    """

    subject: str
    task: str
    run: str
    meg: Path
    bold: Path
    meg_events: Path = field(default=None)
    bold_events: Path = field(default=None)
    meg_head: dict = field(default=None, repr=False)
    bold_head: dict = field(default=None, repr=False)
    meg_ev: dict = field(default=None, repr=False)
    bold_ev: dict = field(default=None, repr=False)
    line_freq: float = field(default=None, repr=False)

    @property
    def story(self) -> str:
        """The story name in the store: ``"task-<task>_run-<run>"`` (run without leading 0s)."""
        return f"task-{self.task}_run-{_run_label(self.run)}"


def _events_path(path: Path, suffix: str) -> Path:
    return path.with_name(re.sub(suffix, "_events.tsv", path.name))


def find_runs(bids_root, *, subjects=None, task=None) -> dict:
    """The MEG and BOLD files of each ``(subject, task, run)``.

    Parameters
    ----------
    bids_root : path-like
    subjects : list of str | None
        Labels (``"01"`` or ``"sub-01"``); default every ``sub-*`` folder.
    task : str | None
        Only this task.

    Returns
    -------
    files : dict of str to dict
        ``{"meg": {key: Path}, "bold": {key: Path}}`` with ``key = (subject, task, run)``.
    """
    root = Path(bids_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'bids_root' = '{root}' is not a folder: point it to the "
                                "ds004078 folder (the one holding sub-01/, sub-02/, ...).")
    folders = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if subjects is not None:
        subjects = [subjects] if isinstance(subjects, str) else list(subjects)
        want = [f"sub-{str(s).removeprefix('sub-')}" for s in subjects]
        missing = [s for s in want if not (root / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"No folder for subjects {missing} in '{root}' (found "
                                    f"{[p.name for p in folders] or 'none'}).")
        folders = [root / s for s in want]
    files = {"meg": {}, "bold": {}}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            kind = "meg" if _MEG.search(path.name) else "bold" if _BOLD.search(path.name) \
                else None
            if kind is None or not path.is_file():
                continue
            ent = parse_entities(path.name)
            if ent.get("sub") != folder.name.removeprefix("sub-") or "task" not in ent \
                    or "run" not in ent or (task is not None and ent["task"] != task):
                continue
            key = (folder.name, ent["task"], _run_label(ent["run"]))
            if key in files[kind]:
                raise ValueError(
                    f"Two {kind.upper()} files for {key[0]} task-{key[1]} run-{key[2]}: "
                    f"'{files[kind][key]}' and '{path}'. Keep one (e.g. point 'bids_root' at "
                    "the raw dataset or at one derivatives folder, not both), or filter with "
                    "'task'.")
            files[kind][key] = path
    if not files["meg"] and not files["bold"]:
        raise FileNotFoundError(
            f"No MEG (*_meg.fif) or BOLD (*_bold.nii[.gz]) run with task and run entities in "
            f"'{root}'{' for task ' + repr(task) if task else ''}.")
    return files


def pair_runs(files, *, runs=None, run_map=None) -> tuple:
    """Pair MEG and BOLD runs by ``(subject, task, run)``; report and skip the unpaired.

    Parameters
    ----------
    files : dict
        From :func:`find_runs`.
    runs : list of str | None
        Run labels to keep (``"1"`` or ``"01"``); default all.
    run_map : dict of str to str | None
        MEG run label → BOLD run label, when the MEG run numbers are not the fMRI ones.

    Returns
    -------
    paired : list of Run
        Sorted by subject, task and run number.
    unpaired : list of str
        ``"sub-01 task-RDR run-3: MEG only (...)"`` lines (also logged as warnings).
    """
    keep = None if runs is None else {_run_label(str(r)) for r in runs}
    rmap = {_run_label(str(k)): _run_label(str(v)) for k, v in (run_map or {}).items()}
    bold = dict(files["bold"])
    paired, unpaired = [], []
    for (sub, task, run), meg in files["meg"].items():
        bold_run = rmap.get(run, run)
        if keep is not None and run not in keep:
            continue
        path = bold.pop((sub, task, bold_run), None)
        if path is None:
            unpaired.append(f"{sub} task-{task} run-{run}: MEG only ('{meg}'; no BOLD run "
                            f"{bold_run})")
            continue
        r = Run(sub, task, run, meg, path, _events_path(meg, r"_meg\.fif$"),
                _events_path(path, r"_bold\.nii(\.gz)?$"))
        for what, ev in (("MEG", r.meg_events), ("BOLD", r.bold_events)):
            if not ev.is_file():
                raise FileNotFoundError(
                    f"The {what} run '{r.meg if what == 'MEG' else r.bold}' has no events "
                    f"file: expected '{ev}'. The loader needs the events of both runs "
                    "(onset in s from the run's start, BIDS) to align them.")
        paired.append(r)
    mapped_back = {v: k for k, v in rmap.items()}
    for (sub, task, run), path in bold.items():
        if keep is not None and mapped_back.get(run, run) not in keep:
            continue
        unpaired.append(f"{sub} task-{task} run-{run}: BOLD only ('{path}'; no MEG run)")
    for line in unpaired:
        logger.warning("Skipped %s.", line)

    def order(r):
        return (r.subject, r.task, (0, int(r.run), "") if r.run.isdigit() else (1, 0, r.run))

    return sorted(paired, key=order), unpaired


def read_events(path) -> dict:
    """The events of a run: onsets (s from the run's start) per ``trial_type``.

    Parameters
    ----------
    path : path-like
        A BIDS ``events.tsv`` with an ``onset`` column (and optionally ``trial_type``).

    Returns
    -------
    events : dict of str to list of float
        ``{trial_type: sorted onsets}`` (``"event"`` for a table without ``trial_type``);
        key ``None`` holds every onset, sorted.
    """
    from .._bids import read_table, to_float

    path = Path(path)
    fields, rows = read_table(path)
    if "onset" not in fields:
        raise ValueError(f"The events file '{path}' has no 'onset' column (columns: "
                         f"{fields}); BIDS events need onset (s from the run's start).")
    out = {None: []}
    for i, row in enumerate(rows):
        onset = to_float(row.get("onset"))
        if not math.isfinite(onset):
            raise ValueError(f"Row {i + 1} of '{path}' has onset {row.get('onset')!r}; every "
                             "event needs a finite onset in seconds.")
        kind = (row.get("trial_type") or "").strip() or "event"
        kind = "event" if kind == "n/a" else kind
        out.setdefault(kind, []).append(onset)
        out[None].append(onset)
    if not out[None]:
        raise ValueError(f"The events file '{path}' holds no event.")
    return {k: sorted(v) for k, v in out.items()}


def _sidecar_tr(bold: Path, root: Path):
    """RepetitionTime from the nearest JSON sidecar (BIDS inheritance), with its path."""
    ent = parse_entities(bold.name)
    own = bold.with_name(_BOLD.sub("_bold.json", bold.name))
    candidates = [own]
    folder = bold.parent
    while True:
        candidates += [folder / f"sub-{ent.get('sub')}_task-{ent.get('task')}_bold.json",
                       folder / f"task-{ent.get('task')}_bold.json"]
        if folder == root or folder.parent == folder:
            break
        folder = folder.parent
    for path in candidates:
        if path.is_file():
            meta = json.loads(path.read_text())
            if "RepetitionTime" in meta:
                return float(meta["RepetitionTime"]), path
    return None, None


def read_tr(bold, root, *, rtol=1e-3) -> float:
    """The TR of a BOLD run: NIfTI header and JSON sidecar, which must agree.

    Parameters
    ----------
    bold : path-like
        The ``_bold.nii[.gz]`` file.
    root : path-like
        The dataset root (where sidecar inheritance stops).
    rtol : float
        Relative tolerance of the agreement.

    Returns
    -------
    tr : float
        Seconds.
    """
    import nibabel as nib

    bold, root = Path(bold), Path(root)
    hdr = nib.load(bold).header
    zoom = float(hdr.get_zooms()[3]) if len(hdr.get_zooms()) > 3 else 0.0
    unit = hdr.get_xyzt_units()[1]
    header_tr = zoom / 1000.0 if unit == "msec" else zoom * 1e-6 if unit == "usec" else zoom
    side_tr, side = _sidecar_tr(bold, root)
    if side_tr is None and header_tr <= 0:
        raise ValueError(f"No TR for '{bold}': its header's pixdim[4] is {zoom} and no JSON "
                         "sidecar gives RepetitionTime.")
    if side_tr is None:
        return header_tr
    if header_tr > 0 and not math.isclose(header_tr, side_tr, rel_tol=rtol):
        raise ValueError(
            f"The TR of '{bold.name}' disagrees: {header_tr:g} s in the NIfTI header "
            f"(pixdim[4] = {zoom:g} {unit}) but RepetitionTime = {side_tr:g} s in '{side}'. "
            "Fix the header or the sidecar (whichever is wrong), or pass tr=... to say which "
            "is right.")
    return side_tr
