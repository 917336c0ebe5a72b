"""Stack Exchange sites split into STEM and other (docs/paper.md sec. 1: 179 exchanges, 75 STEM, 99 other, 5 dropped).

The paper does not publish its split; this one is ours, by each site's subject. Names are the site's host
without `.stackexchange.com` / `.com` / `.net` (`math`, `askubuntu`, `mathoverflow`), as `se_dump.site_name()`
derives them from a dump's folder or archive name. Meta sites and sites in neither list are skipped and counted.
"""

from __future__ import annotations

STEM_SITES = frozenset(
    """
ai android apple arduino askubuntu astronomy bioinformatics biology bitcoin blender cardano chemistry civicrm
codegolf codereview computergraphics craftcms crypto cs cstheory datascience dba devops drupal dsp earthscience
electronics elementaryos emacs engineering ethereum expressionengine gamedev gis iot iota joomla langdev magento
math matheducators mathematica mathoverflow mattermodeling monero networkengineering opendata or physics
proofassistants quant quantumcomputing raspberrypi reverseengineering robotics salesforce scicomp security
serverfault sharepoint sitecore softwareengineering solana sqa stackoverflow stats substrate superuser tex tezos
tor unix vi webmasters wordpress
""".split()
)

OTHER_SITES = frozenset(
    """
3dprinting academia alcohol anime aviation bicycles boardgames bricks buddhism chess chinese christianity coffee
communitybuilding conlang cooking crafts cseducators diy drones ebooks economics ell english esperanto
expatriates fitness freelancing french gaming gardening genealogy german graphicdesign ham hardwarerecs health
hermeneutics hinduism history homebrew hsm interpersonal islam italian japanese judaism korean languagelearning
latin law lifehacks linguistics literature martialarts mechanics medicalsciences money movies music musicfans
mythology opensource outdoors parenting patents pets philosophy photo pm poker politics portuguese psychology
puzzling quilting retrocomputing rpg russian scifi skeptics softwarerecs sound space spanish sports stackapps
startups sustainability travel ukrainian ux vegetarianism video webapps woodworking workplace worldbuilding writers
""".split()
)

# The "5 niche" exchanges the paper dropped are unnamed. Ours are the non-English Stack Overflows (pt, ru, es, ja)
# and the Russian-language site (rus), whose answers are not in English: they are in neither list above, so they
# are skipped and counted like any unknown site.
ALIASES = {"avp": "video", "beer": "alcohol", "moderators": "communitybuilding"}  # archives with old domains


def site_group(
    name: str, stem: frozenset[str] | set[str] = STEM_SITES, other: frozenset[str] | set[str] = OTHER_SITES
) -> str | None:
    """'stem', 'other', or None for meta, dropped and unknown sites."""
    if name.startswith("meta.") or name.endswith(".meta") or ".meta." in name:
        return None
    if name in stem:
        return "stem"
    if name in other:
        return "other"
    return None
