"""Plants in issue 21's GPU path: the tensor-core flash kernels and their dispatch, the emulated tensor-core
instructions, the Philox dropout mask, the run-time backend choice and masks, and the host syncs of the step loop
and of generation."""

from __future__ import annotations

from plant import Plant

MMA_FWD = "csrc/kernels/flash_attention_mma_fwd.cuh"
MMA_BWD = "csrc/kernels/flash_attention_mma_bwd.cuh"
LAUNCH = "csrc/kernels/flash_attention_launch.h"
PHILOX = "csrc/include/mbk/philox.cuh"
EMU_TC = "csrc/emu/cuda_emu_tensor_core.cpp"
MODULES = "megatron_biomed/kernels/modules.py"
PROVIDERS = "megatron_biomed/kernels/providers.py"
GPT_FAMILY = "megatron_biomed/models/gpt/family.py"
LOOP = "megatron_biomed/training/loop.py"
GENERATE = "megatron_biomed/inference/generate.py"

PLANTS = [
    Plant(
        "mma-fwd-refill-without-barrier",
        "the tensor-core forward refills a K/V stage while other warps may still read it (no __syncthreads)",
        [(MMA_FWD, "    __syncthreads();  // everyone is done with stage j % 2: refill it with tile j + 2\n", "")],
        ["tests/kernels/test_flash_mma_fwd_emu.py::test_random_schedule_bitwise_identical"],
    ),  # fmt: skip
    Plant(
        "mma-bwd-dropout-offset",
        "the tensor-core backward regenerates the dropout mask from the next offset, not the forward's",
        [(MMA_BWD, "if (sc.dropout) bits = dropout_bits4(p.dropout_seed, p.dropout_offset, bh, i, j0);",
          "if (sc.dropout) bits = dropout_bits4(p.dropout_seed, p.dropout_offset + 1, bh, i, j0);")],
        ["tests/kernels/test_flash_mma_bwd_emu.py::test_dropout_matches_reference_with_same_mask"],
    ),  # fmt: skip
    Plant(
        "dispatch-never-tensor-cores",
        "half/bf16 flash attention keeps the scalar kernels even where the tensor-core ones can run",
        [(LAUNCH, "    if (flash_mma_layout_ok(p, false)) return flash_mma_fwd<T>(p, stream);\n", "")],
        ["tests/kernels/test_flash_dispatch_emu.py::test_aligned_half_precision_runs_the_tensor_core_kernels"],
    ),  # fmt: skip
    Plant(
        "philox-weyl-constant",
        "Philox4x32-10's first key increment is wrong (the mask is no longer Random123's Philox)",
        [(PHILOX, "kW0 = 0x9E3779B9u", "kW0 = 0x9E3779B7u")],
        ["tests/kernels/test_philox.py::test_known_answers_python_and_cpp"],
    ),  # fmt: skip
    Plant(
        "emu-ldmatrix-trans-ignored",
        "the emulated ldmatrix .trans hands out the untransposed element pairs",
        [(EMU_TC, "case 1: op = trans ? ldmatrix_op<1, true>() : ldmatrix_op<1, false>(); break;",
          "case 1: op = ldmatrix_op<1, false>(); break;")],
        ["tests/kernels/test_tensor_core_emu.py::test_ldmatrix_layouts"],
    ),  # fmt: skip
    Plant(
        "causal-layer-drops-given-mask",
        "a causal layer given a mask (SFT packing's documents) takes the flash path, which ignores it",
        [(MODULES, "maskless = attention_mask is None and (causal or mask_type == AttnMaskType.no_mask)",
          "maskless = causal or (mask_type == AttnMaskType.no_mask and attention_mask is None)")],
        ["tests/kernels/test_flash_dropout_emu.py::test_a_given_mask_is_used_as_given_on_causal_layers"],
    ),  # fmt: skip
    Plant(
        "te-packs-documents",
        "SFT packs documents on Transformer Engine, whose causal layers ignore the document mask",
        [(GPT_FAMILY, "return SegmentIsolation.ATTENTION_MASK if provider_class(kernels).honours_attention_mask else "
          "SegmentIsolation.NONE", "return SegmentIsolation.ATTENTION_MASK")],
        ["tests/kernels/test_backend_choice.py::test_segments_are_not_packed_where_the_backend_ignores_a_given_mask"],
    ),  # fmt: skip
    Plant(
        "auto-takes-a-missing-extension",
        "kernels=auto picks our csrc kernels on a GPU where the extension failed to build",
        [(PROVIDERS, "return csrc_ops.load_error() if torch.cuda.is_available() else None", "return None")],
        ["tests/kernels/test_backend_choice.py::test_auto_on_a_gpu_without_our_extension_falls_back_instead_of_failing"],
        fast=True,
    ),  # fmt: skip
    Plant(
        "host-sync-per-micro-step",
        "the step loop reads the loss on the host every step (float(loss)) besides its one decision read",
        [(LOOP, "        loss = metrics[self.task.metric_names[0]]\n",
          "        loss = metrics[self.task.metric_names[0]]\n        float(loss)\n")],
        ["tests/training/test_hot_path.py::test_one_host_read_per_step_and_one_log_read_per_window"],
    ),  # fmt: skip
    Plant(
        "generation-reads-every-token",
        "generation reads its state on the host after every token even without streaming or stop strings",
        [(GENERATE, "    per_token = on_token is not None or bool(sampling.stop_strings and decode is not None)",
          "    per_token = True")],
        ["tests/inference/test_generate_host_syncs.py"],
    ),  # fmt: skip
]
