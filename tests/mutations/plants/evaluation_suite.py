"""Plants in issue 20's evaluation suite: BLURB's micro F1 counting the negative class, the suite's overall score
averaged over entries instead of task types, and NER windows read from the wrong window. Each is caught by a
pure-function test in seconds."""

from __future__ import annotations

from plant import Plant

CLASSIFICATION = "megatron_biomed/data/metrics/classification.py"
SUITE = "megatron_biomed/eval/suite.py"
NER = "megatron_biomed/finetune/ner.py"
TEXT_HEADS = "megatron_biomed/finetune/text_heads.py"
HEADS = "megatron_biomed/models/heads.py"

PLANTS = [
    Plant(
        "micro-f1-counts-the-negative-class",
        "micro F1 pools every label, the negative one (ChemProt's false, GAD's 0) included",
        [(CLASSIFICATION, 'gold, pred, labels=labels, average="micro"',
          'gold, pred, labels=list(range(num_labels)), average="micro"')],
        ["tests/data/test_metrics_classification.py"],
    ),  # fmt: skip
    Plant(
        "suite-overall-over-entries",
        "the suite's overall score averages the entries' main metrics, not BLURB's per-type averages",
        [(SUITE, 'averaged = [t["average"] for k, t in per_type.items() if k not in NOT_IN_OVERALL]',
          "averaged = [v for k, rows in types.items() if k not in NOT_IN_OVERALL for _, v in rows]")],
        ["tests/eval/test_suite.py::test_per_type_macro_average_then_mean_of_types"],
    ),  # fmt: skip
    Plant(
        "ner-word-from-the-last-window",
        "each word is read from the last window that holds it (least left context), not the earliest",
        [(NER, "owner = tuple(next(k for k, s in enumerate(starts) if s <= pos < s + seq) for pos in positions)",
          "owner = tuple(max(k for k, s in enumerate(starts) if s <= pos < s + seq) for pos in positions)")],
        ["tests/finetune/test_ner.py::test_windows_with_stride_label_each_word_and_merge_from_the_most_context"],
    ),  # fmt: skip
    Plant(
        "similarity-loss-averaged",
        "the BIOSSES regression loss is the micro-batch's mean squared error, not its sum (normalised over the "
        "global batch's items by the loop)",
        [(TEXT_HEADS, 'F.mse_loss(pred, gold.float(), reduction="sum")',
          'F.mse_loss(pred, gold.float(), reduction="mean")')],
        ["tests/finetune/test_text_heads.py::test_head_forward_and_loss_match_float64"],
    ),  # fmt: skip
    Plant(
        "multilabel-bce-summed-over-labels",
        "the HoC loss sums the labels' binary cross-entropies instead of averaging them per item",
        [(TEXT_HEADS, 'reduction="none").mean(-1)', 'reduction="none").sum(-1)')],
        ["tests/finetune/test_text_heads.py::test_head_forward_and_loss_match_float64"],
    ),  # fmt: skip
    Plant(
        "token-head-reads-the-wrong-position",
        "the NER head's logits are read one token late (each tag predicted from the next token's hidden state)",
        [(HEADS, "return self.proj(hidden_states.transpose(0, 1).to(self.proj.weight.dtype)).float()",
          "return self.proj(hidden_states.roll(-1, 0).transpose(0, 1).to(self.proj.weight.dtype)).float()")],
        ["tests/finetune/test_ner.py::test_token_head_matches_a_float64_reference"],
    ),  # fmt: skip
]
