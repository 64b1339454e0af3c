"""Tiny HF models of each family (tests/convert/hf_models.py), imported and exported once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """family -> (our checkpoint root, exported HF directory)."""
    from hf_models import tiny_gpt2, tiny_llama, tiny_tokenizer

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf

    out = {}
    for family, build in (("gpt2", tiny_gpt2), ("llama", tiny_llama)):
        d = tmp_path_factory.mktemp("gen-" + family)
        build(d / "hf", seed=5)
        tiny_tokenizer(d / "hf")
        import_hf(d / "hf", d / "ckpt")
        export_hf(d / "ckpt", d / "exported")
        out[family] = (d / "ckpt", d / "exported")
    return out


@pytest.fixture(autouse=True)
def _release_model_parallel():
    """Conversion and loading start megatron-core's parallel state in this process; later tests (e.g. the
    ``single_rank_parallel`` fixture) start their own, so leave none behind."""
    yield
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
