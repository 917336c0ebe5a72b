import json

import pytest

from lima_repro.data import DataError, prompt_messages, read_examples, read_many


def write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_demo_data_is_shipped_and_valid():
    assert len(read_examples("demo:train.jsonl")) >= 40
    dev = read_examples("demo:dev.jsonl")
    test = read_examples("demo:test.jsonl", ends_with="user")
    assert dev and test
    assert any(len(ex["messages"]) > 2 for ex in read_examples("demo:train.jsonl"))  # multi-turn dialogues


def test_readers_for_every_format(tmp_path):
    rows = [
        {
            "id": "c1",
            "source": "mine",
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ],
        },
        {"conversations": ["Q1", "A1", "Q2", "A2"], "source": "multi_turn"},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
    ]
    p = write(tmp_path, "mix.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    exs = read_examples(p)
    assert [e["source"] for e in exs] == ["mine", "multi_turn", "sharegpt", "alpaca"]
    assert [m["role"] for m in exs[1]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert exs[3]["messages"][0]["content"] == "Add\n\n2 and 3"
    assert exs[1]["id"] == "mix-2"
    arr = write(tmp_path, "alpaca.json", json.dumps([{"instruction": "Say hi", "input": "", "output": "hi"}]))
    assert read_examples(arr)[0]["messages"][0]["content"] == "Say hi"


@pytest.mark.parametrize(
    "text,where,reason",
    [
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{"messages": [',
            ":2:",
            "malformed JSON",
        ),
        ('{"messages": [{"role": "assistant", "content": "b"}]}\n', ":1:", "'user' was expected"),
        ('{"messages": [{"role": "user", "content": "a"}]}\n', ":1:", "needs a response"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}\n', ":1:", "empty"),
        ('{"messages": [{"role": "user"}]}\n', ":1:", "lacks 'role' or 'content'"),
        ('{"prompt": "a", "completion": "b"}\n', ":1:", "unrecognised row"),
        ('["a", "b"]', ":item 0:", "expected a JSON object"),
        ('{"conversations": ["a", "b"], "id": "x"}\n{"conversations": ["c", "d"], "id": "x"}\n', ":2:", "duplicate id"),
    ],
)
def test_bad_rows_name_file_line_and_fix(tmp_path, text, where, reason):
    p = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(DataError) as e:
        read_examples(p)
    msg = str(e.value)
    assert str(p) + where in msg and reason in msg and "Fix:" in msg


def test_empty_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="file is empty"):
        read_examples(write(tmp_path, "empty.jsonl", "\n  \n"))
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid UTF-8"):
        read_examples(write(tmp_path, "bad.jsonl", b'{"conversations": ["a", "b"]}\n{"x": "\xff"}\n', mode="wb"))


def test_test_prompts_must_end_with_user_and_ids_unique_across_files(tmp_path):
    a = write(tmp_path, "a.jsonl", '{"id": "1", "conversations": ["hi"]}\n')
    b = write(tmp_path, "b.jsonl", '{"id": "1", "conversations": ["yo"]}\n')
    assert read_examples(a, ends_with="user")[0]["messages"] == [{"role": "user", "content": "hi"}]
    with pytest.raises(DataError, match="also appears in"):
        read_many([a, b], ends_with="user")
    conv = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"},
        ]
    }
    assert prompt_messages(conv) == conv["messages"][:3]
