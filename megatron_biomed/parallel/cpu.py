"""Everything megatron-core 0.19.2 needs to run on a machine without a GPU (torch.distributed + gloo).

megatron-core assumes CUDA in a few dozen places. Each workaround below is applied only when
``torch.cuda.is_available()`` is False, says why it exists (with the megatron-core file:line it
answers, measured on 0.19.2: re-check at every upgrade), and has a test in tests/parallel/test_cpu_compat.py
that fails if it stops working. Nothing else in the project patches megatron-core.

Two silent wrong-result traps have configuration answers rather than patches, enforced in
megatron_biomed/parallel/layout.py: virtual pipeline parallelism needs ``batch_p2p_comm=False`` on gloo,
and distributed-optimizer checkpoints must use the ``fully_reshardable`` format.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from megatron.core import parallel_state as ps
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from megatron.core.tensor_parallel import random as mc_random
from torch.overrides import TorchFunctionMode

_APPLIED: list[str] = []


def cpu_mode() -> bool:
    """True when megatron-core must run on CPU."""
    return not torch.cuda.is_available()


# --- 1. device="cuda" literals and torch.cuda.current_device() --------------------------------------
# megatron-core creates small bookkeeping tensors directly on CUDA, e.g. total_num_tokens in
# pipeline_parallel/schedules.py:749 and :2292, norms in optimizer/clip_grads.py:108/112/180,
# optimizer.py:315/1249 and utils.py:1332, and ~111 sites use torch.cuda.current_device() as a device.
# Rather than patch every site, factory calls and .to()/.cuda() that name a CUDA device are sent to CPU.


def _is_cuda_device(dev: Any) -> bool:
    if isinstance(dev, torch.device):
        return dev.type == "cuda"
    if isinstance(dev, str):
        return dev.startswith("cuda")
    return isinstance(dev, int) and not isinstance(dev, bool)


# Type strings: optimizer/distrib_optimizer.py:401/466/758, optimizer.py:1009/1028 and
# clip_grads.py:174 sort parameters by ``param.type()`` and accept only 'torch.cuda.*Tensor'; a CPU
# tensor's ``type()`` (the query form, no arguments) answers with the CUDA name of the same dtype.


class CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments to CPU and answers ``Tensor.type()`` with the CUDA type name."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1) if not name.startswith("torch.cuda.") else name
        dev = kwargs.get("device")
        if dev is not None and _is_cuda_device(dev):
            kwargs = dict(kwargs, device="cpu")
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


class _NullStream:
    """Stands in for torch.cuda.Stream: ordering is trivial on CPU."""

    def wait_event(self, event):
        pass

    def wait_stream(self, stream):
        pass

    def synchronize(self):
        pass

    def record_event(self, event=None):
        return event


def _patch_torch_cuda() -> None:
    # torch.cuda.current_device() raises "Found no NVIDIA driver" (e.g. rotary_pos_embedding.py:162,
    # and wherever megatron places tensors); the CPU device object works in every factory call.
    torch.cuda.current_device = lambda: torch.device("cpu")
    # distributed/param_and_grad_buffer.py:632 takes torch.cuda.current_stream() before grad reduction;
    # p2p_communication.py:419 calls torch.cuda.synchronize() after batched isend/irecv.
    torch.cuda.current_stream = lambda device=None: _NullStream()
    torch.cuda.synchronize = lambda device=None: None


# --- 2. RNG tracker ------------------------------------------------------------------------------------
# tensor_parallel/random.py:303 (CudaRNGStatesTracker.add) calls torch.cuda.get_rng_state(), and
# model_parallel_cuda_manual_seed (:490) seeds CUDA. On CPU every random op (dropout, init) uses the
# CPU generator, so the tracker keeps CPU generator states and forks by swapping them.


def _cpu_tracker_class():
    class CpuRNGStatesTracker(mc_random.CudaRNGStatesTracker):
        """CudaRNGStatesTracker with CPU generator states (same names, same checkpoint format)."""

        def add(self, name, seed):
            self._is_initialized = True
            if seed in self.seeds_:
                raise Exception(f"seed {seed} already exists")
            self.seeds_.add(seed)
            if name in self.states_:
                raise Exception(f"rng state {name} already exists")
            orig = torch.get_rng_state()
            torch.manual_seed(seed)
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(orig)

        @contextlib.contextmanager
        def fork(self, name=mc_random._MODEL_PARALLEL_RNG_TRACKER_NAME):
            if name not in self.states_:
                raise Exception(f"rng state {name} is not added")
            orig = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(orig)

    return CpuRNGStatesTracker


def _install_cpu_rng_tracker() -> None:
    cls = _cpu_tracker_class()
    original = mc_random.initialize_rng_tracker

    @functools.wraps(original)
    def initialize_rng_tracker(
        use_te_rng_tracker=False, inference_rng_tracker=False, use_cudagraphable_rng=False, force_reset=False
    ):
        if mc_random._CUDA_RNG_STATE_TRACKER_INITIALIZED and not force_reset:
            return
        mc_random._CUDA_RNG_STATE_TRACKER = cls()
        mc_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True

    mc_random.initialize_rng_tracker = initialize_rng_tracker
    mc_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = False
    # Activation recomputation (CheckpointFunction, random.py:604 and :638 via _get_all_rng_states /
    # _set_all_rng_states) saves and restores "the CUDA generator" with torch.cuda.random.get_rng_state
    # (random.py:118) and a lazy CUDA callback (:135). On CPU that generator is the CPU one, already saved
    # beside it: the replacements read and write the CPU state, so recomputed dropout masks match.
    mc_random._get_cuda_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    mc_random._set_cuda_rng_state = lambda new_state, *args, **kwargs: torch.set_rng_state(new_state)


def model_parallel_manual_seed(seed: int) -> None:
    """Seed the CPU generator and the tracker's states the way megatron-core's CUDA version does
    (data-parallel state = seed, model-parallel state = seed + 2718 + TP rank, expert state)."""
    if not cpu_mode():
        mc_random.model_parallel_cuda_manual_seed(seed)
        return
    tracker = mc_random.get_cuda_rng_tracker()
    tracker.reset()
    torch.manual_seed(seed)
    tp_rank = ps.get_tensor_model_parallel_rank()
    tracker.add(mc_random._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    tracker.add(mc_random._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    ep_rank = ps.get_expert_model_parallel_rank()
    etp_rank = ps.get_expert_tensor_parallel_rank()
    tracker.add(mc_random._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024 + 100 * ep_rank + etp_rank)


# --- 3. Adam state after a distributed-optimizer reload (applies with PyTorch's AdamW) ----------------
# optimizer/distrib_optimizer.py:1026-1030 gives every parameter's state the SAME `step` tensor; PyTorch
# AdamW increments it once per parameter (3 -> 55 after one step) and the resumed loss drifts.


def untie_adam_step_tensors(optimizer) -> int:
    """Give each Adam state its own `step` tensor. Returns how many were untied."""
    untied = 0
    for inner in _inner_torch_optimizers(optimizer):
        seen = set()
        for state in inner.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                if id(step) in seen:
                    state["step"] = step.clone()
                    untied += 1
                seen.add(id(state["step"]))
    return untied


def init_empty_adam_states(optimizer) -> None:
    """Fresh PyTorch Adam states (step 0, zero moments) so a distributed optimizer can build the state
    dict it loads into (without Apex/TE the states are empty until the first step, and
    distrib_optimizer.py:839 / :1223 then fail with KeyError 'step')."""
    for inner in _inner_torch_optimizers(optimizer):
        for group in inner.param_groups:
            for p in group["params"]:
                st = inner.state[p]
                if "exp_avg" not in st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def patch_distrib_optimizer_step_restore() -> None:
    """distrib_optimizer.py:2385 drops Adam's "step" from the tensors it restores (torch Adam keeps step
    apart), then :1221 copies every tensor state of the live optimizer, "step" included, and raises
    KeyError 'step'. Marking "step" as absent lets the copy skip it; the step itself is restored by
    load_state_dict (:1026) and untied by untie_adam_step_tensors. Not CPU-specific: it applies wherever
    megatron-core falls back to PyTorch's Adam (no TE/Apex), so build_optimizer applies it then too."""
    original = DistributedOptimizer._set_main_param_and_optimizer_states
    if getattr(original, "_megatron_biomed_patched", False):
        return

    @functools.wraps(original)
    def set_states(self, model_param, tensors):
        if "step" not in tensors:
            tensors = dict(tensors, step=None)
        return original(self, model_param, tensors)

    set_states._megatron_biomed_patched = True
    DistributedOptimizer._set_main_param_and_optimizer_states = set_states


def _inner_torch_optimizers(optimizer):
    chained = getattr(optimizer, "chained_optimizers", None)
    parts = chained if chained is not None else [optimizer]
    for part in parts:
        inner = getattr(part, "optimizer", None)
        if isinstance(inner, torch.optim.Optimizer):
            yield inner


# --- apply --------------------------------------------------------------------------------------------

_MODE: CudaToCpuMode | None = None


def apply_cpu_patches() -> list[str]:
    """Apply every CPU workaround once (no-op with a GPU). Returns the names of those applied."""
    global _MODE
    if not cpu_mode() or _APPLIED:
        return list(_APPLIED)
    _patch_torch_cuda()
    _APPLIED.append("torch.cuda current_device/current_stream/synchronize")
    _MODE = CudaToCpuMode()
    _MODE.__enter__()
    _APPLIED.append("cuda device arguments -> cpu, Tensor.type() -> cuda names")
    _install_cpu_rng_tracker()
    _APPLIED.append("cpu rng tracker")
    patch_distrib_optimizer_step_restore()
    _APPLIED.append("distributed optimizer reload with PyTorch Adam")
    return list(_APPLIED)
