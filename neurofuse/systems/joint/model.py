"""The joint MEG-fMRI encoding model (paper §2.2) and its persistence.

``JointModel`` = one :class:`~neurofuse.systems.joint.encoder.StimulusEncoder` (stimulus ->
fsaverage sources) + one fixed-physics head per subject and modality. Saved as a folder::

    model.json                 config: encoder sizes, subjects, sfreq, tr, feature streams
                               (and, for a learned source mixture, its weights: source_prior)
    model.safetensors          weights and physics buffers (sparse morphs as CSR triplets)
    infos/<subject>-info.fif   each MEG subject's measurement info (for predicted Raw)
    infos/<subject>-eeg-info.fif  each EEG subject's measurement info

No pickle anywhere: safetensors for tensors, JSON for the config, FIF for MNE ``Info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..._io import atomic_dir, check_file_hash, hash_file, read_config, write_json
from ...anatomy.cortex import source_smoother
from .encoder import EncoderConfig, StimulusEncoder
from .heads import EEGHead, FMRIHead, MEGHead, fmri_bold, hilbert_transform

__all__ = ["JointModel", "ModelOutput", "check_model_fits"]

MODEL_FORMAT = "neurofuse-joint-model"
MODEL_FORMAT_VERSION = 1


@dataclass
class ModelOutput:
    """What :meth:`JointModel.forward` returns.

    Attributes
    ----------
    sources : tensor, shape (B, T, n_sources_fsaverage)
    meg : dict of str to tensor, shape (B, T, n_channels)
    eeg : dict of str to tensor, shape (B, T, n_electrodes)
        Average-referenced.
    fmri : dict of str to tensor, shape (B, T // samples_per_tr, n_sources_subject)
    latent : tuple (z, weight) | None
        ``sources = z @ weight.T + bias``: the last transformer layer's output ``z``
        (B, T, d_model) and the source layer's weight (n_sources, d_model). Lets the
        smoothness loss work in the d_model-wide space
        (:func:`~neurofuse.systems.joint.losses.smoothness_loss`).
    """

    sources: torch.Tensor
    meg: dict = field(default_factory=dict)
    fmri: dict = field(default_factory=dict)
    latent: tuple | None = None
    eeg: dict = field(default_factory=dict)


class JointModel(nn.Module):
    """Stimulus encoder + per-subject MEG, EEG and fMRI heads.

    Parameters
    ----------
    encoder : StimulusEncoder
    meg_heads : dict of str to MEGHead
    fmri_heads : dict of str to FMRIHead
    eeg_heads : dict of str to EEGHead | None
        Average-referenced EEG heads (a subject may have MEG and EEG heads).
    sfreq : float
        Sampling rate of features and MEG (Hz).
    tr : float
        fMRI repetition time (s).
    feature_streams : dict | None
        Name -> [start, stop) of each feature stream (recorded for users of the model).
    """

    def __init__(self, encoder, *, meg_heads=None, fmri_heads=None, sfreq=50.0, tr=2.0,
                 feature_streams=None, eeg_heads=None):
        super().__init__()
        self.encoder = encoder
        self.meg_heads = nn.ModuleDict(meg_heads or {})
        self.fmri_heads = nn.ModuleDict(fmri_heads or {})
        self.eeg_heads = nn.ModuleDict(eeg_heads or {})  # no state entries when empty
        self.eeg_infos = {}  # subject -> mne.Info of its EEG (saved as FIF)
        self.sfreq, self.tr = float(sfreq), float(tr)
        self.feature_streams = dict(feature_streams or {})
        self.infos = {}  # subject -> mne.Info (not a tensor; saved as FIF)
        # fsaverage source-space vertex numbers [lh, rh] and each subject's (for MNE outputs).
        self.vertices = None
        self.subject_vertices = {}

    @property
    def n_sources(self) -> int:
        return self.encoder.config.d_src

    def forward(self, features, *, meg=(), fmri=(), impl="auto", checkpoint_fmri=None, eeg=()):
        """Predict sources and the requested subjects' data.

        Parameters
        ----------
        features : tensor, shape (B, T, d_stim)
        meg, fmri, eeg : iterable of str
            Subjects whose MEG / fMRI / EEG to predict.
        impl : str
            Attention implementation (see :class:`~neurofuse.nn.attention.LagWindowAttention`).
        checkpoint_fmri : bool | None
            Ignored; kept for compatibility. The fMRI heads never store per-subject
            (B, T, n_sources) intermediates (their backward pass recomputes them in chunks).

        Returns
        -------
        out : ModelOutput
            ``sources`` and the fMRI predictions may be non-contiguous views.

        Notes
        -----
        The same outputs as applying ``encoder`` and then each head, computed in a cheaper
        order (equal to float rounding). With ``z`` the last transformer layer's output and
        ``s = W z + b`` the source layer:

        * MEG: ``L_i M_i s = (G_i W) z + G_i b`` with ``G_i = L_i M_i``: the gains act on the
          d_model-wide ``z`` instead of the d_src-wide sources. EEG likewise, with the
          average-referenced gain ``G_i = P L_i M_i`` (one GEMM for all sensor heads).
        * fMRI: the Hilbert transform along time commutes with the source layer and kills its
          bias, ``H(s) = W H(z)``, and commutes with each morph, so one GEMM gives
          ``[s | H(s)]`` for every subject (see
          :func:`~neurofuse.systems.joint.heads.envelope_tr_means`).
        """
        meg, fmri, eeg = list(meg), list(fmri), list(eeg)
        z = self.encoder.hidden(features, impl=impl)  # (B, T, d_model)
        B, T, D = z.shape
        N = B * T
        layer = self.encoder.source_layer
        weight, bias = layer.effective()  # (S, D), (S,): smoothed when the layer smooths
        zf = z.reshape(N, D)  # (N, D)
        if fmri:
            hz = hilbert_transform(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)
            hz = hz.to(zf.dtype)  # (B, T, D)
            ones, zeros = zf.new_ones(B, T, 1), zf.new_zeros(B, T, 1)
            zz = torch.cat([torch.cat([z, ones], 2), torch.cat([hz, zeros], 2)], 1)  # (B, 2T, D+1)
            w = torch.cat([weight, bias[:, None]], 1)  # (S, D+1)
            # (B, S, 2T): [s_b | H(s_b)], time last (bmm of the expanded weight: as fast as
            # one GEMM, each piece's table contiguous; matmul's broadcast is ~2.5x slower)
            sh = torch.bmm(w.expand(B, *w.shape), zz.transpose(1, 2))
            sources = sh[:, :, :T].transpose(1, 2)  # (B, T, S) view
        else:
            sources = layer(z)  # (B, T, S)
        out = ModelOutput(sources, latent=(z, weight))
        sensors = ([(sub, self.meg_heads[sub], out.meg) for sub in meg]
                   + [(sub, self.eeg_heads[sub], out.eeg) for sub in eeg])
        if sensors:
            gains = [head.gain.to(weight.dtype) for _, head, _ in sensors]  # (C_i, S)
            gw = torch.cat([g @ weight for g in gains])  # (C, D)
            gb = torch.cat([g @ bias for g in gains])  # (C,)
            m = torch.addmm(gb, zf, gw.T)  # (N, C)
            for (sub, _, dest), m_sub in zip(sensors, m.split([g.shape[0] for g in gains], 1)):
                dest[sub] = m_sub.view(B, T, -1)  # (B, T, C_i)
        if fmri:
            groups = {}
            for sub in fmri:
                head = self.fmri_heads[sub]
                groups.setdefault(head.samples_per_tr, []).append((sub, head))
            for members in groups.values():
                bolds = fmri_bold([h for _, h in members], sh)
                for (sub, _), bold in zip(members, bolds):
                    out.fmri[sub] = bold  # (B, n_tr, n_sub)
        return out

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, dataset, *, encoder_kwargs=None, hrf_kwargs=None, subjects=None):
        """Build a model whose heads use the dataset's lead fields and morphs.

        Parameters
        ----------
        dataset : neurofuse.data.store.Dataset
        encoder_kwargs : dict | None
            :class:`StimulusEncoder` arguments; ``d_stim`` and ``d_src`` come from the data.
        hrf_kwargs : dict | None
            Initial HRF parameters for every fMRI head.
        subjects : list of str | None
            Subset of the dataset's subjects.
        """
        subjects = dataset.subjects if subjects is None else list(subjects)
        n_src = None
        meg_heads, fmri_heads, eeg_heads = {}, {}, {}
        for sub in subjects:
            morph = dataset.morph(sub)
            n_src = morph.shape[1] if n_src is None else n_src
            if morph.shape[1] != n_src:
                raise ValueError(f"Subject {sub!r} morphs from {morph.shape[1]} fsaverage sources, "
                                 f"others from {n_src}: all must share one source space.")
            if "meg" in dataset.modalities(sub):
                from ...anatomy.forward import check_leadfield

                leadfield = dataset.leadfield(sub)
                check_leadfield(leadfield, dataset.info(sub), name=f"leadfield of {sub}")
                meg_heads[sub] = MEGHead.from_forward(leadfield, morph)
            if "eeg" in dataset.modalities(sub):
                from ...anatomy.forward import check_leadfield

                leadfield = dataset.leadfield(sub, "eeg")
                check_leadfield(leadfield, dataset.info(sub, "eeg"),
                                name=f"EEG leadfield of {sub}")
                eeg_heads[sub] = EEGHead.from_forward(leadfield, morph)
            if "fmri" in dataset.modalities(sub):
                fmri_heads[sub] = FMRIHead(morph, sfreq=dataset.sfreq, tr=dataset.tr,
                                           hrf_kwargs=hrf_kwargs)
        kwargs = dict(encoder_kwargs or {})
        kwargs.update(d_stim=dataset.n_features, d_src=n_src)
        model = cls(StimulusEncoder(**kwargs), meg_heads=meg_heads, fmri_heads=fmri_heads,
                    sfreq=dataset.sfreq, tr=dataset.tr,
                    feature_streams={k: list(v) for k, v in dataset.feature_streams.items()},
                    eeg_heads=eeg_heads)
        for sub in meg_heads:
            model.infos[sub] = dataset.info(sub)
        for sub in eeg_heads:
            model.eeg_infos[sub] = dataset.info(sub, "eeg")
        template = dataset.metadata.get("template", {})
        model.vertices = template.get("vertices")
        enc = model.encoder.config
        if enc.source_fwhm is not None:
            if not model.vertices:
                raise ValueError("encoder source_fwhm needs the dataset's fsaverage source "
                                 "vertices (metadata 'template' -> 'vertices'), which this "
                                 "dataset lacks; set source_fwhm=None.")
            model.encoder.source_layer.set_smoother(source_smoother(model.vertices,
                                                                    enc.source_fwhm))
        if enc.source_prior == "mixture" and any(w > 0 for w in enc.source_widths):
            if not model.vertices:
                raise ValueError("encoder source_prior='mixture' needs the dataset's fsaverage "
                                 "source vertices (metadata 'template' -> 'vertices'), which "
                                 "this dataset lacks; use source_prior='fixed' without "
                                 "source_fwhm.")
            for width in enc.source_widths:
                if width > 0:
                    model.encoder.source_layer.set_smoother(
                        source_smoother(model.vertices, width), width=width)
        model.subject_vertices = {s: [v.tolist() for v in dataset.vertices(s)] for s in subjects}
        return model

    def config_dict(self) -> dict:
        """JSON-serialisable description (everything but tensors)."""
        out = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "encoder": self.encoder.config.to_dict(),
            "sfreq": self.sfreq,
            "tr": self.tr,
            "feature_streams": self.feature_streams,
            "meg_subjects": {s: {"n_channels": h.n_channels, "scale": h.scale}
                             for s, h in self.meg_heads.items()},
            "fmri_subjects": {s: {"n_sources": h.n_sources, "hrf_length": h.hrf.length}
                              for s, h in self.fmri_heads.items()},
            "vertices": self.vertices,
            "subject_vertices": self.subject_vertices,
        }
        if self.eeg_heads:  # absent without EEG, so MEG + fMRI models are described as before
            out["eeg_subjects"] = {s: {"n_channels": h.n_channels, "scale": h.scale}
                                   for s, h in self.eeg_heads.items()}
        return out

    def source_prior(self) -> dict:
        """The source layer's spatial prior, as trained.

        Returns
        -------
        prior : dict
            ``{"prior": "fixed", "fwhm": mm or None}``, or for a learned mixture
            ``{"prior": "mixture", "widths": [mm, ...], "weights": [...],
            "mean_fwhm": sum_k w_k fwhm_k, "argmax_fwhm": the width of largest weight}``
            (``weights``: ``softmax`` of the logits, summing to 1). ``model.json`` of a
            saved mixture model holds it under ``source_prior``.
        """
        cfg = self.encoder.config
        if cfg.source_prior != "mixture":
            return {"prior": "fixed", "fwhm": cfg.source_fwhm}
        weights = self.encoder.source_layer.mixture_weights()
        widths = list(cfg.source_widths)
        return {"prior": "mixture", "widths": widths,
                "weights": [round(float(w), 6) for w in weights],
                "mean_fwhm": round(float(np.dot(weights, widths)), 4),
                "argmax_fwhm": widths[int(np.argmax(weights))]}

    def spatial_prior(self):
        """The source layer's smoother ``K`` as trained, for applying it elsewhere (e.g. to
        the classical inverses, for a comparison with the model's own prior).

        Returns
        -------
        smoother : scipy.sparse.csr_array, shape (n_sources, n_sources) | None
            The fixed smoother, or for a learned mixture ``sum_k w_k K_k`` with the learned
            weights (see :meth:`source_prior`); None for the unsmoothed layer.
        """
        import scipy.sparse

        layer = self.encoder.source_layer

        def to_scipy(t):
            t = t.detach().cpu()
            return scipy.sparse.csr_array((t.values().double().numpy(),
                                           t.col_indices().numpy(), t.crow_indices().numpy()),
                                          shape=tuple(t.shape))

        if layer.widths is None:
            return None if layer.smoother is None else to_scipy(layer.smoother)
        out = None
        for k, (width, weight) in enumerate(zip(layer.widths, layer.mixture_weights())):
            term = scipy.sparse.eye_array(self.n_sources, format="csr") if width == 0 else \
                to_scipy(getattr(layer, f"mixture_smoother_{k}"))
            out = weight * term if out is None else out + weight * term
        return scipy.sparse.csr_array(out)

    # ------------------------------------------------------------------ persistence
    def flat_state(self) -> dict:
        """State dict with sparse buffers split into dense CSR triplets (for safetensors)."""
        flat = {}
        for key, val in self.state_dict().items():
            if val.layout == torch.sparse_csr:
                flat[f"{key}.crow"] = val.crow_indices().contiguous()
                flat[f"{key}.col"] = val.col_indices().contiguous()
                flat[f"{key}.val"] = val.values().contiguous()
                flat[f"{key}.shape"] = torch.tensor(list(val.shape), dtype=torch.int64)
            else:
                flat[key] = val.detach().contiguous()
        return flat

    def load_flat_state(self, flat: dict, *, strict=True):
        """Inverse of :meth:`flat_state`."""
        state = {}
        for key in self.state_dict():
            if f"{key}.crow" in flat:
                shape = tuple(flat[f"{key}.shape"].tolist())
                state[key] = torch.sparse_csr_tensor(flat[f"{key}.crow"], flat[f"{key}.col"],
                                                     flat[f"{key}.val"], size=shape,
                                                     check_invariants=True)
            elif key in flat:
                state[key] = flat[key]
        missing = sorted(set(self.state_dict()) - set(state))
        if strict and missing:
            raise ValueError(f"Incompatible checkpoint: it lacks {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}.")
        used = {f"{key}{end}" if f"{key}.crow" in flat else key
                for key in self.state_dict()
                for end in ((".crow", ".col", ".val", ".shape") if f"{key}.crow" in flat
                            else ("",))}
        extra = sorted(set(flat) - used)
        if strict and extra:
            raise ValueError(f"Incompatible weights: they hold tensors this model does not have "
                             f"({extra[:5]}{'...' if len(extra) > 5 else ''}): the model's "
                             "description (model.json) and its weights disagree. Was model.json "
                             "edited? Use the model.json written with these weights.")
        for key, val in state.items():
            target = self.state_dict()[key]
            if tuple(val.shape) != tuple(target.shape):
                raise ValueError(f"Incompatible checkpoint: '{key}' has shape {tuple(val.shape)} "
                                 f"but this model expects {tuple(target.shape)}.")
        # Sparse buffers are replaced, dense ones copied in place.
        for name, mod in self.named_modules():
            for bname, buf in list(mod._buffers.items()):
                key = f"{name}.{bname}" if name else bname
                if buf is not None and buf.layout == torch.sparse_csr and key in state:
                    mod._buffers[bname] = state.pop(key)
        self.load_state_dict(state, strict=False)

    def save(self, path, *, overwrite=False):
        """Write the model folder (atomically). See the module docstring for its layout."""
        from safetensors.torch import save_file

        with atomic_dir(path, overwrite=overwrite, what="model") as tmp:
            save_file({k: v.cpu() for k, v in self.flat_state().items()},
                      str(tmp / "model.safetensors"))
            # The learned mixture weights are a record for readers (reports), not a setting:
            # they stay out of config_dict (which resumed training compares).
            record = {"source_prior": self.source_prior()} \
                if self.encoder.config.source_prior == "mixture" else {}
            write_json(tmp / "model.json", {
                **self.config_dict(), **record,
                "checksums": {"model.safetensors": hash_file(tmp / "model.safetensors")}})
            if self.infos or self.eeg_infos:
                import mne

                (tmp / "infos").mkdir()
                for sub, info in self.infos.items():
                    mne.io.write_info(tmp / "infos" / f"{sub}-info.fif", info)
                for sub, info in self.eeg_infos.items():
                    mne.io.write_info(tmp / "infos" / f"{sub}-eeg-info.fif", info)
        return Path(path)

    @classmethod
    def load(cls, path) -> JointModel:
        """Read a model folder written by :meth:`save` (no pickle involved)."""
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        cfg_file = path / "model.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"'{path}' is not a neurofuse model folder (no model.json).")
        cfg = read_config(cfg_file, what="model description",
                          fix="the model folder is damaged: restore it or fit again")
        if cfg.get("format") != MODEL_FORMAT:
            raise ValueError(f"'{path}' holds a {cfg.get('format')!r}, not a {MODEL_FORMAT!r}.")
        if cfg.get("format_version", 0) > MODEL_FORMAT_VERSION:
            raise ValueError(f"Model format v{cfg['format_version']} is newer than this neurofuse "
                             f"supports (v{MODEL_FORMAT_VERSION}); upgrade neurofuse.")
        check_file_hash(path / "model.safetensors", cfg.get("checksums", {}).get(
            "model.safetensors"), record=cfg_file, what="model weights")
        flat = load_file(str(path / "model.safetensors"))
        model = cls.from_config(cfg, flat)
        model.load_flat_state(flat)
        info_dir = path / "infos"
        if info_dir.is_dir():
            import mne

            for sub in cfg["meg_subjects"]:
                fname = info_dir / f"{sub}-info.fif"
                if fname.is_file():
                    model.infos[sub] = mne.io.read_info(fname, verbose="error")
            for sub in cfg.get("eeg_subjects", {}):
                fname = info_dir / f"{sub}-eeg-info.fif"
                if fname.is_file():
                    model.eeg_infos[sub] = mne.io.read_info(fname, verbose="error")
        return model

    @classmethod
    def from_config(cls, cfg: dict, flat: dict) -> JointModel:
        """An uninitialised model with the shapes of ``cfg`` (weights from ``flat`` after)."""
        encoder = StimulusEncoder(**EncoderConfig.from_dict(cfg["encoder"]).to_dict())
        meg = {}
        import scipy.sparse

        for sub, spec in cfg["meg_subjects"].items():
            key = f"meg_heads.{sub}.morph.shape"
            morph = scipy.sparse.csr_array(tuple(flat[key].tolist())) if key in flat else None
            meg[sub] = MEGHead(np.zeros(tuple(flat[f"meg_heads.{sub}.gain"].shape), np.float32),
                               scale=spec["scale"], morph=morph)
        fmri = {}

        for sub, spec in cfg["fmri_subjects"].items():
            shape = tuple(flat[f"fmri_heads.{sub}.morph.shape"].tolist())
            fmri[sub] = FMRIHead(scipy.sparse.csr_array(shape), sfreq=cfg["sfreq"], tr=cfg["tr"],
                                 hrf_kwargs={"length": spec["hrf_length"]})
        eeg = {}
        for sub, spec in cfg.get("eeg_subjects", {}).items():
            key = f"eeg_heads.{sub}.morph.shape"
            morph = scipy.sparse.csr_array(tuple(flat[key].tolist())) if key in flat else None
            eeg[sub] = EEGHead(np.zeros(tuple(flat[f"eeg_heads.{sub}.gain"].shape), np.float32),
                               scale=spec["scale"], morph=morph)
        model = cls(encoder, meg_heads=meg, fmri_heads=fmri, sfreq=cfg["sfreq"], tr=cfg["tr"],
                    feature_streams=cfg.get("feature_streams"), eeg_heads=eeg)
        model.vertices = cfg.get("vertices")
        model.subject_vertices = cfg.get("subject_vertices", {})
        return model


def check_model_fits(model, dataset, *, name="model"):
    """Check that a fitted joint model can score ``dataset``: same inputs, subjects and shapes.

    What must agree: the feature width (the encoder's ``d_stim``) and, when both record them,
    the feature streams; the sampling rate and TR; the fsaverage source count; for every MEG
    subject of the dataset a MEG head with as many channels (and, when the model kept the
    subject's ``Info``, the same channel names), and likewise an EEG head for every EEG
    subject; for every fMRI subject an fMRI head with as
    many sources. Subjects the model has and the dataset lacks are allowed (not scored).

    Parameters
    ----------
    model : JointModel
    dataset : neurofuse.data.store.Dataset
    name : str
        How the model is called in the error message (the caller's parameter).

    Raises
    ------
    ValueError
        Listing every mismatch, and how to get a model that fits.
    """
    problems = []

    def differ(what, got, expected):
        problems.append(f"{what} is {got} in the model but {expected} in the dataset")

    if model.encoder.config.d_stim != dataset.n_features:
        differ("the feature width (d_stim)", model.encoder.config.d_stim, dataset.n_features)
    ds_streams = {k: list(v) for k, v in dataset.feature_streams.items()}
    if model.feature_streams and ds_streams and \
            {k: list(v) for k, v in model.feature_streams.items()} != ds_streams:
        differ("the feature streams", model.feature_streams, ds_streams)
    for what, got, expected in (("the sampling rate (Hz)", model.sfreq, dataset.sfreq),
                                ("the TR (s)", model.tr, dataset.tr)):
        if not np.isclose(got, float(expected)):
            differ(what, got, expected)
    for sub in dataset.subjects:
        modalities = dataset.modalities(sub)
        if not {"meg", "fmri", "eeg"} & set(modalities):
            continue
        morph = dataset.morph(sub)  # (n_sources_subject, n_sources_fsaverage)
        if morph.shape[1] != model.n_sources:
            differ(f"the fsaverage source count (via {sub!r})", model.n_sources, morph.shape[1])
        if "meg" in modalities:
            if sub not in model.meg_heads:
                problems.append(f"MEG subject {sub!r} of the dataset has no MEG head in the "
                                f"model (it has {sorted(model.meg_heads)})")
            else:
                ch_names = dataset.info(sub)["ch_names"]
                n_ch = model.meg_heads[sub].n_channels
                if n_ch != len(ch_names):
                    differ(f"{sub!r}'s MEG channel count", n_ch, len(ch_names))
                elif sub in model.infos and list(model.infos[sub]["ch_names"]) != list(ch_names):
                    problems.append(f"{sub!r}'s MEG channel names differ between the model "
                                    "and the dataset")
        if "eeg" in modalities:
            if sub not in model.eeg_heads:
                problems.append(f"EEG subject {sub!r} of the dataset has no EEG head in the "
                                f"model (it has {sorted(model.eeg_heads)})")
            else:
                ch_names = dataset.info(sub, "eeg")["ch_names"]
                if model.eeg_heads[sub].n_channels != len(ch_names):
                    differ(f"{sub!r}'s EEG channel count", model.eeg_heads[sub].n_channels,
                           len(ch_names))
                elif sub in model.eeg_infos and \
                        list(model.eeg_infos[sub]["ch_names"]) != list(ch_names):
                    problems.append(f"{sub!r}'s EEG channel names differ between the model "
                                    "and the dataset")
        if "fmri" in modalities:
            if sub not in model.fmri_heads:
                problems.append(f"fMRI subject {sub!r} of the dataset has no fMRI head in the "
                                f"model (it has {sorted(model.fmri_heads)})")
            elif model.fmri_heads[sub].n_sources != morph.shape[0]:
                differ(f"{sub!r}'s fMRI source count", model.fmri_heads[sub].n_sources,
                       morph.shape[0])
    if problems:
        where = getattr(dataset, "path", "the dataset")
        raise ValueError(f"The joint model passed as {name!r} does not fit the dataset "
                         f"'{where}': " + "; ".join(problems) + ". Pass a model trained on "
                         f"this dataset (neurofuse joint fit CONFIG --data {where} --out DIR), "
                         "or train one here.")
