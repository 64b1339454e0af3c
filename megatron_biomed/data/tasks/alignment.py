"""Readers for fine-tuning data: SFT conversations and DPO preference pairs, both JSONL."""

from __future__ import annotations

import os

from megatron_biomed.data.tasks._fields import BadRecord, check_text, json_kind, record_uid, require_text, short
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import PreferenceExample, SFTExample
from megatron_biomed.data.tasks.source_files import Collector, iter_jsonl

CHAT_ROLES = ("system", "user", "assistant")


def _chat_messages(messages: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(messages, list):
        raise BadRecord("bad 'messages'", f"'messages' must be a list of {{role, content}} objects, "
                                          f"got {json_kind(messages)}")
    if not messages:
        raise BadRecord("empty 'messages'", "'messages' is empty")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRecord("bad message", f"message {i} must be an object with 'role' and 'content', "
                                           f"got {json_kind(message)}")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise BadRecord("bad role", f"message {i}: role {short(role)} is not one of {', '.join(CHAT_ROLES)}")
        if role == "system" and i > 0:
            raise BadRecord("system turn not first", f"message {i}: a system turn may only come first")
        if "content" not in message:
            raise BadRecord("missing 'content'", f"message {i}: missing 'content'")
        try:
            content = check_text(message["content"], "'content'")
        except BadRecord as e:
            raise BadRecord(e.reason, f"message {i}: {e.problem}") from None
        turns.append((role, content))
    if turns[-1][0] != "assistant":
        raise BadRecord("last turn not assistant", f"the last turn must be the assistant's, got {turns[-1][0]!r}")
    return tuple(turns)


def _sft_example(row: dict, default_uid: str) -> SFTExample:
    has_pair = "prompt" in row or "response" in row
    if "messages" in row:
        if has_pair:
            raise BadRecord("both 'messages' and 'prompt'", "row has both 'messages' and 'prompt'/'response'; "
                                                            "give one of the two layouts")
        messages = _chat_messages(row["messages"])
    elif has_pair:
        messages = (("user", require_text(row, "prompt")), ("assistant", require_text(row, "response")))
    else:
        raise BadRecord("no 'messages' or 'prompt'", "row has neither 'messages' nor 'prompt'/'response'")
    return SFTExample(messages=messages, uid=record_uid(row, default_uid))


def read_sft(path: str | os.PathLike, *, skip_bad: bool = False,
             report: ReadReport | None = None) -> list[SFTExample]:
    """SFT JSONL: each row is ``{"prompt", "response"}`` (one user and one assistant turn) or
    ``{"messages": [{"role", "content"}, ...]}`` with roles system/user/assistant, a system turn
    only first, non-empty contents and the assistant's turn last."""
    col = Collector(path, skip_bad, report)
    examples = []
    for line, row in iter_jsonl(col):
        try:
            examples.append(_sft_example(row, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return examples


def _preference_example(row: dict, default_uid: str) -> PreferenceExample:
    prompt, chosen, rejected = (require_text(row, key) for key in ("prompt", "chosen", "rejected"))
    if chosen == rejected:
        raise BadRecord("chosen equals rejected", "'chosen' and 'rejected' are the same text")
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected, uid=record_uid(row, default_uid))


def read_preferences(path: str | os.PathLike, *, skip_bad: bool = False,
                     report: ReadReport | None = None) -> list[PreferenceExample]:
    """Preference JSONL: ``{"prompt", "chosen", "rejected"}``, all non-empty strings, chosen != rejected
    (an identical pair carries no preference signal)."""
    col = Collector(path, skip_bad, report)
    examples = []
    for line, row in iter_jsonl(col):
        try:
            examples.append(_preference_example(row, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return examples
