"""Stack Exchange comment chains -> multi-turn candidates (LIMA sec. 1 dialogue), and the wikihowSep.csv layout."""

from __future__ import annotations

import random

import pytest

from lima_repro import data
from lima_repro.config import SEDialogueConfig, WikiHowConfig, load_config
from lima_repro.curate import curate
from lima_repro.data import resolve_path
from lima_repro.sources import StepLog, se_dialogue, wikihow

SE = "demo_raw:stackexchange/"


def steps(log: StepLog) -> dict[str, tuple[int, int]]:
    return {s["step"]: (s["kept"], s["dropped"]) for s in log.as_dict()["steps"]}


# ---- Stack Exchange dialogue chains ------------------------------------------------------------------------
def test_demo_chains_each_rule_counted():
    log, cfg = StepLog(), SEDialogueConfig()
    site, n_q, cooking = se_dialogue.site_chains(resolve_path(SE + "cooking.stackexchange.com"), cfg, log)
    assert (site, n_q, [e["id"] for e in cooking]) == ("cooking", 3, ["se-dialogue-cooking-1"])
    _, _, math = se_dialogue.site_chains(resolve_path(SE + "math.stackexchange.com"), cfg, log)  # comments.xml
    assert math == []
    assert steps(log) == {
        "dlg.top_answer_score": (10, 1),  # math answer 9 scores 7
        "dlg.asker_and_answerer_known_and_distinct": (10, 0),
        "dlg.comment_by_asker_or_answerer": (11, 2),  # user 77 and a deleted user's comment left out
        "dlg.min_comment_chars": (9, 1),  # "See 25!."
        "dlg.alternating_authors": (8, 1),  # the answerer speaks first under the harmonic-series answer
        "dlg.min_turns": (1, 7),  # cast iron: the asker's question got no reply; the rest have no comments
        "dlg.unedited_candidates (the paper edited its chains by hand)": (1, 0),
    }
    assert log.skips == {
        "se_dialogue: comment without a numeric Id": 1,
        "se_dialogue: post without a numeric Id or Score, or fabricated": 2,
    }
    ex = cooking[0]
    assert set(ex) == {"id", "source", "messages", "tags", "_meta"}
    assert ex["source"] == "multi_turn" and ex["tags"] == ["multi_turn"]
    msgs = ex["messages"]
    data.validate_messages(msgs, "chain", 0, ends_with="assistant")
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3  # the asker's trailing "That worked" is cut
    assert msgs[0]["content"].startswith("Why does bread dough need to rest after kneading?\n\nRecipes say")
    assert msgs[1]["content"].startswith("Resting, often called bench rest")
    assert msgs[2]["content"] == "Does the same rest help pizza dough that goes into the fridge overnight?"
    assert msgs[3]["content"].startswith("Yes. A cold rest")  # ordered by CreationDate, not by Id
    assert msgs[4]["content"].startswith("And if it still shrinks") and "@" not in "".join(m["content"] for m in msgs)


def _site(tmp_path, posts: list[str], comments: list[str] | None, comments_name="COMMENTS.XML"):
    folder = tmp_path / "cooking.stackexchange.com"
    folder.mkdir()
    (folder / "Posts.xml").write_text("<posts>\n" + "\n".join(posts) + "\n</posts>\n", encoding="utf-8")
    if comments is not None:
        (folder / comments_name).write_text("<comments>\n" + "\n".join(comments) + "\n</comments>\n", encoding="utf-8")
    return folder


def _c(i, post, minute, text, who):
    return f'<row Id="{i}" PostId="{post}" Text="{text}" CreationDate="2022-01-01T10:{minute:02d}:00.000" {who} />'


ASK, REPLY = "Could the same trick work with a convection oven setting?", "Yes, lower the temperature by about 20 C."


def test_identity_self_answers_and_max_turns(tmp_path):
    posts = [  # q1: the asker is a deleted user known by name only; q3: answered by its own asker
        '<row Id="1" PostTypeId="1" Score="9" Title="How long should a loaf cool?" Body="&lt;p&gt;Q&lt;/p&gt;" '
        'OwnerDisplayName="Flour Child" />',
        '<row Id="2" PostTypeId="2" ParentId="1" Score="12" Body="&lt;p&gt;An hour.&lt;/p&gt;" OwnerUserId="7" />',
        '<row Id="3" PostTypeId="1" Score="8" Title="Why do cakes sink?" Body="" OwnerUserId="5" />',
        '<row Id="4" PostTypeId="2" ParentId="3" Score="30" Body="&lt;p&gt;Underbaking.&lt;/p&gt;" OwnerUserId="5" />',
    ]
    comments = [
        _c(1, 2, 0, "@Baker " + ASK, 'UserDisplayName="Flour Child"'),
        _c(2, 2, 1, REPLY, 'UserId="7"'),
        _c(3, 2, 2, ASK.replace("convection", "fan"), 'UserDisplayName="flour child"'),
        _c(4, 2, 3, "@FlourChild: " + REPLY, 'UserId="7"'),
        _c(5, 4, 0, ASK, 'UserId="9"'),
        _c(6, 4, 1, REPLY, 'UserId="5"'),
    ]
    log = StepLog()
    folder = _site(tmp_path, posts, comments)
    _, n_q, out = se_dialogue.site_chains(folder, SEDialogueConfig(max_turns=5), log)
    assert n_q == 2 and [len(e["messages"]) for e in out] == [4]  # 6 messages cut to 5, then to end on the answerer
    assert out[0]["messages"][0]["content"] == "How long should a loaf cool?\n\nQ"
    assert out[0]["messages"][3]["content"] == REPLY
    assert steps(log)["dlg.asker_and_answerer_known_and_distinct"] == (1, 1)
    cfg = SEDialogueConfig(min_answer_score=13)  # now the loaf answer (score 12) is too low
    assert se_dialogue.site_chains(folder, cfg, StepLog())[2] == []


def test_missing_comments_file_is_a_clear_error(tmp_path):
    folder = _site(tmp_path, ['<row Id="1" PostTypeId="1" Score="1" Title="T" Body="" />'], None)
    with pytest.raises(data.DataError, match="no Comments.xml") as e:
        se_dialogue.site_chains(folder, SEDialogueConfig(), StepLog())
    assert "Comments.xml" in e.value.fix


def test_truncated_comments_xml(tmp_path):
    folder = _site(tmp_path, ['<row Id="1" PostTypeId="1" Score="1" Title="T" Body="" />'], None)
    (folder / "Comments.xml").write_text('<comments>\n<row Id="1" PostId="2" Text="cut', encoding="utf-8")
    with pytest.raises(data.DataError, match="XML error"):
        se_dialogue.site_chains(folder, SEDialogueConfig(), StepLog())


def _demo(tmp_path, **overrides):
    # the raw-curation rules without the demo's final diversity selection (tested on its own below)
    cfg = load_config(
        "demo", overrides={"curate.count_tokens": False, "curate.selector": None, "curate.select_n": None, **overrides}
    )
    cfg.run_dir = str(tmp_path / "run")
    return cfg


def test_se_dialogue_is_off_by_default_and_wired_into_curate(tmp_path):
    assert load_config("paper").curate.se_dialogue.n == 20 and load_config("demo").curate.se_dialogue.dumps == []
    dumps = [SE + "math.stackexchange.com", SE + "cooking.stackexchange.com"]
    splits, logs = curate(_demo(tmp_path, **{"curate.se_dialogue.dumps": dumps, "curate.se_dialogue.n": 1}))
    chains = [e for e in splits["train"] if e["source"] == "multi_turn"]
    assert [e["id"] for e in chains] == ["se-dialogue-cooking-1"] and "_meta" not in chains[0]
    assert len(splits["train"]) == 60  # the demo's 59 plus the chain
    assert steps_of(logs["multi_turn"])["sample.target_count"] == (1, 0)
    with pytest.raises(data.DataError, match=r"curate.se_dialogue.n.*only 1 candidates"):
        curate(_demo(tmp_path, **{"curate.se_dialogue.dumps": dumps, "curate.se_dialogue.n": 2}))


@pytest.mark.parametrize(
    "key,value", [("curate.se_dialogue.tau", 0.0), ("curate.se_dialogue.min_turns", 1), ("curate.se_dialogue.n", -1)]
)
def test_bad_se_dialogue_settings(tmp_path, key, value):
    from lima_repro.config import ConfigError

    with pytest.raises(ConfigError, match=r"se_dialogue\.(tau|min_turns|n)"):
        curate(_demo(tmp_path, **{key: value}))


def steps_of(log: dict) -> dict[str, tuple[int, int]]:
    return {s["step"]: (s["kept"], s["dropped"]) for s in log["steps"]}


# ---- wikihowSep.csv ---------------------------------------------------------------------------------------
SEP = (
    "overview,headline,text,sectionLabel,title\n"
    '"This article shows how to fold a paper crane.",Crease a square,"Fold it in half both ways.",'
    "Making the Base,How to Fold a Paper Crane1\n"
    '"This article shows how to fold a paper crane.",Form the bird base.,"Collapse the folds into a diamond.",'
    "Making the Base,How to Fold a Paper Crane1\n"
    '"This article shows how to fold a paper crane.",Shape the wings,"Pull the wings down gently.\n'
    'Then curve the neck.",Finishing,How to Fold a Paper Crane1\n'
    '"Sourdough starts with a jar.",Mix flour and water,"Stir equal weights.",Steps,How to Start a Starter\n'
    '"Sourdough starts with a jar.",Feed daily,"Discard half, then feed. See https://example.org/x",'
    "Steps,How to Start a Starter\n"
    '"An intro only.",,,Steps,How to Do Very Little\n'
    "too,few,fields\n"
)


def test_wikihow_sep_layout_groups_steps_into_articles(tmp_path):
    f = tmp_path / "wikihowSep.csv"
    f.write_text(SEP, encoding="utf-8")
    log = StepLog()
    pools = wikihow.read_candidates(f, WikiHowConfig(), log, random.Random(0))
    arts = pools["uncategorized"]
    assert [e["messages"][0]["content"] for e in arts] == ["How to Fold a Paper Crane?", "How to Start a Starter?"]
    assert arts[0]["messages"][1]["content"] == (
        "The following answer shows how to fold a paper crane.\n\nMaking the Base\n\n"
        "Crease a square. Fold it in half both ways.\n\nForm the bird base. Collapse the folds into a diamond.\n\n"
        "Finishing\n\nShape the wings. Pull the wings down gently.\nThen curve the neck."
    )
    starter = arts[1]["messages"][1]["content"]  # one section only: no label line; the URL is removed
    assert starter.startswith("Sourdough starts with a jar.\n\nMix flour and water. Stir equal weights.")
    assert "Steps" not in starter and "example.org" not in starter
    assert arts[0]["id"].endswith("-2") and arts[1]["id"].endswith("-6")  # first line (a quoted field spans two)
    assert steps(log)["wikihow.has_title_and_text"] == (2, 1)  # the overview-only article
    assert log.skips == {"wikihow: row with the wrong number of fields": 1}


@pytest.mark.parametrize(
    "header,match",
    [
        ("overview,headline,text,title", r"missing column\(s\) \['sectionlabel'\] of the wikihowSep"),
        ("name,body", r"missing column\(s\) \['title', 'text'\]"),
    ],
)
def test_wikihow_unknown_headers(tmp_path, header, match):
    f = tmp_path / "w.csv"
    f.write_text(header + "\na,b,c,d\n", encoding="utf-8")
    with pytest.raises(data.DataError, match=match) as e:
        wikihow.read_candidates(f, WikiHowConfig(), StepLog(), random.Random(0))
    assert "overview,headline,text,sectionLabel,title" in e.value.fix and "headline,title,text" in e.value.fix
