"""twitter-text for tweetlm: entity extraction and weighted tweet length (layer L1, data).

X (Twitter) does not count a post's length in characters: it counts a *weighted length* in which CJK, emoji
and other code points outside a few Latin and punctuation ranges count 2, every URL counts 23 whatever its
length, and an emoji sequence (a ZWJ family, a flag, a skin-toned hand) counts 2 however many code points it
takes. Which substrings are URLs, @mentions, #hashtags and $cashtags is decided by the same library. This module
ports the semantics of that library, twitter-text 3.1 (github.com/twitter/twitter-text, Apache-2.0; its
JavaScript implementation is the reference, quirks included), and is checked against its conformance suite
(``extract.yml``, ``validate.yml``, ``tlds.yml``) by ``tests/test_twitter_text.py``.

Why it is written here rather than wrapped: ``twitter-text-parser`` 3.0.0 (2023) passes the weighted-length and
URL cases but has no mention, hashtag or cashtag extraction and fails to import without setuptools'
``pkg_resources`` (gone from setuptools >= 81); ``twitter-text`` 3.0 (2017) and ``twitter-text-python`` 1.1.1
(2019) fail many extraction cases (31 of 218 and 98 of 179 when this was written). The ``regex`` package
supplies the Unicode properties (``\\p{L}``, ``\\p{Extended_Pictographic}``, ...) that the stdlib ``re`` lacks.
Emoji sequences are found with the Unicode TS #51 grammar over those properties rather than twitter-text's
frozen twemoji 13 list, so newer sequences (the Emoji 15.1 families) count 2 as well; the ``emoji`` package was
not used because its lexicon makes a bare copyright or registered sign an emoji, which X counts as 1.

Conventions:
- Entity indices are ``[start, end)`` in Unicode code points of the text exactly as given: nothing is
  unescaped or normalized first, so ``&amp;`` in X API text counts 5. twitter-text's JavaScript reports UTF-16
  indices; the two agree until a code point above U+FFFF precedes the entity.
- ``parse_tweet`` normalizes to NFC first (as twitter-text does) and reports its ranges in UTF-16 code units,
  inclusive, exactly as twitter-text's ``parseTweet`` does. Pass it the text as typed (``html.unescape`` X API
  text first: X counts ``&`` as 1).
- Non-``str`` text raises ``TypeError``; a bad weighting config raises ``ValueError``.

What it leaves to others: autolinking to HTML, hit highlighting, RFC 3986 URL validation (``isValidUrl``),
username/list/hashtag validators, and anything that needs the network (t.co expansion). Regular expressions
are compiled on first use, not at import.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import regex

__all__ = [
    "CONFIG_V1",
    "CONFIG_V2",
    "CONFIG_V3",
    "DEFAULT_CONFIG",
    "MAX_WEIGHTED_LENGTH",
    "ParseResult",
    "TwitterTextConfig",
    "WeightRange",
    "extract_cashtags",
    "extract_cashtags_with_indices",
    "extract_entities_with_indices",
    "extract_hashtags",
    "extract_hashtags_with_indices",
    "extract_mentions",
    "extract_mentions_or_lists_with_indices",
    "extract_mentions_with_indices",
    "extract_reply_screen_name",
    "extract_urls",
    "extract_urls_with_indices",
    "fits_in_tweet",
    "parse_tweet",
    "weighted_length",
]

MAX_WEIGHTED_LENGTH = 280
"""Longest weighted length of a post under the v2/v3 configs (twitter-text ``maxWeightedTweetLength``)."""

MAX_URL_LENGTH = 4096
"""Longest URL, protocol included, that twitter-text extracts (UTF-16 code units)."""

MAX_TCO_SLUG_LENGTH = 40
"""Longest ``t.co`` slug that twitter-text extracts."""


# --------------------------------------------------------------------------------------------------------------
# Weighting configuration (twitter-text config/v1.json, v2.json, v3.json)


@dataclass(frozen=True)
class WeightRange:
    """Code points ``start``..``end`` (both inclusive) weigh ``weight`` (in 1/``scale`` of a character)."""

    start: int
    end: int
    weight: int


@dataclass(frozen=True)
class TwitterTextConfig:
    """A twitter-text weighting configuration, field for field as in its ``config/v*.json``.

    Attributes:
        version: config version (1, 2 or 3).
        max_weighted_tweet_length: longest valid weighted length, in characters.
        scale: weights are in 1/``scale`` of a character (100: a weight of 200 counts 2).
        default_weight: weight of a code point outside every range (and of one emoji sequence).
        transformed_url_length: characters one URL counts, whatever its length (t.co wrapping).
        ranges: code point ranges with their own weight; the first range that holds a code point wins.
        emoji_parsing_enabled: count each emoji sequence once at ``default_weight``.

    Raises:
        ValueError: a non-positive ``scale`` or ``max_weighted_tweet_length``, a negative weight or length, or
            a range whose ``start`` exceeds its ``end``.
    """

    version: int
    max_weighted_tweet_length: int
    scale: int
    default_weight: int
    transformed_url_length: int
    ranges: tuple[WeightRange, ...] = ()
    emoji_parsing_enabled: bool = False

    def __post_init__(self) -> None:
        if self.scale <= 0 or self.max_weighted_tweet_length <= 0:
            raise ValueError(
                f"twitter-text config v{self.version}: scale ({self.scale}) and max_weighted_tweet_length "
                f"({self.max_weighted_tweet_length}) must be positive"
            )
        if self.default_weight < 0 or self.transformed_url_length < 0:
            raise ValueError(
                f"twitter-text config v{self.version}: default_weight ({self.default_weight}) and "
                f"transformed_url_length ({self.transformed_url_length}) must not be negative"
            )
        object.__setattr__(self, "ranges", tuple(self.ranges))
        for r in self.ranges:
            if not 0 <= r.start <= r.end or r.weight < 0:
                raise ValueError(f"twitter-text config v{self.version}: bad weight range {r} (need 0 <= start <= end)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TwitterTextConfig:
        """Build a config from twitter-text's JSON form (``maxWeightedTweetLength``, ``ranges``, ...).

        Raises:
            ValueError: a required key is missing, or a value is out of range (see the class).
        """
        try:
            return cls(
                version=int(d["version"]),
                max_weighted_tweet_length=int(d["maxWeightedTweetLength"]),
                scale=int(d["scale"]),
                default_weight=int(d["defaultWeight"]),
                transformed_url_length=int(d["transformedURLLength"]),
                ranges=tuple(
                    WeightRange(int(r["start"]), int(r["end"]), int(r["weight"])) for r in d.get("ranges", ())
                ),
                emoji_parsing_enabled=bool(d.get("emojiParsingEnabled", False)),
            )
        except KeyError as e:
            raise ValueError(
                f"twitter-text config is missing key {e.args[0]!r}; see twitter-text config/v3.json"
            ) from None

    def weight_of(self, code_point: int) -> int:
        """Weight of one code point, in 1/``scale`` of a character.

        twitter-text's JavaScript looks up the trailing UTF-16 unit of an astral code point instead; the two
        agree for the published configs, whose ranges all lie below U+D800.
        """
        for r in self.ranges:
            if r.start <= code_point <= r.end:
                return r.weight
        return self.default_weight


_V2_RANGES = (
    WeightRange(0, 4351, 100),  # Latin through Georgian (U+0000-U+10FF)
    WeightRange(8192, 8205, 100),  # General Punctuation spaces, ZWSP, ZWNJ, ZWJ (U+2000-U+200D)
    WeightRange(8208, 8223, 100),  # dashes and quotation marks (U+2010-U+201F)
    WeightRange(8242, 8247, 100),  # primes (U+2032-U+2037)
)

CONFIG_V1 = TwitterTextConfig(
    version=1, max_weighted_tweet_length=140, scale=100, default_weight=100, transformed_url_length=23
)
"""The 140-character era: every code point counts 1, a URL 23."""

CONFIG_V2 = TwitterTextConfig(
    version=2,
    max_weighted_tweet_length=280,
    scale=100,
    default_weight=200,
    transformed_url_length=23,
    ranges=_V2_RANGES,
)
"""280 weighted characters; code points outside the ranges count 2; emoji sequences counted code point by code point."""

CONFIG_V3 = TwitterTextConfig(
    version=3,
    max_weighted_tweet_length=280,
    scale=100,
    default_weight=200,
    transformed_url_length=23,
    ranges=_V2_RANGES,
    emoji_parsing_enabled=True,
)
"""Current X counting (twitter-text v3.json): as v2, but each emoji sequence counts 2."""

DEFAULT_CONFIG = CONFIG_V3


# --------------------------------------------------------------------------------------------------------------
# Top-level domains: the IANA root zone as twitter-text 3.1 lists it (its conformance/tlds.yml and
# js/src/regexp/valid{CC,G}TLD.js, Apache-2.0). Internationalized TLDs are written in their ASCII-compatible
# (xn--) form so this source stays ASCII; _tlds() decodes them with the stdlib punycode codec. Regenerate from
# a newer twitter-text tlds.yml in a commit that says why.

_CCTLDS = """
ac ad ae af ag ai al am an ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br bs bt bv bw by bz
ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et eu fi fj fk fm fo fr
ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp
ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq mr ms mt
mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw
sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st su sv sx sy sz tc td tf tg th tj tk tl tm tn to tp tr tt tv tw tz
ua ug uk um us uy uz va vc ve vg vi vn vu wf ws xn--2scrj9c xn--3e0b707e xn--3hcrj9c xn--45br5cyl xn--45brj9c
xn--54b7fta0cc xn--80ao21a xn--90a3ac xn--90ae xn--90ais xn--clchc0ea0b2g2a9gcd xn--d1alf xn--e1a4c xn--fiqs8s
xn--fiqz9s xn--fpcrj9c3d xn--fzc2c9e2c xn--gecrj9c xn--h2breg3eve xn--h2brj9c xn--h2brj9c8c xn--j1amh xn--j6w193g
xn--kprw13d xn--kpry57d xn--l1acc xn--lgbbat1ad8j xn--mgb9awbf xn--mgba3a4f16a xn--mgbaam7a8h xn--mgbah1a3hjkrd
xn--mgbai9azgqp6j xn--mgbayh7gpa xn--mgbbh1a xn--mgbbh1a71e xn--mgbc0a9azcg xn--mgbcpq6gpa1a xn--mgberp4a5d4ar
xn--mgbgu82a xn--mgbpl2fh xn--mgbtx2b xn--mgbx4cd0ab xn--mix891f xn--node xn--o3cw4h xn--ogbpf8fl xn--p1ai
xn--pgbs0dh xn--q7ce6a xn--qxa6a xn--qxam xn--rvc1e0am3e xn--s9brj9c xn--wgbh1c xn--wgbl6a xn--xkc2al3hye2a
xn--xkc2dl3a5ee0h xn--y9a3aq xn--yfro4i67o xn--ygbi2ammx ye yt za zm zw
"""

_GTLDS = """
aaa aarp abarth abb abbott abbvie abc able abogado abudhabi academy accenture accountant accountants aco active
actor adac ads adult aeg aero aetna afamilycompany afl africa agakhan agency aig aigo airbus airforce airtel akdn
alfaromeo alibaba alipay allfinanz allstate ally alsace alstom americanexpress americanfamily amex amfam amica
amsterdam analytics android anquan anz aol apartments app apple aquarelle arab aramco archi army arpa art arte asda
asia associates athleta attorney auction audi audible audio auspost author auto autos avianca aws axa azure baby
baidu banamex bananarepublic band bank bar barcelona barclaycard barclays barefoot bargains baseball basketball
bauhaus bayern bbc bbt bbva bcg bcn beats beauty beer bentley berlin best bestbuy bet bharti bible bid bike bing
bingo bio biz black blackfriday blanco blockbuster blog bloomberg blue bms bmw bnl bnpparibas boats boehringer bofa
bom bond boo book booking boots bosch bostik boston bot boutique box bradesco bridgestone broadway broker brother
brussels budapest bugatti build builders business buy buzz bzh cab cafe cal call calvinklein cam camera camp
cancerresearch canon capetown capital capitalone car caravan cards care career careers cars cartier casa case caseih
cash casino cat catering catholic cba cbn cbre cbs ceb center ceo cern cfa cfd chanel channel charity chase chat
cheap chintai chloe christmas chrome chrysler church cipriani circle cisco citadel citi citic city cityeats claims
cleaning click clinic clinique clothing cloud club clubmed coach codes coffee college cologne com comcast commbank
community company compare computer comsec condos construction consulting contact contractors cooking cookingchannel
cool coop corsica country coupon coupons courses cpa credit creditcard creditunion cricket crown crs cruise cruises
csc cuisinella cymru cyou dabur dad dance data date dating datsun day dclk dds deal dealer deals degree delivery
dell deloitte delta democrat dental dentist desi design dev dhl diamonds diet digital direct directory discount
discover dish diy dnp docs doctor dodge dog doha domains doosan dot download drive dtv dubai duck dunlop duns dupont
durban dvag dvr earth eat eco edeka edu education email emerck energy engineer engineering enterprises epost epson
equipment ericsson erni esq estate esurance etisalat eurovision eus events everbank exchange expert exposed express
extraspace fage fail fairwinds faith family fan fans farm farmers fashion fast fedex feedback ferrari ferrero fiat
fidelity fido film final finance financial fire firestone firmdale fish fishing fit fitness flickr flights flir
florist flowers flsmidth fly foo food foodnetwork football ford forex forsale forum foundation fox free fresenius
frl frogans frontdoor frontier ftr fujitsu fujixerox fun fund furniture futbol fyi gal gallery gallo gallup game
games gap garden gay gbiz gdn gea gent genting george ggee gift gifts gives giving glade glass gle global globo
gmail gmbh gmo gmx godaddy gold goldpoint golf goo goodhands goodyear goog google gop got gov grainger graphics
gratis green gripe grocery group guardian gucci guge guide guitars guru hair hamburg hangout haus hbo hdfc hdfcbank
health healthcare help helsinki here hermes hgtv hiphop hisamitsu hitachi hiv hkt hockey holdings holiday homedepot
homegoods homes homesense honda honeywell horse hospital host hosting hot hoteles hotels hotmail house how hsbc htc
hughes hyatt hyundai ibm icbc ice icu ieee ifm iinet ikano imamat imdb immo immobilien inc industries infiniti info
ing ink institute insurance insure int intel international intuit investments ipiranga irish iselect ismaili ist
istanbul itau itv iveco iwc jaguar java jcb jcp jeep jetzt jewelry jio jlc jll jmp jnj jobs joburg jot joy jpmorgan
jprs juegos juniper kaufen kddi kerryhotels kerrylogistics kerryproperties kfh kia kim kinder kindle kitchen kiwi
koeln komatsu kosher kpmg kpn krd kred kuokgroup kyoto lacaixa ladbrokes lamborghini lamer lancaster lancia lancome
land landrover lanxess lasalle lat latino latrobe law lawyer lds lease leclerc lefrak legal lego lexus lgbt liaison
lidl life lifeinsurance lifestyle lighting like lilly limited limo lincoln linde link lipsy live living lixil llc
llp loan loans locker locus loft lol london lotte lotto love lpl lplfinancial ltd ltda lundbeck lupin luxe luxury
macys madrid maif maison makeup man management mango map market marketing markets marriott marshalls maserati mattel
mba mcd mcdonalds mckinsey med media meet melbourne meme memorial men menu meo merckmsd metlife miami microsoft mil
mini mint mit mitsubishi mlb mls mma mobi mobile mobily moda moe moi mom monash money monster montblanc mopar mormon
mortgage moscow moto motorcycles mov movie movistar msd mtn mtpc mtr museum mutual mutuelle nab nadex nagoya name
nationwide natura navy nba nec net netbank netflix network neustar new newholland news next nextdirect nexus nfl ngo
nhk nico nike nikon ninja nissan nissay nokia northwesternmutual norton now nowruz nowtv nra nrw ntt nyc obi
observer off office okinawa olayan olayangroup oldnavy ollo omega one ong onion onl online onyourside ooo open
oracle orange org organic orientexpress origins osaka otsuka ott ovh page pamperedchef panasonic panerai paris pars
partners parts party passagens pay pccw pet pfizer pharmacy phd philips phone photo photography photos physio piaget
pics pictet pictures pid pin ping pink pioneer pizza place play playstation plumbing plus pnc pohl poker politie
porn post pramerica praxi press prime pro prod productions prof progressive promo properties property protection pru
prudential pub pwc qpon quebec quest qvc racing radio raid read realestate realtor realty recipes red redstone
redumbrella rehab reise reisen reit reliance ren rent rentals repair report republican rest restaurant review
reviews rexroth rich richardli ricoh rightathome ril rio rip rmit rocher rocks rodeo rogers room rsvp rugby ruhr run
rwe ryukyu saarland safe safety sakura sale salon samsclub samsung sandvik sandvikcoromant sanofi sap sapo sarl sas
save saxo sbi sbs sca scb schaeffler schmidt scholarships school schule schwarz science scjohnson scor scot search
seat secure security seek select sener services ses seven sew sex sexy sfr shangrila sharp shaw shell shia shiksha
shoes shop shopping shouji show showtime shriram silk sina singles site ski skin sky skype sling smart smile sncf
soccer social softbank software sohu solar solutions song sony soy space spiegel sport spot spreadbetting srl srt
stada staples star starhub statebank statefarm statoil stc stcgroup stockholm storage store stream studio study
style sucks supplies supply support surf surgery suzuki swatch swiftcover swiss sydney symantec systems tab taipei
talk taobao target tatamotors tatar tattoo tax taxi tci tdk team tech technology tel telecity telefonica temasek
tennis teva thd theater theatre tiaa tickets tienda tiffany tips tires tirol tjmaxx tjx tkmaxx tmall today tokyo
tools top toray toshiba total tours town toyota toys trade trading training travel travelchannel travelers
travelersinsurance trust trv tube tui tunes tushu tvs ubank ubs uconnect unicom university uno uol ups vacations
vana vanguard vegas ventures verisign versicherung vet viajes video vig viking villas vin vip virgin visa vision
vista vistaprint viva vivo vlaanderen vodka volkswagen volvo vote voting voto voyage vuelos wales walmart walter
wang wanggou warman watch watches weather weatherchannel webcam weber website wed wedding weibo weir whoswho wien
wiki williamhill win windows wine winners wme wolterskluwer woodside work works world wow wtc wtf xbox xerox xfinity
xihuan xin xn--11b4c3d xn--1ck2e1b xn--1qqw23a xn--30rr7y xn--3bst00m xn--3ds443g xn--3oq18vl8pn36a xn--3pxu8k
xn--42c2d9a xn--45q11c xn--4gbrim xn--55qw42g xn--55qx5d xn--5su34j936bgsg xn--5tzm5g xn--6frz82g xn--6qq986b3xl
xn--80adxhks xn--80aqecdr1a xn--80asehdb xn--80aswg xn--8y0a063a xn--9dbq2a xn--9et52u xn--9krt00a xn--b4w605ferd
xn--bck1b9a5dre4c xn--c1avg xn--c2br7g xn--cck2b3b xn--cg4bki xn--czr694b xn--czrs0t xn--czru2d xn--d1acj3b
xn--eckvdtc9d xn--efvy88h xn--estv75g xn--fct429k xn--fhbei xn--fiq228c5hs xn--fiq64b xn--fjq720a xn--flw351e
xn--fzys8d69uvgm xn--g2xx48c xn--gckr3f0f xn--gk3at1e xn--hxt814e xn--i1b6b1a6a2e xn--imr513n xn--io0a7i xn--j1aef
xn--jlq61u9w7b xn--jvr189m xn--kcrx77d1x4a xn--kpu716f xn--kput3i xn--mgba3a3ejt xn--mgba7c0bbn0a xn--mgbaakc7dvf
xn--mgbab2bd xn--mgbb9fbpob xn--mgbca7dzdo xn--mgbi4ecexp xn--mgbt3dhd xn--mk1bu44c xn--mxtq1m xn--ngbc5azd
xn--ngbe9e0a xn--ngbrx xn--nqv7f xn--nqv7fs00ema xn--nyqy26a xn--otu796d xn--p1acf xn--pbt977c xn--pssy2u
xn--q9jyb4c xn--qcka1pmc xn--rhqv96g xn--rovu88b xn--ses554g xn--t60b56a xn--tckwe xn--tiq49xqyj xn--unup4y
xn--vermgensberater-ctb xn--vermgensberatung-pwb xn--vhquv xn--vuq861b xn--w4r85el8fhu5dnra xn--w4rs40l xn--xhq521b
xn--zfr164b xperia xxx xyz yachts yahoo yamaxun yandex yodobashi yoga yokohama you youtube yun zappos zara zero zip
zippo zone zuerich
"""


# --------------------------------------------------------------------------------------------------------------
# Character classes (twitter-text js/src/regexp/*.js). Written for the ``regex`` package; escapes are left to
# the regex parser so the source stays ASCII.

_SPACES = r"\x09-\x0d\x20\x85\xa0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# JavaScript's \s (WhiteSpace + LineTerminator), used where twitter-text writes \s.
_JS_WHITESPACE = r"\x09-\x0d\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_INVALID_CHARS = r"\ufffe\ufeff\uffff"
_DIRECTIONAL_MARKS = r"\u202a-\u202e\u061c\u200e\u200f\u2066-\u2069"
# twitter-text's punct.js as written: it lists ' twice and leaves out " and `, so those two are valid domain
# characters. Kept as is: the JavaScript behaviour is what the conformance suite pins.
_PUNCT = r"!'#%&'()*+,\\\-./:;<=>?@\[\]\^_{|}~\$"
_LATIN_ACCENTS = (
    r"\xc0-\xd6\xd8-\xf6\xf8-\xff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259\u025b\u0263\u0268\u026f\u0272"
    r"\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)
_CYRILLIC = r"\u0400-\u04ff"
_AT_SIGNS = r"@\uff20"
_HASH_SIGNS = r"#\uff03"
# \p{L}\p{M}, plus the private-use code points twitter-text's generated tables also count as letters.
_HASHTAG_LETTERS = r"\p{L}\p{M}\uf870-\uf87f\uf882\uf884-\uf89f\uf8b8\uf8c1-\uf8d6"
_HASHTAG_SPECIAL = r"_\u200c\u200d\ua67e\u05be\u05f3\u05f4\uff5e\u301c\u309b\u309c\u30a0\u30fb\u3003\u0f0b\u0f0c\xb7"
# Emoji that default to text presentation and need VS16 to count as emoji (twemoji 13, which twitter-text uses).
_TEXT_DEFAULT_EMOJI = r"\xa9\xae\u2122\u265f"


@dataclass(frozen=True)
class _Patterns:
    mention_or_list: regex.Pattern
    end_mention: regex.Pattern
    reply: regex.Pattern
    hashtag: regex.Pattern
    end_hashtag: regex.Pattern
    cashtag: regex.Pattern
    url: regex.Pattern
    tld_after_dot: regex.Pattern
    ascii_domain: regex.Pattern
    tco_url: regex.Pattern
    no_protocol_bad_preceding: regex.Pattern
    domain_separators: regex.Pattern
    emoji: regex.Pattern


def _tlds() -> list[str]:
    """All TLDs in Unicode form (the internationalized ones decoded from their xn-- form), sorted."""
    return sorted(
        {w[4:].encode("ascii").decode("punycode") if w.startswith("xn--") else w for w in (_CCTLDS + _GTLDS).split()}
    )


def _alternation(words: list[str]) -> str:
    """A regex matching any of ``words``, factored into a trie (so a miss costs one step, not one per word).

    Where several words match at a position the longest is tried first, as in twitter-text's reverse-sorted
    alternation.
    """
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        alts = [regex.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


@functools.cache
def _patterns() -> _Patterns:
    tld = "(?i:" + _alternation(_tlds()) + r"(?=[^0-9a-zA-Z@+\-]|\Z))"
    punycode = r"(?i:xn--[\-0-9a-z]+)"
    domain_char = f"[^{_PUNCT}{_SPACES}{_INVALID_CHARS}]"
    subdomain = rf"(?:(?:{domain_char}(?:[_\-]|{domain_char})*)?{domain_char}\.)"
    domain_name = rf"(?:(?:{domain_char}(?:-|{domain_char})*)?{domain_char}\.)"
    domain = rf"(?:{subdomain}*{domain_name}(?:{tld}|{punycode}))"
    path_char = rf"[a-zA-Z{_CYRILLIC}0-9!*';:=+,.$/%#\[\]\-\u2013_~@|&{_LATIN_ACCENTS}]"
    # Up to two nested levels of balanced parentheses: /wiki/Primer_(film), /track/We_Up_(Album_(Edited))/
    balanced_parens = rf"\((?:{path_char}+|(?:{path_char}*\({path_char}+\){path_char}*))\)"
    path_ending = rf"(?:[+\-a-zA-Z{_CYRILLIC}0-9=_#/{_LATIN_ACCENTS}]|(?:{balanced_parens}))"
    path = rf"(?:(?:{path_char}*(?:{balanced_parens}{path_char}*)*{path_ending})|(?:@{path_char}+/))"
    query_char = r"[a-zA-Z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]"
    query_ending = r"[a-zA-Z0-9\-_&=#/]"
    url_preceding = rf"(?:[^A-Za-z0-9{_AT_SIGNS}${_HASH_SIGNS}{_INVALID_CHARS}]|[{_DIRECTIONAL_MARKS}]|^)"
    url = (
        rf"(({url_preceding})"  # 1 whole match, 2 preceding character
        rf"((?i:(https?://))?"  # 3 URL, 4 protocol
        rf"({domain})"  # 5 domain
        r"(?::([0-9]+))?"  # 6 port
        rf"(/{path}*)?"  # 7 path
        rf"(\?{query_char}*{query_ending})?))"  # 8 query
    )
    ascii_domain = rf"(?:(?:[\-a-zA-Z0-9{_LATIN_ACCENTS}]+)\.)+(?:{tld}|{punycode})"

    hashtag_alpha = f"[{_HASHTAG_LETTERS}]"
    hashtag_alnum = rf"[{_HASHTAG_LETTERS}\p{{Nd}}{_HASHTAG_SPECIAL}]"
    hashtag_boundary = rf"(?:^|\ufe0e|\ufe0f|\Z|(?!{hashtag_alnum}|&)(?s:.))"
    hashtag = (
        rf"({hashtag_boundary})([{_HASH_SIGNS}])(?![\ufe0f\u20e3])({hashtag_alnum}*{hashtag_alpha}{hashtag_alnum}*)"
    )

    mention_preceding = rf"(?:^|[^a-zA-Z0-9_!#$%&*{_AT_SIGNS}]|(?:^|[^a-zA-Z0-9_+~.\-])(?:rt|RT|rT|Rt):?)"
    mention = rf"({mention_preceding})([{_AT_SIGNS}])([a-zA-Z0-9_]{{1,20}})(/[a-zA-Z][a-zA-Z0-9_\-]{{0,24}})?"

    cashtag = rf"(^|[{_SPACES}])(\$)([a-zA-Z]{{1,6}}(?:[._][a-zA-Z]{{1,2}})?)(?=\Z|[{_JS_WHITESPACE}]|[{_PUNCT}])"

    # One emoji sequence (Unicode TS #51 grammar, restricted the way twemoji/twitter-text count): a tag sequence
    # (subdivision flag), a regional-indicator pair, a keycap, a text-default emoji with VS16, or a pictograph
    # with an optional skin tone or VS16; any of those joined by ZWJ.
    emoji_element = (
        r"(?:\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f"
        r"|\p{Regional_Indicator}{2}"
        r"|[#*0-9]\ufe0f?\u20e3"
        rf"|[{_TEXT_DEFAULT_EMOJI}]\ufe0f"
        rf"|(?![{_TEXT_DEFAULT_EMOJI}])"
        r"(?:\p{Emoji_Presentation}|\p{Emoji_Modifier}|\p{Extended_Pictographic}(?!\ufe0e))"
        r"(?:\p{Emoji_Modifier}|\ufe0f)?)"
    )
    emoji = rf"{emoji_element}(?:\u200d{emoji_element})*"

    return _Patterns(
        mention_or_list=regex.compile(mention),
        end_mention=regex.compile(rf"(?:[{_AT_SIGNS}]|[{_LATIN_ACCENTS}]|://)"),
        reply=regex.compile(rf"^(?:[{_SPACES}])*[{_AT_SIGNS}]([a-zA-Z0-9_]{{1,20}})"),
        hashtag=regex.compile(hashtag),
        end_hashtag=regex.compile(rf"(?:[{_HASH_SIGNS}]|://)"),
        cashtag=regex.compile(cashtag),
        url=regex.compile(url),
        tld_after_dot=regex.compile(rf"\.(?:{tld}|{punycode})"),
        ascii_domain=regex.compile(ascii_domain),
        tco_url=regex.compile(rf"^(?i:https?://t\.co/)([a-zA-Z0-9]+)(?:\?{query_char}*{query_ending})?"),
        no_protocol_bad_preceding=regex.compile(r"[\-_./]\Z"),
        domain_separators=regex.compile(r"[.\u3002\uff0e\uff61]"),
        emoji=regex.compile(emoji),
    )


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"twitter-text expects str text, got {type(text).__name__}")


def _remove_overlapping(entities: list[dict]) -> list[dict]:
    """Sort by start; drop every entity that starts inside the previous kept one (twitter-text's rule)."""
    kept: list[dict] = []
    for e in sorted(entities, key=lambda e: e["indices"][0]):
        if not kept or kept[-1]["indices"][1] <= e["indices"][0]:
            kept.append(e)
    return kept


# --------------------------------------------------------------------------------------------------------------
# Mentions and replies


def extract_mentions_or_lists_with_indices(text: str) -> list[dict]:
    """@mentions and @user/list references, in order.

    Returns:
        ``[{"screen_name": str, "list_slug": str, "indices": [start, end)}]``; ``list_slug`` keeps its leading
        ``/`` and is ``""`` for a plain mention; indices (code points) span the ``@`` through the slug.
    """
    _check_text(text)
    if "@" not in text and "\uff20" not in text:
        return []
    p = _patterns()
    out = []
    for m in p.mention_or_list.finditer(text):
        if p.end_mention.match(text, m.end()):
            continue
        out.append({"screen_name": m.group(3), "list_slug": m.group(4) or "", "indices": [m.start(2), m.end()]})
    return out


def extract_mentions_with_indices(text: str) -> list[dict]:
    """@mentions (not lists): ``[{"screen_name": str, "indices": [start, end)}]``, code points, ``@`` included.

    Screen names are 1-20 of ``[A-Za-z0-9_]`` after ``@`` or fullwidth ``U+FF20``; an ``@`` glued to a preceding
    letter, digit or ``_!#$%&*@`` (``a@b.com``) or followed by ``@``, a Latin accent or ``://`` does not count.
    """
    return [
        {"screen_name": e["screen_name"], "indices": e["indices"]}
        for e in extract_mentions_or_lists_with_indices(text)
        if not e["list_slug"]
    ]


def extract_mentions(text: str) -> list[str]:
    """Screen names mentioned in ``text``, in order, without the ``@`` (duplicates kept)."""
    return [e["screen_name"] for e in extract_mentions_with_indices(text)]


def extract_reply_screen_name(text: str) -> str | None:
    """The screen name a post replies to: an ``@name`` that opens it (after optional spaces), else ``None``."""
    _check_text(text)
    p = _patterns()
    m = p.reply.search(text)
    if m is None or p.end_mention.match(text, m.end()):
        return None
    return m.group(1)


# --------------------------------------------------------------------------------------------------------------
# Hashtags and cashtags


def _hashtags_with_indices(text: str, check_url_overlap: bool) -> list[dict]:
    _check_text(text)
    if "#" not in text and "\uff03" not in text:
        return []
    p = _patterns()
    tags = []
    for m in p.hashtag.finditer(text):
        if p.end_hashtag.match(text, m.end()):
            continue
        tags.append({"hashtag": m.group(3), "indices": [m.start(2), m.end()]})
    if check_url_overlap and tags:
        urls = extract_urls_with_indices(text)
        if urls:
            tags = [e for e in _remove_overlapping(tags + urls) if "hashtag" in e]
    return tags


def extract_hashtags_with_indices(text: str) -> list[dict]:
    """#hashtags: ``[{"hashtag": str, "indices": [start, end)}]``, code points, the ``#`` included.

    A hashtag is ``#`` or fullwidth ``U+FF03`` followed by letters, marks, decimal digits and a few joiners
    (``_``, ZWNJ/ZWJ, middle dots, wave dashes), with at least one letter or mark (``#123`` is not one). Hashtags
    inside a URL (``http://x.com/#anchor``) are dropped.
    """
    return _hashtags_with_indices(text, check_url_overlap=True)


def extract_hashtags(text: str) -> list[str]:
    """Hashtags in ``text``, in order, without the ``#`` (duplicates and case kept)."""
    return [e["hashtag"] for e in extract_hashtags_with_indices(text)]


def extract_cashtags_with_indices(text: str) -> list[dict]:
    """$cashtags: ``[{"cashtag": str, "indices": [start, end)}]``, code points, the ``$`` included.

    A cashtag is ``$`` at the start or after a space, then 1-6 ASCII letters with an optional ``.XX`` or
    ``_XX`` suffix (``$TEST.T``), followed by the end, a space or punctuation (``$5`` and ``$AAPL1`` are not).
    """
    _check_text(text)
    if "$" not in text:
        return []
    return [{"cashtag": m.group(3), "indices": [m.start(2), m.end()]} for m in _patterns().cashtag.finditer(text)]


def extract_cashtags(text: str) -> list[str]:
    """Cashtags in ``text``, in order, without the ``$``."""
    return [e["cashtag"] for e in extract_cashtags_with_indices(text)]


# --------------------------------------------------------------------------------------------------------------
# URLs


def _utf16_len(s: str) -> int:
    return len(s) + sum(1 for c in s if ord(c) > 0xFFFF)


def _punycode_label_length(label: str, p: _Patterns) -> int | None:
    """Length of punycode.js ``toASCII(label)`` (which also splits on ideographic full stops), or None."""
    parts = []
    for part in p.domain_separators.split(label):
        if part.isascii():
            parts.append(part)
        else:
            try:
                parts.append("xn--" + part.encode("punycode").decode("ascii"))
            except UnicodeError:
                return None
    return len(".".join(parts))


def _is_valid_url(url: str, protocol: str, domain: str, p: _Patterns) -> bool:
    """twitter-text's ``isValidUrl``: every DNS label 1-63 characters once punycoded, and not too long."""
    if domain.startswith("xn--") and not p.ascii_domain.search(domain):
        return False  # a punycoded domain cannot hold non-ASCII
    for label in domain.split("."):
        n = _punycode_label_length(label, p)
        if n is None or not 1 <= n <= 63:
            return False
    # As in twitter-text's JavaScript: the protocol is added even when ``url`` already starts with it.
    return len(protocol) + _utf16_len(url) <= MAX_URL_LENGTH


def extract_urls_with_indices(text: str, *, extract_urls_without_protocol: bool = True) -> list[dict]:
    """URLs: ``[{"url": str, "indices": [start, end)}]``, code points, in order.

    Follows twitter-text: a URL with ``http(s)://`` may have any domain ending in a known TLD or punycode;
    without a protocol only the ASCII part of the domain counts (``t.co/abcde``, ``example.com`` inside Japanese
    text) and a preceding ``-_./`` rules it out. Trailing punctuation is left out, ``t.co`` slugs are cut after
    the slug (and its query), and a URL with a DNS label over 63 characters or over 4096 characters in all is
    not a URL. The URL is returned as written (no protocol added, no unescaping).
    """
    _check_text(text)
    if not text or ("." not in text if extract_urls_without_protocol else ":" not in text):
        return []
    p = _patterns()
    if not p.tld_after_dot.search(text):
        return []  # every domain ends in ".<TLD>" or ".xn--": without one there is nothing to scan for
    urls: list[dict] = []
    for m in p.url.finditer(text):
        before, url, protocol, domain, path = m.group(2, 3, 4, 5, 7)
        start, end = m.start(3), m.end(3)
        if not _is_valid_url(url, protocol or "https://", domain, p):
            continue
        if not protocol:
            if not extract_urls_without_protocol or p.no_protocol_bad_preceding.search(before):
                continue
            last = None
            for am in p.ascii_domain.finditer(domain):
                last = {"url": am.group(), "indices": [start + am.start(), start + am.end()]}
                urls.append(last)
            if last is not None and path:
                # The last ASCII domain takes the path (and query) along; a port without a path is dropped.
                last["url"] = url.replace(domain, last["url"], 1)
                last["indices"][1] = end
        else:
            tco = p.tco_url.match(url)
            if tco:
                if len(tco.group(1)) > MAX_TCO_SLUG_LENGTH:
                    continue
                url = tco.group()
                end = start + len(url)
            urls.append({"url": url, "indices": [start, end]})
    return urls


def extract_urls(text: str) -> list[str]:
    """URLs in ``text``, in order, as written (see ``extract_urls_with_indices``)."""
    return [e["url"] for e in extract_urls_with_indices(text)]


def extract_entities_with_indices(text: str) -> list[dict]:
    """URLs, mentions/lists, hashtags and cashtags together, sorted by start, overlaps removed.

    Each dict is shaped as its own extractor returns it (the key ``url``, ``screen_name``, ``hashtag`` or
    ``cashtag`` says which). Where two overlap the earlier-starting one is kept, URL first on a tie, so a
    ``#fragment`` or ``@user`` inside a URL is not reported twice.
    """
    return _remove_overlapping(
        extract_urls_with_indices(text)
        + extract_mentions_or_lists_with_indices(text)
        + _hashtags_with_indices(text, check_url_overlap=False)
        + extract_cashtags_with_indices(text)
    )


# --------------------------------------------------------------------------------------------------------------
# Weighted length


@dataclass(frozen=True)
class ParseResult:
    """What twitter-text's ``parseTweet`` reports for one text.

    Attributes:
        weighted_length: weighted length in characters (sum of weights // scale).
        valid: 0 < weighted length <= max and no invalid character (U+FFFE, U+FEFF, U+FFFF).
        permillage: weighted length per mille of the maximum, floored (1000 = exactly full).
        valid_range_start: always 0.
        valid_range_end: last UTF-16 code unit (inclusive) of the longest prefix that is still valid,
            in the text as given (before NFC); 0 for an empty text.
        display_range_start: always 0.
        display_range_end: last UTF-16 code unit (inclusive) of the text as given; 0 for an empty text.
    """

    weighted_length: int
    valid: bool
    permillage: int
    valid_range_start: int
    valid_range_end: int
    display_range_start: int
    display_range_end: int


def _emoji_ends(text: str) -> dict[int, int]:
    """``{start: end}`` code point spans of the emoji sequences in ``text``."""
    return {m.start(): m.end() for m in _patterns().emoji.finditer(text)}


def parse_tweet(text: str, config: TwitterTextConfig = DEFAULT_CONFIG) -> ParseResult:
    """Weighted length and validity of a post, as twitter-text's ``parseTweet`` computes them.

    The text is NFC-normalized, then walked left to right: a URL (see ``extract_urls_with_indices``) adds
    ``transformed_url_length``; with ``emoji_parsing_enabled`` an emoji sequence adds ``default_weight`` once;
    any other code point adds its range weight. Nothing is unescaped: pass the text as typed.

    Args:
        text: the post text.
        config: weighting config; the default, ``CONFIG_V3``, is what X counts today.

    Raises:
        TypeError: ``text`` is not a ``str``.
    """
    _check_text(text)
    normalized = unicodedata.normalize("NFC", text)
    url_ends = {e["indices"][0]: e["indices"][1] for e in extract_urls_with_indices(normalized)}
    emoji_ends = _emoji_ends(normalized) if config.emoji_parsing_enabled else {}
    limit = config.max_weighted_tweet_length * config.scale

    total = 0
    chars_valid = True
    valid_display_index = 0  # UTF-16 index of the last unit of the longest valid prefix
    i = u16 = 0
    n = len(normalized)
    while i < n:
        if i in url_ends:
            j = url_ends[i]
            total += config.transformed_url_length * config.scale
        elif i in emoji_ends:
            j = emoji_ends[i]
            total += config.default_weight
        else:
            j = i + 1
            total += config.weight_of(ord(normalized[i]))
        u16 += _utf16_len(normalized[i:j])
        # As twitter-text: validity is checked on the last code point of each URL or emoji sequence.
        if chars_valid and normalized[j - 1] in "\ufffe\ufeff\uffff":
            chars_valid = False
        if chars_valid and total <= limit:
            valid_display_index = u16 - 1
        i = j

    text_u16 = _utf16_len(text)
    return ParseResult(
        weighted_length=total // config.scale,
        valid=chars_valid and 0 < total <= limit,
        permillage=total * 1000 // limit,
        valid_range_start=0,
        valid_range_end=valid_display_index + text_u16 - u16,
        display_range_start=0,
        display_range_end=max(text_u16 - 1, 0),
    )


def weighted_length(text: str, config: TwitterTextConfig = DEFAULT_CONFIG) -> int:
    """Weighted length of ``text`` in characters (URLs 23, CJK and emoji sequences 2 under v3).

    Raises:
        TypeError: ``text`` is not a ``str``.
    """
    return parse_tweet(text, config).weighted_length


def fits_in_tweet(text: str, config: TwitterTextConfig = DEFAULT_CONFIG) -> bool:
    """Whether ``text`` can be posted as one post: non-empty, weighted length <= 280, no invalid character.

    Raises:
        TypeError: ``text`` is not a ``str``.
    """
    return parse_tweet(text, config).valid
