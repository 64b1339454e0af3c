#!/usr/bin/env python
"""Evaluate a checkpoint: perplexity per corpus, biomedical benchmarks (zero/few-shot), fine-tuned heads.

    python tools/evaluate.py --load ckpt --corpus pubmed=data/pubmed_valid_text_document --benchmark pubmedqa=pqal.json
"""

import sys

from megatron_biomed.console import quiet_third_party_notices

quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
from megatron_biomed.eval.cli import main  # noqa: E402

if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    sys.exit(main())
