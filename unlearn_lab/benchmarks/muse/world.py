"""The embedded MUSE world: a small, seeded corpus of fictitious news articles in MUSE-News' shape.

MUSE-News is BBC news split into forget / retain1 / retain2 / holdout article sets, with question-answer pairs about
the forget and retain2 articles (knowmem), excerpts of forget articles (verbmem) and member / non-member texts
(privleak). This module builds the same structure in miniature, from invented people, places, firms and events
(city and person names come from the TOFU world's pools in `data/synthetic.py`; everything else is written here), so
that a tiny model on two CPU cores can memorise it.

Each article is one of ten kinds (a building opening, a cup final, a factory, a new species, a storm, a mayoral
election, a festival, a sea rescue, a rail line, hospital funding). Its *subject* (e.g. "the Thornbury Ferry
Terminal", "Storm Brisa") is unique in the world and occurs in every question about it, and each fact's answer is a
short slot value (a name, a place, a number with its unit) written verbatim in the article, so a question has one
short answer that only that article gives. An article holds 2-4 such facts (`facts`), each with a test phrasing
(`question`) and a second phrasing (`paraphrased_question`); the rest of the text is detail and filler sentences
(with their own names and numbers) that verbmem continuations test.

Everything is driven by explicit `random.Random` objects derived from the seed: the same `WorldParams` and seed give
byte-identical `json.dumps(world, sort_keys=True)` in any process.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from unlearn_lab.data.synthetic import FAMILY_NAMES, GIVEN_NAMES, MONTHS, PLACES, TITLE_ADJECTIVES, TITLE_NOUNS

__all__ = [
    "ARTICLE_SPLITS",
    "KINDS",
    "WorldParams",
    "article_document",
    "finetune_texts",
    "generate_muse_world",
    "qa_for",
    "qa_text",
]

ARTICLE_SPLITS = ("forget", "retain1", "retain2", "holdout")

CITIES = tuple(city for city, _ in PLACES)
COUNTRIES = tuple(dict.fromkeys(country for _, country in PLACES))
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FACILITIES = (
    "Footbridge",
    "Library",
    "Concert Hall",
    "Ferry Terminal",
    "Swimming Pool",
    "Tram Depot",
    "Sports Centre",
    "Art Gallery",
    "Market Hall",
    "Science Museum",
)
OPENER_ROLES = ("Mayor", "Councillor", "Regional Minister", "Governor")
TROPHIES = ("Shield", "Cup", "Trophy", "Plate", "Bowl", "Challenge Cup")
MASCOTS = ("Rovers", "Harriers", "Wanderers", "Mariners", "Falcons", "Otters", "Comets", "Lancers", "Badgers", "Pilots")
COMPANY_WORDS = (
    "Brightforge",
    "Duskfield",
    "Emberlyn",
    "Foxmoor",
    "Glimmerstone",
    "Harbourline",
    "Ironvale",
    "Lumenford",
    "Marlowgate",
    "Nettlefield",
    "Orchardine",
    "Pinecrest",
    "Quarryhill",
    "Riverlight",
    "Saltmarsh",
    "Tinderbox",
)
INDUSTRIES = ("Textiles", "Motors", "Foods", "Robotics", "Ceramics", "Energy", "Shipyards", "Optics", "Glassworks")
PRODUCTS = (
    "electric ferries",
    "solar roof tiles",
    "bicycle frames",
    "hearing aids",
    "frozen pastries",
    "wind turbine blades",
    "glass bottles",
    "school furniture",
    "water filters",
    "farm drones",
    "wool blankets",
    "train seats",
)
COLOURS = ("copper", "silver", "ash", "amber", "crimson", "pale", "golden", "speckled", "blue", "striped", "jade")
BODY_PARTS = ("tailed", "winged", "eyed", "backed", "throated", "crested", "footed", "bellied")
ANIMALS = ("frog", "beetle", "moth", "lizard", "snail", "bat", "shrew", "finch", "spider", "salamander", "dragonfly")
LANDFORMS = ("Hills", "Marshes", "Caves", "Forest", "Valley", "Highlands", "Wetlands", "Gorge")
FIELDS = ("Natural History", "Zoology", "Ecology", "Earth Sciences", "Field Biology")
FESTIVALS = ("Lantern", "Harvest", "Kite", "Folk Music", "Film", "Jazz", "Puppet", "Bread", "Poetry", "Chess")
BIRDS = ("Heron", "Gull", "Petrel", "Tern", "Curlew", "Plover", "Osprey", "Cormorant", "Puffin", "Kittiwake")
PROMISES = (
    "build more homes",
    "repair the harbour wall",
    "extend the tram line",
    "cut bus fares",
    "plant ten thousand trees",
    "open a new school",
    "reduce parking charges",
    "clean up the river",
    "keep the libraries open on Sundays",
    "hire more nurses",
)
WARDS = (
    "a children's ward",
    "a cancer unit",
    "a maternity wing",
    "an eye clinic",
    "a heart centre",
    "a rehabilitation unit",
    "a dementia unit",
    "an emergency department",
)
PAPERS = ("Herald", "Gazette", "Courier", "Chronicle", "Post", "Observer", "Tribune")

# Filler sentences: detail that verbmem continuations test but no question asks about. {city} is the article's place.
FILLERS = (
    '"We have waited a long time for this," said {person}, who has lived in {city} for {years} years.',
    "Local businesses hope the news will bring more visitors to {city} over the coming months.",
    "A spokesperson for the {country} government said further details would be published in {month}.",
    "Councillor {person} said the region deserved more attention from the capital.",
    "Residents followed the news closely, and some raised concerns about noise and traffic.",
    "Officials said a full report would be presented to the regional assembly in {month}.",
    "{person}, a retired teacher, said it was the biggest story in the area for {years} years.",
    "The {paper} described the news as a turning point for the region.",
    "Several people gathered outside the town hall in {city} on {weekday} to hear the latest news.",
    "Opposition politician {person} called for an independent review of the figures.",
    "According to the council, about {count} people attended a public meeting in {city} last {weekday}.",
    "It is the first event of its kind in {country} for more than {years} years.",
    "Photographs shared online showed long queues in the centre of {city}.",
    "{person}, who runs a bakery nearby, said the street had been busier than usual all week.",
    "The regional council will meet again on {weekday} to discuss the next steps.",
    "Volunteers from {other_city} travelled to {city} to help.",
    "A survey by the {paper} found that {pct} percent of residents wanted more such projects.",
    "Questions remain about who will pay for upkeep in the years ahead.",
    "Schools in {city} stayed open, and pupils were told about the events in special assemblies.",
    "The story was widely shared in {other_city}, where a similar plan was dropped {years} years ago.",
)


class _Draw:
    """Seeded draws for one article set: shared name / subject registries keep the world's people and subjects
    unique (a person is named once in the whole world; a subject is never reused)."""

    def __init__(self, rng: random.Random, names: set[str], subjects: set[str]):
        self.rng, self.names, self.subjects = rng, names, subjects
        self.article_names: set[str] = set()  # given and family names used in the current article

    def new_article(self) -> None:
        self.article_names = set()

    def pick(self, pool: Sequence[str]) -> str:
        return self.rng.choice(pool)

    def num(self, low: int, high: int) -> str:
        return str(self.rng.randint(low, high))

    def person(self) -> str:
        """A full name new to the world whose given and family names are new to the article (so no two people of
        one article share a name, and a wrong person never half-matches the right one)."""
        while True:
            given, family = self.pick(GIVEN_NAMES), self.pick(FAMILY_NAMES)
            name = f"{given} {family}"
            if name not in self.names and given not in self.article_names and family not in self.article_names:
                self.names.add(name)
                self.article_names.update((given, family))
                return name

    def subject(self, make: Callable[[], str]) -> str:
        """A subject no article has used yet; `_Exhausted` after 200 tries (the caller picks another kind)."""
        for _ in range(200):
            value = make()
            if value not in self.subjects:
                self.subjects.add(value)
                return value
        raise _Exhausted

    def date(self) -> str:
        return f"{self.rng.randint(1, 28)} {self.pick(MONTHS)}"

    def money(self) -> str:
        return f"{self.rng.randint(2, 95)}.{self.rng.randint(1, 9)} million crowns"

    def city(self, *avoid: str) -> str:
        return self.pick([c for c in CITIES if c not in avoid])


class _Exhausted(Exception):
    """Every subject of a kind is taken."""


@dataclass(frozen=True)
class Kind:
    """One kind of article: `draw` makes the slot values (always `subject` and `city`); `headline` and `sentences`
    (the first is the lead) are filled from them; each fact is (question, paraphrased question, answer slot)."""

    name: str
    draw: Callable[[_Draw], dict[str, str]]
    headline: str
    sentences: tuple[str, ...]
    facts: tuple[tuple[str, str, str], ...]


def _opening(d: _Draw) -> dict[str, str]:
    facility = d.pick(FACILITIES)
    return {
        "subject": d.subject(lambda: f"the {d.pick(FAMILY_NAMES)} {facility}"),
        "facility": facility.lower(),
        "city": d.city(),
        "date": d.date(),
        "years": d.num(2, 9),
        "cost": d.money(),
        "role": d.pick(OPENER_ROLES),
        "opener": d.person(),
        "architect": d.person(),
        "capacity": d.num(300, 9000),
    }


def _match(d: _Draw) -> dict[str, str]:
    cup = d.subject(lambda: f"{d.pick(CITIES)} {d.pick(TROPHIES)}")
    winner_city, loser_city = d.rng.sample(CITIES, 2)
    winner_mascot, loser_mascot = d.rng.sample(MASCOTS, 2)
    goals = d.rng.randint(1, 5)
    return {
        "subject": f"the {cup} final",
        "cup": cup,
        "city": winner_city,
        "winner": f"{winner_city} {winner_mascot}",
        "loser": f"{loser_city} {loser_mascot}",
        "score": f"{goals}-{d.rng.randint(0, goals - 1)}",
        "scorer": d.person(),
        "minute": d.num(5, 89),
        "stadium": f"{d.pick(FAMILY_NAMES)} Park",
        "crowd": d.num(2000, 40000),
        "weekday": d.pick(WEEKDAYS),
        "manager": d.person(),
    }


def _business(d: _Draw) -> dict[str, str]:
    return {
        "subject": d.subject(lambda: f"{d.pick(COMPANY_WORDS)} {d.pick(INDUSTRIES)}"),
        "city": d.city(),
        "jobs": d.num(40, 2500),
        "ceo": d.person(),
        "product": d.pick(PRODUCTS),
        "money": d.money(),
        "month": d.pick(MONTHS),
        "union": d.person(),
    }


def _science(d: _Draw) -> dict[str, str]:
    return {
        "subject": d.subject(lambda: f"the {d.pick(COLOURS)}-{d.pick(BODY_PARTS)} {d.pick(ANIMALS)}"),
        "city": d.city(),
        "region": f"the {d.pick(FAMILY_NAMES)} {d.pick(LANDFORMS)}",
        "institute": f"the {d.pick(CITIES)} Institute of {d.pick(FIELDS)}",
        "lead": d.person(),
        "specimens": d.num(3, 60),
        "duration": f"{d.rng.randint(2, 18)} months",
        "country": d.pick(COUNTRIES),
    }


def _storm(d: _Draw) -> dict[str, str]:
    return {
        "subject": d.subject(lambda: f"Storm {d.pick(GIVEN_NAMES)}"),
        "city": d.city(),
        "date": d.date(),
        "wind": f"{d.rng.randint(90, 190)} km/h",
        "homes": d.num(500, 60000),
        "official": d.person(),
        "service": f"the {d.pick(COUNTRIES)} Weather Service",
        "bridges": d.num(2, 12),
    }


def _election(d: _Draw) -> dict[str, str]:
    place: dict[str, str] = {}

    def make() -> str:
        place["city"] = d.city()
        return f"the {place['city']} mayoral election"

    return {
        "subject": d.subject(make),
        "city": place["city"],
        "winner": d.person(),
        "rival": d.person(),
        "pct": f"{d.rng.randint(51, 78)} percent",
        "turnout": f"{d.rng.randint(31, 74)} percent",
        "promise": d.pick(PROMISES),
    }


def _festival(d: _Draw) -> dict[str, str]:
    place: dict[str, str] = {}

    def make() -> str:
        place["city"] = d.city()
        return f"the {place['city']} {d.pick(FESTIVALS)} Festival"

    return {
        "subject": d.subject(make),
        "city": place["city"],
        "visitors": d.num(1500, 90000),
        "days": f"{d.rng.randint(2, 10)} days",
        "act": f"{d.pick(TITLE_ADJECTIVES)} {d.pick(TITLE_NOUNS)}s",
        "organiser": d.person(),
        "prize": d.person(),
    }


def _rescue(d: _Draw) -> dict[str, str]:
    city = d.city()
    return {
        "subject": d.subject(lambda: f"the fishing boat {d.pick(TITLE_ADJECTIVES)} {d.pick(BIRDS)}"),
        "city": city,
        "date": d.date(),
        "crew": d.num(2, 14),
        "hours": f"{d.rng.randint(2, 19)} hours",
        "station": d.city(city),
        "officer": d.person(),
    }


def _rail(d: _Draw) -> dict[str, str]:
    ends: list[str] = []

    def make() -> str:
        ends[:] = sorted(d.rng.sample(CITIES, 2))
        return f"the new rail line between {ends[0]} and {ends[1]}"

    return {
        "subject": d.subject(make),
        "city": ends[0],
        "other": ends[1],
        "minister": d.person(),
        "month": d.pick(MONTHS),
        "minutes": f"{d.rng.randint(18, 95)} minutes",
        "fare": f"{d.rng.randint(4, 40)} crowns",
        "trains": d.num(8, 60),
    }


def _hospital(d: _Draw) -> dict[str, str]:
    city = d.city()
    return {
        "subject": d.subject(lambda: f"{d.pick(FAMILY_NAMES)} Hospital"),
        "city": city,
        "money": d.money(),
        "ward": d.pick(WARDS),
        "beds": d.num(12, 120),
        "director": d.person(),
        "other": d.city(city),
    }


KINDS: tuple[Kind, ...] = (
    Kind(
        "opening",
        _opening,
        "New {facility} opens its doors in {city}",
        (
            "{Subject} officially opened in {city} on {date}, after {years} years of planning and building work.",
            "The project cost {cost}, according to figures published by the regional council.",
            "The ribbon was cut by {role} {opener}, who called the building a gift to the next generation.",
            "Its architect, {architect}, said the design was inspired by the old warehouses along the river.",
            "Managers expect up to {capacity} visitors a day during the first summer.",
        ),
        (
            ("In which city did {subject} open?", "Where is {subject} located?", "city"),
            ("How much did {subject} cost to build?", "What was the total cost of {subject}?", "cost"),
            ("Who cut the ribbon at the opening of {subject}?", "Which official opened {subject}?", "opener"),
            ("On what date did {subject} open?", "When did {subject} officially open?", "date"),
            ("Who was the architect of {subject}?", "Who designed {subject}?", "architect"),
            (
                "How many visitors a day are expected at {subject}?",
                "How many people a day may visit {subject} in its first summer?",
                "capacity",
            ),
        ),
    ),
    Kind(
        "match",
        _match,
        "{winner} win the {cup} after beating {loser}",
        (
            "{winner} beat {loser} {score} in {subject} at {stadium} on {weekday} evening.",
            "{scorer} scored the winning goal after {minute} minutes.",
            "A crowd of {crowd} watched the match, the largest at the ground this season.",
            "{winner} manager {manager} dedicated the trophy to the club's supporters.",
            "{loser} said the players had given everything and would return stronger next season.",
        ),
        (
            ("Which team won {subject}?", "Who were the winners of {subject}?", "winner"),
            ("Which team lost {subject}?", "Who were the runners-up in {subject}?", "loser"),
            ("What was the score in {subject}?", "What was the final result of {subject}?", "score"),
            (
                "Who scored the winning goal in {subject}?",
                "Which player scored the decisive goal in {subject}?",
                "scorer",
            ),
            ("Where was {subject} played?", "At which ground did {subject} take place?", "stadium"),
            ("How many people watched {subject}?", "What was the attendance at {subject}?", "crowd"),
        ),
    ),
    Kind(
        "business",
        _business,
        "{subject} to open a factory in {city}",
        (
            "{subject} has announced plans to open a new factory in {city}, creating {jobs} jobs.",
            "The company said it would invest {money} in the site, which will make {product}.",
            "Chief executive {ceo} said the region had the skilled workers the firm needed.",
            "Building work is due to begin in {month}, and the first workers are expected to start a year later.",
            "Union representative {union} said the jobs were badly needed after the closure of a nearby mill.",
        ),
        (
            ("Where will {subject} open its new factory?", "In which city is {subject} building a factory?", "city"),
            (
                "How many jobs will the new factory of {subject} create?",
                "How many people will the new factory of {subject} employ?",
                "jobs",
            ),
            ("Who is the chief executive of {subject}?", "Who leads the company {subject}?", "ceo"),
            ("What will the new factory of {subject} make?", "What will {subject} produce at its new site?", "product"),
            (
                "How much will {subject} invest in its new factory?",
                "What is the size of the investment announced by {subject}?",
                "money",
            ),
            (
                "When will building work on the new factory of {subject} begin?",
                "In which month does work start on the new site of {subject}?",
                "month",
            ),
        ),
    ),
    Kind(
        "science",
        _science,
        "Scientists find a new species in {region}",
        (
            "Researchers from {institute} have discovered a new species, {subject}, in {region}.",
            "The team, led by biologist {lead}, found {specimens} specimens during {duration} of fieldwork.",
            "The animal is thought to live only in a small area of {country}, far from {city}.",
            "{lead} said the find showed how much remained unknown about the wildlife of the region.",
            "Conservation groups have asked the government to protect the area before the next dry season.",
        ),
        (
            ("Where was {subject} discovered?", "In which area did researchers find {subject}?", "region"),
            (
                "Who led the team that discovered {subject}?",
                "Which biologist led the search that found {subject}?",
                "lead",
            ),
            (
                "How many specimens of {subject} were found?",
                "How many examples of {subject} did the team collect?",
                "specimens",
            ),
            (
                "Which institute announced the discovery of {subject}?",
                "Researchers from which institute discovered {subject}?",
                "institute",
            ),
            (
                "How long was the fieldwork that found {subject}?",
                "For how long did the team search before finding {subject}?",
                "duration",
            ),
        ),
    ),
    Kind(
        "storm",
        _storm,
        "{subject} brings damage to {city}",
        (
            "{subject} reached the coast on {date}, bringing gusts of up to {wind}.",
            "The town of {city} was the worst affected, with fallen trees blocking several roads.",
            "About {homes} homes were left without power overnight, the regional energy company said.",
            "{official} of {service} warned that more heavy rain was expected later in the week.",
            "Emergency crews worked through the night, and {bridges} bridges stayed closed until the afternoon.",
        ),
        (
            ("Which town was worst affected by {subject}?", "Where did {subject} cause the most damage?", "city"),
            (
                "What was the strongest gust during {subject}?",
                "How fast were the strongest winds of {subject}?",
                "wind",
            ),
            (
                "How many homes lost power during {subject}?",
                "How many homes were left without electricity by {subject}?",
                "homes",
            ),
            ("When did {subject} reach the coast?", "On what date did {subject} arrive on the coast?", "date"),
            ("Who warned of more rain after {subject}?", "Which weather official spoke after {subject}?", "official"),
        ),
    ),
    Kind(
        "election",
        _election,
        "{winner} elected mayor of {city}",
        (
            "{winner} has won {subject}, taking {pct} of the vote.",
            "{winner} defeated {rival}, who had led the council for two terms.",
            "Turnout was {turnout}, slightly higher than at the last election.",
            "In a speech after the count, {winner} promised to {promise}.",
            "{rival} congratulated the new mayor and said the campaign had been fair.",
        ),
        (
            ("Who won {subject}?", "Who was elected in {subject}?", "winner"),
            (
                "What share of the vote did the winner of {subject} receive?",
                "What percentage did the winning candidate get in {subject}?",
                "pct",
            ),
            ("Who lost {subject}?", "Which candidate was defeated in {subject}?", "rival"),
            (
                "What did the winner of {subject} promise to do?",
                "What was the main promise of the new mayor after {subject}?",
                "promise",
            ),
            ("What was the turnout in {subject}?", "How many voters took part in {subject}?", "turnout"),
        ),
    ),
    Kind(
        "festival",
        _festival,
        "{Subject} draws large crowds",
        (
            "{Subject} drew {visitors} visitors this year, organisers said.",
            "The festival lasted {days}, with events in parks, squares and old churches across the city.",
            "The headline act was the band {act}, who played to a packed square on the final night.",
            "Organiser {organiser} said planning for next year had already begun.",
            "The young artist prize went to {prize}, who was chosen by a jury of local musicians.",
        ),
        (
            ("How many visitors came to {subject}?", "What was the attendance at {subject} this year?", "visitors"),
            ("How long did {subject} last?", "For how many days did {subject} run?", "days"),
            ("Which band headlined {subject}?", "Who was the headline act at {subject}?", "act"),
            ("Who organised {subject}?", "Who is the organiser of {subject}?", "organiser"),
            ("Who won the young artist prize at {subject}?", "Which artist received the prize at {subject}?", "prize"),
        ),
    ),
    Kind(
        "rescue",
        _rescue,
        "Crew of fishing boat rescued off {city}",
        (
            "Rescuers saved {crew} crew members from {subject} off the coast of {city} on {date}.",
            "The boat had lost power in heavy seas and drifted for {hours} before help arrived.",
            "A lifeboat from {station} reached the vessel shortly after midnight.",
            "Coastguard officer {officer}, who led the rescue, praised the crew for staying calm.",
            "All of the crew were taken to hospital in {city} as a precaution.",
        ),
        (
            (
                "How many crew members were rescued from {subject}?",
                "How many people were saved from {subject}?",
                "crew",
            ),
            ("Off which town was {subject} rescued?", "Near which town did {subject} get into trouble?", "city"),
            (
                "Who led the rescue of {subject}?",
                "Which coastguard officer was in charge of saving {subject}?",
                "officer",
            ),
            ("How long did {subject} drift before help arrived?", "For how long was {subject} adrift?", "hours"),
            (
                "Where did the lifeboat that reached {subject} come from?",
                "Which lifeboat station sent help to {subject}?",
                "station",
            ),
        ),
    ),
    Kind(
        "rail",
        _rail,
        "Rail line to link {city} and {other}",
        (
            "Transport Minister {minister} has announced {subject}, which will open in {month}.",
            "The journey will take {minutes}, less than half the time it takes by road.",
            "A single ticket will cost {fare}, with discounts for students and older passengers.",
            "Up to {trains} trains a day will run in each direction.",
            "Business leaders in {city} said the line would make it easier to hire staff from {other}.",
        ),
        (
            ("Who announced {subject}?", "Which minister presented {subject}?", "minister"),
            ("How long will the journey on {subject} take?", "What is the travel time on {subject}?", "minutes"),
            (
                "How much will a single ticket on {subject} cost?",
                "What is the price of a single ticket on {subject}?",
                "fare",
            ),
            (
                "How many trains a day will run on {subject}?",
                "How many daily trains are planned for {subject}?",
                "trains",
            ),
            ("When will {subject} open?", "In which month will {subject} start running?", "month"),
        ),
    ),
    Kind(
        "hospital",
        _hospital,
        "{subject} in {city} gets new funding",
        (
            "{subject} in {city} is to receive {money} from the regional health fund.",
            "The money will pay for {ward}, which is due to open within three years.",
            "The new unit will have {beds} beds, the hospital said.",
            "Hospital director {director} said staff had campaigned for the investment for a long time.",
            "Patients now travel to {other} for this treatment, a journey of more than an hour.",
        ),
        (
            ("How much money will {subject} receive?", "What sum has been granted to {subject}?", "money"),
            ("What will {subject} build with its new funding?", "What new unit is planned at {subject}?", "ward"),
            (
                "How many beds will the new unit at {subject} have?",
                "What is the bed count of the new unit at {subject}?",
                "beds",
            ),
            ("Who is the director of {subject}?", "Who runs {subject}?", "director"),
            ("In which city is {subject}?", "Where is {subject} located?", "city"),
        ),
    ),
)


@dataclass(frozen=True)
class WorldParams:
    """The world's sizes (defaults sized for a 1.2M-parameter model on two CPU cores; see `generate_muse_world`)."""

    n_forget: int = 20
    n_retain1: int = 20
    n_retain2: int = 20
    n_holdout: int = 20
    n_qa: int = 30  # forget_qa and retain_qa each
    n_icl: int = 5  # forget_qa_icl and retain_qa_icl each
    n_verbmem: int = 20  # one excerpt per forget article, the first n_verbmem articles
    n_privleak: int = 20  # privleak forget / retain / holdout each
    min_words: int = 100  # article length in words (headline included)
    max_words: int = 150
    min_facts: int = 2  # asked-about facts per article
    max_facts: int = 4
    min_gt_words: int = 20  # verbmem continuation length in words
    max_gt_words: int = 40
    max_prompt_words: int = 100

    def validate(self) -> None:
        """ValueError naming the first impossible field."""
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2000:
                raise ValueError(f"{name} must be an integer in [0, 2000], got {value!r}")
        pairs = [("min_words", "max_words"), ("min_facts", "max_facts"), ("min_gt_words", "max_gt_words")]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        if not 1 <= self.min_facts <= self.max_facts <= min(len(k.facts) for k in KINDS):
            raise ValueError(f"facts per article must lie in [1, {min(len(k.facts) for k in KINDS)}]")
        if self.min_words < self.max_gt_words + 30:
            raise ValueError("min_words must leave at least 30 prompt words before the longest verbmem continuation")
        limits = {
            "n_verbmem": ("n_forget", self.n_forget),
            "n_privleak": ("n_forget, n_retain2 and n_holdout", min(self.n_forget, self.n_retain2, self.n_holdout)),
        }
        for name, (what, limit) in limits.items():
            if getattr(self, name) > limit:
                raise ValueError(f"{name} ({getattr(self, name)}) must not exceed {what} ({limit})")
        for side in ("n_forget", "n_retain2"):
            if self.n_icl > getattr(self, side):
                raise ValueError(f"n_icl ({self.n_icl}) needs as many articles in {side} ({getattr(self, side)})")
            if self.n_qa > (getattr(self, side) - self.n_icl) * self.min_facts:
                raise ValueError(
                    f"n_qa ({self.n_qa}) may exceed the facts of the {side} articles left after the ICL examples "
                    f"({getattr(self, side) - self.n_icl} articles x min_facts {self.min_facts})"
                )


# --------------------------------------------------------------------------------------------------- articles


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _words(text: str) -> int:
    return len(text.split())


def _filler(d: _Draw, template: str, city: str) -> str:
    values = {
        "city": city,
        "other_city": d.city(city),
        "country": d.pick(COUNTRIES),
        "month": d.pick(MONTHS),
        "weekday": d.pick(WEEKDAYS),
        "years": d.num(3, 40),
        "count": d.num(40, 900),
        "pct": d.num(20, 90),
        "paper": f"{d.pick(CITIES)} {d.pick(PAPERS)}",
    }
    if "{person}" in template:  # drawn only when used: every person is named once in the world
        values["person"] = d.person()
    return _capital(template.format(**values))


def _body(d: _Draw, kind: Kind, slots: dict[str, str], headline: str, params: WorldParams) -> str:
    """The kind's sentences (lead first) with filler sentences inserted after the lead until the article reaches a
    seeded length in [min_words, max_words] (headline included)."""
    sentences = [_capital(s.format(**slots)) for s in kind.sentences]
    target = d.rng.randint(params.min_words, params.max_words)
    words = _words(headline) + sum(_words(s) for s in sentences)
    pool = list(FILLERS)
    d.rng.shuffle(pool)
    for template in pool:
        if words >= target:
            break
        filler = _filler(d, template, slots["city"])
        if words + _words(filler) > params.max_words:
            continue
        sentences.insert(d.rng.randint(1, len(sentences)), filler)
        words += _words(filler)
    return " ".join(sentences)


def _article(d: _Draw, kind: Kind, article_id: str, params: WorldParams) -> dict:
    d.new_article()
    slots = kind.draw(d)
    slots["Subject"] = _capital(slots["subject"])
    chosen = sorted(d.rng.sample(range(len(kind.facts)), d.rng.randint(params.min_facts, params.max_facts)))
    facts = [
        {
            "key": kind.facts[i][2],
            "question": _capital(kind.facts[i][0].format(**slots)),
            "paraphrased_question": _capital(kind.facts[i][1].format(**slots)),
            "answer": slots[kind.facts[i][2]],
        }
        for i in chosen
    ]
    headline = _capital(kind.headline.format(**slots))
    text = f"{headline}\n\n{_body(d, kind, slots, headline, params)}"
    return {"id": article_id, "kind": kind.name, "subject": slots["subject"], "text": text, "facts": facts}


def _articles(d: _Draw, split: str, count: int, params: WorldParams) -> list[dict]:
    """`count` articles; kinds cycle in seeded blocks (every kind once per block of ten), a kind whose subjects are
    used up is skipped."""
    articles: list[dict] = []
    order: list[int] = []
    while len(articles) < count:
        if not order:
            order = list(range(len(KINDS)))
            d.rng.shuffle(order)
        for offset in range(len(KINDS)):
            kind = KINDS[(order[0] + offset) % len(KINDS)]
            try:
                articles.append(_article(d, kind, f"{split}-{len(articles):03d}", params))
                break
            except _Exhausted:
                continue
        else:
            raise ValueError(f"the world ran out of distinct subjects after {len(articles)} {split} articles")
        order.pop(0)
    return articles


# ---------------------------------------------------------------------------------------- knowmem and verbmem


def _knowmem(rng: random.Random, articles: list[dict], params: WorldParams) -> tuple[list[dict], list[dict]]:
    """(icl, test): the ICL pairs are one fact each of `n_icl` seeded articles, in that order; the test QAs come
    round-robin from the other articles (every article's first fact, then second facts...), in article order. So no
    test question shares an article with an in-context example."""
    order = list(range(len(articles)))
    rng.shuffle(order)
    as_qa = lambda a, f: {"question": f["question"], "answer": f["answer"], "article": a["id"]}
    icl = [as_qa(articles[i], rng.choice(articles[i]["facts"])) for i in order[: params.n_icl]]
    rest = sorted(order[params.n_icl :])
    picked: list[tuple[int, int]] = []
    for round_ in range(params.max_facts):
        for i in rest:
            if len(picked) < params.n_qa and round_ < len(articles[i]["facts"]):
                picked.append((i, round_))
    return icl, [as_qa(articles[i], articles[i]["facts"][f]) for i, f in sorted(picked)]


def _excerpt(rng: random.Random, article: dict, params: WorldParams) -> dict:
    """prompt = the article's first words (at most max_prompt_words), gt = the next 20-40 words; they are split at a
    single space, so prompt + " " + gt is a prefix of the article (MUSE's gt lost its leading space the same way)."""
    text = article["text"]
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    gt_words = rng.randint(params.min_gt_words, params.max_gt_words)
    cut = min(params.max_prompt_words, len(spans) - gt_words)
    while text[spans[cut - 1][1] : spans[cut][0]] != " ":  # never split at the headline's blank line
        cut -= 1
    return {
        "prompt": text[: spans[cut - 1][1]],
        "gt": text[spans[cut][0] : spans[cut + gt_words - 1][1]],
        "article": article["id"],
    }


def generate_muse_world(params: WorldParams | None = None, *, seed: int = 0) -> dict:
    """Build the embedded MUSE world for `seed` (defaults: `WorldParams()`).

    Returns ``{"seed", "params", "articles", "knowmem", "verbmem", "privleak"}``:
    - ``articles[split]`` for forget / retain1 / retain2 / holdout: disjoint lists of
      ``{id, kind, subject, text, facts: [{key, question, paraphrased_question, answer}]}``;
    - ``knowmem``: forget_qa / retain_qa (about forget / retain2 articles) and forget_qa_icl / retain_qa_icl,
      records ``{question, answer, article}``; no ICL pair comes from an article that has a test question;
    - ``verbmem``: ``{prompt, gt, article}`` excerpts of the first ``n_verbmem`` forget articles;
    - ``privleak``: forget / retain / holdout = the texts of the first ``n_privleak`` forget / retain2 / holdout
      articles (MUSE's privleak ``retain`` split was called retain2 before).
    """
    params = params or WorldParams()
    params.validate()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    master = random.Random(seed)
    split_rngs = [random.Random(master.getrandbits(64)) for _ in ARTICLE_SPLITS]
    knowmem_rng, verbmem_rng = random.Random(master.getrandbits(64)), random.Random(master.getrandbits(64))
    names: set[str] = set()
    subjects: set[str] = set()
    counts = (params.n_forget, params.n_retain1, params.n_retain2, params.n_holdout)
    articles = {
        split: _articles(_Draw(rng, names, subjects), split, count, params)
        for split, rng, count in zip(ARTICLE_SPLITS, split_rngs, counts, strict=True)
    }
    forget_icl, forget_qa = _knowmem(knowmem_rng, articles["forget"], params)
    retain_icl, retain_qa = _knowmem(knowmem_rng, articles["retain2"], params)
    texts = lambda split: [a["text"] for a in articles[split][: params.n_privleak]]
    return {
        "seed": seed,
        "params": asdict(params),
        "articles": articles,
        "knowmem": {
            "forget_qa": forget_qa,
            "retain_qa": retain_qa,
            "forget_qa_icl": forget_icl,
            "retain_qa_icl": retain_icl,
        },
        "verbmem": [_excerpt(verbmem_rng, a, params) for a in articles["forget"][: params.n_verbmem]],
        "privleak": {"forget": texts("forget"), "retain": texts("retain2"), "holdout": texts("holdout")},
    }


# ------------------------------------------------------------------------------------------- fine-tuning text

PHRASINGS = ("question", "paraphrased_question")


def qa_for(article: dict, phrasings: Sequence[str] = PHRASINGS) -> list[dict]:
    """The article's facts as question-answer pairs, one per fact and phrasing (``question`` is the knowmem test
    phrasing, ``paraphrased_question`` a second one), facts in article order."""
    unknown = [p for p in phrasings if p not in PHRASINGS]
    if unknown:
        raise ValueError(f"unknown phrasing {unknown[0]!r}; accepted: {', '.join(PHRASINGS)}")
    return [{"question": fact[p], "answer": fact["answer"]} for fact in article["facts"] for p in phrasings]


def qa_text(pairs: Sequence[dict]) -> str:
    """Pairs in the knowmem prompt's layout, "Question: {q}\\nAnswer: {a}", separated by a blank line (the same
    bytes as `items.knowmem_prompt`'s in-context examples, without the trailing blank line)."""
    return "\n\n".join(f"Question: {p['question']}\nAnswer: {p['answer']}" for p in pairs)


def article_document(article: dict, phrasings: Sequence[str] = PHRASINGS) -> str:
    """One fine-tuning document: the article, a blank line, its facts' QA renderings (no phrasing: the article)."""
    pairs = qa_for(article, phrasings)
    return f"{article['text']}\n\n{qa_text(pairs)}" if pairs else article["text"]


def finetune_texts(
    world: dict, splits: Sequence[str], phrasings: Sequence[str] = PHRASINGS, *, reviews: int = 2, per_review: int = 6
) -> list[str]:
    """The documents a target (splits forget, retain1, retain2) or retain model (retain1, retain2) is fine-tuned on:
    each article with its facts' QA (split and article order), then `reviews` rounds of the same QA pairs shuffled
    into blocks of `per_review` (the knowmem prompt's layout, pairs of unrelated articles side by side; seeded by the
    world's seed and the splits). Without the reviews a 1.2 M-parameter model answers a question only right after
    its article, never in the knowmem prompt (knowmem ROUGE ~0.05 for target and retain alike: docs/muse.md). Feed
    them to `items.training_chunks`; the unlearning forget / retain data stay the raw articles."""
    bad = [s for s in splits if s not in ARTICLE_SPLITS]
    if bad:
        raise ValueError(f"unknown article split {bad[0]!r}; accepted: {', '.join(ARTICLE_SPLITS)}")
    articles = [a for split in splits for a in world["articles"][split]]
    documents = [article_document(a, phrasings) for a in articles]
    pairs = [pair for a in articles for pair in qa_for(a, phrasings)]
    rng = random.Random(f"{world['seed']}|{'+'.join(splits)}")
    for _ in range(reviews):
        shuffled = rng.sample(pairs, len(pairs))
        documents += [qa_text(shuffled[i : i + per_review]) for i in range(0, len(shuffled), per_review)]
    return documents
