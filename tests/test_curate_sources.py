"""Raw-source readers and the paper's rules (LIMA sec. 1) on the shipped demo dumps and hand-made rows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lima_repro.config import AskRedditConfig, NatInstConfig, StackExchangeConfig, WikiHowConfig, WritingPromptsConfig
from lima_repro.data import resolve_path
from lima_repro.sources import StepLog, natinst, reddit, stackexchange, wikihow
from lima_repro.sources.se_dump import site_name
from lima_repro.sources.se_sites import OTHER_SITES, STEM_SITES, site_group
from lima_repro.sources.text import first_person_count, html_to_markdown, refers_to_others, strip_links

SE = resolve_path("demo_raw:stackexchange")


def steps(log: StepLog) -> dict[str, tuple[int, int]]:
    return {s["step"]: (s["kept"], s["dropped"]) for s in log.as_dict()["steps"]}


def posts_xml(tmp_path, rows: list[str], site="math.stackexchange.com"):
    folder = tmp_path / site
    folder.mkdir()
    (folder / "Posts.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n", encoding="utf-8"
    )
    return folder


def q(i, score, title, body="&lt;p&gt;Body text of the question.&lt;/p&gt;", accepted=""):
    acc = f' AcceptedAnswerId="{accepted}"' if accepted else ""
    return f'  <row Id="{i}" PostTypeId="1"{acc} Score="{score}" Title="{title}" Body="{body}" />'


def a(i, parent, score, text):
    from xml.sax.saxutils import quoteattr

    return f'  <row Id="{i}" PostTypeId="2" ParentId="{parent}" Score="{score}" Body={quoteattr(text)} />'


GOOD = "<p>" + "A plain explanation of the idea with no personal pronouns at all. " * 20 + "</p>"  # ~1,340 chars


# ---- site lists -------------------------------------------------------------------------------------------
def test_site_lists_match_the_paper_split():
    assert len(STEM_SITES) == 75 and len(OTHER_SITES) == 99  # LIMA sec. 1
    assert not STEM_SITES & OTHER_SITES
    assert site_name("math.stackexchange.com.7z") == "math"
    assert site_name("stackoverflow.com-Posts.7z") == "stackoverflow"
    assert site_name("mathoverflow.net") == "mathoverflow"
    assert site_name("beer.stackexchange.com") == "alcohol"  # archive still named after the old domain
    assert site_name(Path("dumps/math.stackexchange.com/Posts.xml")) == "math"  # a table file: its folder's name
    assert site_name(Path("dumps/cooking.stackexchange.com/comments.xml")) == "cooking"
    assert site_group("math") == "stem" and site_group("cooking") == "other"
    assert site_group("meta.cooking") is None and site_group("nosuchsite") is None


# ---- HTML cleaner ---------------------------------------------------------------------------------------
def test_html_to_markdown_keeps_code_and_lists_drops_links_and_images():
    html = (
        '<p>See <a href="https://x.org/a">the manual</a> first.<img src="p.png" alt="shot"/></p>'
        '<pre><code>if a &lt; b:\n    print("x  y")\n</code></pre>'
        "<p>Use <code>ls -l</code> then:</p>"
        "<ol><li>one</li><li>two<ul><li>nested</li></ul></li></ol>"
        "<ul><li><p>para item</p></li></ul><h2>Title</h2><blockquote><p>quoted</p></blockquote>"
    )
    md = html_to_markdown(html)
    assert md == (
        'See the manual first.\n\n```\nif a < b:\n    print("x  y")\n```\n\nUse `ls -l` then:\n\n'
        "1. one\n2. two\n   - nested\n\n- para item\n\n## Title\n\n> quoted"
    )
    assert "http" not in md and "png" not in md


def test_strip_links_for_plain_text():
    assert strip_links("Read [the guide](https://a.b/c) or www.x.org now ![i](a.png)") == "Read the guide or now "


# ---- Stack Exchange filters -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "title,ok",
    [
        ("Why does the harmonic series diverge?", True),
        ("What is wrong with this proof?", False),  # points at the body
        ("Why doesn't this work?", False),
        ("Help with the following integral please", False),
        ("Eigenvalues?", False),  # too short
    ],
)
def test_self_contained_title(title, ok):
    c = StackExchangeConfig()
    assert stackexchange.title_is_self_contained(title, c.min_title_words, c.title_context_phrases) is ok


def test_answer_filters_each_step():
    c, body = StackExchangeConfig(), "Plain text without pronouns of that kind. " * 30
    cases = {
        "short": ("x" * 1199, "answer_length"),
        "long": ("x" * 4097, "answer_length"),
        "first": (body + " I tried it.", "not_first_person"),
        "ref": (body + " As mentioned in another answer, yes.", "no_reference_to_other_answers"),
    }
    for name, (text, failing) in cases.items():
        log = StepLog()
        assert not stackexchange.answer_filters(text, c, log, "")
        assert steps(log)[failing] == (0, 1), name
    log = StepLog()
    assert stackexchange.answer_filters(body + "\n```\nmy_var = I\n```", c, log, "")  # code is not prose
    assert steps(log) == {"answer_length": (1, 0), "not_first_person": (1, 0), "no_reference_to_other_answers": (1, 0)}
    assert first_person_count("Imagine my menu. I'm sure.") == 2
    assert refers_to_others("the operation works", c.reference_phrases) is None  # "the op" needs a word boundary


def test_demo_math_site_counts_every_filter():
    log = StepLog()
    site, n_q, cands = stackexchange.site_candidates(
        SE / "math.stackexchange.com", StackExchangeConfig(), log, random.Random(0)
    )
    assert (site, n_q) == ("math", 8)
    assert [e["id"] for e in cands] == ["se-math-1", "se-math-4"]
    assert steps(log) == {
        "se.self_contained_title": (7, 1),
        "se.top_scoring_questions": (7, 0),
        "se.top_answer_score": (6, 1),
        "se.answer_length": (4, 2),
        "se.not_first_person": (3, 1),
        "se.no_reference_to_other_answers": (2, 1),
    }
    assert log.skips == {"stackexchange: fabricated post id": 1, "stackexchange: row without a numeric Id or Score": 1}
    answer = cands[0]["messages"][1]["content"]
    assert "```\n1 + 1/2" in answer and "- the block from" in answer and "<" not in answer


def test_top_answer_tie_goes_to_accepted_and_pool_is_bounded(tmp_path):
    rows = [
        q(1, 50, "Why is the sky blue during the day?", accepted="3"),
        a(2, 1, 20, GOOD.replace("idea", "one")),
        a(3, 1, 20, GOOD),
        q(4, 10, "Why is grass green in the spring?"),
        a(5, 4, 30, GOOD),
        q(6, 90, "Why is the sea salty but rivers are not?"),
        a(7, 6, 11, GOOD.replace("idea", "sea")),
    ]
    folder = posts_xml(tmp_path, rows)
    log = StepLog()
    cfg = StackExchangeConfig(candidates_per_site=2, title_prompt_prob=1.0)
    _, n_q, cands = stackexchange.site_candidates(folder, cfg, log, random.Random(0))
    assert n_q == 3 and steps(log)["se.top_scoring_questions"] == (2, 1)  # score-10 question evicted
    assert [e["id"] for e in cands] == ["se-math-6", "se-math-1"]
    assert "idea" in cands[1]["messages"][1]["content"]  # the accepted answer of the tied pair
    assert cands[0]["messages"][0]["content"] == "Why is the sea salty but rivers are not?"
    _, _, bodies = stackexchange.site_candidates(
        folder, StackExchangeConfig(title_prompt_prob=0.0), StepLog(), random.Random(0)
    )
    assert {e["messages"][0]["content"] for e in bodies} == {"Body text of the question."}


def test_seven_zip_archive(tmp_path):
    py7zr = pytest.importorskip("py7zr")
    archive = tmp_path / "unix.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(SE / "unix.stackexchange.com" / "Posts.xml", "Posts.xml")
    site, n_q, cands = stackexchange.site_candidates(archive, StackExchangeConfig(), StepLog(), random.Random(0))
    assert (site, n_q, [e["id"] for e in cands]) == ("unix", 1, ["se-unix-1"])


def test_tau_sampling_proportions():
    sizes = {"a": 1, "b": 8, "c": 27, "d": 64}  # size^(1/3) = 1, 2, 3, 4
    pools = {s: [s] * 30000 for s in sizes}
    drawn = stackexchange.tau_sample(pools, sizes, 20000, 3.0, random.Random(1))
    assert len(drawn) == 20000
    for s, expected in zip("abcd", (0.1, 0.2, 0.3, 0.4)):
        assert abs(drawn.count(s) / 20000 - expected) < 0.015
    flat = stackexchange.tau_sample(pools, sizes, 20000, 1.0, random.Random(1))  # tau = 1: proportional to size
    assert abs(flat.count("d") / 20000 - 64 / 100) < 0.015
    # an exhausted exchange drops out; items come best first; the draw is seeded
    small = stackexchange.tau_sample({"a": [1, 2], "b": [3]}, {"a": 1, "b": 1000}, 5, 3.0, random.Random(0))
    assert sorted(small) == [1, 2, 3] and small.index(1) < small.index(2)
    assert drawn == stackexchange.tau_sample(pools, sizes, 20000, 3.0, random.Random(1))


# ---- wikiHow ----------------------------------------------------------------------------------------------
def test_wikihow_cleaning():
    assert wikihow.clean_title("How to Cook Adzuki Beans2") == "How to Cook Adzuki Beans?"
    body = wikihow.clean_body(
        'This article shows the way.\n,Boil the egg.Then cool it.\n,See [chart](http://x.org) <img src="a.jpg">here.'
    )
    assert body == "The following answer shows the way.\n\nBoil the egg. Then cool it.\n\nSee chart here."


def test_wikihow_demo_categories_and_sampling():
    log = StepLog()
    pools = wikihow.read_candidates(
        resolve_path("demo_raw:wikihow/wikihow_sample.csv"), WikiHowConfig(), log, random.Random(0)
    )
    assert {k: len(v) for k, v in pools.items()} == {
        "Food and Entertaining": 2,
        "Home and Garden": 2,
        "Hobbies and Crafts": 1,
    }
    assert steps(log)["wikihow.has_title_and_text"] == (5, 1)
    assert log.skips == {"wikihow: row with the wrong number of fields": 1}
    tea = pools["Food and Entertaining"][0]["messages"]
    assert tea[0]["content"] == "How to Brew Green Tea?" and tea[1]["content"].startswith("The following answer")
    assert "example.org" not in tea[1]["content"]
    picked = wikihow.category_first_sample(pools, 3, random.Random(0))
    assert len({e["id"] for e in picked}) == 3
    assert picked == wikihow.category_first_sample(pools, 3, random.Random(0))


def test_wikihow_without_category_column(tmp_path):
    f = tmp_path / "wikihowAll.csv"
    f.write_text('headline,title,text\n"\nStep.",How to Boil an Egg1,"Cover the eggs.\n,Wait."\n', encoding="utf-8")
    pools = wikihow.read_candidates(f, WikiHowConfig(), StepLog(), random.Random(0))
    assert list(pools) == ["uncategorized"]
    assert pools["uncategorized"][0]["messages"][1]["content"] == "Cover the eggs.\n\nWait."


# ---- Reddit, Natural Instructions ------------------------------------------------------------------------
def test_writingprompts_demo():
    log = StepLog()
    cfg = WritingPromptsConfig(
        submissions=[str(resolve_path("demo_raw:reddit/WritingPrompts_submissions.zst"))],
        comments=[str(resolve_path("demo_raw:reddit/WritingPrompts_comments.zst"))],
    )
    out = reddit.writingprompts(cfg, log)
    assert [e["id"] for e in out] == ["wp-wp1", "wp-wp2"]
    assert out[0]["messages"][0]["content"] == "A lighthouse keeper receives a letter addressed to the sea."
    assert (
        out[0]["messages"][1]["content"].startswith("The envelope") and "> Dear Sea" in out[0]["messages"][1]["content"]
    )
    assert out[1]["messages"][1]["content"].startswith("Every clock")  # not the sticky, removed or reply
    assert steps(log) == {
        "wp.prompt_tag": (4, 2),
        "wp.not_removed": (3, 1),
        "wp.top_posts": (3, 0),
        "wp.has_story": (2, 1),
        "wp.min_story_chars": (2, 0),
    }
    assert log.skips == {"reddit: line is not valid JSON": 1, "reddit: line is not valid UTF-8": 1}
    assert reddit.prompt_tag("( wp ) x") == "WP" and reddit.prompt_tag("No tag") is None


def test_askreddit_titles():
    log = StepLog()
    cfg = AskRedditConfig(submissions=[str(resolve_path("demo_raw:reddit/AskReddit_submissions.zst"))], candidates=3)
    out = reddit.askreddit_titles(cfg, log)
    assert [e["id"] for e in out] == ["askreddit-q1", "askreddit-q2", "askreddit-q3"]
    assert all(len(e["messages"]) == 1 for e in out)
    assert steps(log) == {"askreddit.usable_title": (4, 2), "askreddit.top_posts": (3, 1)}


def test_natural_instructions_demo():
    log = StepLog()
    cfg = NatInstConfig(tasks=[str(resolve_path("demo_raw:natural_instructions/tasks"))])
    out = natinst.candidates(cfg, log, random.Random(0))
    assert [e["id"] for e in out] == [
        "ni-task9001_recipes_title_generation",
        "ni-task9002_trivia_question_generation",
        "ni-task9003_notes_summarization",
    ]
    assert out[2]["messages"][0]["content"].startswith("Summarize the meeting notes in one sentence")
    assert steps(log) == {"ni.generation_task": (4, 1), "ni.english": (3, 1), "ni.has_instances": (3, 0)}
