"""SFT and preference readers: both SFT layouts, chat-row validation, preference pairs."""

from __future__ import annotations

import json

import pytest

from megatron_biomed.data.tasks import (
    PreferenceExample,
    ReadReport,
    SFTExample,
    TaskDataError,
    read_preferences,
    read_sft,
)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And?"},
        {"role": "assistant", "content": "Done."}]


def test_sft_both_layouts(write):
    rows = [{"prompt": "What is 2+2?", "response": "4", "id": 17}, {"messages": CHAT}]
    path = write("sft.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert read_sft(path) == [
        SFTExample((("user", "What is 2+2?"), ("assistant", "4")), uid="17"),
        SFTExample(tuple((m["role"], m["content"]) for m in CHAT), uid=f"{path}:2"),
    ]


SFT_BAD = [
    ({"messages": CHAT[:-1]}, "last turn not assistant", "the last turn must be the assistant's, got 'user'"),
    ({"messages": CHAT[:1]}, "last turn not assistant", "the last turn must be the assistant's, got 'system'"),
    ({"messages": []}, "empty 'messages'", "'messages' is empty"),
    ({"messages": "Hi"}, "bad 'messages'", "'messages' must be a list of {role, content} objects, got string"),
    ({"messages": [CHAT[1], "Hello."]}, "bad message",
     "message 1 must be an object with 'role' and 'content', got string"),
    ({"messages": [CHAT[1], {"role": "bot", "content": "x"}]}, "bad role",
     "message 1: role 'bot' is not one of system, user, assistant"),
    ({"messages": [{"content": "x"}, CHAT[2]]}, "bad role",
     "message 0: role None is not one of system, user, assistant"),
    ({"messages": [CHAT[1], CHAT[0], CHAT[2]]}, "system turn not first",
     "message 1: a system turn may only come first"),
    ({"messages": [CHAT[1], {"role": "assistant"}]}, "missing 'content'", "message 1: missing 'content'"),
    ({"messages": [CHAT[1], {"role": "assistant", "content": " "}]}, "empty 'content'",
     "message 1: 'content' is empty"),
    ({"messages": [{"role": "user", "content": ["x"]}, CHAT[2]]}, "'content' not a string",
     "message 0: 'content' must be a string, got array"),
    ({"prompt": "p"}, "missing 'response'", "missing 'response'"),
    ({"prompt": "", "response": "r"}, "empty 'prompt'", "'prompt' is empty"),
    ({"prompt": "p", "response": "r", "messages": CHAT}, "both 'messages' and 'prompt'",
     "row has both 'messages' and 'prompt'/'response'; give one of the two layouts"),
    ({"text": "p"}, "no 'messages' or 'prompt'", "row has neither 'messages' nor 'prompt'/'response'"),
]


@pytest.mark.parametrize("row,reason,problem", SFT_BAD, ids=[f"{i}-{case[1]}" for i, case in enumerate(SFT_BAD)])
def test_sft_bad_row(write, row, reason, problem):
    path = write("sft.jsonl", json.dumps({"messages": CHAT}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(TaskDataError) as err:
        read_sft(path)
    assert str(err.value) == f"{path}:2: {problem}"
    report = ReadReport(str(path))
    assert len(read_sft(path, skip_bad=True, report=report)) == 1
    assert report.skipped == {reason: 1}


def test_preferences(write):
    rows = [
        {"prompt": "Q?", "chosen": "Good.", "rejected": "Bad.", "id": "p1"},
        {"prompt": "Q?", "chosen": "Same.", "rejected": "Same."},
        {"prompt": "Q?", "chosen": "Good."},
        {"prompt": "Q?", "chosen": [{"role": "assistant", "content": "x"}], "rejected": "Bad."},
        {"prompt": " ", "chosen": "a", "rejected": "b"},
        {"prompt": "Q2?", "chosen": "Fine.", "rejected": "Worse."},
    ]
    path = write("pref.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskDataError) as err:
        read_preferences(path)
    assert str(err.value) == f"{path}:2: 'chosen' and 'rejected' are the same text"
    report = ReadReport(str(path))
    assert read_preferences(path, skip_bad=True, report=report) == [
        PreferenceExample("Q?", "Good.", "Bad.", "p1"), PreferenceExample("Q2?", "Fine.", "Worse.", f"{path}:6")]
    assert report.skipped == {"chosen equals rejected": 1, "missing 'rejected'": 1, "'chosen' not a string": 1,
                              "empty 'prompt'": 1}
    assert report.first_errors[2] == f"{path}:4: 'chosen' must be a string, got array"
