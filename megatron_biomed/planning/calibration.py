"""Published training runs the planner is held against, and the fit of its compute-efficiency parameters.

Which points set the parameters and which only check them (never fitted on all):

- Hopper (``EFFICIENCY["hopper"]``, ``WIDTH_HALF``): fitted on Megatron-LM's weak-scaling 1.7B, 16B and 70B
  points; checked on 7.1B, 32B, 177B and 462B.
- Ampere (``EFFICIENCY["ampere"]``, with Hopper's ``WIDTH_HALF``): fitted on LLaMA-2 7B's GPU hours; checked
  on LLaMA-2 13B, 34B and 70B, and against BioMedLM's 6.25 days.

Sources (../shared/notes/planning-at-scale.md): Megatron-LM README weak-scaling table (H100, seq 4096, vocab
131,072, --overlap-grad-reduce --overlap-param-gather --tp-comm-overlap); LLaMA-2 paper Table 2 (A100-80GB,
2T tokens, batch 4M tokens); BioMedLM paper (128 A100-40GB, 300B tokens, batch 1024 x 1024, MosaicML Composer
with FSDP, not Megatron).

Assumptions where the sources are silent, stated once here: the Megatron-LM model shapes other than 70B
(84 layers, hidden 8192) and 177B (GPT-3's) are reconstructed from the parameter count with untied
embeddings; their global batch is 1,152 sequences with micro-batch 1 (DP = 48 in every row, 24
micro-batches) and interleaving where PP > 2 (177B: VPP 4; 462B: VPP 7); LLaMA-2 ran on 2,048 GPUs
(256 nodes, 200 Gb/s per GPU between nodes) with the planner's best layout. BioMedLM's published days
come from FSDP at about 22% MFU; the planner predicts a Megatron layout, so that point is checked as a
bound (faster than published, by at most 3x), not as an equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.presets import BIOMEDLM_TOKENS, biomedlm_2_7b
from megatron_biomed.planning.hardware import Cluster, get_gpu
from megatron_biomed.planning.layouts import Layout
from megatron_biomed.planning.search import evaluate, search


def _gpt(layers: int, hidden: int, heads: int) -> ModelConfig:
    return ModelConfig(
        family="gpt2", num_layers=layers, hidden_size=hidden, num_attention_heads=heads, seq_length=4096,
        vocab_size=131072, position_embedding_type="rope", normalization="LayerNorm", activation="gelu",
        add_bias_linear=False, tie_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0, kernels="te",
    )  # fmt: skip


def _llama(layers: int, hidden: int, heads: int, kv: int | None, ffn: int) -> ModelConfig:
    return ModelConfig(
        family="llama", num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_query_groups=kv,
        ffn_hidden_size=ffn, seq_length=4096, vocab_size=32000, position_embedding_type="rope",
        normalization="RMSNorm", activation="swiglu", add_bias_linear=False, tie_embeddings=False,
        hidden_dropout=0.0, attention_dropout=0.0, kernels="te",
    )  # fmt: skip


@dataclass(frozen=True)
class PublishedPoint:
    """One published run: what ran, and the published figure (``metric``: "mfu", "gpu_hours" or "days")."""

    name: str
    model: ModelConfig
    gpu: str
    gpus: int
    global_batch_size: int
    tokens: float
    metric: str
    published: float
    role: str  # "fit" or "check"
    layout: Optional[Layout] = None  # None: the planner's best layout on this cluster
    tp_comm_overlap: bool = False
    tolerance: float = 0.0  # relative; for "bound" points the allowed range is in ``bounds``
    bounds: tuple = field(default=())
    source: str = ""


def _megatron(name, model, tp, pp, gpus, mfu, role, vpp=None) -> PublishedPoint:
    dp = gpus // (tp * pp)
    return PublishedPoint(
        name=f"Megatron-LM {name}", model=model, gpu="H100-80GB", gpus=gpus, global_batch_size=1152,
        tokens=0, metric="mfu", published=mfu, role=role,
        layout=Layout(tp=tp, pp=pp, dp=dp, vpp=vpp, micro_batch_size=1, recompute="none",
                      distributed_optimizer=True, sequence_parallel=tp > 1),
        tp_comm_overlap=True, tolerance=0.15, source="Megatron-LM README weak scaling (H100)",
    )  # fmt: skip


def _llama2(name, model, hours, role) -> PublishedPoint:
    return PublishedPoint(
        name=f"LLaMA-2 {name}", model=model, gpu="A100-80GB", gpus=2048, global_batch_size=1024, tokens=2e12,
        metric="gpu_hours", published=hours, role=role, tolerance=0.25, source="LLaMA-2 paper, Table 2",
    )  # fmt: skip


PUBLISHED: list[PublishedPoint] = [
    _megatron("1.7B", _gpt(24, 2048, 16), 1, 1, 48, 0.41, "fit"),
    _megatron("7.1B", _gpt(30, 4096, 32), 2, 1, 96, 0.47, "check"),
    _megatron("16B", _gpt(32, 6144, 48), 4, 1, 192, 0.49, "fit"),
    _megatron("32B", _gpt(36, 8192, 64), 8, 1, 384, 0.46, "check"),
    _megatron("70B", _gpt(84, 8192, 64), 8, 2, 768, 0.42, "fit"),
    _megatron("177B", _gpt(96, 12288, 96), 8, 6, 2304, 0.44, "check", vpp=4),
    _megatron("462B", _gpt(112, 18432, 144), 8, 16, 6144, 0.47, "check", vpp=7),
    _llama2("7B", _llama(32, 4096, 32, None, 11008), 184_320, "fit"),
    _llama2("13B", _llama(40, 5120, 40, None, 13824), 368_640, "check"),
    _llama2("34B", _llama(48, 8192, 64, 8, 22016), 1_038_336, "check"),
    _llama2("70B", _llama(80, 8192, 64, 8, 28672), 1_720_320, "check"),
]


def _biomedlm() -> PublishedPoint:
    return PublishedPoint(
        name="BioMedLM 2.7B", model=biomedlm_2_7b().model, gpu="A100-40GB", gpus=128, global_batch_size=1024,
        tokens=BIOMEDLM_TOKENS, metric="days", published=6.25, role="check", bounds=(1 / 3, 1.0),
        source="BioMedLM paper (Composer FSDP)",
    )  # fmt: skip


PUBLISHED.append(_biomedlm())


def _experiment(point: PublishedPoint) -> ExperimentConfig:
    cfg = ExperimentConfig(name=point.name, model=replace(point.model))
    cfg.train.global_batch_size = point.global_batch_size
    cfg.train.precision = "bf16"
    cfg.train.train_iters = max(1, round(point.tokens / (point.global_batch_size * point.model.seq_length)))
    return cfg


def predict(point: PublishedPoint, efficiency: dict | None = None, width_half: float | None = None):
    """(predicted value in the point's metric, the Plan it came from)."""
    cfg = _experiment(point)
    cluster = Cluster(get_gpu(point.gpu), nodes=point.gpus // 8)
    kw = dict(efficiency=efficiency, width_half=width_half, tp_comm_overlap=point.tp_comm_overlap)
    tokens = point.tokens or cfg.train.global_batch_size * cfg.model.seq_length
    if point.layout is not None:
        plan = evaluate(cfg, point.layout, cluster, tokens, **kw)
    else:
        plans = search(cfg, cluster, tokens, **kw)
        plan = plans[0]
    if point.metric == "mfu":
        return plan.time.mfu, plan
    if point.metric == "gpu_hours":
        return plan.days * 24 * point.gpus, plan
    return plan.days, plan


def relative_error(point: PublishedPoint, predicted: float) -> float:
    return predicted / point.published - 1


def fit_efficiency(points: list[PublishedPoint] | None = None) -> tuple[dict, float]:
    """Fit (``EFFICIENCY``, ``WIDTH_HALF``) on the points marked "fit": Hopper's two by least squares of the
    relative MFU error over a grid, then Ampere's maximum efficiency with that width."""
    points = [p for p in (points or PUBLISHED) if p.role == "fit"]
    hopper = [p for p in points if get_gpu(p.gpu).arch == "hopper"]
    ampere = [p for p in points if get_gpu(p.gpu).arch == "ampere"]

    def loss(pts, eff, w0):
        return sum(relative_error(p, predict(p, eff, w0)[0]) ** 2 for p in pts)

    best = None
    for w0 in range(0, 1001, 20):
        for e100 in range(40, 96):
            eff = {"hopper": e100 / 100, "ampere": 0.6}
            val = loss(hopper, eff, float(w0))
            if best is None or val < best[0]:
                best = (val, e100 / 100, float(w0))
    _, e_hopper, w0 = best
    best_a = None
    for e100 in range(30, 96):
        eff = {"hopper": e_hopper, "ampere": e100 / 100}
        val = loss(ampere, eff, w0)
        if best_a is None or val < best_a[0]:
            best_a = (val, e100 / 100)
    return {"hopper": e_hopper, "ampere": best_a[1]}, w0


def report(efficiency: dict | None = None, width_half: float | None = None) -> list[dict]:
    """Predicted vs published for every point (rows for the README, the benchmark and the test)."""
    rows = []
    for p in PUBLISHED:
        value, plan = predict(p, efficiency, width_half)
        rows.append({"point": p, "predicted": value, "error": relative_error(p, value), "plan": plan})
    return rows


def format_report(rows: list[dict]) -> str:
    unit = {"mfu": lambda v: f"{100 * v:.1f}% MFU", "gpu_hours": lambda v: f"{v:,.0f} GPU-h",
            "days": lambda v: f"{v:.2f} days"}  # fmt: skip
    lines = [f"{'point':22s} {'role':5s} {'published':>16s} {'predicted':>16s} {'error':>7s}  layout"]
    for r in rows:
        p = r["point"]
        fmt = unit[p.metric]
        lines.append(
            f"{p.name:22s} {p.role:5s} {fmt(p.published):>16s} {fmt(r['predicted']):>16s} "
            f"{100 * r['error']:+6.1f}%  {r['plan'].layout.describe()}"
        )
    return "\n".join(lines)
