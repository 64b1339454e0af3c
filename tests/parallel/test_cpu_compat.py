"""Each CPU workaround of megatron_biomed/parallel/cpu.py, checked against what megatron-core needs."""

from __future__ import annotations

import pytest
import torch

from megatron_biomed.parallel import cpu

pytestmark = pytest.mark.skipif(not cpu.cpu_mode(), reason="the CPU compatibility layer is only applied without a GPU")


def test_patches_are_listed_and_idempotent():
    first = cpu.apply_cpu_patches()
    assert cpu.apply_cpu_patches() == first
    assert len(first) == 4


def test_cuda_device_arguments_land_on_cpu():
    cpu.apply_cpu_patches()
    assert torch.zeros(3, device="cuda").device.type == "cpu"
    assert torch.tensor([1.0], device=torch.cuda.current_device()).device.type == "cpu"
    assert torch.ones(2).cuda().device.type == "cpu"
    assert torch.ones(2).to("cuda").device.type == "cpu"
    torch.cuda.synchronize()
    torch.cuda.current_stream().wait_event(None)


def test_tensor_type_answers_with_cuda_names():
    cpu.apply_cpu_patches()
    assert torch.ones(1).type() == "torch.cuda.FloatTensor"
    assert torch.ones(1, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
    # The conversion form of type() is untouched.
    assert torch.ones(1).type(torch.float64).dtype == torch.float64


def test_megatron_clip_grads_runs_on_cpu_and_clips():
    from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

    cpu.apply_cpu_patches()
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 3.0)
    clip_grad_by_total_norm_fp32([p], max_norm=1.0, total_norm=6.0)
    torch.testing.assert_close(p.grad, torch.full((4,), 3.0 / (6.0 + 1e-6)))


def test_rng_tracker_forks_cpu_generator(single_rank_parallel):
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    tracker = get_cuda_rng_tracker()
    assert type(tracker).__name__ == "CpuRNGStatesTracker"
    torch.manual_seed(0)
    outside_before = torch.get_rng_state()
    with tracker.fork():
        a = torch.rand(4)
    # Forking leaves the default generator where it was...
    assert torch.equal(torch.get_rng_state(), outside_before)
    with tracker.fork():
        b = torch.rand(4)
    # ...and the tracked stream goes on where it stopped.
    assert not torch.equal(a, b)
    states = tracker.get_states()
    with tracker.fork():
        c = torch.rand(4)
    tracker.set_states(states)
    with tracker.fork():
        assert torch.equal(torch.rand(4), c)


def test_seeding_is_reproducible(single_rank_parallel):
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    cpu.model_parallel_manual_seed(7)
    with get_cuda_rng_tracker().fork():
        a = torch.rand(3)
    cpu.model_parallel_manual_seed(7)
    with get_cuda_rng_tracker().fork():
        b = torch.rand(3)
    assert torch.equal(a, b)


def test_untie_adam_step_tensors():
    params = [torch.nn.Parameter(torch.ones(2)) for _ in range(3)]
    opt = torch.optim.AdamW(params, lr=0.1)
    shared = torch.tensor(5.0)
    for p in params:
        opt.state[p] = {"step": shared, "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}

    class Wrapper:  # megatron optimizers keep the PyTorch one as .optimizer
        optimizer = opt

    assert cpu.untie_adam_step_tensors(Wrapper()) == 2
    for p in params:
        p.grad = torch.ones(2)
    opt.step()
    # With a shared tensor every parameter would have advanced it: 5 -> 8.
    assert [float(opt.state[p]["step"]) for p in params] == [6.0, 6.0, 6.0]


def test_distributed_optimizer_restore_skips_missing_step():
    """distrib_optimizer restores param + moments but not "step"; unpatched, that is a KeyError."""
    from types import SimpleNamespace

    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    cpu.apply_cpu_patches()
    model_param = torch.nn.Parameter(torch.zeros(3))
    main_param = torch.nn.Parameter(torch.zeros(3))
    inner = torch.optim.AdamW([main_param])
    inner.state[main_param] = {"step": torch.tensor(4.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}
    fake = SimpleNamespace(
        model_param_group_index_map={model_param: (0, 0)},
        optimizer=inner,
        config=SimpleNamespace(use_precision_aware_optimizer_no_fp8_or_ds_fp8=False),
    )
    src = {"param": torch.ones(3), "exp_avg": torch.full((3,), 2.0), "exp_avg_sq": torch.full((3,), 3.0)}
    patched = DistributedOptimizer._set_main_param_and_optimizer_states
    with pytest.raises(KeyError, match="step"), torch.no_grad():
        patched.__wrapped__(fake, model_param, dict(src))
    with torch.no_grad():  # megatron calls it under no_grad
        patched(fake, model_param, dict(src))
    assert torch.equal(main_param.detach(), torch.ones(3))
    assert torch.equal(inner.state[main_param]["exp_avg_sq"], torch.full((3,), 3.0))
    assert float(inner.state[main_param]["step"]) == 4.0
