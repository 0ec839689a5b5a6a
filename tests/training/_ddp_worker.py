"""One process of a gloo data-parallel fit (started by test_trainer.py, not collected).

Usage: python _ddp_worker.py RANK WORLD_SIZE RENDEZVOUS_FILE DATASET OUT CONFIG_JSON
"""

import datetime
import json
import sys

import torch
import torch.distributed as dist


def main(rank, world, rendezvous, dataset, out, config):
    from neurofuse.training import fit

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        fit(dataset, out, train_config=config["train"], encoder_kwargs=config["encoder"],
            device="cpu")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    r, w, rdv, ds, out, cfg = sys.argv[1:]
    main(int(r), int(w), rdv, ds, out, json.loads(cfg))
