"""Plants in issue 18's recipes: a published value drifting, the moving average of the weights, and BioMedLM's
multiple-choice layout. Each is caught by a pure-function or one-process test in seconds."""

from __future__ import annotations

from plant import Plant

PRESETS = "megatron_biomed/config/presets.py"
EMA = "megatron_biomed/training/ema.py"
FORMATS = "megatron_biomed/finetune/formats.py"

PLANTS = [
    Plant(
        "biomedlm-warmup-dropped",
        "the BioMedLM preset warms up over 0 batches again (the paper's table: 100)",
        [(PRESETS, "lr_warmup_iters=BIOMEDLM_WARMUP_BATCHES,", "lr_warmup_iters=0,")],
        ["tests/config/test_published_recipes.py"],
    ),
    Plant(
        "ema-weights-swapped",
        "the moving average keeps (1 - decay) of itself and takes decay of the new weights",
        [(EMA, "avg.mul_(self.decay).add_(param.detach().float(), alpha=1.0 - self.decay)",
          "avg.mul_(1.0 - self.decay).add_(param.detach().float(), alpha=self.decay)")],
        ["tests/training/test_recipe_options.py::test_ema_is_the_recurrence_and_resumes_bit_for_bit"],
    ),
    Plant(
        "biomedlm-mc-option-without-space",
        "BioMedLM's multiple-choice option part loses its leading space (the authors' f\"{sent2} {ending}\")",
        [(FORMATS, '[f" {option}", sep]', "[option, sep]")],
        ["tests/finetune/test_input_formats.py"],
    ),
]
