"""Plants in evaluation: metric normalisation (acc_norm, bits per byte), the rolling windows of perplexity, the
positions a continuation is scored at, and the data-parallel gather of per-item scores."""

from __future__ import annotations

from plant import Plant

RUNNER = "megatron_biomed/eval/runner.py"
REQUESTS = "megatron_biomed/eval/requests.py"
SCORING = "megatron_biomed/training/scoring.py"
BY_HAND = "tests/eval/test_metrics_by_hand.py"
DP = "tests/eval/test_evaluate_tool.py::test_same_scores_item_by_item_on_one_process_and_at_pp2_dp2"
ACC_NORM = "        norm = [v / len(c) for v, c in zip(ll, q.choices)]\n"

PLANTS = [
    Plant(
        "acc-norm-per-byte",
        "acc_norm divides by the choice's UTF-8 bytes, not its characters (lm-evaluation-harness: len(choice))",
        [(RUNNER, ACC_NORM, '        norm = [v / len(c.encode("utf-8")) for v, c in zip(ll, q.choices)]\n')],
        [BY_HAND + "::test_acc_and_acc_norm_pick_by_hand"],
        fast=True,
    ),
    Plant(
        "acc-norm-per-token",
        "acc_norm divides by the continuation's tokens, not the choice's characters",
        [(RUNNER, ACC_NORM, '        norm = [v / len(tok.encode(" " + c)) for v, c in zip(ll, q.choices)]\n')],
        [BY_HAND + "::test_acc_and_acc_norm_pick_by_hand"],
    ),
    Plant(
        "bits-per-byte-counts-characters",
        "bits per byte divides by the document's characters, not its UTF-8 bytes",
        [(RUNNER, '        doc_bytes.append(len(text.encode("utf-8")))\n', "        doc_bytes.append(len(text))\n")],
        [BY_HAND + "::test_perplexity_and_bits_per_byte_by_hand"],
    ),
    Plant(
        "stride-window-scores-a-token-twice",
        "each rolling window after the first also scores the token before its own (scored twice)",
        [
            (
                REQUESTS,
                "        out.append(window(full, begin, end, seq_length, eod))\n",
                "        out.append(window(full, max(0, begin - 1), end, seq_length, eod))\n",
            )
        ],  # fmt: skip
        [
            BY_HAND + "::test_rolling_windows_position_by_position",
            BY_HAND + "::test_perplexity_and_bits_per_byte_by_hand",
        ],
    ),
    Plant(
        "stride-windows-without-context",
        "a rolling window's input starts just before its first scored token (no more context; the last not extended)",
        [
            (
                REQUESTS,
                "        out.append(window(full, begin, end, seq_length, eod))\n",
                "        out.append(window(full[begin:], 0, end - begin, seq_length, eod))\n",
            )
        ],  # fmt: skip
        [
            BY_HAND + "::test_rolling_windows_position_by_position",
            BY_HAND + "::test_perplexity_and_bits_per_byte_by_hand",
        ],
    ),
    Plant(
        "continuation-first-token-unscored",
        "a continuation scored alone misses its first token (the mask starts one position late)",
        [
            (
                REQUESTS,
                "    return window(full, n - len(cont), n, seq_length, eod)\n",
                "    return window(full, n - len(cont) + 1, n, seq_length, eod)\n",
            )
        ],  # fmt: skip
        [BY_HAND + "::test_option_logliks_by_hand"],
    ),
    Plant(
        "packed-option-mask-one-late",
        "options packed behind one prompt are scored one position late (into the next option's first token)",
        [
            (
                REQUESTS,
                "            masks.append((start, start + len(seg_tokens)))\n",
                "            masks.append((start + 1, start + len(seg_tokens) + 1))\n",
            )
        ],  # fmt: skip
        [BY_HAND + "::test_option_logliks_by_hand"],
    ),
    Plant(
        "dp-padding-scored-as-a-real-item",
        "the padding that fills the last, uneven pass is recorded under the pass's first item",
        [
            (
                SCORING,
                '        return self.samples[-1] | {"index": torch.tensor(-1)}\n',
                '        return self.samples[-1] | {"index": torch.tensor(self.start)}\n',
            )
        ],  # fmt: skip
        [DP],
    ),
]
