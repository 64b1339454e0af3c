"""Measure what a built model really holds, to check the planner's memory terms against: bytes of parameters,
gradient buffers and optimizer states, and bytes of the activations saved for backward during one forward."""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field

import torch


class _Packed:
    """What autograd keeps for one saved tensor while our hooks are on; dropped when its graph is."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


@dataclass
class SavedBytes:
    """Activation bytes saved for backward while the context was open and still held when it closed (each
    storage counted once; the parameters' own storages, which autograd saves for the weight gradients,
    excluded). A graph freed inside the block (megatron-core runs bias-dropout-add under enable_grad even
    inside a recomputed layer, then drops that graph) leaves nothing here."""

    exclude: set = field(default_factory=set)
    storages: dict = field(default_factory=dict)  # data_ptr -> bytes, of storages saved and still held
    holders: dict = field(default_factory=dict)  # data_ptr -> number of live packed references
    refs: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


@contextlib.contextmanager
def saved_activation_bytes(model: torch.nn.Module | None = None):
    """Count the bytes of tensors autograd saves for backward inside this block and still holds at its end
    (``torch.autograd.graph.saved_tensors_hooks``). Storages of ``model``'s parameters are not counted."""
    record = SavedBytes()
    if model is not None:
        record.exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
        for b in model.buffers():
            record.exclude.add(b.untyped_storage().data_ptr())

    def released(ptr):
        def callback(_ref):
            record.holders[ptr] -= 1
            if record.holders[ptr] == 0:
                del record.holders[ptr]
                record.storages.pop(ptr, None)

        return callback

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        packed = _Packed(t)
        if ptr not in record.exclude and ptr != 0:
            record.storages[ptr] = max(record.storages.get(ptr, 0), storage.nbytes())
            record.holders[ptr] = record.holders.get(ptr, 0) + 1
            record.refs.append(weakref.ref(packed, released(ptr)))
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda packed: packed.tensor):
        yield record


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of every tensor in the (chained, distributed or plain) megatron-core optimizer's inner
    torch optimizers' states, plus fp32 main copies of half-precision parameters."""
    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    tensors = []
    for opt in inner:
        torch_opt = getattr(opt, "optimizer", opt)
        for state in torch_opt.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v) and v.numel() > 1]
        for group in getattr(opt, "shard_fp32_from_float16_groups", None) or []:
            tensors += list(group)
        for group in getattr(opt, "fp32_from_float16_groups", None) or []:
            tensors += list(group)
    return tensor_bytes(tensors)


def grad_buffer_bytes(ddp_chunks) -> int:
    """Bytes of the gradient buffers megatron-core's DDP allocated (padding included)."""
    total = 0
    for chunk in ddp_chunks:
        for buf in list(chunk.buffers) + list(getattr(chunk, "expert_parallel_buffers", [])):
            total += buf.grad_data.numel() * buf.grad_data.element_size()
    return total


def parameter_bytes(modules) -> int:
    """Bytes of the model parameters (each storage once)."""
    return tensor_bytes([p for mod in modules for p in mod.parameters()])
