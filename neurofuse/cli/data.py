"""``neurofuse data``: dataset stores from real studies, merged, described.

Commands: ``prepare lebel|meg-bids|podcast|smn4lang|eeg-fmri-bids|eeg-meg-bids``, ``merge``,
``info``.
"""

from __future__ import annotations

import json

from ._utils import (add_command, add_group, format_summary, none_or_float, option,
                     parse_pairs, parse_splits, passed, print_summary)

NAME = "data"
HELP = ("dataset stores: prepare (lebel, meg-bids, podcast, smn4lang, eeg-fmri-bids, "
        "eeg-meg-bids), merge, info")

#: Keywords every ``neurofuse data prepare`` kind passes on when given.
_PREPARE_COMMON = ("language_model", "layer", "context_tokens", "device", "work_dir",
                   "overwrite", "keep_work")


def _repeatability(kwargs):
    if kwargs.get("repeatability") == "none":
        kwargs["repeatability"] = None
    return kwargs


def _cmd_lebel(args):
    from ..data.datasets.lebel import prepare_lebel

    kwargs = passed(args, "subjects", "stories", "voxel_to_source", "tr", "resample_tr",
                    "sound_start", "trim_start", "trim_end", "tolerance", "repeatability",
                    *_PREPARE_COMMON)
    if "splits" in args:
        kwargs["splits"] = parse_splits(args.splits)
    print_summary(prepare_lebel(args.root, args.out, **_repeatability(kwargs)))


def _cmd_meg_bids(args):
    from ..data.datasets.bids_meg import prepare_meg_bids

    kwargs = passed(args, "subjects", "task", "stories", "preprocessing", "onsets",
                    "stim_channel", "stimuli_dir", "subjects_dir", "spacing", "repeatability",
                    "n_jobs", *_PREPARE_COMMON)
    if "splits" in args:
        kwargs["splits"] = parse_splits(args.splits)
    if "event_id" in args:
        kwargs["event_id"] = parse_pairs("--event-id", args.event_id, int)
    if "trans" in args:
        kwargs["trans"] = parse_pairs("--trans", args.trans, str)
    if "fwd" in args:
        kwargs["forward"] = parse_pairs("--fwd", args.fwd, str)
    print_summary(prepare_meg_bids(args.root, args.out, **_repeatability(kwargs)))


def _cmd_podcast(args):
    from ..data.datasets.podcast import prepare_podcast

    kwargs = passed(args, "subjects", "signal", "sfreq", "space", "onset_event", "task",
                    "audio", "transcript", "phones", "tolerance", "max_gap", *_PREPARE_COMMON)
    if "band" in args:
        kwargs["band"] = tuple(args.band)
    if "electrode_types" in args:
        kwargs["electrode_types"] = tuple(args.electrode_types)
    if "onset" in args:
        kwargs["onset"] = args.onset if args.onset == "auto" else float(args.onset)
    out = prepare_podcast(args.root, args.out, **kwargs)
    print(f"ECoG dataset written to {out}")


def _cmd_smn4lang(args):
    from ..data.datasets.smn4lang import prepare_smn4lang

    kwargs = passed(args, "subjects", "runs", "task", "sfreq", "l_freq", "h_freq",
                    "preprocessing", "picks", "tr", "align", "start_event", "events_from",
                    "meg_offset", "tolerance", "max_shift", "pad", "overwrite")
    if "splits" in args:
        kwargs["splits"] = parse_splits(args.splits)
    if "run_map" in args:
        kwargs["run_map"] = parse_pairs("--run-map", args.run_map, str)
    print_summary(prepare_smn4lang(args.root, args.out, **kwargs))


def _none_or_text(text):
    """``'none'`` -> None, else the text (an argparse ``type``)."""
    return None if text.lower() == "none" else text


def _cmd_eeg_fmri_bids(args):
    from ..data.datasets.ds000116 import prepare_eeg_fmri_bids

    kwargs = passed(args, "subjects", "task", "sfreq", "volume_event", "gradient_threshold",
                    "l_freq", "h_freq", "overwrite")
    if "epochs" in args:
        kwargs["epochs"] = tuple(args.epochs)
    if "splits" in args:
        kwargs["splits"] = parse_splits(args.splits)
    try:
        out = prepare_eeg_fmri_bids(args.root, args.out, **kwargs)
    except ValueError as exc:  # name the option, not the keyword, in the refusal's fix
        if "gradient artefact" not in str(exc):
            raise
        raise ValueError(str(exc).replace("raise 'gradient_threshold'",
                                          "raise --gradient-threshold")) from None
    print_summary(out)


def _parse_conditions(items):
    """``NAME`` or ``NAME=TYPE[,TYPE...]`` items -> a list of names, or a dict of groups."""
    if not any("=" in item for item in items):
        return list(items)
    out = {}
    for item in items:
        name, sep, types = item.partition("=")
        if not sep or not name or not types:
            raise ValueError(f"--conditions expects trial types (NAME ...) or groups "
                             f"(NAME=TYPE[,TYPE...] ...), not a mix, got {item!r}; e.g. "
                             "--conditions face=Famous,Unfamiliar scrambled=Scrambled.")
        out[name] = [t for t in types.split(",") if t]
    return out


def _cmd_eeg_meg_bids(args):
    from ..data.datasets.ds000117 import prepare_eeg_meg_bids

    kwargs = passed(args, "subjects", "task", "tmin", "tmax", "sfreq", "l_freq", "h_freq",
                    "eeg_reference", "overwrite")
    if "conditions" in args:
        kwargs["conditions"] = _parse_conditions(args.conditions)
    if "baseline" in args:
        kwargs["baseline"] = tuple(args.baseline)
    if getattr(args, "no_baseline", False):
        if "baseline" in args:
            raise ValueError("Pass either --baseline or --no-baseline, not both.")
        kwargs["baseline"] = None
    print_summary(prepare_eeg_meg_bids(args.root, args.out, **kwargs))


def _cmd_merge(args):
    from ..data.merge import merge_datasets

    kwargs = passed(args, "stories", "subject_prefixes", "check_features", "atol", "rtol",
                    "ground_truth", "overwrite")
    if "splits" in args:
        kwargs["splits"] = parse_splits(args.splits)
    print_summary(merge_datasets(args.stores, args.out, **kwargs))


def _cmd_info(args):
    from ..data.store import read_dataset

    if getattr(args, "check", False):
        _check(args)
        return
    ds = read_dataset(args.dataset)
    summary = ds.summary()
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary, ds.path))


def _check(args):
    """``info --check``: every array read; one line per problem; exit 1 if any."""
    from pathlib import Path

    from ..data.store import Dataset, StoreError, check_store
    from ..data.store.manifest import read_manifest
    from ..data.store.validate import check_manifest

    path = Path(args.dataset).expanduser()
    manifest = read_manifest(path)
    problems = check_manifest(manifest)  # the arrays are checked against a sound manifest
    if not problems:  # missing files are listed as problems, not raised
        problems = check_store(path, full=True, manifest=manifest,
                               dataset=Dataset(path, manifest))
    if getattr(args, "json", False):
        print(json.dumps({"path": str(args.dataset), "n_problems": len(problems),
                          "problems": [vars(p) for p in problems]}, indent=2))
    elif problems:
        print(f"Dataset {args.dataset}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
    else:
        print(f"Dataset {args.dataset}: no problems found (every array read).")
    if problems:
        raise StoreError(args.dataset, problems, when="(every array read)")


def _add_prepare_common(p):
    """Options every ``neurofuse data prepare`` kind shares: features, work folder."""
    option(p, "--lm", dest="language_model", help="language model for the word features: a "
           "local folder or a model in the local Hugging Face cache (never downloaded)")
    option(p, "--layer", type=int, help="hidden layer of the word features")
    option(p, "--context-tokens", type=int, help="tokens of preceding context per word")
    option(p, "--device", help="where to run the language model (default cpu)")
    option(p, "--work-dir", help="intermediate results, for resuming (default OUT.work)")
    option(p, "--overwrite", action="store_true", help="replace an existing dataset")
    option(p, "--keep-work", action="store_true", help="keep the work folder after success")


def _add_prepare(sub):
    p = sub.add_parser("prepare", help="turn a real study on disk into a dataset store",
                       description="Turn a real study on disk into a dataset store.")
    psub = p.add_subparsers(dest="kind", metavar="KIND", required=True)

    b = add_command(psub, "lebel", _cmd_lebel,
                    target="neurofuse.data.datasets.lebel:prepare_lebel",
                    help="LeBel et al. 2023 fMRI (OpenNeuro ds003020)")
    b.add_argument("root", help="the ds003020 folder (with derivative/ and stimuli/)")
    b.add_argument("--out", required=True, help="dataset folder to create")
    option(b, "--subjects", nargs="+", help="e.g. UTS01 UTS02 (default: all)")
    option(b, "--stories", nargs="+", help="default: every story with an .hf5 file")
    option(b, "--voxel-to-source", help="folder with one voxel->source mapping folder per "
                                        "subject (default: data already on the surface)")
    option(b, "--splits", nargs="+", keyword=False, help="STORY=SPLIT pairs or a JSON file "
           "(default: wheretheressmoke=test, others train)")
    option(b, "--tr", type=float, help="TR of the .hf5 data, s")
    option(b, "--resample-tr", type=none_or_float,
           help="resample the volumes onto this TR, s ('none' keeps --tr)")
    option(b, "--sound-start", type=float, help="audio starts this many s after the first "
                                                "volume")
    option(b, "--trim-start", type=int, help="volumes trimmed at the start")
    option(b, "--trim-end", type=int, help="volumes trimmed at the end")
    option(b, "--tolerance", type=float, help="length tolerance in s (default one TR)")
    option(b, "--repeatability", choices=["repeat", "split-half", "none"],
           help="estimator of the stored per-source repeatability")
    _add_prepare_common(b)

    b = add_command(psub, "meg-bids", _cmd_meg_bids,
                    target="neurofuse.data.datasets.bids_meg:prepare_meg_bids",
                    help="a BIDS MEG study of story listening, with the paper's preprocessing "
                         "(tSSS, filters, ICA, 50 Hz)")
    b.add_argument("root", help="the BIDS dataset folder (stimuli in ROOT/stimuli/<story>.wav "
                                "and <story>.TextGrid unless --stimuli-dir)")
    b.add_argument("--out", required=True, help="dataset folder to create")
    option(b, "--subjects", nargs="+", help="BIDS subject labels (default: all)")
    option(b, "--task", help="BIDS task (default: every task)")
    option(b, "--stories", nargs="+", help="default: every story found in the events")
    option(b, "--splits", nargs="+", keyword=False, help="STORY=SPLIT pairs or a JSON file")
    option(b, "--preprocessing", help=".toml/.json of MEGPreprocessing settings (default: the "
                                      "paper's)")
    option(b, "--onsets", choices=["auto", "annotations", "stim"],
           help="where story onsets come from (auto: events, else the trigger channel)")
    option(b, "--event-id", nargs="+", keyword=False, help="STORY=CODE trigger codes")
    option(b, "--stim-channel", help="trigger channel (default: MNE's choice)")
    option(b, "--stimuli-dir", help="folder with <story>.wav and <story>.TextGrid")
    option(b, "--subjects-dir", help="FreeSurfer subjects (default: fsaverage template)")
    option(b, "--trans", nargs="+", keyword=False, help="SUBJECT=FILE head<->MRI transforms")
    option(b, "--fwd", nargs="+", keyword=False,
           help="SUBJECT=FILE: one's own -fwd.fif per subject instead of computing one (its "
                "sources: the template's, or on the subject's FreeSurfer folder in "
                "--subjects-dir; see docs/real-data-meg.md)")
    option(b, "--spacing", help="source space (oct6: 8196 sources)")
    option(b, "--repeatability", choices=["repeat", "split-half", "none"],
           help="estimator of the stored per-sensor repeatability")
    option(b, "--n-jobs", type=int, help="parallel jobs for forward models")
    _add_prepare_common(b)

    b = add_command(psub, "podcast", _cmd_podcast,
                    target="neurofuse.data.datasets.podcast:prepare_podcast",
                    help="the 'Podcast' ECoG dataset (OpenNeuro ds005574) -> an ECoG dataset "
                         "for `neurofuse joint ecog`")
    b.add_argument("root", help="the ds005574 folder")
    b.add_argument("--out", required=True, help="ECoG dataset folder to create")
    option(b, "--subjects", nargs="+", help="sub-01 or 01 ... (default: all)")
    option(b, "--signal", choices=["highgamma", "broadband", "ecogprep"],
           help="high-gamma envelope, broadband, or the authors' derivative")
    option(b, "--band", type=float, nargs=2, metavar=("LOW", "HIGH"),
           help="high-gamma band in Hz")
    option(b, "--sfreq", type=float, help="output rate, Hz")
    option(b, "--electrode-types", nargs="+", help="channel types to keep (ECOG; also SEEG, "
                                                   "DBS)")
    option(b, "--space", help="electrode coordinate space")
    option(b, "--onset", help="podcast onset in the recording: 'auto' (events.tsv if present, "
                              "else 0) or seconds")
    option(b, "--onset-event", help="which event marks the onset when there are several")
    option(b, "--task", help="BIDS task")
    option(b, "--audio", help="audio file (default stimuli/podcast.wav)")
    option(b, "--transcript", help="word timings (default stimuli/podcast_transcript.csv)")
    option(b, "--phones", help="phone alignment (TextGrid or table); default: none, the "
                               "phoneme stream is zeros")
    option(b, "--tolerance", type=float,
           help="how much shorter than the audio a recording may be, s")
    option(b, "--max-gap", type=float,
           help="longest stretch without words in the transcript, s")
    _add_prepare_common(b)

    b = add_command(psub, "smn4lang", _cmd_smn4lang,
                    target="neurofuse.data.datasets.smn4lang:prepare_smn4lang",
                    help="SMN4Lang MEG + fMRI volumes (OpenNeuro ds004078) -> a store for "
                         "`neurofuse meg2fmri`")
    b.add_argument("root", help="the ds004078 folder holding sub-XX/ (or its "
                                "derivatives/preprocessed_data)")
    b.add_argument("--out", required=True, help="dataset folder to create")
    option(b, "--subjects", nargs="+", help="sub-01 or 01 ... (default: all)")
    option(b, "--runs", nargs="+", help="MEG run labels (default: all)")
    option(b, "--task", help="BIDS task (ds004078: RDR; default: all)")
    option(b, "--sfreq", type=float, help="MEG rate of the store, Hz")
    option(b, "--l-freq", type=float, help="band-pass low edge, Hz (default: none)")
    option(b, "--h-freq", type=float, help="band-pass high edge, Hz (default: none)")
    option(b, "--preprocessing", help=".toml/.json of MEGPreprocessing settings, for raw "
                                      "recordings (tSSS, filters, ICA)")
    option(b, "--picks", choices=["meg", "mag", "grad"], help="MEG inputs")
    option(b, "--tr", type=float, help="TR, s (default: NIfTI header = JSON sidecar)")
    option(b, "--align", choices=["stimulus", "start"],
           help="put the clocks on one by the runs' reference events or by their starts")
    option(b, "--start-event", help="trial_type of the reference event (default: the first)")
    option(b, "--events-from", choices=["bold", "meg"], help="whose events.tsv gives the "
                                                             "stored onsets")
    option(b, "--meg-offset", type=float, help="s added to the MEG reference onset")
    option(b, "--tolerance", type=float, help="event agreement across subjects, s")
    option(b, "--max-shift", type=float, help="largest fMRI timing error allowed, s")
    option(b, "--run-map", nargs="+", keyword=False, help="MEGRUN=BOLDRUN pairs, if MEG run "
                                                           "N is not fMRI run N")
    option(b, "--splits", nargs="+", keyword=False, help="STORY=SPLIT pairs or a JSON file")
    option(b, "--pad", type=float, help="MEG read beyond each end of a window, s")
    option(b, "--overwrite", action="store_true", help="replace an existing dataset")
    _add_eeg_prepare(psub)
    return p


def _add_eeg_prepare(psub):
    b = add_command(psub, "eeg-fmri-bids", _cmd_eeg_fmri_bids,
                    target="neurofuse.data.datasets.ds000116:prepare_eeg_fmri_bids",
                    help="BIDS simultaneous EEG-fMRI (OpenNeuro ds000116's layout), EEG "
                         "already free of gradient and BCG artefacts -> a store for "
                         "`neurofuse transcoder`")
    b.add_argument("root", help="the BIDS dataset folder (eeg/ and func/ per subject)")
    b.add_argument("--out", required=True, help="dataset folder to create")
    option(b, "--subjects", nargs="+", help="01 or sub-01 ... (default: every subject with "
                                            "EEG)")
    option(b, "--task", nargs="+", help="only runs of these tasks (default: all)")
    option(b, "--sfreq", type=float, help="rate of the stored EEG, Hz (make tr * sfreq whole "
                                          "for the transcoder)")
    option(b, "--volume-event", type=_none_or_text,
           help="EEG event marking each volume: 'auto', a name, or 'none' (the EEG's first "
                "sample)")
    option(b, "--gradient-threshold", type=float,
           help="refuse runs whose TR-harmonic contrast exceeds it (clean EEG: about 1; "
                "'inf' turns the check off)")
    option(b, "--l-freq", type=float, help="band-pass low edge, Hz (default: none)")
    option(b, "--h-freq", type=float, help="band-pass high edge, Hz (default: none)")
    option(b, "--epochs", type=float, nargs=2, metavar=("TMIN", "TMAX"), keyword=False,
           help="also store EEG epochs around every event, s (default: none)")
    option(b, "--splits", nargs="+", keyword=False,
           help="RUN=SPLIT pairs or a JSON file (default: every run train)")
    option(b, "--overwrite", action="store_true", help="replace an existing dataset")

    b = add_command(psub, "eeg-meg-bids", _cmd_eeg_meg_bids,
                    target="neurofuse.data.datasets.ds000117:prepare_eeg_meg_bids",
                    help="BIDS EEG + MEG or EEG-only (OpenNeuro ds000117's layout) -> "
                         "labelled, paired epoch sets")
    b.add_argument("root", help="the BIDS dataset folder")
    b.add_argument("--out", required=True, help="dataset folder to create")
    option(b, "--subjects", nargs="+", help="01 or sub-01 ... (default: all)")
    option(b, "--task", nargs="+", help="only these tasks (ds000117: facerecognition)")
    option(b, "--conditions", nargs="+", keyword=False,
           help="labels: trial types (NAME ...) or groups (NAME=TYPE[,TYPE...] ...); "
                "default: every trial type of the first recording")
    option(b, "--tmin", type=float, help="epoch start around each event, s")
    option(b, "--tmax", type=float, help="epoch end around each event, s")
    option(b, "--baseline", type=none_or_float, nargs=2, metavar=("START", "END"),
           keyword=False, help="baseline interval, s ('none' for an open end; default: "
                               "the pre-stimulus interval)")
    option(b, "--no-baseline", action="store_true", keyword=False,
           help="no baseline correction")
    option(b, "--sfreq", type=float, help="rate of the stored epochs, Hz (default: the "
                                          "recordings')")
    option(b, "--l-freq", type=float, help="band-pass low edge, Hz (default: none)")
    option(b, "--h-freq", type=float, help="band-pass high edge, Hz (default: none)")
    option(b, "--eeg-reference", choices=["average"], help="re-reference the EEG (default: "
                                                           "as recorded)")
    option(b, "--overwrite", action="store_true", help="replace an existing dataset")


def add_parser(subparsers):
    """Register ``neurofuse data`` and its commands."""
    sub = add_group(subparsers, NAME, help=HELP, doc=__doc__, dest="data_command")
    _add_prepare(sub)

    p = add_command(sub, "merge", _cmd_merge, target="neurofuse.data.merge:merge_datasets",
                    help="combine dataset stores (e.g. your MEG and LeBel's fMRI) into one, "
                         "cropping shared stories to a common window")
    p.add_argument("stores", nargs="+", help="dataset folders to merge")
    p.add_argument("--out", required=True, help="merged dataset folder to create")
    option(p, "--stories", nargs="+", help="stories to keep (default: all)")
    option(p, "--splits", nargs="+", keyword=False, help="STORY=SPLIT pairs or a JSON file "
           "(default: the stores' splits, which must agree)")
    option(p, "--prefix", nargs="+", dest="subject_prefixes",
           help="one subject-name prefix per store (for clashes)")
    option(p, "--no-check-features", dest="check_features", action="store_false",
           help="do not check that shared stories' features agree")
    option(p, "--atol", type=float, help="feature agreement tolerance (abs)")
    option(p, "--rtol", type=float, help="feature agreement tolerance (rel)")
    option(p, "--no-ground-truth", dest="ground_truth", action="store_false",
           help="drop ground-truth arrays")
    option(p, "--overwrite", action="store_true", help="replace an existing dataset")

    p = add_command(sub, "info", _cmd_info,
                    help="describe a dataset (subjects, modalities, stories, CNRs); --check "
                         "reads every array and lists each problem")
    p.add_argument("dataset", help="dataset folder")
    option(p, "--json", action="store_true", keyword=False, help="print JSON")
    option(p, "--check", action="store_true", keyword=False,
           help="check the whole store (every array read: NaN/Inf, all-zero channels and "
                "stories, shapes, damaged files); list each problem, exit 1 if any")
    return sub
