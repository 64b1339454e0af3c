"""Tiny HF models of each family, saved and imported once per test session (import at TP 2's padding)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def imported(tmp_path_factory):
    """family -> (HF model, HF dir, imported checkpoint root); mamba2's is peaked (test_layouts_match_transformers
    runs it at TP 2 and PP 2)."""
    from hf_models import tiny_gpt2, tiny_llama, tiny_mamba2, tiny_tokenizer

    from megatron_biomed.convert.importer import import_hf

    out = {}
    for family, build in (("gpt2", tiny_gpt2), ("llama", tiny_llama), ("mamba2", tiny_mamba2)):
        d = tmp_path_factory.mktemp(family)
        hf = build(d / "hf")
        tiny_tokenizer(d / "hf")
        import_hf(d / "hf", d / "ckpt", tensor_model_parallel_size=2)
        out[family] = (hf, d / "hf", d / "ckpt")
    return out


@pytest.fixture(autouse=True)
def _release_model_parallel():
    """Conversion and loading start megatron-core's parallel state in this process; later tests (e.g. the
    ``single_rank_parallel`` fixture) start their own, so leave none behind."""
    yield
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()


@pytest.fixture
def quiet_transformers():
    """transformers warns that its Mamba2 kernels fall back to PyTorch on CPU (expected here)."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(level)
