"""HF directories with pickled ``.bin`` weights (one ``pytorch_model.bin``, or shards with
``pytorch_model.bin.index.json``) import to exactly the checkpoint their safetensors import gives, read with
``torch.load(weights_only=True)``: a pickle that asks for anything but tensors is refused."""

from __future__ import annotations

import pytest
import torch
from hf_models import save_bin


def _tensors(checkpoint) -> dict:
    from megatron_biomed.inference.loading import load_model

    model, _ = load_model(checkpoint)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}


@pytest.mark.parametrize("family, shard", [("gpt2", None), ("llama", 60_000)])
def test_bin_import_equals_safetensors_import(imported, family, shard, tmp_path):
    from megatron_biomed.convert.importer import import_hf

    hf, hf_dir, ckpt = imported[family]
    save_bin(hf, tmp_path / "bin", max_shard_bytes=shard)
    if shard:
        assert len(list((tmp_path / "bin").glob("pytorch_model-*.bin"))) > 2  # a layer spans shards
    import_hf(tmp_path / "bin", tmp_path / "ckpt", tensor_model_parallel_size=2)
    want, got = _tensors(ckpt), _tensors(tmp_path / "ckpt")
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), f"{family}: {name} differs between .bin and safetensors import"


class _Payload:
    """Unpickling this would call print (a stand-in for any code a crafted file runs)."""

    def __reduce__(self):
        return (print, ("code ran while unpickling",))


def test_bin_with_code_is_refused(imported, tmp_path, capsys):
    from megatron_biomed.convert.hf_io import HFReader
    from megatron_biomed.convert.registry import ConversionError

    hf, _, _ = imported["gpt2"]
    save_bin(hf, tmp_path)
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    torch.save(state | {"extra": _Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ConversionError, match="weights_only"):
        HFReader(tmp_path)
    assert "code ran" not in capsys.readouterr().out
