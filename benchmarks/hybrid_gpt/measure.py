"""Prints the measurement table of issue 16's GPTModel -> HybridModel prototype (CPU, fp32, one process).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hybrid_gpt/measure.py
    (add --quick to skip the larger shapes and timing repeats)

Every comparison builds today's model (models/registry.py build_model_chunks: GPTModel) and the prototype
(hybrid_gpt.py beside this file: HybridModel) and loads the GPTModel's state dict into the HybridModel (the same names
in the GPT layout; HybridStack's own layout by gpt_to_hybrid_name), so both compute with the same weights.
Gradients are paired by parameter (module) name through gpt_to_hybrid_name.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid_gpt import (  # noqa: E402
    build_hybrid_gpt_chunks,
    copy_gpt_weights,
    gpt_to_hybrid_name,
)

from megatron_biomed.config import get_preset  # noqa: E402
from megatron_biomed.models.registry import build_model_chunks  # noqa: E402
from megatron_biomed.parallel import cpu  # noqa: E402
from megatron_biomed.parallel.initialize import single_process_config  # noqa: E402

ROWS: list[tuple] = []


def row(section: str, case: str, what: str, value) -> None:
    ROWS.append((section, case, what, value))
    print(f"  {section:<12} {case:<28} {what:<44} {value}", flush=True)


def shape(name: str, **model) -> object:
    """A preset with model fields replaced (the larger shapes)."""
    cfg = get_preset(name)
    cfg.model = dataclasses.replace(cfg.model, **model)
    cfg.name = f"{name}*"
    return cfg


def bf16(cfg):
    cfg.train = dataclasses.replace(cfg.train, precision="bf16")
    return cfg


def cases(quick: bool) -> dict:
    out = {
        "tiny-biomedlm": get_preset("tiny-biomedlm"),
        "tiny-llama": get_preset("tiny-llama"),
        "tiny-biomedlm kernels=emu": shape("tiny-biomedlm", kernels="emu"),
        "tiny-llama kernels=emu": shape("tiny-llama", kernels="emu"),
        "tiny-biomedlm bf16 csrc": bf16(shape("tiny-biomedlm", kernels="csrc")),
        "tiny-llama bf16 csrc": bf16(shape("tiny-llama", kernels="csrc")),
        # head_dim 64: the emulated flash-attention path (head_dim 16 above takes the fused softmax)
        "tiny-llama emu head_dim=64": shape(
            "tiny-llama", kernels="emu", num_attention_heads=2, num_query_groups=1, hidden_size=128
        ),
    }
    if not quick:
        out["mid-biomedlm (512x8, s256)"] = shape(
            "tiny-biomedlm", hidden_size=512, num_layers=8, num_attention_heads=8, seq_length=256, vocab_size=8000
        )
        out["mid-llama (512x8, gqa 8/2, s256)"] = shape(
            "tiny-llama", hidden_size=512, num_layers=8, num_attention_heads=8, num_query_groups=2,
            ffn_hidden_size=1408, seq_length=256, vocab_size=8000,
        )  # fmt: skip
    return out


def pair(cfg, **hybrid_kwargs):
    """(GPTModel, HybridModel with the GPTModel's weights, the single-process config)."""
    one = single_process_config(cfg)
    cpu.model_parallel_manual_seed(1234)
    gpt = build_model_chunks(one)[0]
    hybrid = build_hybrid_gpt_chunks(one, **hybrid_kwargs)[0]
    unmatched = copy_gpt_weights(getattr(gpt, "module", gpt), getattr(hybrid, "module", hybrid))
    assert not unmatched, unmatched
    return gpt, hybrid, one


def batch(cfg, b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s, v = cfg.model.seq_length, cfg.model.vocab_size
    ids = torch.randint(0, v, (b, s), generator=g)
    labels = torch.randint(0, v, (b, s), generator=g)
    pos = torch.arange(s).expand(b, -1)
    return ids, pos, labels


def grads(model) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # Float16Module (bf16)
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def fwd_bwd(model, ids, pos, labels):
    model.zero_grad(set_to_none=True)
    loss = model(ids, pos, None, labels=labels)  # [b, s] per-token loss (over the real vocabulary)
    loss.mean().backward()
    return loss.detach()


def compare(section: str, name: str, cfg, **hybrid_kwargs) -> tuple:
    gpt, hybrid, one = pair(cfg, **hybrid_kwargs)
    ids, pos, labels = batch(one)
    with torch.no_grad():
        lg, lh = gpt(ids, pos, None), hybrid(ids, pos, None)
    row(
        section,
        name,
        "logits max abs diff (max abs logit)",
        f"{(lg - lh).abs().max().item():.3g} ({lg.abs().max().item():.3g})",
    )
    loss_g, loss_h = fwd_bwd(gpt, ids, pos, labels), fwd_bwd(hybrid, ids, pos, labels)
    row(section, name, "per-token loss max abs diff", f"{(loss_g - loss_h).abs().max().item():.3g}")
    gg, gh = grads(gpt), grads(hybrid)
    worst_abs, worst_rel, missing = 0.0, 0.0, []
    for n, g in gg.items():
        h = gh.get(gpt_to_hybrid_name(n))
        if h is None:
            missing.append(n)
            continue
        d = (g - h).abs().max().item()
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / max(g.abs().max().item(), 1e-30))
    row(section, name, f"grads: {len(gg)} params, max abs diff, max rel", f"{worst_abs:.3g}, {worst_rel:.3g}"
        + (f"  MISSING {missing}" if missing else ""))  # fmt: skip
    row(section, name, "core attention in HybridModel (paths taken)", core_attention(hybrid))
    return gpt, hybrid, one, (ids, pos, labels)


def core_attention(model) -> str:
    for mod in model.modules():
        if type(mod).__name__.endswith("DotProductAttention"):
            paths = sorted(getattr(mod, "_logged_paths", ()))
            kernels = getattr(mod, "kernels", "torch")
            return f"{type(mod).__name__}(kernels={kernels}) {paths or ''}".strip()
    return "?"


def timing(section: str, name: str, gpt, hybrid, data, repeats: int) -> None:
    ids, pos, labels = data
    for m in (gpt, hybrid):  # warm-up
        fwd_bwd(m, ids, pos, labels)
    times = {"GPTModel": [], "HybridModel": []}
    for _ in range(repeats):  # interleaved: the machine's load hits both alike
        for label, m in (("GPTModel", gpt), ("HybridModel", hybrid)):
            t = time.perf_counter()
            fwd_bwd(m, ids, pos, labels)
            times[label].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    row(section, name, f"fwd+bwd median of {repeats} (ms): GPT / Hybrid",
        f"{1e3 * med['GPTModel']:.1f} / {1e3 * med['HybridModel']:.1f} "
        f"(x{med['HybridModel'] / med['GPTModel']:.3f})")  # fmt: skip


def scale_trap() -> None:
    """HybridStack numbers attention and MLP layers alike: today's InverseLayerScaledAttention (layer_number) gets
    1/(2k+1) instead of 1/(k+1) -- a silent numerical change unless the scale reads the pattern."""
    gpt, hybrid, one = pair(get_preset("tiny-biomedlm"), pattern_scale=False)
    ids, pos, _ = batch(one)
    with torch.no_grad():
        d = (gpt(ids, pos, None) - hybrid(ids, pos, None)).abs().max().item()
    row(
        "scale",
        "tiny-biomedlm",
        "inverse-layer scale by layer_number: logits max abs diff",
        f"{d:.3g}  (pattern-aware: 0)",
    )


def checkpoint_keys() -> None:
    for preset in ("tiny-biomedlm", "tiny-llama"):
        gpt, native, _ = pair(get_preset(preset), gpt_layout=False)
        _, compat, _ = pair(get_preset(preset), gpt_layout=True)

        def keys(model):
            out = {}
            for sh in model.sharded_state_dict().values():
                out.setdefault(sh.key, []).append(
                    (tuple(getattr(sh, "global_shape", ())), tuple(getattr(sh, "global_offset", ())))
                )
            return out

        kg, kn, kc = keys(gpt), keys(native), keys(compat)
        same_names = list(gpt.state_dict()) == list(compat.state_dict())
        row("ckpt keys", preset, "GPT-layout HybridModel: state_dict names", f"identical to GPTModel's: {same_names}")
        row("ckpt keys", preset, "GPTModel: sharded keys", f"{len(kg)} (e.g. {_example(kg)})")
        row(
            "ckpt keys",
            preset,
            "HybridStack own layout: keys / shared w/ GPT",
            f"{len(kn)} / {len(kg.keys() & kn.keys())} (e.g. {_example(kn)})",
        )
        same = kg == kc
        row(
            "ckpt keys",
            preset,
            "GPT-layout HybridModel: keys, shapes+offsets",
            f"{len(kc)}, identical to GPTModel's: {same}",
        )
        if not same:
            row("ckpt keys", preset, "  differing", sorted(set(kg) ^ set(kc)) or "offsets")


def _example(keys: dict) -> str:
    layer = [k for k in keys if "linear_qkv.weight" in k]
    return f"{layer[0]} {keys[layer[0]][0][0]}" if layer else "-"


def checkpoint_roundtrip() -> None:
    from megatron.core import dist_checkpointing

    for preset in ("tiny-biomedlm", "tiny-llama"):
        gpt, compat, one = pair(get_preset(preset), gpt_layout=True)
        ids, pos, _ = batch(one)
        with torch.no_grad():
            want = gpt(ids, pos, None)
        with tempfile.TemporaryDirectory() as d:
            dist_checkpointing.save(gpt.sharded_state_dict(), d)
            # fresh models (other init) load the GPTModel's checkpoint
            cpu.model_parallel_manual_seed(99)
            fresh = build_hybrid_gpt_chunks(one, gpt_layout=True)[0]
            fresh.load_state_dict(dist_checkpointing.load(fresh.sharded_state_dict(), d))
            with torch.no_grad():
                got = fresh(ids, pos, None)
            row(
                "ckpt load",
                preset,
                "GPTModel ckpt -> GPT-layout Hybrid: logits diff",
                f"{(want - got).abs().max().item():.3g}",
            )
            native = build_hybrid_gpt_chunks(one, gpt_layout=False)[0]
            # megatron-core 0.19.2's own load-time translation (dist_checkpointing/gpt_checkpoint_interop.py)
            from megatron.core.dist_checkpointing.gpt_checkpoint_interop import (
                gpt_compatible_layer_maps,
                retarget_sharded_state_dict_to_gpt_checkpoint,
            )

            sd = native.sharded_state_dict()
            retarget_sharded_state_dict_to_gpt_checkpoint(sd, gpt_compatible_layer_maps(native.hybrid_layer_pattern))
            native.load_state_dict(dist_checkpointing.load(sd, d))
            with torch.no_grad():
                got = native(ids, pos, None)
            row(
                "ckpt load",
                preset,
                "GPTModel ckpt -> HybridStack layout + mcore retarget",
                f"logits diff {(want - got).abs().max().item():.3g}",
            )
            native = build_hybrid_gpt_chunks(one, gpt_layout=False)[0]
            try:
                dist_checkpointing.load(native.sharded_state_dict(), d)
                row("ckpt load", preset, "GPTModel ckpt -> HybridStack layout", "loaded (unexpected)")
            except BaseException as e:  # what blocks the stock layout (torch's CheckpointException is a BaseException)
                if isinstance(e, KeyboardInterrupt):
                    raise
                why = str(e).split("KeyError: ")[-1]
                row(
                    "ckpt load",
                    preset,
                    "GPTModel ckpt -> HybridStack layout, no retarget",
                    f"fails: KeyError {why[:100]}...",
                )
        with tempfile.TemporaryDirectory() as d:
            dist_checkpointing.save(compat.sharded_state_dict(), d)
            cpu.model_parallel_manual_seed(7)
            back = build_model_chunks(one)[0]
            back.load_state_dict(dist_checkpointing.load(back.sharded_state_dict(), d))
            with torch.no_grad():
                got = back(ids, pos, None)
            row(
                "ckpt load",
                preset,
                "GPT-layout Hybrid ckpt -> GPTModel: logits diff",
                f"{(want - got).abs().max().item():.3g}",
            )


def hf_exact() -> None:
    """transformers' model -> our adapter's names (convert/gpt2.py, llama.py) -> HybridModel names; logits vs HF."""
    import transformers

    from megatron_biomed.convert.registry import LAYER_PREFIX, get_adapter

    hf_models = {
        "gpt2": transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=4, n_embd=64, n_head=4, n_positions=64, vocab_size=500, scale_attn_by_inverse_layer_idx=True,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=4, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
            max_position_embeddings=64, vocab_size=500, tie_word_embeddings=False)),
    }  # fmt: skip
    for family, hf in hf_models.items():
        hf.eval()
        adapter = get_adapter(family)
        cfg = get_preset("tiny-biomedlm")
        cfg.model = adapter.model_config(hf.config.to_dict())
        one = single_process_config(cfg)
        model = build_hybrid_gpt_chunks(one)[0]
        sd = hf.state_dict()
        read = sd.__getitem__
        ours = adapter.globals_from_hf(one.model, read)
        for i in range(one.model.num_layers):
            ours |= {LAYER_PREFIX.format(i) + k: v for k, v in adapter.layer_from_hf(one.model, i, read).items()}
        # The GPT-layout HybridModel takes our (GPTModel) names as they are: the adapter is used unchanged.
        target = model.state_dict()
        mapped = {}
        for name, t in ours.items():
            full = target[name].clone()
            full[: t.shape[0]] = t  # vocabulary rows are padded on our side
            mapped[name] = full
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        missing = [n for n in missing if not n.endswith("_extra_state") and n != "output_layer.weight"]
        assert not missing and not unexpected, (missing, unexpected)
        ids = torch.randint(0, 500, (2, 64), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            want = hf(ids).logits
            got = model(ids, torch.arange(64).expand(2, -1), None)[..., :500]
        gpt = build_model_chunks(one)[0]
        gpt.load_state_dict(mapped, strict=False)
        with torch.no_grad():
            today = gpt(ids, torch.arange(64).expand(2, -1), None)[..., :500]
        row("HF exact", family, "transformers vs Hybrid / vs GPTModel: max abs diff",
            f"{(want - got).abs().max().item():.3g} / {(want - today).abs().max().item():.3g}")  # fmt: skip


def generation() -> None:
    from megatron_biomed.inference.generate import SamplingConfig, generate

    prompts = [[5, 17, 42, 7, 99], [3, 1, 4, 1, 5, 9, 2, 6, 5], [250, 8, 13]]
    for preset in ("tiny-biomedlm", "tiny-llama"):
        gpt, hybrid, one = pair(get_preset(preset))
        kw = dict(vocab_size=one.model.vocab_size, max_length=one.model.seq_length)
        s = SamplingConfig(max_new_tokens=12)
        lg, lh, lu = [], [], []
        a = generate(gpt, prompts, s, keep_logits=lg, **kw)
        b = generate(hybrid, prompts, s, keep_logits=lh, **kw)
        c = generate(hybrid, prompts, s, use_cache=False, keep_logits=lu, **kw)
        same = [g.ids for g in a] == [g.ids for g in b] == [g.ids for g in c]
        d_gh = max((x - y).abs().max().item() for x, y in zip(lg, lh))
        d_cache = max((x - y).abs().max().item() for x, y in zip(lh, lu))
        row("generate", preset, "KV cache: tokens equal (GPT, Hybrid, Hybrid no cache)", same)
        row("generate", preset, "step logits max abs diff GPT-Hybrid / cache-nocache", f"{d_gh:.3g} / {d_cache:.3g}")


def heads() -> None:
    from megatron_biomed.models.heads import attach_head, flatten_choices, head_forward

    for preset in ("tiny-biomedlm", "tiny-llama"):
        gpt, hybrid, one = pair(get_preset(preset))
        tconfig = gpt.config
        for m in (gpt, hybrid):
            attach_head([m], tconfig, 3, bias=False, seed=5)
        ids, _, _ = batch(one)
        b = flatten_choices({"tokens": ids[:, None, :], "last_index": torch.tensor([[30], [63]])}, one.model.seq_length)
        out = []
        for m in (gpt, hybrid):
            m.zero_grad(set_to_none=True)
            scores = head_forward(m, b)
            scores.square().sum().backward()
            out.append((scores.detach(), m.head.proj.weight.grad.clone(), grads(m)))
        (sg, hg, gg), (sh, hh, gh) = out
        body = max((gg[n] - gh[gpt_to_hybrid_name(n)]).abs().max().item() for n in gg if not n.startswith("head."))
        row("heads", preset, "output_processor head: scores / head grad / body grads",
            f"{(sg - sh).abs().max().item():.3g} / {(hg - hh).abs().max().item():.3g} / {body:.3g}")  # fmt: skip


def recompute_memory() -> None:
    """Activation bytes saved for backward (planning/measure.py) under each recompute setting. megatron-core's
    recompute_num_layers counts the block's layers: a GPT layer is one TransformerBlock layer but two HybridStack
    layers, so the same setting recomputes half as much on HybridModel unless the builder doubles it."""
    from megatron_biomed.planning.measure import saved_activation_bytes

    settings = {
        "none": {},
        "selective": {"recompute_granularity": "selective"},
        "full uniform 1": {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1},
        "full block 1": {"recompute_granularity": "full", "recompute_method": "block", "recompute_num_layers": 1},
        "full block 2": {"recompute_granularity": "full", "recompute_method": "block", "recompute_num_layers": 2},
    }
    for label, fields in settings.items():
        cfg = get_preset("tiny-llama")
        cfg.train = dataclasses.replace(cfg.train, **fields)
        gpt, hybrid, one = pair(cfg)
        _, raw, _ = pair(cfg, gpt_recompute_units=False)
        ids, pos, labels = batch(one)
        saved = []
        for m in (gpt, hybrid, raw):
            m.train()
            with saved_activation_bytes(m) as rec:
                loss = m(ids, pos, None, labels=labels)
            saved.append(rec.total)
            del loss
        row("recompute", f"tiny-llama {label}", "saved act. KiB: GPT / Hybrid / Hybrid unscaled",
            f"{saved[0] / 1024:.0f} / {saved[1] / 1024:.0f} / {saved[2] / 1024:.0f}")  # fmt: skip


def deprecation_notice() -> None:
    """What megatron-core logs while building each model (WARNING and above), and whether pretrain's filter drops it."""
    from megatron_biomed.training.launch import _drop_known_notices

    for label, hybrid in (("GPTModel", False), ("HybridModel", True)):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setLevel(logging.WARNING)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            one = single_process_config(get_preset("tiny-biomedlm"))
            (build_hybrid_gpt_chunks if hybrid else build_model_chunks)(one)
        finally:
            root.removeHandler(handler)
        lines = [ln for ln in stream.getvalue().splitlines() if ln.strip()]
        dep = [ln for ln in lines if "DEPRECATED" in ln.upper()]
        dropped = all(not _drop_known_notices(logging.makeLogRecord({"msg": ln})) for ln in dep)
        row(
            "warnings",
            label,
            "warnings logged at build / deprecation lines",
            f"{len(lines)} / {len(dep)}" + (f" (pretrain filter drops them: {dropped})" if dep else ""),
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    cpu.apply_cpu_patches()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32, CPU")
    import megatron.core

    print(f"megatron-core {megatron.core.__version__}")
    for name, cfg in cases(args.quick).items():
        gpt, hybrid, one, data = compare("numerics", name, copy.deepcopy(cfg))
        if not args.quick and "bf16" not in name:
            timing("time", name, gpt, hybrid, data, args.repeats if "emu" not in name else max(3, args.repeats // 3))
    scale_trap()
    checkpoint_keys()
    checkpoint_roundtrip()
    hf_exact()
    generation()
    heads()
    recompute_memory()
    deprecation_notice()
    print("\n| section | case | measured | value |\n|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(str(x) for x in r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
