"""Two-process DDP on CPU (gloo): ranks stay in sync, rank 0 alone writes, RNGs are saved;
data preparation runs on rank 0 before the other ranks."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from lrface.train.distributed import rank_zero_first
from lrface.train.engine import Trainer
from tests.train.synthetic import synthetic_data, tiny_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun_environment(rank: int, world: int, port: int) -> None:
    """What torchrun would set for this process."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )


def _worker(rank: int, world: int, port: int, root: str) -> None:
    _torchrun_environment(rank, world, port)
    torch.set_num_threads(1)
    config = tiny_config(Path(root), method="adda+l2", steps=4, batch_size=8, checkpoint_every=2)
    trainer = Trainer(config, *synthetic_data(), progress=False)
    assert trainer.world == 2 and trainer.rank == rank
    assert trainer.stream.rows(0)[1].tolist() == trainer.stream.rows(0)[2].tolist()
    trainer.fit()
    state = {f"student.{k}": v for k, v in trainer.student.state_dict().items()}
    state.update({f"losses.{k}": v for k, v in trainer.losses.state_dict().items()})
    state["rows"] = torch.from_numpy(trainer.stream.rows(0)[1])
    save_file({k: v.contiguous() for k, v in state.items()}, f"{root}/rank{rank}.safetensors")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert not set(ranks[0]["rows"].tolist()) & set(ranks[1]["rows"].tolist())
    for key, value in ranks[0].items():
        # parameters and ADDA discriminators agree; BN running statistics are rank 0's at
        # each forward (DDP broadcasts buffers), then each rank's last batch moves its own
        if key != "rows" and not key.split(".")[-1].startswith(("running_", "num_batches")):
            assert torch.equal(value, ranks[1][key]), key
    last = tmp_path / "run" / "checkpoints" / "step-0000004"
    train_state = load_file(str(last / "train.safetensors"))
    assert train_state["rng"].shape[0] == 2
    assert not torch.equal(train_state["rng"][0], train_state["rng"][1])
    saved = load_file(str(last / "student.safetensors"))
    assert all(torch.equal(saved[k], ranks[0][f"student.{k}"]) for k in saved)
    assert not list(tmp_path.glob("run/checkpoints/*.tmp"))


def _prepare_worker(rank: int, world: int, port: int, root: str) -> None:
    _torchrun_environment(rank, world, port)
    cache = Path(root) / "cache.txt"

    def prepare() -> str:
        if rank == 0:
            time.sleep(1.0)  # a slow cold-cache build: rank 1 must not start before it ends
            cache.write_text("built by rank 0")
        return cache.read_text()

    assert rank_zero_first(prepare) == "built by rank 0"
    dist.destroy_process_group()


@pytest.mark.slow
def test_rank_zero_prepares_data_before_the_other_ranks(tmp_path):
    mp.spawn(_prepare_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
