"""SFT: the loss sees response tokens only, and packing changes nothing."""

from __future__ import annotations

import dataclasses

import torch
from inprocess import build, loss_of, task_config

from megatron_biomed.data.gpt_dataset import collate
from megatron_biomed.models import registry
from megatron_biomed.models.gpt.family import GPTFamily
from megatron_biomed.models.registry import SegmentIsolation, register_family
from megatron_biomed.training.tasks import build_task


def _grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _loss_and_grads(task, model, batch):
    model.zero_grad()
    total, n, _ = loss_of(task, model, batch)
    total.backward()
    return total.detach(), int(n), _grads(model)


def test_masked_labels_change_nothing_response_labels_do(toy, single_rank_parallel):
    task, model = build(task_config(toy, "sft"))
    train, _ = task.build_datasets((8, 0))
    sample = train.samples[0]
    batch = collate([sample])
    mask = sample["loss_mask"]
    prompt_pos = int(torch.nonzero(mask == 0)[0])  # a prompt token's label
    response_pos = int(torch.nonzero(mask == 1)[0])
    base_loss, base_n, base_grads = _loss_and_grads(task, model, batch)
    assert base_n == int(mask.sum()) > 0

    changed = {k: v.clone() for k, v in batch.items()}
    changed["labels"][0, prompt_pos] = (changed["labels"][0, prompt_pos] + 7) % 400
    loss, n, grads = _loss_and_grads(task, model, changed)
    assert torch.equal(loss, base_loss) and n == base_n
    assert all(torch.equal(grads[k], base_grads[k]) for k in base_grads)

    changed = {k: v.clone() for k, v in batch.items()}
    changed["labels"][0, response_pos] = (changed["labels"][0, response_pos] + 7) % 400
    loss, _, grads = _loss_and_grads(task, model, changed)
    assert not torch.equal(loss, base_loss)
    assert any(not torch.equal(grads[k], base_grads[k]) for k in base_grads)


def test_packed_equals_each_document_alone(toy, single_rank_parallel):
    packed_task, model = build(task_config(toy, "sft", "task.pack=true", "task.max_seq_length=64"))
    alone_task = build(task_config(toy, "sft", "task.pack=false", "task.max_seq_length=64"))[0]
    packed = packed_task.build_datasets((8, 0))[0].samples
    alone = alone_task.build_datasets((8, 0))[0].samples
    first = packed[0]
    docs = int(first["doc_ids"].max()) + 1
    assert docs >= 2, "the toy examples should pack several to a sequence"
    with torch.no_grad():
        packed_sum, packed_n, report = loss_of(packed_task, model, collate([first]))
        sums = [loss_of(alone_task, model, collate([alone[d]]))[:2] for d in range(docs)]
    alone_sum = sum(float(s) for s, _ in sums)
    alone_n = sum(int(n) for _, n in sums)
    assert int(packed_n) == alone_n
    # Token-weighted: the packed sequence's per-token loss is the tokens' mean over the documents alone.
    assert abs(float(packed_sum) - alone_sum) <= 1e-5 * abs(alone_sum)
    num, den = report["lm loss"].tolist()
    assert abs(num / den - alone_sum / alone_n) <= 1e-5 * (alone_sum / alone_n)
    # The position ids restart at each document and documents do not see each other.
    starts = torch.nonzero(first["position_ids"][: first["loss_mask"].numel()] == 0).view(-1)
    assert len(starts) >= docs


@dataclasses.dataclass(frozen=True)
class _Unisolated(GPTFamily):
    """A family whose model cannot keep packed segments apart."""

    def segment_isolation(self, cfg) -> SegmentIsolation:
        return SegmentIsolation.NONE


def test_packing_asks_the_model_family(toy):
    """task.pack=true packs only for a family that keeps documents apart; otherwise one example per sequence."""
    sets = ("task.pack=true", "task.max_seq_length=64")
    packed = build_task(task_config(toy, "sft", *sets), None)
    assert packed.packs and max(int(s["doc_ids"].max()) for s in packed.build_datasets((8, 0))[0].samples) >= 1
    with registry.FAMILIES.scoped():
        register_family("unisolated", _Unisolated("unisolated"))
        task = build_task(task_config(toy, "sft", *sets, "model.family=unisolated"), None)
        samples = task.build_datasets((8, 0))[0].samples
        assert not task.packs and "one per sequence" in task.describe()
    assert len(samples) == len(task.train_items) and all(int(s["doc_ids"].max()) == 0 for s in samples)
