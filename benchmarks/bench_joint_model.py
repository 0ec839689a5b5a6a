"""Joint-model training benchmark: neurofuse's JointModel vs a straightforward implementation.

Prints one JSON object: seconds per optimizer step, training throughput (stimulus-seconds per
wall-second) and peak memory of each variant, their ratios, whether the targets are met
(>= 3x faster per step, >= 2x less peak memory than the straightforward version, on CPU), and
the agreement of the two (same weights, eval mode, one forward).

Synthetic but paper-sized physics, no data on disk: per MEG subject a random lead field
(306 x d_src); per subject a sparse morph (d_src x d_src, ~5 non-zeros per row, rows summing
to 1 like MNE's). Paper-size encoder (d_stim 852, d_model 256, 4 layers, 2 heads, ff 512,
dropout 0.2, window 500). One step = forward on a batch (B x T samples at 50 Hz), the joint
loss (random targets, alpha_fmri=1), backward, AdamW step.

- ours: ``JointModel`` with ``MEGHead.from_forward`` / ``FMRIHead`` heads, blocked attention,
  gains applied to the transformer output, one Hilbert transform for all fMRI subjects and
  the fused, chunked fMRI heads (see ``JointModel.forward``); smoothness loss computed from
  ``ModelOutput.latent``.
- straightforward (benchmarks/_straightforward.py): dense T x T masked attention, dense
  morph matrices, ``L @ (M @ s)`` with the full per-subject source tensor, no checkpointing.

Every measurement runs in a fresh subprocess (peak RSS per variant on CPU; a memory watchdog
kills a run that would exceed ``--max-gib``). If the straightforward version at the requested
batch is estimated not to fit, the comparison runs at the largest batch that fits and ours is
also measured alone at the requested (paper) scale.

    python benchmarks/bench_joint_model.py                        # paper scale, CPU
    python benchmarks/bench_joint_model.py --device cuda --variant both
    python benchmarks/bench_joint_model.py --batch 2 --seconds 20 --d-src 2048 --steps 2   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SFREQ = 50.0
TR = 2.0
N_CHANNELS = 306
MORPH_NNZ = 5
GIB = 1024**3


# ----------------------------------------------------------------------------- physics, data
def make_physics(n_meg, n_fmri, d_src, *, seed=0):
    """Random lead fields (306, d_src) per MEG subject and sparse morphs for every subject.

    Each morph row holds its own vertex and 4 others within +-40 (a local, MNE-like smoothing
    pattern), positive weights summing to 1.
    """
    import numpy as np
    import scipy.sparse

    rng = np.random.default_rng(seed)
    offsets = np.concatenate([np.arange(-40, 0), np.arange(1, 41)])  # candidate neighbours
    meg = [f"meg{i + 1:02d}" for i in range(n_meg)]
    fmri = [f"fmri{i + 1:02d}" for i in range(n_fmri)]
    leadfields, morphs = {}, {}
    for sub in meg + fmri:
        pick = np.argsort(rng.random((d_src, len(offsets))), axis=1)[:, : MORPH_NNZ - 1]
        cols = np.concatenate([np.arange(d_src)[:, None],
                               (np.arange(d_src)[:, None] + offsets[pick]) % d_src], axis=1)
        vals = rng.uniform(0.5, 1.5, size=cols.shape)
        vals /= vals.sum(1, keepdims=True)
        rows = np.repeat(np.arange(d_src), MORPH_NNZ)
        morph = scipy.sparse.csr_array((vals.ravel(), (rows, cols.ravel())), shape=(d_src, d_src))
        morph.sum_duplicates()
        morphs[sub] = morph
        if sub in meg:
            leadfields[sub] = rng.standard_normal((N_CHANNELS, d_src)) * 1e-9  # ~ T / (A m)
    return meg, fmri, leadfields, morphs


def build_models(args, variant, device):
    """Ours (always, it owns the weights) and, if asked, its straightforward twin."""
    import torch

    from neurofuse.systems.joint.encoder import StimulusEncoder
    from neurofuse.systems.joint.heads import FMRIHead, MEGHead
    from neurofuse.systems.joint.model import JointModel

    meg, fmri, leadfields, morphs = make_physics(args.n_meg, args.n_fmri, args.d_src)
    torch.manual_seed(0)
    encoder = StimulusEncoder(d_src=args.d_src)  # paper defaults for everything else
    model = JointModel(
        encoder,
        meg_heads={s: MEGHead.from_forward(leadfields[s], morphs[s]) for s in meg},
        fmri_heads={s: FMRIHead(morphs[s], sfreq=SFREQ, tr=TR) for s in fmri},
        sfreq=SFREQ, tr=TR,
    )
    models = {}
    if variant in ("straightforward", "both"):
        sys.path.insert(0, HERE)
        from _straightforward import from_joint_model

        models["straightforward"] = from_joint_model(model, leadfields, morphs).to(device)
    if variant in ("ours", "both"):
        models["ours"] = model.to(device)
    return meg, fmri, models


def make_batch(args, meg, fmri, device, *, seed=1):
    """Features (B, T, 852), random targets and uniform per-target weights."""
    import torch

    g = torch.Generator().manual_seed(seed)
    B, T = args.batch, round(args.seconds * SFREQ)
    n_tr = T // round(SFREQ * TR)
    rows = torch.arange(B)
    features = torch.randn(B, T, 852, generator=g)
    batch = {"loss_start": torch.zeros(B, dtype=torch.int64),
             "meg": {s: (torch.randn(B, T, N_CHANNELS, generator=g), rows) for s in meg},
             "fmri": {s: (torch.randn(B, n_tr, args.d_src, generator=g), rows) for s in fmri}}
    weights = {("meg", s): torch.full((N_CHANNELS,), 1.0 / N_CHANNELS) for s in meg}
    weights.update({("fmri", s): torch.full((args.d_src,), 1.0 / args.d_src) for s in fmri})

    def to(x):
        return x.to(device)

    batch = {"loss_start": to(batch["loss_start"]),
             **{k: {s: (to(t), to(r)) for s, (t, r) in batch[k].items()} for k in ("meg", "fmri")}}
    return to(features), batch, {k: to(v) for k, v in weights.items()}


def _forward(name, model, features, meg, fmri):
    impl = "dense" if name == "straightforward" else "blocked"
    return model(features, meg=meg, fmri=fmri, impl=impl)


def _median(values):
    v = sorted(values)
    return 0.5 * (v[(len(v) - 1) // 2] + v[len(v) // 2])


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- workers
def worker_train(args):
    """One variant, one process: warm-up step + ``steps`` timed steps."""
    import torch

    from neurofuse.systems.joint.losses import joint_loss

    device = torch.device(args.device)
    meg, fmri, models = build_models(args, args.variant, device)
    (name, model), = models.items()
    features, batch, weights = make_batch(args, meg, fmri, device)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    spt = round(SFREQ * TR)
    rss_built = _rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        static_cuda = torch.cuda.memory_allocated()

    def step():
        opt.zero_grad(set_to_none=True)
        out = _forward(name, model, features, meg, fmri)
        loss = joint_loss(out, batch, weights, alpha_meg=1.0, alpha_fmri=1.0, samples_per_tr=spt)
        loss.total.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss.total.detach())

    times, cpu_times, losses = [], [], []
    for i in range(args.steps + 1):  # the first is the warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    timed, cpu = times[1:], cpu_times[1:]
    s = sum(timed) / len(timed)
    res = {"variant": name, "batch": args.batch, "seconds": args.seconds,
           "warmup_s": times[0], "step_s": timed, "s_per_step": s,
           "min_s_per_step": min(timed), "median_s_per_step": _median(timed),
           "cpu_step_s": cpu, "median_cpu_s_per_step": _median(cpu),
           "stimulus_s_per_wall_s": args.batch * args.seconds / s,
           "loss": losses[-1]}
    if device.type == "cuda":
        res["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        res["static_mb"] = static_cuda / 2**20
        res["peak_measure"] = "torch.cuda.max_memory_allocated"
    else:
        res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["rss_after_build_mb"] = rss_built
        res["peak_measure"] = "ru_maxrss of a fresh process (includes model, physics, data)"
    print(json.dumps(res))


def worker_agree(args):
    """Same weights, eval mode, one forward each: max |ours - ref| / max |ref| per output."""
    import torch

    device = torch.device(args.device)
    meg, fmri, models = build_models(args, "both", device)
    features, _, _ = make_batch(args, meg, fmri, device)
    outs, secs = {}, {}
    with torch.no_grad():
        for name, model in models.items():
            model.eval()
            t0 = time.perf_counter()
            outs[name] = _forward(name, model, features, meg, fmri)
            secs[name] = time.perf_counter() - t0

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    o, r = outs["ours"], outs["straightforward"]
    diffs = {"sources": rel(o.sources, r.sources),
             "meg": max(rel(o.meg[s], r.meg[s]) for s in meg) if meg else 0.0,
             "fmri": max(rel(o.fmri[s], r.fmri[s]) for s in fmri) if fmri else 0.0}
    print(json.dumps({"batch": args.batch, "max_rel_diff": diffs,
                      "definition": "max|ours - straightforward| / max|straightforward|, "
                                    "worst subject",
                      "eval_forward_s": secs}))


# ----------------------------------------------------------------------------- orchestration
def estimate_straightforward_gib(batch, seconds, n_meg, n_fmri, d_src, n_layers=4, n_heads=2):
    """Rough peak RSS of the straightforward variant in training (GiB), float32, CPU.

    Dense morphs (n_subjects d_src^2) + ~1.6 GiB of runtime, model and allocator slack + per
    batch item ~(4 n_fmri + 11.5) (T, d_src) tensors (per fMRI subject the complex analytic
    signal and the envelope kept for backward plus transients; sources, gradients, loss) and
    ~2.25 (H, T, T) tensors per layer (dense attention probabilities, dropout mask, dropped
    copy). Calibrated on 2 cores at paper scale: measured 7.8 / 10.1 / 16.6 GiB at batch
    1 / 2 / 4, estimate 7.8 / 10.7 / 16.6.
    """
    T = round(seconds * SFREQ)
    per_item = (4 * n_fmri + 11.5) * T * d_src * 4 + 2.25 * n_layers * n_heads * T * T * 4
    total = (n_meg + n_fmri) * d_src * d_src * 4 + 1.6 * GIB + batch * per_item
    return total / GIB


def _available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def run_worker(mode, args, *, variant=None, batch=None, max_gib=None):
    """Run a worker in a fresh process with an RSS watchdog; return its JSON (or an error)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", mode,
           "--device", args.device, "--batch", str(batch or args.batch),
           "--seconds", str(args.seconds), "--n-meg", str(args.n_meg),
           "--n-fmri", str(args.n_fmri), "--d-src", str(args.d_src),
           "--steps", str(args.steps), "--variant", variant or args.variant]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    limit = (max_gib or args.max_gib) * GIB
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    killed = False
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            rss = 0
        if rss > limit:
            proc.kill()
            killed = True
            break
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if killed:
        return {"error": f"killed: RSS exceeded {limit / GIB:.1f} GiB", "process_s": wall}
    if proc.returncode:
        sys.stderr.write(stderr[-4000:])
        return {"error": f"exit code {proc.returncode}", "stderr_tail": stderr[-500:],
                "process_s": wall}
    res = json.loads(stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    return res


def _machine(args):
    import torch

    info = {"cpu_count": os.cpu_count(), "torch_threads": args.threads or os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or None,
            "load_avg_at_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(l.split(":", 1)[1].strip() for l in f
                                     if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["mem_available_gib"] = round(_available_gib(), 1)
    if args.device == "cuda":
        info["device_name"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = info.get("cpu_model", "cpu")
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=8, help="pieces per batch (paper: 8)")
    p.add_argument("--seconds", type=float, default=40.0, help="piece length in s (paper: 40)")
    p.add_argument("--n-meg", type=int, default=5, help="MEG subjects (paper: 5)")
    p.add_argument("--n-fmri", type=int, default=8, help="fMRI subjects (paper: 8)")
    p.add_argument("--d-src", type=int, default=8196, help="fsaverage sources (paper: 8196)")
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps (after 1 warm-up)")
    p.add_argument("--variant", choices=("ours", "straightforward", "both"), default="both")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--max-gib", type=float, default=None,
                   help="memory budget per run (default: min(20, 0.8 x MemAvailable) GiB on CPU)")
    p.add_argument("--compare-batch", type=int, default=None,
                   help="batch of the ours-vs-straightforward comparison (default: the largest "
                        "<= --batch whose estimated straightforward peak fits in --max-gib)")
    p.add_argument("--no-agree", action="store_true", help="skip the agreement check")
    p.add_argument("--_worker", choices=("train", "agree"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    T = args.seconds * SFREQ
    if abs(T - round(T)) > 1e-9 or round(T) % int(SFREQ * TR):
        p.error(f"--seconds must be a whole number of TRs ({TR:g} s), got {args.seconds:g}.")

    if args._worker:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        return (worker_train if args._worker == "train" else worker_agree)(args)

    if args.max_gib is None:
        args.max_gib = min(20.0, 0.8 * _available_gib()) if args.device == "cpu" else 20.0
    result = {"config": {"batch": args.batch, "seconds": args.seconds, "n_meg": args.n_meg,
                         "n_fmri": args.n_fmri, "d_src": args.d_src, "steps": args.steps,
                         "device": args.device, "sfreq": SFREQ, "tr": TR,
                         "max_gib": round(args.max_gib, 1)},
              "machine": _machine(args),
              "note": "CPU shared with other work: timings are indicative (see load_avg)."}

    if args.compare_batch is not None and not 1 <= args.compare_batch <= args.batch:
        p.error(f"--compare-batch must be in [1, --batch={args.batch}], got {args.compare_batch}.")
    # Largest batch at which the straightforward variant fits (host RAM estimate on CPU; on
    # CUDA the dense morphs and activations live on the device, so we try and report).
    cmp_batch = args.compare_batch or args.batch
    if args.variant in ("straightforward", "both") and args.device == "cpu":
        est = {b: estimate_straightforward_gib(b, args.seconds, args.n_meg, args.n_fmri,
                                               args.d_src) for b in range(1, args.batch + 1)}
        fits = [b for b, g in est.items() if g <= args.max_gib]
        result["straightforward_estimate_gib"] = {str(b): round(g, 1) for b, g in est.items()}
        if not fits:
            raise SystemExit(f"The straightforward variant does not fit in {args.max_gib:.1f} GiB "
                             "even at batch 1; use --variant ours or smaller --d-src/--seconds.")
        cmp_batch = max(fits) if args.compare_batch is None else args.compare_batch
        if est[cmp_batch] > args.max_gib:
            raise SystemExit(f"--compare-batch {cmp_batch}: the straightforward variant is "
                             f"estimated at {est[cmp_batch]:.1f} GiB > {args.max_gib:.1f} GiB.")
        if cmp_batch < args.batch:
            result["straightforward_at_paper_scale"] = (
                f"does not fit in {args.max_gib:.1f} GiB (estimated "
                f"{est[args.batch]:.1f} GiB at batch {args.batch}); compared at batch "
                f"{cmp_batch}, ours also measured alone at batch {args.batch}")
    result["comparison_batch"] = cmp_batch

    runs = {}
    if args.variant == "both" and not args.no_agree:
        agree = run_worker("agree", args, batch=cmp_batch)
        result["agreement"] = agree
    for name in ("ours", "straightforward"):
        if args.variant in (name, "both"):
            runs[name] = run_worker("train", args, variant=name, batch=cmp_batch)
    result["runs"] = runs
    if "ours" in runs and cmp_batch != args.batch:
        result["ours_at_requested_batch"] = run_worker("train", args, variant="ours")

    ours, ref = runs.get("ours", {}), runs.get("straightforward", {})
    if "s_per_step" in ours and "s_per_step" in ref:
        # Median wall time per step; the CPU-time ratio (process time, not wall) is less
        # sensitive to other work on a shared machine.
        speed = ref["median_s_per_step"] / ours["median_s_per_step"]
        mem = ref["peak_mb"] / ours["peak_mb"]
        result["ratios"] = {"batch": cmp_batch, "speed": speed,
                            "speed_mean": ref["s_per_step"] / ours["s_per_step"],
                            "speed_cpu_time": (ref["median_cpu_s_per_step"]
                                               / ours["median_cpu_s_per_step"]),
                            "memory": mem}
        result["targets"] = {"speed_ge_3x": speed >= 3.0, "memory_ge_2x": mem >= 2.0,
                             "applies_to": "CPU" if args.device == "cpu" else "informative only"}

    failed = False
    if "agreement" in result:
        diffs = result["agreement"].get("max_rel_diff")
        if diffs is None or max(diffs.values()) > 1e-3:
            result["agreement_ok"] = False
            failed = True
        else:
            result["agreement_ok"] = True
    print(json.dumps(result, indent=1))
    if failed:
        raise SystemExit("AGREEMENT CHECK FAILED: ours and the straightforward model differ by "
                         f"more than 1e-3 (relative): {result['agreement']}")
    if any("error" in r for r in runs.values()):
        raise SystemExit("a benchmark run failed (see 'runs')")


if __name__ == "__main__":
    main()
