"""Write a megatron-core dist checkpoint (torch_dist) group by group, in one process, never holding the model.

The importer knows the model's sharded state dict (from a model built on the meta device: names, keys,
offsets, megatron-core's factories, all without memory) and can produce its tensors a few at a time (one
layer, one embedding). :class:`StreamingSaveStrategy` is the sharded strategy that
``megatron.core.dist_checkpointing.save`` runs: it treats each :class:`TensorGroup` as if it were one rank of
a distributed save -- a local plan per group from the meta tensors, one global plan and ``.metadata`` from
all of them, as megatron-core's coordinator makes them -- and then writes group ``k``'s shard file
``__k_0.distcp`` with megatron-core's own writer, calling the group's ``load`` only then and dropping its
tensors before the next. The result is the files a distributed save writes (``.metadata``,
``__N_M.distcp``, ``metadata.json``), loadable at any layout like any other of our checkpoints.

Peak memory is the largest group (plus what megatron-core's writer copies of it), not the model. The
importer hands the strategy to ``checkpoint.save_weights``, which builds the sharded state dict of a save,
runs ``dist_checkpointing.save`` with it and publishes the checkpoint as every save is published.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

import torch
from megatron.core.dist_checkpointing.dict_utils import nested_values
from megatron.core.dist_checkpointing.mapping import ShardedObject, apply_factories, is_main_replica
from megatron.core.dist_checkpointing.strategies.filesystem_async import FileSystemWriterAsync
from megatron.core.dist_checkpointing.strategies.torch import (
    MCoreSavePlanner,
    TorchDistSaveShardedStrategy,
    mcore_to_pyt_state_dict,
)
from torch.distributed.checkpoint.filesystem import _StoragePrefix

from megatron_biomed.convert.registry import ConversionError

log = logging.getLogger(__name__)


@dataclass
class TensorGroup:
    """Some of the model's tensors, by our (TP = PP = 1) state-dict names, and how to make them."""

    names: list[str]
    load: Callable[[], dict[str, torch.Tensor]]


def _ident(item) -> tuple:
    """What tells one shard of a checkpoint from another: its key and where it sits in the global tensor."""
    if isinstance(item, ShardedObject):
        return (item.unique_key,)
    return (item.key, tuple(item.global_offset))


def _by_key(items: list) -> dict[str, list]:
    """megatron-core's save-time grouping (strategies/torch.py ``_replace_state_dict_keys_with_sharded_keys``):
    main replicas only, by checkpoint key."""
    out: dict[str, list] = {}
    for item in items:
        if is_main_replica(item.replica_id):
            out.setdefault(item.unique_key if isinstance(item, ShardedObject) else item.key, []).append(item)
    return out


class StreamingSaveStrategy(TorchDistSaveShardedStrategy):
    """Saves the model's tensors group by group (see the module docstring).

    ``template``: the model's sharded state dict (``model.sharded_state_dict()``, flat by our names) built on
    the meta device; ``groups`` cover every tensor of it exactly once. Everything else that
    ``dist_checkpointing.save`` hands over (the RNG state, the common state: small objects, not tensors)
    goes into the first file."""

    def __init__(self, template: dict, groups: list[TensorGroup]) -> None:
        super().__init__("torch_dist", 1, keep_only_main_replica=True, thread_count=1)
        self.template = template
        self.groups = groups

    def _items(self, group: TensorGroup, tensors: dict[str, torch.Tensor] | None) -> list:
        """Group ``group``'s shards after megatron-core's factories (e.g. SwiGLU's fc1 as gate and up), with
        ``tensors`` as their data (None: the meta template's)."""
        sd = {}
        for name in group.names:
            sharded = self.template[name]
            if tensors is not None:
                value = tensors[name]
                if tuple(value.shape) != tuple(sharded.data.shape) or value.dtype != sharded.data.dtype:
                    raise ConversionError(
                        f"{name}: converted {tuple(value.shape)} {value.dtype} != the model's "
                        f"{tuple(sharded.data.shape)} {sharded.data.dtype}"
                    )
                sharded = dataclasses.replace(sharded, data=value)
            sd[name] = sharded
        apply_factories(sd)
        return list(nested_values(sd))

    def save(self, sharded_state_dict, checkpoint_dir) -> None:
        group_of = {_ident(item): k for k, g in enumerate(self.groups, 1) for item in self._items(g, None)}
        received = list(nested_values(sharded_state_dict))
        stray = [item.key for item in received if _ident(item) not in group_of and not isinstance(item, ShardedObject)]
        if stray:
            raise ConversionError(f"model tensors no conversion group writes: {sorted(set(stray))[:8]}")
        missing = set(group_of) - {_ident(item) for item in received}
        if missing:
            raise ConversionError(f"conversion groups write shards the model does not have: {sorted(missing)[:8]}")

        # Plan the whole save at once, as megatron-core does in one process (tensors on the meta device cost
        # nothing), then split its write items into one local plan per group -- what each rank of a
        # distributed save would have planned -- so the global metadata is the one of a single save.
        pyt = mcore_to_pyt_state_dict(_by_key(received), False)
        planner = _GroupPlanner()
        planner.set_up_planner(pyt, is_coordinator=True)
        whole = planner.create_local_plan()
        parts: list[list] = [[] for _ in range(len(self.groups) + 1)]  # 0: the objects ("rank 0")
        for item in whole.items:
            offset = item.index.offset
            parts[group_of.get((item.index.fqn, tuple(offset)), 0) if offset is not None else 0].append(item)
        writer = FileSystemWriterAsync(str(checkpoint_dir), thread_count=1)
        writer.set_up_storage_writer(True)
        plans = [writer.prepare_local_plan(dataclasses.replace(whole, items=items)) for items in parts]
        _, metadata = planner.create_global_plan(plans)
        metadata.all_local_plans = plans  # as megatron-core's decentralised planning records them

        results = []
        for k, plan in enumerate(plans):
            planner.real = {}
            if k:
                group = self.groups[k - 1]
                tensors = group.load()
                unset = sorted(set(group.names) - set(tensors))
                extra = sorted(set(tensors) - set(group.names))
                if unset or extra:
                    raise ConversionError(
                        f"conversion group {k} left model tensors unset {unset[:8]} / produced tensors the model "
                        f"does not have {extra[:8]}"
                    )
                for item in self._items(group, tensors):
                    planner.real[_ident(item)] = item.data.contiguous().view(
                        (1,) * item.prepend_axis_num + tuple(item.local_shape)
                    )
                del tensors
            central = planner.finish_plan(dataclasses.replace(plan, storage_data=_StoragePrefix(f"__{k}_")))
            group_writer = FileSystemWriterAsync(str(checkpoint_dir), thread_count=1)
            group_writer.prepare_write_data(central, planner)
            write, _, args = group_writer.get_save_function_and_args()
            if write is not None:
                write(*args)
            written = group_writer.retrieve_write_results()
            if not isinstance(written, list):  # torch's wrapped exception: (exception, traceback summary)
                raise ConversionError(f"writing {checkpoint_dir}/__{k}_0.distcp failed: {written[0]}") from written[0]
            results.append(written)
            del group_writer, central, args
        planner.real = {}
        writer.finish(metadata, results)
        log.info("wrote %s as %d shard files, one group at a time", checkpoint_dir, len(results))


class _GroupPlanner(MCoreSavePlanner):
    """megatron-core's save planner over the whole (meta) state dict, whose tensors come from ``real`` (the
    group being written, by key and offset) -- never the meta placeholders."""

    def __init__(self) -> None:
        super().__init__(dedup_replicated_tensors=False, flatten_state_dict=False, flatten_sharded_tensors=False)
        self.real: dict = {}

    def lookup_object(self, index):
        if index.offset is None:
            return super().lookup_object(index)
        key = (index.fqn, tuple(index.offset))
        if key not in self.real:
            raise ConversionError(f"shard {key} was planned in another group than the one being written")
        return self.real[key]
