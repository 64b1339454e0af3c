#!/usr/bin/env python
"""Plan a pretraining run: memory per GPU, step time and days of the best layouts on a cluster.

    python tools/plan.py --preset biomedlm-2.7b --gpu A100-40GB --nodes 16
    python tools/plan.py --preset biollm-70b --gpu H100-80GB --nodes 32 --check \
        --set parallel.tensor_model_parallel_size=8 --set parallel.pipeline_model_parallel_size=4
"""

import sys

from megatron_biomed.planning.cli import main

if __name__ == "__main__":
    sys.exit(main())
