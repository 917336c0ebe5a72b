from lima_repro.chat_format import IGNORE, VICUNA_SYSTEM, chat_template, encode, encode_prompt, render, render_vicuna

EOT = "<|eot|>"
CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "Ok"},
    {"role": "assistant", "content": "Bye"},
]


def with_eot(tok):
    from tokenizers import AddedToken

    tok.add_tokens([AddedToken(EOT, special=True, normalized=False)], special_tokens=True)
    tok.chat_template = chat_template(EOT)
    return tok


def test_render_spans_cover_assistant_text_and_eot():
    text, spans = render(CONV, "<s>", EOT)
    assert text == f"<s>Be brief.\n\nHi?{EOT}Yes.{EOT}Ok{EOT}Bye{EOT}"
    assert [text[a:b] for a, b in spans] == [f"Yes.{EOT}", f"Bye{EOT}"]


def test_loss_mask_exact_positions(tokenizer):
    tok = with_eot(tokenizer)
    eot_id = tok.convert_tokens_to_ids(EOT)
    enc = encode(tok, CONV, EOT)
    ids, labels = enc["input_ids"], enc["labels"]
    # byte-level tokenizer: one token per character, specials are one token each
    expected_tokens = ["<s>", *"Be brief.\n\nHi?", EOT, *"Yes.", EOT, *"Ok", EOT, *"Bye", EOT]
    assert len(ids) == len(expected_tokens)
    carries = [i for i, lab in enumerate(labels) if lab != IGNORE]
    # "Yes." + EOT are positions 16..20, "Bye" + EOT are 24..27 (prompt, system and user EOTs carry no loss)
    assert carries == [16, 17, 18, 19, 20, 24, 25, 26, 27]
    assert all(labels[i] == ids[i] for i in carries)
    assert ids[20] == ids[27] == eot_id and labels[15] == IGNORE and labels[23] == IGNORE


def test_training_format_equals_apply_chat_template(tokenizer):
    tok = with_eot(tokenizer)
    enc = encode(tok, CONV, EOT)
    templ = tok.apply_chat_template(CONV, tokenize=True)
    templ = templ["input_ids"] if hasattr(templ, "keys") else templ
    assert enc["input_ids"] == list(templ)
    assert encode_prompt(tok, CONV[:4], EOT) == enc["input_ids"][:24]


def test_trimming_keeps_the_first_max_length_tokens(tokenizer):
    tok = with_eot(tokenizer)
    full = encode(tok, CONV, EOT)
    cut = encode(tok, CONV, EOT, max_length=18)
    assert cut["input_ids"] == full["input_ids"][:18] and cut["labels"] == full["labels"][:18]


def test_vicuna_two_turns_exact_text_and_spans():
    """FastChat's vicuna_v1.1 (ADD_COLON_TWO, sep " ", sep2 "</s>"), its own system line when none is given."""
    text, spans = render_vicuna(CONV[1:], "<s>", "</s>")
    assert text == f"<s>{VICUNA_SYSTEM} USER: Hi? ASSISTANT: Yes.</s>USER: Ok ASSISTANT: Bye</s>"
    assert [text[a:b] for a, b in spans] == ["Yes.</s>", "Bye</s>"]
    prompt, _ = render_vicuna(CONV[:4], None, "</s>", generation_prompt=True)
    assert prompt == "Be brief. USER: Hi? ASSISTANT: Yes.</s>USER: Ok ASSISTANT:"
