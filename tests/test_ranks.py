"""One process of a torchrun group, seen from inside: its device, its output folder, its random
draws. The process group and the GPUs are mocked, so these run on any CPU machine in one process."""
import torch
import torch.distributed as dist

import evaluate
from config import build_config
from conftest import small_dataset
from data import load_dataset
from ICMR import Solver
from parallel import Ranks
from runio.solver_state import load_solver_state, solver_state


def _cfg(tmp_path, *extra):
    return build_config(["--dataset", "small", "--data_root", str(small_dataset(tmp_path)), "--hash_lens", "16",
                         "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--modality_dropout",
                         "0", "--unimodal_epochs", "0", "--device", "cpu", "--checkpoint_dir", str(tmp_path / "ck"),
                         *extra])


def _solver(tmp_path):
    return Solver(_cfg(tmp_path, "--output_dir", str(tmp_path / "trained")), bits=16, log=lambda *_: None)


def test_a_test_stage_on_rank_1_uses_its_own_gpu_and_rank_0s_folder_and_writes_nothing(tmp_path, monkeypatch):
    state = solver_state(_solver(tmp_path))
    # rank 1 of 2 as torchrun starts it on a machine with 2 GPUs (mocked), asked for --device cuda:0
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    rank_0_folder = tmp_path / "rank0_folder"

    def from_rank_0(box, src=0):
        box[0] = str(rank_0_folder)
    monkeypatch.setattr(dist, "broadcast_object_list", from_rank_0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices, rebuild = [], evaluate.rebuild_model

    def rebuild_on_cpu(state, cfg, source, device, log):
        devices.append(device)
        return rebuild(state, cfg, source, "cpu", log)
    monkeypatch.setattr(evaluate, "rebuild_model", rebuild_on_cpu)
    monkeypatch.setattr(evaluate, "score_model", lambda *args, **kwargs: {"i2t_map": 0.5})   # rank 0's, broadcast
    monkeypatch.chdir(tmp_path)                      # where a folder of its own (runs/...) would appear
    cfg = _cfg(tmp_path, "--task", "test_hash", "--device", "cuda:0")
    results = evaluate.score_checkpoint(cfg, 16, state=state, data=load_dataset("small", str(tmp_path / "data")),
                                        log=lambda *_: None)
    assert devices == [torch.device("cuda", 1)]
    assert results["output_dir"] == str(rank_0_folder)
    assert not rank_0_folder.exists() and not (tmp_path / "runs").exists()


def test_after_a_resume_each_rank_draws_its_own_masks_from_every_generator(tmp_path, monkeypatch):
    """The dropout masks come from the CPU generator or, on GPUs, from the CUDA one: a resumed rank
    other than 0 must leave rank 0's saved state in both. A CPU generator stands in for CUDA's."""
    solver = _solver(tmp_path)
    cuda = torch.Generator().manual_seed(123)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: cuda.get_state())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda new, device=None: cuda.set_state(new))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: cuda.manual_seed(seed))
    solver.device = torch.device("cuda", 0)
    state = solver_state(solver)
    assert torch.equal(state["rng_cuda"], cuda.get_state())
    drawn = {}
    for rank in (0, 1):
        solver.ranks = Ranks(rank, 2, rank)
        load_solver_state(solver, {**state, "epoch": 1})
        drawn[rank] = (torch.rand(8), torch.rand(8, generator=cuda))
    assert torch.equal(drawn[0][1], torch.rand(8, generator=torch.Generator().set_state(state["rng_cuda"])))
    assert not torch.equal(drawn[0][0], drawn[1][0])     # the CPU generator: rank 1 re-seeded
    assert not torch.equal(drawn[0][1], drawn[1][1])     # the CUDA generator too
