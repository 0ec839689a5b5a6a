"""Writing a simulated EEG–fMRI data set run by run (resumable) and reading it back.

Layout (everything ``.npy`` without pickle, or JSON; every file and run folder written
atomically with :mod:`neurofuse._io`)::

    <out>/manifest.json          format, config, channels, grid, split, completed runs
    <out>/truth/leadfield.npy    (n_channels, n_sources) V/(A·m), average reference
             source_voxels.npy   (n_sources,) flat voxel index (C order of grid shape)
             source_pos.npy      (n_sources, 3) fsaverage MRI, m
             source_ori.npy      (n_sources, 3) unit dipole orientations
             source_weight.npy   (n_sources,) spatial weight in the region
             source_region.npy   (n_sources,) region of each source
             regions.json        per region: kind, band, condition, latency, centre
             hrf.npy, erp_kernel.npy   kernels at sfreq
             slice_offsets.npy   (n_slices,) s
             baseline.npy, gm.npy, mask.npy      grid-shaped maps
             respiratory_gain.npy, cardiac_gain.npy   (n_voxels,)
    <out>/runs/run-000/eeg.npy   (n_channels, n_times) float32, V
                      fmri.npy   (n_x, n_y, n_z, n_trs) float32
                      components.npy (n_components, n_times) float64, A·m
                      motion.npy (n_trs, 6), physio.npy (n_rhythms, n_times) phases [noisy fMRI]
                      run.json   components' regions and kinds, events, noise levels

A run's folder appears only once it is complete, so :func:`simulate_dataset` called again on
the same folder skips the runs that exist and writes the others (a changed configuration is
refused). Runs are drawn independently (seed ``(config.seed, run)``), so 319 ten-minute runs
are made one at a time in the memory of one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..._checks import _check_int
from ..._io import atomic_dir, save_npy, write_json
from ..._logging import logger, verbose
from .config import EEGfMRIConfig, _check_config
from .sources import source_activity

__all__ = ["EEGfMRIDataset", "read_dataset", "simulate_dataset"]

FORMAT = "neurofuse-eeg-fmri"
FORMAT_VERSION = 1


def _run_name(i):
    return f"run-{i:03d}"


def _write_truth(folder, setup):
    src, reg = setup.sources, setup.regions
    arrays = {"leadfield": setup.leadfield, "source_voxels": src.voxels, "source_pos": src.pos,
              "source_ori": src.ori, "source_weight": reg.weight, "source_region": reg.label,
              "hrf": setup.hrf, "erp_kernel": setup.erp_kernel,
              "slice_offsets": setup.slice_offsets, "baseline": setup.baseline,
              "gm": src.tissues["gm"], "mask": src.tissues["mask"],
              "respiratory_gain": setup.physio_gain["respiratory"],
              "cardiac_gain": setup.physio_gain["cardiac"]}
    for name, arr in arrays.items():
        save_npy(folder / f"{name}.npy", arr, what=f"ground truth {name}")
    write_json(folder / "regions.json", reg.to_json(), what="regions")


@verbose
def simulate_dataset(out, config, n_runs, *, n_test=None, verbose=None):
    """Simulate ``n_runs`` runs into ``out``, one at a time; resume an interrupted data set.

    Parameters
    ----------
    out : path-like
        Folder of the data set (created; if it holds a data set of the same configuration,
        its missing runs are added).
    config : EEGfMRIConfig
        From :func:`~neurofuse.simulation.eeg_fmri.config.make_config`.
    n_runs : int
        Total number of runs (paper: 319).
    n_test : int | None
        The last ``n_test`` runs form the test split; None: ``round(19 / 319 * n_runs)``
        (the paper's 300 / 19), at least 1 when ``n_runs > 1``.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    dataset : EEGfMRIDataset
    """
    from .simulator import make_setup, simulate_run

    _check_config(config)
    n_runs = _check_int("n_runs", n_runs, 1)
    if n_test is None:
        n_test = max(int(round(19 / 319 * n_runs)), 1) if n_runs > 1 else 0
    n_test = _check_int("n_test", n_test, 0)
    if n_test >= n_runs and n_runs > 1:
        raise ValueError(f"'n_test' ({n_test}) must leave training runs: < n_runs ({n_runs}).")
    out = Path(out).expanduser()
    manifest_path = out / "manifest.json"
    names = [_run_name(i) for i in range(n_runs)]
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("config") != config.to_json():
            raise ValueError(
                f"'{out}' holds a data set simulated with another configuration; choose a new "
                "'out' folder or delete it to start again.")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"'{out}' exists and is not an EEG-fMRI data set; choose a new "
                              "or empty 'out' folder.")
    setup = make_setup(config)
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "config": config.to_json(),
        "channels": list(setup.info["ch_names"]), "grid": setup.grid.to_json(),
        "n_sources": setup.sources.n_sources, "n_times": config.n_times,
        "n_trs": config.n_trs,
        "split": {"train": names[:n_runs - n_test], "test": names[n_runs - n_test:]},
        "runs": [],
    }
    if not (out / "truth").is_dir():
        with atomic_dir(out / "truth", what="ground truth") as tmp:
            _write_truth(tmp, setup)
    done = [n for n in names if (out / "runs" / n).is_dir()]
    manifest["runs"] = done
    write_json(manifest_path, manifest, what="manifest")
    for i, name in enumerate(names):
        if name in done:
            logger.info("%s exists: skipped", name)
            continue
        logger.info("Simulating %s (%d of %d)", name, i + 1, n_runs)
        run = simulate_run(setup, i)
        with atomic_dir(out / "runs" / name, what=f"run {name}") as tmp:
            for key in ("eeg", "fmri", "components"):
                save_npy(tmp / f"{key}.npy", run[key], what=key)
            if run["motion"] is not None:
                save_npy(tmp / "motion.npy", run["motion"], what="motion")
            if run["physio"]:
                save_npy(tmp / "physio.npy", np.stack(list(run["physio"].values())),
                         what="physiological phases")  # rows: run.json "physio_names"
            write_json(tmp / "run.json", {
                "run": i, "seed": [config.seed, 1, i],
                "comp_region": run["comp_region"].tolist(), "comp_kind": run["comp_kind"],
                "onset": run["onset"].tolist(), "condition": run["condition"].tolist(),
                "eeg_noise_sd": run["eeg_sigma"], "physio_names": list(run["physio"]),
            }, what="run description")
        manifest["runs"] = [n for n in names if (out / "runs" / n).is_dir()]
        write_json(manifest_path, manifest, what="manifest")
    return read_dataset(out)


class EEGfMRIDataset:
    """A simulated EEG–fMRI data set on disk (:func:`read_dataset`).

    Parameters
    ----------
    path : path-like

    Attributes
    ----------
    path : Path
    manifest : dict
    config : EEGfMRIConfig
    runs : list of str
        Completed runs.
    """

    def __init__(self, path):
        self.path = Path(path).expanduser()
        fname = self.path / "manifest.json"
        if not fname.is_file():
            raise FileNotFoundError(f"'{self.path}' has no manifest.json: not an EEG-fMRI data "
                                    "set (make one with simulate_dataset).")
        self.manifest = json.loads(fname.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"'{fname}' is not a {FORMAT} manifest (format "
                             f"{self.manifest.get('format')!r}).")
        self.config = EEGfMRIConfig.from_json(self.manifest["config"])
        self.runs = list(self.manifest["runs"])

    def __repr__(self):
        return (f"<EEGfMRIDataset {self.path.name}: {len(self.runs)} runs, "
                f"{self.manifest['n_sources']} sources, {len(self.manifest['channels'])} ch>")

    def truth(self, name):
        """One ground-truth array (``'leadfield'``, ``'hrf'``, ...; see the module docstring).

        Parameters
        ----------
        name : str

        Returns
        -------
        array : ndarray
        """
        fname = self.path / "truth" / f"{name}.npy"
        if not fname.is_file():
            valid = sorted(p.stem for p in (self.path / "truth").glob("*.npy"))
            raise ValueError(f"Invalid ground-truth name {name!r}: expected one of {valid}.")
        return np.load(fname, allow_pickle=False)

    def regions(self):
        """Per-region properties (dict, from ``truth/regions.json``)."""
        return json.loads((self.path / "truth" / "regions.json").read_text())

    def source_kind(self):
        """``'oscillatory'`` / ``'sparse'`` per source, array of str, shape (n_sources,)."""
        return np.asarray(self.regions()["kind"])[self.truth("source_region")]

    def _run_dir(self, run):
        name = _run_name(run) if isinstance(run, (int, np.integer)) else str(run)
        if name not in self.runs:
            raise ValueError(f"Invalid run {run!r}: expected one of the completed runs "
                             f"{self.runs[:3]}{'...' if len(self.runs) > 3 else ''} or their "
                             "numbers.")
        return self.path / "runs" / name

    def read_run(self, run, *, mmap=True):
        """The arrays of one run.

        Parameters
        ----------
        run : int | str
            Run number or name (``'run-000'``).
        mmap : bool
            Memory-map the large arrays (``eeg``, ``fmri``).

        Returns
        -------
        out : dict
            ``eeg`` (n_channels, n_times), ``fmri`` (n_x, n_y, n_z, n_trs), ``components``
            (n_components, n_times), ``motion`` (n_trs, 6) or None, ``physio``
            (n_rhythms, n_times) phases (rows named by ``physio_names``) or None, and the
            entries of ``run.json``.
        """
        folder = self._run_dir(run)
        mode = "r" if mmap else None
        out = json.loads((folder / "run.json").read_text())
        for key in ("eeg", "fmri", "components", "motion", "physio"):
            fname = folder / f"{key}.npy"
            out[key] = (np.load(fname, mmap_mode=mode if key in ("eeg", "fmri") else None,
                                allow_pickle=False) if fname.is_file() else None)
        return out

    def sources(self, run, *, kind=None, sources=None, start=0, stop=None):
        """Ground-truth source activity of a run, rebuilt from its components.

        Parameters
        ----------
        run : int | str
        kind : None | 'evoked' | 'oscillation'
            Only this part of the activity.
        sources : array of int | None
            Only these sources (None: all; mind the memory for a large grid).
        start, stop : int | None
            Sample range.

        Returns
        -------
        X : array, shape (n_selected, n_samples)
            A·m at ``config.sfreq``.
        """
        folder = self._run_dir(run)
        desc = json.loads((folder / "run.json").read_text())
        comps = np.load(folder / "components.npy", allow_pickle=False)[:, start:stop]
        return source_activity(comps, np.asarray(desc["comp_region"]),
                               self.truth("source_region"), self.truth("source_weight"),
                               sources=sources, kind=kind, comp_kind=desc["comp_kind"])

    def eeg_info(self):
        """The EEG channels (``mne.Info``) of the data set."""
        from .eeg import make_cap_info

        return make_cap_info(self.config.montage, self.config.sfreq)


def read_dataset(path):
    """Open a simulated EEG–fMRI data set.

    Parameters
    ----------
    path : path-like
        Folder written by :func:`simulate_dataset`.

    Returns
    -------
    dataset : EEGfMRIDataset
    """
    return EEGfMRIDataset(path)
