"""Data-parallel training under torchrun: join the process group torchrun describes, or run alone.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous (MASTER_ADDR/PORT); gloo serves CPU
training, NCCL one GPU per process (LOCAL_RANK picks it).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from training.batches import Shard


def join(device: str) -> Shard:
    """This process's Shard: alone (1 process) unless torchrun started several."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Shard()
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
