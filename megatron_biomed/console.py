"""What a command-line tool prints besides its own lines.

megatron-core, torch and Transformer Engine announce, while they are being imported, things that say nothing
about the run (no Transformer Engine or Apex on this machine, no CUDA runtime). The tools call
:func:`quiet_third_party_notices` before they import the library, so those notices never reach the console;
``MEGATRON_BIOMED_VERBOSE=1`` keeps them. training/launch.py's ``setup_logging`` applies the same choice to
the log lines of a run.
"""

from __future__ import annotations

import logging
import os
import warnings

NOISY_PACKAGES = ("megatron", "torch", "transformer_engine")


def verbose() -> bool:
    """Whether third-party notices are wanted (``MEGATRON_BIOMED_VERBOSE=1``)."""
    return os.environ.get("MEGATRON_BIOMED_VERBOSE") == "1"


def quiet_third_party_notices() -> None:
    """Drop the Python warnings of megatron-core, torch and Transformer Engine, and torch's note that no CUDA
    runtime was found (a CPU machine), unless :func:`verbose`."""
    if verbose():
        return
    for module in NOISY_PACKAGES:
        warnings.filterwarnings("ignore", module=module)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
