"""One process of a gloo data-parallel fit (started by test_trainer.py, not collected).

Usage: python _ddp_worker.py RANK WORLD_SIZE RENDEZVOUS_FILE DATASET OUT CONFIG_JSON
"""

import contextlib
import datetime
import json
import os
import sys

import torch
import torch.distributed as dist


# Parameters whose loss gradient is zero by symmetry, so only rounding noise reaches them:
# key biases (softmax is shift-invariant) and the biases that offset every source (the last
# LayerNorm's and the source layer's; the MEG correlation loss ignores offsets). Adam divides
# that noise by its own RMS and turns it into lr-sized steps of random sign, so two exact
# implementations of the same gradient (1 process vs 2) drift apart there; they are frozen in
# the DDP comparison.
def degenerate(name, n_layers):
    return (name.endswith("attn.k_proj.bias") or name == "encoder.source_layer.bias"
            or name == f"encoder.layers.{n_layers - 1}.norm2.bias")


@contextlib.contextmanager
def freeze_degenerate():
    """Patch JointModel.from_dataset so the models fit builds have those parameters frozen."""
    from neurofuse.systems.joint.model import JointModel

    orig = JointModel.from_dataset.__func__

    def from_dataset(cls, *args, **kwargs):
        model = orig(cls, *args, **kwargs)
        for name, p in model.named_parameters():
            if degenerate(name, model.encoder.config.n_layers):
                p.requires_grad_(False)
        return model

    JointModel.from_dataset = classmethod(from_dataset)
    try:
        yield
    finally:
        JointModel.from_dataset = classmethod(orig)


def main(rank, world, rendezvous, dataset, out, config):
    from neurofuse.systems.joint.trainer import fit

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        with freeze_degenerate():
            fit(dataset, out, train_config=config["train"], encoder_kwargs=config["encoder"],
                device="cpu")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    r, w, rdv, ds, out, cfg = sys.argv[1:]
    main(int(r), int(w), rdv, ds, out, json.loads(cfg))
    # Leave without running C++ static destructors: gloo's background threads can still be
    # joinable then, and their destruction aborts ("terminate called without an active
    # exception", exit -6) after the work is done and written, on a loaded machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
