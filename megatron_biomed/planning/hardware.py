"""GPUs and clusters the planner knows: peak dense bf16 FLOP/s, HBM size and bandwidth, link bandwidths."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3


@dataclass(frozen=True)
class GPU:
    """One accelerator: dense bf16 tensor-core peak, HBM, and the per-GPU NVLink bandwidth (one direction)."""

    name: str
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bytes: float
    hbm_bandwidth: float  # bytes/s
    nvlink_bandwidth: float  # bytes/s per GPU, one direction
    arch: str  # "ampere" | "hopper": the compute efficiency parameters are fitted per architecture


# Vendor data sheets (SXM parts). HBM sizes in GB (10^9) as sold: 40, 80, 80, 141.
GPUS: dict[str, GPU] = {
    "A100-40GB": GPU("A100-40GB", 312e12, 40e9, 1.555e12, 300e9, "ampere"),
    "A100-80GB": GPU("A100-80GB", 312e12, 80e9, 2.039e12, 300e9, "ampere"),
    "H100-80GB": GPU("H100-80GB", 989e12, 80e9, 3.35e12, 450e9, "hopper"),
    "H200": GPU("H200", 989e12, 141e9, 4.8e12, 450e9, "hopper"),
}


def get_gpu(name: str) -> GPU:
    if name not in GPUS:
        raise ValueError(f"unknown GPU {name!r}; known: {', '.join(GPUS)}")
    return GPUS[name]


@dataclass(frozen=True)
class Cluster:
    """``nodes`` x ``gpus_per_node`` GPUs; bandwidths per GPU, one direction, in bytes/s (None: the GPU's
    NVLink inside a node; 25 GB/s = one 200 Gb/s HDR InfiniBand port per GPU between nodes on A100,
    50 GB/s = 400 Gb/s NDR on H100/H200)."""

    gpu: GPU
    nodes: int
    gpus_per_node: int = 8
    intra_node_bandwidth: float | None = None
    inter_node_bandwidth: float | None = None

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def intra_bw(self) -> float:
        return self.intra_node_bandwidth or self.gpu.nvlink_bandwidth

    @property
    def inter_bw(self) -> float:
        if self.inter_node_bandwidth:
            return self.inter_node_bandwidth
        return 25e9 if self.gpu.arch == "ampere" else 50e9

    def group_bandwidth(self, size: int, stride: int) -> float:
        """Bandwidth of a collective over ``size`` ranks spaced ``stride`` apart (TP stride 1, DP stride
        TP, PP stride TP x DP): NVLink when the whole group sits in one node, else the inter-node link."""
        return self.intra_bw if size * stride <= self.gpus_per_node else self.inter_bw
