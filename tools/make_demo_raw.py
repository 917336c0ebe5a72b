"""Write the shipped demo raw dumps in the real formats (docs/formats.md). All texts are invented for this package.

    python tools/make_demo_raw.py    # rewrites src/lima_repro/demo_raw/ (a developer tool; not shipped)

Each source holds rows every rule of LIMA sec. 1 must drop, next to rows it keeps, so `01_curate` on the
demo profile shows every step's kept/dropped counts. Kept answers sit near the lower length bounds so the
demo training set stays small.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import zstandard

HERE = Path(__file__).resolve().parents[1] / "src" / "lima_repro" / "demo_raw"  # where the dumps ship
DATE = "2021-03-14T09:26:53.590"

# ---- Stack Exchange -------------------------------------------------------------------------------------
HARMONIC = """<p>The terms going to zero is necessary for convergence but far from sufficient. What matters is how
<em>fast</em> they shrink, and <code>1/n</code> shrinks too slowly.</p>
<p>The classic argument groups the terms in blocks whose lengths double:</p>
<pre><code>1 + 1/2 + (1/3 + 1/4) + (1/5 + ... + 1/8) + (1/9 + ... + 1/16) + ...
</code></pre>
<p>Inside each block every term is at least the last one, so each block adds at least one half:</p>
<ul>
<li>the block from 1/3 to 1/4 has two terms, each at least 1/4, so it adds at least 1/2;</li>
<li>the block from 1/5 to 1/8 has four terms, each at least 1/8, so it again adds at least 1/2;</li>
<li>the block ending at 1/2^k has 2^(k-1) terms, each at least 1/2^k, so the pattern never stops.</li>
</ul>
<p>After k blocks the partial sum exceeds 1 + k/2, which grows without bound. The series diverges, although
painfully slowly: the first million terms add up to only about 14.4.</p>
<p>An integral gives the same verdict and the growth rate. Comparing the sum with the area under
<code>1/x</code> shows that the n-th partial sum lies between ln(n+1) and 1 + ln(n), so it grows like the natural
logarithm. The difference between the partial sum and ln(n) tends to the Euler-Mascheroni constant, about 0.5772.</p>
<p>Contrast this with the sum of 1/n^2, whose terms also tend to zero but fast enough that the same block
argument bounds every block by a geometric series; that sum converges to pi^2/6. The general rule for
p-series: the sum of 1/n^p converges exactly when p is greater than 1.</p>"""

ZEROS = """<p>Every trailing zero comes from a factor 10 = 2 x 5. Factors of 2 are far more common than factors of 5 in
n!, so the number of trailing zeros equals the exponent of 5 in the prime factorisation of n!.</p>
<p>That exponent is given by Legendre's formula. Count the multiples of 5 up to n, then the multiples of 25
(each contributes a second 5), then of 125, and so on:</p>
<pre><code>def trailing_zeros(n):
    count, power = 0, 5
    while power &lt;= n:
        count += n // power
        power *= 5
    return count
</code></pre>
<p>A worked example for n = 1000:</p>
<ol>
<li>1000 // 5 = 200 multiples of 5;</li>
<li>1000 // 25 = 40 multiples of 25, each adding one more five;</li>
<li>1000 // 125 = 8 multiples of 125;</li>
<li>1000 // 625 = 1 multiple of 625.</li>
</ol>
<p>The total is 249, so 1000! ends in 249 zeros. The loop runs about log base 5 of n times, so even for n in the
billions it finishes instantly, while computing n! itself would be hopeless.</p>
<p>A useful check: the count never exceeds n/4, since n/5 + n/25 + ... is a geometric series summing to n/4.
Note also that some counts are impossible: no factorial ends in exactly 5 zeros, because 24! has 4 and 25!
jumps to 6.</p>
<p>The same idea works in any base: for base b, factor b into primes and take the minimum, over those
primes, of the prime's exponent in n! divided by its exponent in b.</p>"""

LINKS = """<p>A hard link is a second directory entry for the same inode. A symbolic link is a small file whose content
is a path. Everything else follows from that difference.</p>
<p>With a hard link both names are equal: neither is the original. Deleting one name leaves the data reachable
through the other, and the data is freed only when the link count drops to zero. See
<a href="https://example.org/inodes">the inode docs</a> for the on-disk layout.</p>
<pre><code>$ echo data &gt; a.txt
$ ln a.txt hard.txt
$ ln -s a.txt soft.txt
$ ls -li a.txt hard.txt soft.txt
</code></pre>
<p>The listing shows the same inode number for the first two names and a different one for the symlink.</p>
<p>Practical consequences:</p>
<ul>
<li>hard links cannot cross file systems, because inode numbers are only unique within one;</li>
<li>hard links to directories are not allowed for ordinary users, which keeps the tree free of cycles;</li>
<li>a symlink may point anywhere, even to a path that does not exist yet (a dangling link);</li>
<li>renaming or deleting the target breaks a symlink but never a hard link.</li>
</ul>
<p>Tools also treat them differently: <code>cp</code> follows symlinks by default unless given <code>-P</code>,
and backup programs must be told to preserve hard links or they store the data twice.</p><img src="diagram.png"/>
<p>To find every name of a hard-linked file, search by inode with <code>find / -xdev -inum N</code>;
for symlinks, <code>readlink -f</code> prints the final target.</p>"""

DOUGH = """<p>Resting, often called bench rest, lets the gluten network relax after kneading has pulled it tight.
Freshly kneaded dough is elastic: roll it out and it springs back. Ten to twenty minutes under a towel makes it
extensible again, so it can be shaped without tearing.</p>
<p>Several things happen during the rest:</p>
<ul>
<li>gluten strands that were stretched and aligned slowly relax, so the dough stops fighting back;</li>
<li>flour that was not fully wet finishes absorbing water, which smooths the surface;</li>
<li>yeast keeps working, so a little gas builds up and the dough becomes lighter to handle.</li>
</ul>
<p>A related technique, the autolyse, rests flour and water before the salt and yeast go in. Enzymes start
breaking starch and protein down, and gluten forms with no kneading at all, which is why many bakers knead less
after an autolyse.</p>
<p>Signs that the dough needs more rest: it tears instead of stretching, it shrinks right back when rolled, or the
surface looks rough and lumpy. Cover it so it does not dry out and form a skin, then try again after another ten
minutes. A dough that has rested long enough holds the shape it is given.</p>
<p>Rest times also scale with flour: whole wheat and rye doughs absorb water more slowly and often need
twice as long before they relax.</p>"""

CAST_IRON = """<p>Rust on cast iron is almost always surface rust, and the pan can be brought back in an afternoon.</p>
<ol>
<li>Scrub the rust off with steel wool or a stiff brush and a little warm, soapy water until bare grey metal
shows. Soap will not hurt a pan that is about to be re-seasoned anyway.</li>
<li>Rinse and dry immediately, then set the pan on a burner for a few minutes to drive off every trace of
water.</li>
<li>While it is warm, rub a very thin layer of a neutral oil with a high smoke point over every surface,
including the handle and the bottom. Then wipe it off as if it were a mistake; what remains is enough.</li>
<li>Bake the pan upside down at about 230 C (450 F) for an hour, with foil on the rack below, and let it cool
in the oven.</li>
<li>Repeat the oiling and baking two or three times for a durable, even finish.</li>
</ol>
<p>Thick oil layers are the most common error: they turn sticky and blotchy instead of hard. Deep pitting that
remains after scrubbing does not affect cooking once seasoned. To keep the rust away, dry the pan on heat after
each wash and store it in a dry cupboard.</p>
<p>Acidic dishes such as tomato sauce are best avoided for the first few weeks, since long simmering in
acid can strip a young seasoning layer. Frying, roasting and searing all build it up further.</p>"""

SCHENGEN = """<p>Yes. A Schengen short-stay visa is issued for the whole area, not for one country, so a single visa
covers a trip through several member states as long as a few rules are respected.</p>
<ul>
<li>Apply to the consulate of the country of main destination, meaning where the longest stay is planned. When
the stays are equal, apply to the country entered first.</li>
<li>The 90/180 rule applies to the area as a whole: at most 90 days in any rolling 180-day period, counted
across all member states together.</li>
<li>Check the territorial validity field on the sticker. A visa marked for the Schengen states is fine; one
with limited territorial validity covers only the countries listed.</li>
<li>Keep proof of the whole itinerary, such as hotel bookings and onward tickets, since border guards in any
member state may ask for it.</li>
</ul>
<p>Travellers sometimes worry about entering through a country other than the one that issued the visa. That
is allowed, provided the main destination stated in the application was genuine. Changing plans after the visa
was granted is also not forbidden in itself, but a pattern that looks like the application was misleading can
cause trouble on the next application.</p>
<p>Note that not every EU country belongs to Schengen and some non-EU countries do, so check the current list of
member states before booking.</p>"""

FIRST_PERSON = (
    "<p>"
    + " ".join(
        [
            "When I started, I read a short book on real analysis first and I think it made a huge difference to me.",
            "My advice is to work through every exercise on sigma-algebras before moving to integration.",
            "I found that the Lebesgue integral only clicked for me after building it from simple functions by hand.",
            "My second piece of advice is to keep a notebook of counterexamples, which helped me a lot.",
        ]
    )
    + "</p>"
) * 4
REFERS = (
    "<p>As mentioned in the other answer, the empty product is one. "
    + " ".join(
        [
            "An empty product multiplies no numbers at all, and the only value that leaves every product unchanged",
            "when it is included is the multiplicative identity, one. The recursion n! = n x (n-1)! also forces it:",
            "taking n = 1 gives 1! = 1 x 0!, so 0! must equal one for the recursion to hold.",
        ]
    )
    + "</p>"
) * 4
TOO_LONG = (
    "<p>"
    + " ".join(
        [
            "An eigenvector of a linear map is a direction that the map only stretches or flips, never turns.",
            "The eigenvalue is the stretch factor along that direction. In a basis of eigenvectors the map acts",
            "coordinate by coordinate, which is why diagonalising a matrix makes powers and exponentials easy.",
        ]
    )
    + "</p>"
) * 16


def _row(**attrs) -> str:
    return "  <row " + " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items()) + " />"


def _q(i, score, title, body, accepted=None, tags="<general>"):
    extra = {"AcceptedAnswerId": accepted} if accepted else {}
    return _row(
        Id=i,
        PostTypeId=1,
        **extra,
        CreationDate=DATE,
        Score=score,
        ViewCount=score * 40,
        Body=body,
        OwnerUserId=55,
        Title=title,
        Tags=tags,
        AnswerCount=2,
        ContentLicense="CC BY-SA 4.0",
    )


def _a(i, parent, score, body):
    return _row(
        Id=i,
        PostTypeId=2,
        ParentId=parent,
        CreationDate=DATE,
        Score=score,
        Body=body,
        OwnerUserId=12,
        ContentLicense="CC BY-SA 4.0",
    )


SITES = {
    "math.stackexchange.com": [
        _q(
            1,
            85,
            "Why does the harmonic series diverge even though its terms go to zero?",
            "<p>The terms 1/n get as small as we like, so why is the sum infinite?</p>",
            accepted=3,
        ),
        _a(2, 1, 6, "<p>Compare with an integral.</p>"),
        _a(3, 1, 42, HARMONIC),
        _q(
            4,
            60,
            "How can the number of trailing zeros of n factorial be counted quickly?",
            "<p>Computing 1000! to count its zeros is slow. Is there a shortcut?</p>",
        ),
        _a(5, 4, 31, ZEROS),
        _q(
            6, 99, "What is wrong with this proof?", "<p>Proof that 1 = 2: let a = b ...</p>"
        ),  # title not self-contained
        _a(7, 6, 50, HARMONIC.replace("harmonic", "harmonious")),
        _q(8, 40, "Is every bounded sequence of real numbers convergent?", "<p>Bounded should mean convergent?</p>"),
        _a(9, 8, 7, ZEROS.replace("Legendre", "de Polignac")),  # top answer scores below 10
        _q(10, 33, "What is the derivative of the absolute value function?", "<p>At zero in particular.</p>"),
        _a(11, 10, 25, "<p>It is x/|x| away from zero and undefined at zero.</p>"),  # too short
        _q(12, 30, "How should one start learning measure theory from scratch?", "<p>Which book first?</p>"),
        _a(13, 12, 20, FIRST_PERSON),  # first person
        _q(14, 28, "Why is zero factorial equal to one rather than zero?", "<p>0! = 1 seems arbitrary.</p>"),
        _a(15, 14, 21, REFERS),  # refers to another answer
        _q(16, 26, "What is the geometric intuition behind eigenvectors and eigenvalues?", "<p>Beyond Av = lv.</p>"),
        _a(17, 16, 15, TOO_LONG),  # longer than 4,096 characters
        _q(1000000001, 1000, "How do fabricated posts end up in a data dump?", "<p>Planted row.</p>"),
        _row(Id=18, PostTypeId=1, CreationDate=DATE, Body="<p>No score attribute.</p>", Title="A row without a score"),
        _row(Id=19, PostTypeId=5, CreationDate=DATE, Score=0, Body="<p>Tag wiki text.</p>"),  # not a Q or A
    ],
    "unix.stackexchange.com": [
        _q(
            1,
            120,
            "What is the difference between a hard link and a symbolic link?",
            "<p>Both make a file reachable under a second name. When should each be used?</p>",
        ),
        _a(2, 1, 97, LINKS),
        _a(3, 1, 12, "<p>Symlinks can cross file systems.</p>"),
    ],
    "cooking.stackexchange.com": [
        _q(
            1,
            48,
            "Why does bread dough need to rest after kneading?",
            "<p>Recipes say to rest the dough before shaping. What does resting actually do?</p>",
        ),
        _a(2, 1, 36, DOUGH),
        _q(
            3,
            44,
            "How can a rusty cast iron pan be restored?",
            "<p>A pan left in a damp shed has orange rust all over. Is it ruined?</p>",
        ),
        _a(4, 3, 29, CAST_IRON),
        _q(5, 20, "Can olive oil be used for deep frying at home?", "<p>Smoke point worries.</p>"),
        _a(6, 5, 14, "<p>Yes, refined olive oil works well.</p>"),  # too short
    ],
    "travel.stackexchange.com": [
        _q(
            1,
            75,
            "Can one Schengen visa cover a trip through several member countries?",
            "<p>The plan is three nights in Italy, then France and Spain. Is one visa enough?</p>",
        ),
        _a(2, 1, 64, SCHENGEN),
        _q(3, 15, "Do trains in Europe require reserving a seat in advance?", "<p>Interrail pass holder.</p>"),
        _a(4, 3, 4, SCHENGEN.replace("Schengen", "rail")),  # top answer scores below 10
    ],
    "meta.cooking.stackexchange.com": [  # meta sites are not in either list: skipped and counted
        _q(1, 30, "Should questions about restaurant recommendations be closed?", "<p>Scope question.</p>"),
    ],
}


def _c(i, post, minute, text, user=None, name=None):
    """A Comments.xml row; the asker of every demo question is user 55, the answerer user 12 (see _q, _a)."""
    who = {"UserId": user} if user is not None else {}
    if name is not None:
        who["UserDisplayName"] = name  # a deleted account: no UserId, only the display name
    return _row(
        Id=i,
        PostId=post,
        Score=0,
        Text=text,
        CreationDate=f"2021-03-15T10:{minute:02d}:00.000",
        **who,
        ContentLicense="CC BY-SA 4.0",
    )


# Comment chains under the top answers (curate.se_dialogue). File names: cooking "Comments.xml", math the
# lowercase "comments.xml" some dumps use.
COMMENTS = {
    "cooking.stackexchange.com/Comments.xml": [
        _c(900, 1, 0, "Is this about wheat dough only, or rye too?", user=77),  # on the question: not the thread
        # the valid chain under answer 2 (dough): asker 55 and answerer 12 alternate; ids out of date order
        _c(
            904, 2, 1, "@crumbcatcher Does the same rest help pizza dough that goes into the fridge overnight?", user=55
        ),
        _c(903, 2, 2, "@DoughNut Great answer, I always skipped this step.", user=77),  # third party: left out
        _c(
            902,
            2,
            3,
            "@crumbcatcher Yes. A cold rest relaxes the gluten too, just more slowly, so take the dough "
            "out an hour before shaping and let it warm up first.",
            user=12,
        ),
        _c(
            905,
            2,
            4,
            "@DoughNut And if it still shrinks back after that hour, should more water go in next time?",
            user=55,
        ),
        _c(
            906,
            2,
            5,
            "Usually not: shrinking means the gluten is still tight. Give it another fifteen minutes "
            "covered; more water helps only when the dough also tears.",
            user=12,
        ),
        _c(907, 2, 6, "That worked, the pizza base stretched without tearing.", user=55),  # trailing asker turn: cut
        _row(PostId=2, Score=0, Text="A row with no Id attribute.", CreationDate="2021-03-15T10:07:00.000"),  # skip
        # too few turns under answer 4 (cast iron): the asker asks, nobody replies
        _c(910, 4, 0, "@crumbcatcher Would flaxseed oil give a harder finish than a neutral oil here?", user=55),
        _c(911, 4, 1, "Flaxseed finishes tend to flake off after a few months of use.", name="old_pan_fan"),
    ],
    "math.stackexchange.com/comments.xml": [
        # non-alternating: under answer 3 (harmonic series) the answerer speaks first
        _c(920, 3, 0, "Edit: added the integral comparison and the growth rate of the partial sums.", user=12),
        _c(921, 3, 1, "@proofreader Why does the difference tend to a constant rather than grow?", user=55),
        _c(922, 3, 2, "@curious Because the gaps between the sum and the integral shrink like 1/n^2.", user=12),
        # a comment too short: under answer 5 (trailing zeros)
        _c(930, 5, 0, "@proofreader Why can no factorial end in exactly five zeros though?", user=55),
        _c(931, 5, 1, "@curious See 25!.", user=12),
        # under answer 9 (bounded sequences, score 7): the top answer scores below 10
        _c(940, 9, 0, "@proofreader So a bounded sequence only has a convergent subsequence?", user=55),
        _c(941, 9, 1, "@curious Exactly, that is the Bolzano-Weierstrass theorem for real sequences.", user=12),
    ],
}


def write_stackexchange(root: Path) -> None:
    for site, rows in SITES.items():
        folder = root / "stackexchange" / site
        folder.mkdir(parents=True, exist_ok=True)
        text = '<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n' + "\r\n".join(rows) + "\r\n</posts>\r\n"
        (folder / "Posts.xml").write_bytes(text.replace("\n\r\n", "\r\n").encode("utf-8"))
    for rel, rows in COMMENTS.items():
        text = '<?xml version="1.0" encoding="utf-8"?>\r\n<comments>\r\n' + "\r\n".join(rows) + "\r\n</comments>\r\n"
        (root / "stackexchange" / rel).write_bytes(text.encode("utf-8"))


# ---- wikiHow (Koupaee layout plus a category column) -------------------------------------------------------
WIKIHOW = [
    (
        "Food and Entertaining",
        "\nRinse the leaves.,\nHeat the water.,\nSteep briefly.",
        "How to Brew Green Tea1",
        "This article explains how to brew green tea that tastes sweet rather than bitter.\n,Rinse about two teaspoons "
        "of loose leaves in a strainer to wake them up.Then heat fresh water until small bubbles form, around 80 C, "
        "which is well below boiling; water that is too hot scorches the leaves.\n,Pour the water over the leaves and "
        "steep for two to three minutes. Taste after two minutes and strain as soon as it is pleasant, because every "
        "extra minute adds bitterness.\n,Good leaves can be steeped two or three more times; add thirty seconds each "
        "round. See [this chart](https://example.org/tea) for other teas.",
    ),
    (
        "Food and Entertaining",
        "\nRinse.,\nHeat.",
        "How to Brew Green Tea2",
        "Rinse the leaves first.\n,Heat the water to about 80 C and steep for two minutes.",
    ),  # exact duplicate title
    (
        "Home and Garden",
        "\nChoose a pot.,\nWater sparingly.,\nGive it light.",
        "How to Care for a Snake Plant",
        "Snake plants thrive on neglect, which makes them a good first houseplant.\n,Choose a pot with a drainage hole "
        "and a gritty, fast-draining mix such as cactus soil; roots sitting in wet soil rot quickly.\n,Water only when "
        "the soil is dry all the way down, about every two to three weeks in summer and once a month in winter. Pour "
        "until water runs out of the bottom, then empty the saucer.\n,Bright, indirect light gives the fastest growth, "
        'but the plant tolerates dim corners too.<img src="snake.jpg"> Wipe dust off the leaves now and then so they '
        "can use what light they get.\n,Repot every two or three years, in spring, when roots start to crowd the pot.",
    ),
    (
        "Home and Garden",
        "\nEmpty the shelves.,\nWash with soda.",
        "How to Clean a Refrigerator3",
        "Empty the shelves and drawers and throw away anything past its date.\n,Wash the shelves in warm soapy water; "
        "wipe the inside with a solution of two tablespoons of baking soda per litre of warm water, which cleans "
        "without leaving a chemical smell.\n,Dry everything with a towel before putting food back, and leave an open "
        "box of baking soda on a shelf to absorb odours for the next few months.\n,Vacuum the coils at the back or "
        "underneath once a year, since dusty coils make the compressor work harder. Visit www.example.org for more.",
    ),
    (
        "Hobbies and Crafts",
        "\nPick a yarn.,\nMake a slip knot.,\nCast on.",
        "How to Start Knitting a Scarf",
        "A scarf is the classic first project because it is just a long rectangle.\n,Pick a smooth, medium-weight yarn "
        "in a light colour, so the stitches are easy to see, and needles of the size printed on the label.\n,Make a "
        "slip knot, put it on one needle, and cast on about thirty stitches with the long-tail method.\n,Knit every row "
        "(garter stitch). It lies flat and looks the same on both sides, so there is no wrong side to worry about.\n,"
        "When the scarf is long enough, bind off loosely and weave the loose ends into the edge with a blunt needle.",
    ),
    ("Hobbies and Crafts", "", "How to Do Nothing", ""),  # no text: dropped
]


def write_wikihow(root: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["headline", "title", "text", "category"])
    for cat, headline, title, text in WIKIHOW:
        w.writerow([headline, title, text, cat])
    buf.write('"\nBroken row.",How to Break a CSV\n')  # wrong number of fields: a counted skip
    (root / "wikihow").mkdir(parents=True, exist_ok=True)
    (root / "wikihow" / "wikihow_sample.csv").write_text(buf.getvalue(), encoding="utf-8")


# ---- Pushshift Reddit ----------------------------------------------------------------------------------
def _sub(i, title, score, sub="WritingPrompts", selftext="", **kw):
    return {
        "id": i,
        "name": f"t3_{i}",
        "subreddit": sub,
        "title": title,
        "selftext": selftext,
        "is_self": True,
        "author": "writer" + i,
        "score": score,
        "num_comments": 3,
        "created_utc": 1556668800 + len(i),
        "permalink": f"/r/{sub}/comments/{i}/x/",
        "over_18": False,
        "stickied": False,
        **kw,
    }


def _com(i, link, body, score, parent=None, **kw):
    return {
        "id": i,
        "parent_id": parent or f"t3_{link}",
        "link_id": f"t3_{link}",
        "subreddit": "WritingPrompts",
        "author": "teller" + i,
        "body": body,
        "score": score,
        "created_utc": "1556670021.0",
        "stickied": False,
        **kw,
    }


STORY_LIGHTHOUSE = (
    "The envelope was damp before Maren opened it, and it smelled of salt rather than paper.\n\n"
    "&gt; Dear Sea,\n\n"
    "It began, in handwriting that leaned like a boat in wind. She had kept the light on this rock for eleven "
    "years, and in all that time nobody had written to the water. The letter asked after a ring dropped from a "
    "ferry in 1962, a plain gold band, and whether the sea might be persuaded to give it back.\n\n"
    "Maren folded the letter, put on her boots, and walked down to the tide pools at the turn of the tide. She "
    "did not expect anything. She read the letter aloud anyway, because it seemed rude not to deliver it.\n\n"
    "The next morning a gull stood on the railing with something bright in its beak. It dropped the ring at her "
    "feet, looked at her as if she were slow, and flew off toward the mainland, where the return address was."
)
STORY_CLOCK = (
    "Every clock in the town stopped at 3:17 on a Tuesday, and the baker was the only one who noticed that the "
    "bread kept rising.\n\n"
    "He watched the dough swell past the rim of the bowl, past the edge of the counter, slow and patient, while "
    "outside the pigeons hung in the air like ornaments and the bus sat halfway through its turn. Time had stopped "
    "for everything except yeast.\n\n"
    "So he did what bakers do. He shaped forty loaves, then four hundred, and walked them through the frozen "
    "streets, leaving one in every unmoving hand: the mayor, the postwoman, the boy mid-jump over a puddle.\n\n"
    "When the clocks started again at 3:18, the whole town found itself holding warm bread, and nobody could say "
    "where it came from. The baker went home and slept for what felt like a week, and was, by any clock, a minute."
)

WP_SUBMISSIONS = [
    _sub("wp1", "[WP] A lighthouse keeper receives a letter addressed to the sea.", 412),
    _sub("wp2", "[ WP ] Time stops for everyone except a baker.", 388),
    _sub("wp3", "[IP] A painting of a flooded library", 950),  # image prompt: tag dropped
    _sub("wp4", "[WP] A deleted prompt", 300, selftext="[removed]"),  # removed
    _sub("wp5", "[OT] Monthly feedback thread", 120),  # not a prompt
    _sub("wp6", "[EU] Sherlock Holmes retires to keep bees on the moon.", 90),  # no story: dropped
    _sub("ar1", "Not a WritingPrompts post", 999, sub="AskReddit"),  # other subreddit
]
WP_COMMENTS = [
    _com("c1", "wp1", STORY_LIGHTHOUSE, 88),
    _com("c2", "wp1", "Short runner-up story about the lighthouse.", 40),
    _com("c3", "wp1", "Loved this!", 500, parent="t1_c1"),  # a reply, not a story
    _com("c4", "wp2", STORY_CLOCK, 120),
    _com("c5", "wp2", "Reminder: stories must be at least 100 words.", 1000, stickied=True, author="AutoModerator"),
    _com("c6", "wp2", "[removed]", 2000),
]
ASKREDDIT = [
    _sub("q1", "What is a small habit that noticeably improved your mornings?", 5400, sub="AskReddit"),
    _sub("q2", "Which skill do you wish schools taught but never did?", 4300, sub="AskReddit"),
    _sub(
        "q3", "What's the best piece of advice you've ever received from a total stranger?", 4100, sub="AskReddit"
    ),  # duplicates a hand-written test prompt: decontaminated
    _sub("q4", "Hi?", 3900, sub="AskReddit"),  # too short
    _sub("q5", "What everyday object would confuse someone from 200 years ago the most?", 3500, sub="AskReddit"),
    _sub("q6", "An adult-only question", 3000, sub="AskReddit", over_18=True),
]


def _zst(path: Path, rows: list, tail: bytes = b"") -> None:
    data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rows) + tail
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))


def write_reddit(root: Path) -> None:
    (root / "reddit").mkdir(parents=True, exist_ok=True)
    # one dirty line each: a line that is not JSON, and one with invalid UTF-8, are counted skips
    _zst(root / "reddit" / "WritingPrompts_submissions.zst", WP_SUBMISSIONS, b'{"id": "cut-off\n')
    _zst(root / "reddit" / "WritingPrompts_comments.zst", WP_COMMENTS, b'{"body": "\xff\xfe"}\n')
    _zst(root / "reddit" / "AskReddit_submissions.zst", ASKREDDIT)


# ---- Super-Natural Instructions -----------------------------------------------------------------------
def _task(cats, definition, instances, lang="English"):
    return {
        "Contributors": ["Demo Author"],
        "Source": ["demo"],
        "URL": ["https://example.org/demo"],
        "Categories": cats,
        "Reasoning": [],
        "Definition": [definition],
        "Input_language": [lang],
        "Output_language": [lang],
        "Instruction_language": ["English"],
        "Domains": ["Miscellaneous"],
        "Positive Examples": [],
        "Negative Examples": [],
        "Instances": [{"id": f"task-{i}", "input": a, "output": [b]} for i, (a, b) in enumerate(instances)],
        "Instance License": ["CC BY 4.0"],
    }


TASKS = {
    "task9001_recipes_title_generation": _task(
        ["Title Generation"],
        "Given a short recipe, write a title of at most six words that names the dish.",
        [
            ("Whisk oats, milk and honey, then chill the jar overnight.", "Overnight Honey Oats"),
            ("Toss cubed melon with lime juice and torn mint leaves.", "Minted Melon Salad"),
        ],
    ),
    "task9002_trivia_question_generation": _task(
        ["Question Generation"],
        "Read the fact and write one question that the fact answers. The question must be answerable from the "
        "fact alone.",
        [
            (
                "The Danube flows through ten countries, more than any other river.",
                "Which river flows through the most countries?",
            ),
            (
                "Honey found in ancient tombs was still edible after thousands of years.",
                "Can honey stay edible for thousands of years?",
            ),
        ],
    ),
    "task9003_notes_summarization": _task(
        ["Summarization"],
        "Summarize the meeting notes in one sentence for someone who missed the meeting.",
        [
            (
                "The team agreed to move the launch to May 3, assigned Priya to finish the billing page, and will meet "
                "again Friday to review test results.",
                "Launch moves to May 3, Priya finishes billing, and results are reviewed Friday.",
            )
        ],
    ),
    "task9004_review_sentiment_classification": _task(
        ["Sentiment Analysis"],  # not generation: dropped
        "Classify the review as positive or negative.",
        [("Lovely staff, will return.", "positive")],
    ),
    "task9005_french_paraphrasing": _task(
        ["Paraphrasing"],  # not English: dropped
        "Reformulez la phrase.",
        [("Il pleut beaucoup.", "Il tombe des cordes.")],
        lang="French",
    ),
}


def write_natinst(root: Path) -> None:
    folder = root / "natural_instructions" / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for name, task in TASKS.items():
        (folder / f"{name}.json").write_text(json.dumps(task, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(root: Path = HERE) -> None:
    write_stackexchange(root)
    write_wikihow(root)
    write_reddit(root)
    write_natinst(root)


if __name__ == "__main__":
    main()
