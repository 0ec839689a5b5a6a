"""``neurofuse simulate``: simulated worlds with ground truth.

Worlds: ``study`` (a naturalistic MEG+fMRI study) and ``ecog`` (ECoG of new subjects in a
simulated study's world).
"""

from __future__ import annotations

from ..simulation.encoding.world import WORLDS as WORLD_PRESETS
from ._utils import add_command, add_force, add_group, cnr, option, passed, print_summary

NAME = "simulate"
HELP = "simulate a world with ground truth: study (MEG+fMRI), ecog"

#: The worlds ``neurofuse simulate`` knows; another first word is a study preset or config
#: (the deprecated ``neurofuse simulate PRESET`` spelling).
WORLDS = ("study", "ecog")


def _cmd_study(args):
    from .._resources import ignore_limits
    from ..simulation.resources import check_study_resources
    from ..simulation.study import StudyConfig, simulate_study

    config = StudyConfig.resolve(args.config)
    overrides = passed(args, "seed", "meg_cnr", "fmri_cnr", "volume_cnr", "n_eeg_subjects",
                       "eeg_cnr")
    if hasattr(args, "study_world"):  # `world` is the command's own dest (study, ecog)
        overrides["world"] = args.study_world
    if overrides:
        config = StudyConfig.from_dict({**config.to_dict(), **overrides})
    with ignore_limits("force" in args):
        check_study_resources(config, args.out)  # before minutes of anatomy
        out = simulate_study(config, args.out, **passed(args, "overwrite", "n_jobs"))
    print_summary(out)


def _cmd_ecog(args):
    from ..simulation.ecog import simulate_ecog

    out = simulate_ecog(args.study, args.out, **passed(
        args, "n_subjects", "story_minutes", "cnr", "seed", "overwrite"))
    print(f"ECoG dataset written to {out}")


def add_parser(subparsers):
    """Register ``neurofuse simulate`` and its worlds."""
    sub = add_group(subparsers, NAME, help=HELP, doc=__doc__, dest="world", metavar="WORLD")

    p = add_command(sub, "study", _cmd_study, target="neurofuse.simulation.study:simulate_study",
                    help="a naturalistic MEG+fMRI study with ground-truth sources")
    p.add_argument("config", help="preset (demo, paper, tiny, meg2fmri, meg2fmri-demo, "
                                  "meg2fmri-tiny) or a .toml/.json StudyConfig file")
    p.add_argument("--out", required=True, help="dataset folder to create")
    option(p, "--overwrite", action="store_true", help="replace an existing dataset")
    option(p, "--seed", type=int, keyword=False, help="override the config's seed")
    option(p, "--meg-cnr", type=cnr, keyword=False,
           help="override the MEG CNR (a number or 'inf')")
    option(p, "--fmri-cnr", type=cnr, keyword=False,
           help="override the fMRI CNR (a number or 'inf')")
    option(p, "--volume-cnr", type=cnr, keyword=False,
           help="override the fMRI-volume CNR of paired subjects (a number or 'inf')")
    option(p, "--n-eeg-subjects", type=int, keyword=False,
           help="add EEG-only subjects (average-referenced 10-10 cap, three-layer BEM)")
    option(p, "--eeg-cnr", type=cnr, keyword=False,
           help="override the EEG CNR of EEG subjects (a number or 'inf')")
    option(p, "--world", dest="study_world", choices=list(WORLD_PRESETS), keyword=False,
           help="how the simulated brain responds: tuning length scale, nonlinearity, "
                "spontaneous activity, region HRFs (default linear15; see "
                "docs/simulation-worlds.md)")
    option(p, "--n-jobs", type=int, help="parallel jobs for forward models")
    add_force(p)

    p = add_command(sub, "ecog", _cmd_ecog, target="neurofuse.simulation.ecog:simulate_ecog",
                    help="ECoG of new subjects hearing a new story, from a simulated study's "
                         "ground truth")
    p.add_argument("--study", required=True, help="a simulated study (neurofuse simulate study)")
    p.add_argument("--out", required=True, help="ECoG dataset folder to create")
    option(p, "--n-subjects", type=int, help="ECoG subjects")
    option(p, "--story-minutes", type=float, help="new story length, minutes")
    option(p, "--cnr", type=cnr, help="electrode CNR over responsive cortex")
    option(p, "--seed", type=int, help="seed of the electrodes and the story")
    option(p, "--overwrite", action="store_true", help="replace an existing dataset")
    return sub
