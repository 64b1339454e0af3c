#!/usr/bin/env python
"""Greedy generation from a checkpoint (any saved TP/PP layout), in one process.

    python tools/generate.py --preset tiny-biomedlm --load runs/quickstart/checkpoints \
        --tokenizer runs/quickstart/tokenizer --prompt "Patients with type 2 diabetes"
"""

import sys

from megatron_biomed.inference.generate import main

if __name__ == "__main__":
    sys.exit(main())
