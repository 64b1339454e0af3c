"""Plants in fine-tuning: SFT/DPO loss masks and packing, the DPO task loss, and the position a scoring head reads.

Each is caught by a test on a tiny model or on encoded samples alone (tests/finetune/test_loss_masks.py,
test_dpo.py, test_head_positions.py), a few seconds each."""

from __future__ import annotations

from plant import Plant

ENCODING = "megatron_biomed/finetune/encoding.py"
DPO = "megatron_biomed/finetune/dpo.py"
HEADS = "megatron_biomed/models/heads.py"
MASKS = "tests/finetune/test_loss_masks.py"
DPO_TASK = "tests/finetune/test_dpo.py::test_task_loss_with_sft_weight_matches_float64_hand_computation"
HEAD_POS = "tests/finetune/test_head_positions.py"

PLANTS = [
    Plant(
        "sft-loss-mask-shifted-by-one",
        "the loss mask is aligned with the inputs instead of the labels (each position trained on the wrong token)",
        [(ENCODING, "    return ids[:-1], ids[1:], mask[1:]", "    return ids[:-1], ids[1:], mask[:-1]")],
        [MASKS + "::test_sft_prompt_response_and_end_of_document_masks"],
        fast=True,
    ),
    Plant(
        "end-of-document-not-trained",
        "the closing end-of-document is masked out (the model never learns to stop)",
        [(ENCODING, "    ids.append(eod)\n    mask.append(1)", "    ids.append(eod)\n    mask.append(0)")],
        [MASKS + "::test_sft_prompt_response_and_end_of_document_masks", MASKS + "::test_dpo_pair_masks"],
    ),
    Plant(
        "packed-documents-see-each-other",
        "packed SFT documents share one document id (attention crosses the boundary)",
        [(ENCODING, "            doc += [d] * len(x)", "            doc += [0] * len(x)")],
        [MASKS + "::test_sft_packed_boundaries_and_padding"],
    ),
    Plant(
        "packed-positions-not-restarted",
        "position ids run on across packed documents instead of restarting at each",
        [
            (
                ENCODING,
                "            pos += list(range(len(x)))",
                "            pos += list(range(len(pos), len(pos) + len(x)))",
            )
        ],
        [
            MASKS + "::test_sft_packed_boundaries_and_padding",
            MASKS + "::test_sft_packed_loss_equals_float64_sum_over_response_labels",
        ],
    ),  # fmt: skip
    Plant(
        "head-reads-the-padding",
        "a multiple-choice option is read at the last position of the padded sequence, not its last real token",
        [(ENCODING, "        last.append(len(ids) - 1)", "        last.append(seq_length - 1)")],
        [HEAD_POS + "::test_multiple_choice_rows_keep_each_options_end"],
    ),
    Plant(
        "truncation-keeps-the-start",
        "a too-long option or classification prompt is truncated from the right (the option / question is lost)",
        [(ENCODING, "        return ids[-seq_length:]", "        return ids[:seq_length]")],
        [
            HEAD_POS + "::test_multiple_choice_rows_keep_each_options_end",
            HEAD_POS + "::test_classification_rows_keep_the_question",
        ],
    ),  # fmt: skip
    Plant(
        "scoring-head-reads-the-last-position",
        "the scoring head pools the last position of every row whatever its last real token",
        [
            (
                HEADS,
                "        last = hidden_states[last_index.to(hidden_states.device), batch]  # [b, h]",
                "        last = hidden_states[-1]  # [b, h]",
            )
        ],
        [HEAD_POS + "::test_scoring_head_reads_the_given_position_of_each_row"],
    ),
    Plant(
        "choices-flattened-option-major",
        "the flattened rows' last indices are taken option by option instead of item by item",
        [
            (
                HEADS,
                '        "last_index": batch["last_index"].reshape(rows),',
                '        "last_index": batch["last_index"].t().reshape(rows),',
            )
        ],
        [HEAD_POS + "::test_head_scores_the_hidden_state_at_the_last_real_token[mc]"],
    ),  # fmt: skip
    Plant(
        "dpo-sft-weight-ignored",
        "the DPO task drops task.dpo_sft_weight (no SFT term on the chosen responses)",
        [
            (
                DPO,
                "                                self.cfg.task.dpo_sft_weight, tokens_c)  # fmt: skip",
                "                                0.0, tokens_c)  # fmt: skip",
            )
        ],
        [DPO_TASK],
    ),
    Plant(
        "dpo-sft-term-sign-flipped",
        "the SFT term of DPO adds the chosen log-prob instead of its negative (pushes the chosen response down)",
        [
            (
                DPO,
                "        loss = loss + sft_weight * (-policy_c / tokens_c)",
                "        loss = loss + sft_weight * (policy_c / tokens_c)",
            )
        ],
        [DPO_TASK],
    ),  # fmt: skip
    Plant(
        "dpo-sft-term-per-rejected-token",
        "the SFT term is normalised by the rejected response's token count",
        [
            (
                DPO,
                "        tokens_c = loss_mask.view(2, -1, loss_mask.shape[-1])[0].sum(-1)",
                "        tokens_c = loss_mask.view(2, -1, loss_mask.shape[-1])[1].sum(-1)",
            )
        ],
        [DPO_TASK],
    ),
    Plant(
        "dpo-rows-interleaved",
        "pairs go to the model as [c0, r0, c1, r1, ...] but are read back as [all chosen, all rejected]",
        [
            (
                DPO,
                "            return x.transpose(0, 1).reshape(-1, x.shape[-1])",
                "            return x.reshape(-1, x.shape[-1])",
            )
        ],
        [DPO_TASK],
    ),  # fmt: skip
    Plant(
        "dpo-reference-by-position",
        "the reference log-probs are taken by position in the micro-batch, not by the pairs' dataset index",
        [
            (
                DPO,
                "        ref = self.reference[split][index.cpu()].to(logps.device).float()",
                "        ref = self.reference[split][: index.numel()].to(logps.device).float()",
            )
        ],
        [DPO_TASK],
    ),
]
