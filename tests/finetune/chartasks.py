"""Fine-tuning tasks built on a one-token-per-character tokenizer, from a few records written by the test.

With one token per character, a test can write down by hand which position holds which token and which
labels are trained on, from the raw text, without calling the encoder it checks. No toy checkpoint or trained
tokenizer is needed (the model, where one is built, gets fresh weights from the config's seed).
"""

from __future__ import annotations

import json

import megatron_biomed.finetune.task_base as task_base
from megatron_biomed.config.loading import load_config
from megatron_biomed.training.tasks import build_task

EOD = 300  # end of document and padding id: above every character id (1..250), below the tiny vocab (512)
# The added tokens of BioMedLM's input formats (finetune/formats.py), as a vocabulary extension would number them.
ADDED = {t: EOD + 1 + i for i, t in enumerate(("[PAD]", "[CLS]", "[SEP]", "<|CONTEXT|>", "<|QUESTION1|>",
                                                "<|QUESTION2|>", "<|ANSWER|>"))}  # fmt: skip


def ids(text: str) -> list[int]:
    """The character tokenizer's ids, written independently of it: one id per character."""
    return [ord(c) % 250 + 1 for c in text]


def positions(pieces) -> list[tuple[int, int, int]]:
    """(input, label, trained) of each position of one document made of ``pieces`` = [(text, is response)],
    closed by the end-of-document token (trained on: the model learns to stop). Position ``i`` reads token
    ``i``; its label is token ``i + 1``, trained on where that token is a response's or the closing one."""
    toks = [(t, int(resp)) for text, resp in pieces for t in ids(text)] + [(EOD, 1)]
    return [(toks[i][0], toks[i + 1][0], toks[i + 1][1]) for i in range(len(toks) - 1)]


def chat(prompt: str, response: str) -> list[tuple[str, bool]]:
    """The ``plain`` chat template, written out: the user line and the assistant prefix are prompt."""
    return [(f"User: {prompt}\n", False), ("Assistant: ", False), (f"{response}\n", True)]


class CharTokenizer:
    eod_id = EOD
    vocab_size = EOD + 1 + len(ADDED)

    def encode(self, text: str) -> list[int]:
        return ids(text)

    def token_to_id(self, token: str) -> int | None:
        return ADDED.get(token)


FORMATS = {"sft": "sft", "dpo": "preference", "mc": "medqa", "classify": "pubmedqa"}


def char_config(tmp_path, task: str, records, *sets: str, seq: int = 32):
    """An experiment config for ``task`` trained on ``records`` (written to a file: a JSON list of rows, or a
    JSON object for PubMedQA), tiny-biomedlm, ``seq`` positions per sequence."""
    path = tmp_path / f"{task}.json{'l' if isinstance(records, list) else ''}"
    if isinstance(records, list):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return load_config(
        "tiny-biomedlm",
        overrides=[f"task.name={task}", "data.tokenizer=char", f"task.train_file={path}",
                   f"task.format={FORMATS[task]}", f"task.max_seq_length={seq}", *sets],
    )  # fmt: skip


def use_char_tokenizer(monkeypatch) -> None:
    """Fine-tuning tasks built from now on (in this test) read text with :class:`CharTokenizer`."""
    monkeypatch.setattr(task_base, "load_run_tokenizer", lambda cfg, path=None: CharTokenizer())


def char_task(monkeypatch, tmp_path, task: str, records, *sets: str, seq: int = 32):
    use_char_tokenizer(monkeypatch)
    return build_task(char_config(tmp_path, task, records, *sets, seq=seq), None)
