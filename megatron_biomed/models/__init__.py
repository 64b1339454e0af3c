"""Model families: the family seam (``registry.py``: every family by name, ``build_model_chunks``, parameter and
FLOP counts), what families share (``common.py``), one folder per family (``gpt/``, ``mamba/``), the fine-tuning
heads (``heads.py``) and the loss over the real vocabulary (``vocab_loss.py``). This package imports nothing
here, so reading the family names costs neither torch nor megatron-core."""
