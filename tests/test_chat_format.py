import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from lima_repro.chat_format import (
    IGNORE,
    VICUNA_SYSTEM,
    ChatFormat,
    chat_template,
    encode,
    encode_prompt,
    render,
    render_vicuna,
)

EOT = "<|eot|>"
LIMA, VICUNA = ChatFormat("lima", EOT), ChatFormat("vicuna", EOT)
CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi?"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "Ok"},
    {"role": "assistant", "content": "Bye"},
]


def with_eot(tok):
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
    enc = encode(tok, CONV, LIMA)
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
    enc = encode(tok, CONV, LIMA)
    templ = tok.apply_chat_template(CONV, tokenize=True)
    templ = templ["input_ids"] if hasattr(templ, "keys") else templ
    assert enc["input_ids"] == list(templ)
    assert encode_prompt(tok, CONV[:4], LIMA) == enc["input_ids"][:24]


def test_trimming_keeps_the_first_max_length_tokens(tokenizer):
    tok = with_eot(tokenizer)
    full = encode(tok, CONV, LIMA)
    cut = encode(tok, CONV, LIMA, max_length=18)
    assert cut["input_ids"] == full["input_ids"][:18] and cut["labels"] == full["labels"][:18]


def test_vicuna_two_turns_exact_text_and_spans():
    """FastChat's vicuna_v1.1 (ADD_COLON_TWO, sep " ", sep2 "</s>"), its own system line when none is given."""
    text, spans = render_vicuna(CONV[1:], "<s>", "</s>")
    assert text == f"<s>{VICUNA_SYSTEM} USER: Hi? ASSISTANT: Yes.</s>USER: Ok ASSISTANT: Bye</s>"
    assert [text[a:b] for a, b in spans] == ["Yes.</s>", "Bye</s>"]
    prompt, _ = render_vicuna(CONV[:4], None, "</s>", generation_prompt=True)
    assert prompt == "Be brief. USER: Hi? ASSISTANT: Yes.</s>USER: Ok ASSISTANT:"


def with_vicuna(tok):
    tok.chat_template = VICUNA.jinja()
    return tok


@pytest.mark.parametrize("conv", [CONV, CONV[1:], CONV[1:4], CONV[:2]], ids=["system", "own-system", "3-turns", "open"])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_vicuna_jinja_equals_render_vicuna(tokenizer, conv, generation_prompt):
    tok = with_vicuna(tokenizer)
    jinja = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=generation_prompt)
    assert jinja == render_vicuna(conv, "<s>", "</s>", generation_prompt)[0]
    assert jinja == VICUNA.render(conv, tok, generation_prompt)[0]


def test_vicuna_labels_are_each_answer_and_its_eos(tokenizer):
    """Llama-like tokenizer (`<s>`, `</s>`), one token per character: the labels are exactly "Yes.</s>" and
    "Bye</s>"; the system line, `USER: ...` and `ASSISTANT: ` carry none, and no EOT token exists."""
    enc = encode(tokenizer, CONV[1:], VICUNA)
    ids, labels = enc["input_ids"], enc["labels"]
    assert tokenizer.decode(ids) == render_vicuna(CONV[1:], "<s>", "</s>")[0]
    runs, cur = [], []
    for i, lab in enumerate(labels):
        if lab != IGNORE:
            assert lab == ids[i]
            cur.append(lab)
        elif cur:
            runs, cur = [*runs, cur], []
    runs += [cur] if cur else []
    assert [tokenizer.decode(r) for r in runs] == ["Yes.</s>", "Bye</s>"]
    assert [r[-1] for r in runs] == [tokenizer.eos_token_id] * 2 and EOT not in tokenizer.get_vocab()
    assert ids == tokenizer.apply_chat_template(
        CONV[1:], chat_template=VICUNA.jinja(), tokenize=True, return_dict=False
    )


def test_vicuna_prompt_ends_with_assistant_and_lima_prompt_with_eot(tokenizer):
    prompt = encode_prompt(tokenizer, CONV[1:4], VICUNA)
    assert tokenizer.decode(prompt).endswith("USER: Ok ASSISTANT:")
    assert prompt == encode(tokenizer, CONV[1:], VICUNA)["input_ids"][: len(prompt)]  # training text continues it
    tok = with_eot(tokenizer)
    assert tok.decode(encode_prompt(tok, CONV[1:4], LIMA)).endswith(f"Ok{EOT}")


def test_a_token_holding_the_space_before_an_answer_carries_loss():
    """Word-piece tokenizers (Llama's `▁Yes`, GPT-2's `ĠYes`) put the separator before an answer into its first
    token: that token carries loss, as in FastChat's training; the colon before it does not."""
    specials = ["<pad>", "<s>", "</s>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate([*specials, *alphabet, "ĠY"])}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "Y")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens([AddedToken(t, special=True) for t in specials])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    conv = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yes."}]
    enc = encode(tok, conv, VICUNA)
    carried = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE]
    assert tok.convert_ids_to_tokens(carried) == ["ĠY", "e", "s", ".", "</s>"]


def test_format_dispatch_end_token_and_new_token(tokenizer):
    assert (LIMA.new_token, LIMA.end_token(tokenizer)) == (EOT, EOT)
    assert (VICUNA.new_token, VICUNA.end_token(tokenizer)) == (None, "</s>")
    assert LIMA.jinja() == chat_template(EOT) and "ASSISTANT:" in VICUNA.jinja()
