"""Python face of the csrc kernels, with PyTorch fallbacks.

Pick the implementation per run with ``kernels`` (``model.kernels``): ``"auto"`` (resolved at model build to the
fastest choice that runs here, logged with its reasons), ``"csrc"`` (our CUDA ops; on a machine without a GPU
it falls back to PyTorch, logged once), ``"te"`` (Transformer Engine modules), ``"sdpa"`` (PyTorch's
scaled_dot_product_attention), ``"torch"`` or ``"emu"`` (the csrc kernels on the CPU emulator, for tests).
Each choice is one provider class; nothing else decides what a choice does.

* ``registry.py``  -- the table of choices and :class:`KernelProvider`, what each provider answers;
  ``get_provider`` / ``provider_class``.
* ``providers.py`` -- the provider class of each choice.
* ``functions.py`` -- functional ops with autograd: ``layer_norm``, ``rms_norm``, ``scaled_masked_softmax``,
  ``scaled_causal_softmax``, ``flash_attention``.
* ``modules.py``   -- megatron-core modules on those ops: ``KernelNorm``, ``KernelDotProductAttention``;
  layer specs in ``megatron_biomed.models.gpt.specs``.
* ``sdpa.py``      -- ``SdpaDotProductAttention``: megatron-core's core attention on PyTorch SDPA.
* ``csrc_ops.py`` / ``emu_ops.py`` -- the primitives of ``megatron_biomed._C`` (CUDA) and ``megatron_biomed._emu``.
* ``philox.py``    -- Philox4x32-10 and the attention-dropout mask of ``mbk/philox.cuh`` in PyTorch, and the
  per-call ``(seed, offset)`` draw.
* ``errors.py``    -- ``KernelError`` and its subclasses.

This package imports nothing here, so reading the choices (kernels/registry.py) costs neither torch nor
megatron-core.
"""
