"""A pure-PyTorch Mamba2 mixer with megatron-core ``MambaMixer``'s constructor, parameter names, TP layout and
``sharded_state_dict``, for machines without ``mamba_ssm``/``causal_conv1d`` (CPU; GPUs without the kernels).

A dist checkpoint saved with one mixer loads into the other: the parameters are ``in_proj.weight`` (column
parallel, each rank's rows packed ``[z | x | B | C | dt]``), ``conv1d_weight``/``conv1d_bias`` (saved as
``conv1d.weight``/``conv1d.bias``, rows ``[x | B | C]``), ``dt_bias``, ``A_log``, ``D``, ``norm.weight`` (the
gated RMSNorm, split by heads) and ``out_proj.weight`` (row parallel), with megatron-core 0.19.2's
``MambaMixer.sharded_state_dict`` (``ssm/mamba_mixer.py:1339-1486``) splitting in_proj and conv into their
parts so that TP resharding on load works. The scan is models/mamba/ssd.py.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.ssm.mamba_mixer import MambaMixerSubmodules
from megatron.core.ssm.utils import _split_tensor_factory
from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.utils import (
    ensure_metadata_has_dp_cp_group,
    make_sharded_tensors_for_checkpoint,
    sharded_state_dict_default,
)
from torch import nn

from megatron_biomed.models.mamba.ssd import causal_conv1d, ssd_scan, ssd_step

__all__ = ["GatedRMSNorm", "TorchMambaMixer", "seq_idx_from_cu_seqlens"]


class GatedRMSNorm(nn.Module):
    """mamba_ssm's ``RMSNormGated`` with ``norm_before_gate=False``: RMSNorm of ``y * silu(z)`` over groups of
    ``group_size`` channels, times a per-channel weight (TP-split along axis 0, as ``ExtendedRMSNorm``)."""

    def __init__(self, hidden_size: int, group_size: int, eps: float = 1e-5, tp_group=None, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.group_size, self.eps, self.tp_group = group_size, eps, tp_group

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        y = y.float() * F.silu(z.float())
        shape = y.shape
        y = y.reshape(*shape[:-1], shape[-1] // self.group_size, self.group_size)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y.reshape(shape) * self.weight.float()).to(dtype)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        return make_sharded_tensors_for_checkpoint(
            self.state_dict(prefix="", keep_vars=True), prefix, {"weight": 0}, sharded_offsets,
            tp_group=self.tp_group, dp_cp_group=metadata["dp_cp_group"],
        )  # fmt: skip


def seq_idx_from_cu_seqlens(cu_seqlens: torch.Tensor, length: int) -> torch.Tensor:
    """``[1, length]`` document numbers from THD ``cu_seqlens`` ``[0, l1, l1 + l2, ...]``."""
    pos = torch.arange(length, device=cu_seqlens.device)
    return (torch.searchsorted(cu_seqlens[1:].contiguous(), pos, right=True))[None]


class TorchMambaMixer(MegatronModule):
    """Drop-in for megatron-core's ``MambaMixer`` (same arguments; ``bias``/``conv_bias``/``norm_before_gate``
    restricted the same way). Forward: ``hidden_states [s, b, h] -> (out, out_bias)``."""

    def __init__(
        self,
        config,
        submodules: MambaMixerSubmodules,
        d_model,
        d_conv=4,
        conv_init=None,
        expand=2,
        A_init_range=(1, 16),
        D_has_hdim=False,
        rmsnorm=True,
        norm_before_gate=False,
        dt_min=0.001,
        dt_max=0.1,
        dt_init="random",
        dt_scale=1.0,
        dt_init_floor=1e-4,
        bias=False,
        conv_bias=True,
        chunk_size=128,
        layer_number=None,
        pg_collection=None,
        pp_layer_offset: int = 0,
        name: Optional[str] = None,
    ):
        super().__init__(config)
        assert pg_collection is not None, "pg_collection must be provided for TorchMambaMixer"
        assert not bias and conv_bias and not norm_before_gate and rmsnorm and not D_has_hdim, (
            "TorchMambaMixer implements MambaMixer's supported settings only (no bias, conv bias, gated "
            "RMSNorm after the gate, D per head)"
        )
        self.config, self.d_model, self.d_conv, self.expand = config, d_model, d_conv, expand
        self.chunk_size, self.layer_number, self.pp_layer_offset = chunk_size, layer_number, pp_layer_offset
        self.pg_collection = pg_collection
        self.tp_group = pg_collection.tp
        self.d_state, self.headdim = config.mamba_state_dim, config.mamba_head_dim
        self.ngroups = config.mamba_num_groups
        self.d_inner = int(expand * d_model)
        if config.mamba_num_heads is not None:
            self.nheads = config.mamba_num_heads
            self.d_inner = self.nheads * self.headdim
        else:
            assert self.d_inner % self.headdim == 0, "d_inner must be evenly divisible by headdim"
            self.nheads = self.d_inner // self.headdim
        tp = self.tp_group.size()
        # The same rules as MambaMixer (ssm/mamba_mixer.py:260-272); parallel/layout.py says them earlier.
        assert self.nheads % tp == 0, "nheads must be evenly divisible by tp_size"
        assert self.ngroups % tp == 0, "ngroups must be evenly divisible by tp_size"
        assert self.nheads % self.ngroups == 0, "nheads must be evenly divisible by ngroups"
        self.nheads_local_tp = self.nheads // tp
        self.d_inner_local_tp = self.d_inner // tp
        self.ngroups_local_tp = self.ngroups // tp

        self.in_proj = build_module(
            submodules.in_proj, self.d_model, self.d_inner * 2 + 2 * self.ngroups * self.d_state + self.nheads,
            config=config, init_method=config.init_method, gather_output=False, bias=False, skip_bias_add=False,
            is_expert=False, tp_comm_buffer_name="fc1", tp_group=self.tp_group,
        )  # fmt: skip
        in_proj_parts = [self.d_inner_local_tp, self.d_inner_local_tp, self.ngroups_local_tp * self.d_state,
                         self.ngroups_local_tp * self.d_state, self.nheads_local_tp]  # fmt: skip
        self.in_proj.weight.partition_sizes = in_proj_parts
        conv_dim = self.d_inner_local_tp + 2 * self.ngroups_local_tp * self.d_state
        on_gpu = torch.cuda.is_available() and not config.use_cpu_initialization
        dev = torch.cuda.current_device() if on_gpu else "cpu"
        with get_cuda_rng_tracker().fork():
            self.conv1d_weight = nn.Parameter(torch.empty(conv_dim, 1, d_conv, device=dev, dtype=config.params_dtype))
            self.conv1d_bias = nn.Parameter(torch.empty(conv_dim, device=dev, dtype=config.params_dtype))
            gn = self.ngroups_local_tp * self.d_state
            conv_parts = [self.d_inner_local_tp, gn, gn]
            for p in (self.conv1d_weight, self.conv1d_bias):
                p.tensor_model_parallel, p.partition_dim, p.partition_sizes = True, 0, conv_parts
            # nn.Conv1d's default initialisation, as MambaMixer keeps it
            nn.init.kaiming_uniform_(self.conv1d_weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(self.conv1d_weight.size(1) * self.conv1d_weight.size(2))
            nn.init.uniform_(self.conv1d_bias, -bound, bound)
            if config.perform_initialization and conv_init is not None:
                nn.init.uniform_(self.conv1d_weight, -conv_init, conv_init)
        with get_cuda_rng_tracker().fork():
            # softplus(dt_bias) spread log-uniformly over [dt_min, dt_max]
            dt = torch.exp(
                torch.rand(self.nheads_local_tp, device=dev, dtype=config.params_dtype)
                * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            ).clamp(min=dt_init_floor)
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
            A = torch.empty(self.nheads_local_tp, dtype=torch.float32, device=dev)
            if config.perform_initialization:
                A = A.uniform_(*A_init_range)
            else:
                A = A.fill_(1.0)
            self.A_log = nn.Parameter(torch.log(A))  # fp32, as MambaMixer
        self.D = nn.Parameter(torch.ones(self.nheads_local_tp, device=dev))  # fp32
        for p in (self.dt_bias, self.A_log, self.D):
            p.tensor_model_parallel, p.partition_dim = True, 0
        self.norm = GatedRMSNorm(
            self.d_inner_local_tp, self.d_inner_local_tp // self.ngroups_local_tp, eps=1e-5, tp_group=self.tp_group,
            device=dev, dtype=config.params_dtype,
        )  # fmt: skip
        self.norm.weight.tensor_model_parallel, self.norm.weight.partition_dim = True, 0
        self.out_proj = build_module(
            submodules.out_proj, self.d_inner, self.d_model, config=config,
            init_method=config.output_layer_init_method, bias=False, input_is_parallel=True, skip_bias_add=True,
            is_expert=False, tp_comm_buffer_name="fc2", tp_group=self.tp_group,
        )  # fmt: skip

    # ---- forward ----------------------------------------------------------------------------------------
    def forward(self, hidden_states, inference_context=None, *, inference_params=None, packed_seq_params=None):
        """hidden_states ``[s, b, d_model]`` -> (``[s, b, d_model]``, out_proj bias or None).

        ``packed_seq_params`` (THD, batch 1): the conv and the scan restart at each ``cu_seqlens_q`` boundary;
        a models/mamba/model.py ``DocumentIds`` (any batch): they restart where its ``seq_idx`` changes.
        ``inference_context`` (static batching, with ``key_value_memory_dict`` and ``sequence_len_offset``):
        a prefill stores the conv and SSM states per layer, later calls advance them one token at a time."""
        ctx = inference_context if inference_context is not None else inference_params
        length, batch, _ = hidden_states.shape
        zxbcdt, _ = self.in_proj(hidden_states)  # [s, b, local]
        zxbcdt = zxbcdt.transpose(0, 1)  # [b, s, local]
        cache = None
        if ctx is not None:
            cache = ctx.key_value_memory_dict.get(self.layer_number)
            if getattr(ctx, "sequence_len_offset", 0) > 0 and cache is not None:
                y = self._decode(zxbcdt, cache)
                out, out_bias = self.out_proj(y.transpose(0, 1))
                return out, out_bias
        seq_idx = None
        if getattr(packed_seq_params, "seq_idx", None) is not None:  # models/mamba/model.py DocumentIds
            seq_idx = packed_seq_params.seq_idx.to(zxbcdt.device)
        elif packed_seq_params is not None:
            assert batch == 1, "packed sequences (THD) come as one row"
            seq_idx = seq_idx_from_cu_seqlens(packed_seq_params.cu_seqlens_q, length)
        y, states = self._ssm(zxbcdt, seq_idx, want_states=ctx is not None)
        if ctx is not None:
            ctx.key_value_memory_dict[self.layer_number] = states
        out, out_bias = self.out_proj(y.transpose(0, 1).contiguous())
        return out, out_bias

    def _split(self, zxbcdt):
        d, gn, h = self.d_inner_local_tp, self.ngroups_local_tp * self.d_state, self.nheads_local_tp
        return torch.split(zxbcdt, [d, d + 2 * gn, h], dim=-1)

    def _scan_inputs(self, xbc, dt):
        d, gn = self.d_inner_local_tp, self.ngroups_local_tp * self.d_state
        x, B, C = torch.split(xbc, [d, gn, gn], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(*lead, self.nheads_local_tp, self.headdim).float()
        B = B.reshape(*lead, self.ngroups_local_tp, self.d_state).float()
        C = C.reshape(*lead, self.ngroups_local_tp, self.d_state).float()
        dt = F.softplus(dt.float() + self.dt_bias.float())
        A = -torch.exp(self.A_log.float())
        return x, dt, A, B, C

    def _ssm(self, zxbcdt, seq_idx=None, want_states=False):
        z, xbc, dt = self._split(zxbcdt)
        length = xbc.size(1)
        xbc_t = xbc.transpose(1, 2)  # [b, conv_dim, s]
        xbc = F.silu(causal_conv1d(xbc_t, self.conv1d_weight, self.conv1d_bias, seq_idx=seq_idx)).transpose(1, 2)
        x, dt, A, B, C = self._scan_inputs(xbc, dt)
        y, ssm_state = ssd_scan(
            x, dt, A, B, C, self.chunk_size, D=self.D.float(), seq_idx=seq_idx, return_final_state=True
        )
        y = y.reshape(*y.shape[:2], -1).to(zxbcdt.dtype)
        y = self.norm(y, z)
        states = None
        if want_states:
            conv_state = F.pad(xbc_t, (max(0, self.d_conv - length), 0))[..., -self.d_conv:].clone()
            states = (conv_state, ssm_state)
        return y, states

    def _decode(self, zxbcdt, cache):
        """One token per row (``zxbcdt [b, 1, local]``) on the cached (conv, ssm) states, updated in place."""
        conv_state, ssm_state = cache
        z, xbc, dt = self._split(zxbcdt[:, 0])
        conv_state.copy_(torch.cat([conv_state[..., 1:], xbc[..., None]], dim=-1))
        xbc = F.silu((conv_state * self.conv1d_weight[:, 0]).sum(-1) + self.conv1d_bias)
        x, dt, A, B, C = self._scan_inputs(xbc, dt)
        y, new_state = ssd_step(ssm_state, x, dt, A, B, C, self.D.float())
        ssm_state.copy_(new_state)
        y = self.norm(y.reshape(y.size(0), -1).to(zxbcdt.dtype), z)
        return y[:, None]

    def mamba_state_shapes_per_request(self):
        """(conv state shape, SSM state shape) of one sequence, as MambaMixer reports them."""
        return (self.conv1d_weight.shape[0], self.d_conv), (self.nheads_local_tp, self.headdim, self.d_state)

    # ---- checkpoints: MambaMixer.sharded_state_dict (ssm/mamba_mixer.py:1339-1486) without GTP ----------
    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        sd = {}
        self._save_to_state_dict(sd, "", keep_vars=True)
        sd = make_sharded_tensors_for_checkpoint(
            sd, prefix, {"A_log": 0, "dt_bias": 0, "D": 0, "conv1d_weight": 0, "conv1d_bias": 0}, sharded_offsets,
            tp_group=self.tp_group, dp_cp_group=metadata["dp_cp_group"],
        )  # fmt: skip
        for name, module in self.named_children():
            sd.update(sharded_state_dict_default(module, f"{prefix}{name}.", sharded_offsets, metadata,
                                                 tp_group=self.tp_group))  # fmt: skip
        for param_name, key in (("conv1d_weight", "conv1d.weight"), ("conv1d_bias", "conv1d.bias")):
            sd[f"{prefix}{param_name}"].key = f"{prefix}{key}"
        d, gn, h = self.d_inner_local_tp, self.ngroups_local_tp * self.d_state, self.nheads_local_tp
        sd[f"{prefix}in_proj.weight"] = _split_tensor_factory(
            sd[f"{prefix}in_proj.weight"], [d, d, gn, gn, h], ["z", "x", "B", "C", "dt"], 0
        )
        for conv in ("conv1d_weight", "conv1d_bias"):
            sd[f"{prefix}{conv}"] = _split_tensor_factory(sd[f"{prefix}{conv}"], [d, gn, gn], ["x", "B", "C"], 0)
        return sd
