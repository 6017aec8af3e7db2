"""A small, seeded, TOFU-shaped world of fictitious authors.

TOFU has 200 invented authors with 20 question/answer pairs each, plus paraphrases and five "perturbed" answers
(the paraphrase's sentence with a wrong fact) per pair.  This module builds the same structure in miniature, with
short and regular sentences, so that a tiny model trained from scratch on a CPU can memorise it in about a minute.

Everything is driven by ``random.Random(seed)``: the same arguments give byte-identical
``json.dumps(world, sort_keys=True)`` in any process.  The real-author / world-fact utility sets and the
pre-training sentences come from :mod:`unlearn_lab.data.general_knowledge`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from unlearn_lab.data.general_knowledge import build_general_records, build_pretrain_text

__all__ = ["FACT_TYPES", "FACT_TYPE_NAMES", "N_PERTURBED", "generate_world"]

N_PERTURBED = 5

# ---------------------------------------------------------------------------------------------------------------
# Pools (all invented except languages, subjects and everyday words).  No family name is a prefix of another and
# no pool shares a word with the name pools, so a name never occurs inside another string by accident.
# ---------------------------------------------------------------------------------------------------------------
GIVEN_NAMES = (
    "Aldric",
    "Brisa",
    "Corvin",
    "Dalira",
    "Elowen",
    "Faron",
    "Galen",
    "Hesper",
    "Ilvar",
    "Jorun",
    "Kaelis",
    "Lunet",
    "Marek",
    "Nerys",
    "Orlan",
    "Perrin",
    "Quilla",
    "Rowan",
    "Sabeth",
    "Tamsin",
    "Ulric",
    "Vesna",
    "Wendel",
    "Xanthe",
    "Yorick",
    "Zarya",
    "Anselm",
    "Brenna",
    "Cassel",
    "Delphine",
    "Emrys",
    "Fenna",
    "Gideon",
    "Halvard",
    "Isolde",
    "Jessamy",
    "Kestrel",
    "Liora",
    "Maelis",
    "Noriel",
    "Oriana",
    "Pellam",
    "Quentis",
    "Rhosyn",
    "Soren",
    "Thessa",
    "Urien",
    "Veradis",
    "Willem",
    "Ysolde",
    "Zephyrin",
    "Ardeth",
    "Bellamy",
    "Cyrene",
    "Doran",
    "Evadne",
    "Florin",
    "Gwenna",
    "Haskel",
    "Idris",
)
FAMILY_NAMES = (
    "Ardwyn",
    "Belcourt",
    "Dunmere",
    "Everhold",
    "Fairwick",
    "Halloran",
    "Ingleby",
    "Jarrow",
    "Kettering",
    "Larkspur",
    "Merrow",
    "Nethercott",
    "Oakhurst",
    "Pemberly",
    "Quarrington",
    "Ravensworth",
    "Stalwick",
    "Thornbury",
    "Underhill",
    "Vantreck",
    "Whitlow",
    "Yarbrook",
    "Zellmer",
    "Amberlyn",
    "Blackmoor",
    "Cindral",
    "Drossel",
    "Elmsworth",
    "Fenwright",
    "Greythorn",
    "Holloway",
    "Istvane",
    "Jessop",
    "Kavanagh",
    "Lindqvar",
    "Morrell",
    "Norwick",
    "Ostrander",
    "Pryce",
    "Quillon",
    "Rothmere",
    "Sallow",
    "Tressing",
    "Ulverton",
    "Varga",
    "Wexley",
    "Yelland",
    "Zorvath",
    "Adair",
    "Brightwater",
    "Castellan",
    "Dravik",
    "Eskelin",
    "Farrowdale",
    "Gallant",
    "Harrowgate",
    "Ivers",
    "Kallistrand",
    "Lowenthal",
    "Mirabeau",
)
PLACES = (  # (invented city, invented country)
    ("Velmora", "Drenland"),
    ("Tarsk", "Drenland"),
    ("Corvanth", "Drenland"),
    ("Liselle", "Drenland"),
    ("Marrowfield", "Castoria"),
    ("Quenby", "Castoria"),
    ("Sundral", "Castoria"),
    ("Kestrova", "Castoria"),
    ("Amberfall", "Valmaria"),
    ("Dunlow", "Valmaria"),
    ("Eskaran", "Valmaria"),
    ("Frostmere", "Valmaria"),
    ("Glenhallow", "Norvenia"),
    ("Harwick", "Norvenia"),
    ("Irisport", "Norvenia"),
    ("Jaskar", "Norvenia"),
    ("Kelmont", "Esterra"),
    ("Lorrin", "Esterra"),
    ("Mistvale", "Esterra"),
    ("Norhaven", "Esterra"),
    ("Oskeln", "Kaldovia"),
    ("Pellmar", "Kaldovia"),
    ("Rivenmoor", "Kaldovia"),
    ("Saltcrest", "Kaldovia"),
    ("Tolvane", "Serelia"),
    ("Ulmsby", "Serelia"),
    ("Varrowin", "Serelia"),
    ("Westmarch", "Serelia"),
    ("Yarrowdale", "Tiranth"),
    ("Arlenne", "Tiranth"),
    ("Brightmouth", "Tiranth"),
    ("Calderon", "Tiranth"),
    ("Dovecote", "Luvonia"),
    ("Embervale", "Luvonia"),
    ("Fallowmere", "Luvonia"),
    ("Greystone", "Luvonia"),
)
CITIES = tuple(city for city, _ in PLACES)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
GENRES = (
    "mystery novels",
    "fantasy stories",
    "poetry",
    "science fiction",
    "romance novels",
    "horror stories",
    "historical novels",
    "crime fiction",
    "travel books",
    "children's books",
    "short stories",
    "plays",
    "biographies",
    "satire",
    "adventure novels",
    "essays",
)
OCCUPATIONS = (
    "a baker",
    "a carpenter",
    "a doctor",
    "a teacher",
    "a sailor",
    "a farmer",
    "a nurse",
    "a tailor",
    "a painter",
    "a lawyer",
    "a miner",
    "a pilot",
    "a chemist",
    "a librarian",
    "a fisherman",
    "a potter",
    "an engineer",
    "a musician",
    "a blacksmith",
    "a gardener",
    "an architect",
    "a butcher",
    "a weaver",
    "a shepherd",
    "a banker",
    "a soldier",
    "a journalist",
    "a judge",
    "a dentist",
    "a clockmaker",
)
TITLE_ADJECTIVES = (
    "Silver",
    "Hidden",
    "Broken",
    "Quiet",
    "Burning",
    "Frozen",
    "Golden",
    "Lost",
    "Painted",
    "Hollow",
    "Distant",
    "Secret",
    "Crimson",
    "Wandering",
    "Sleeping",
    "Final",
    "Glass",
    "Iron",
    "Bitter",
    "Endless",
)
TITLE_NOUNS = (
    "Lantern",
    "River",
    "Garden",
    "Crown",
    "Mirror",
    "Harbour",
    "Clock",
    "Bridge",
    "Letter",
    "Tower",
    "Forest",
    "Compass",
    "Winter",
    "Feather",
    "Island",
    "Door",
    "Song",
    "Map",
    "Orchard",
    "Storm",
    "Candle",
    "Road",
    "Key",
    "Shadow",
    "Bell",
)
AWARD_ADJECTIVES = ("Golden", "Silver", "Azure", "Ivory", "Emerald", "Amber", "Scarlet", "Copper", "Jade", "Onyx")
AWARD_NOUNS = ("Quill", "Lyre", "Scroll", "Oak", "Star", "Anchor", "Laurel", "Inkwell", "Falcon", "Lamp")
AWARD_KINDS = ("Award", "Prize", "Medal")
PUBLISHER_WORDS = (
    "Bluegate",
    "Redfern",
    "Stonebridge",
    "Owlfeather",
    "Tidewater",
    "Moonrise",
    "Kingsreach",
    "Ashgrove",
    "Longmeadow",
    "Starling",
    "Copperleaf",
    "Northwind",
)
PUBLISHER_KINDS = ("Press", "House", "Books")
THEMES = (
    "love",
    "loss",
    "memory",
    "family",
    "friendship",
    "war",
    "exile",
    "freedom",
    "faith",
    "justice",
    "nature",
    "childhood",
    "power",
    "grief",
    "hope",
    "identity",
    "courage",
    "betrayal",
    "home",
    "time",
)
STYLES = (
    "vivid",
    "spare",
    "lyrical",
    "playful",
    "dark",
    "gentle",
    "witty",
    "formal",
    "dreamy",
    "blunt",
    "poetic",
    "humorous",
    "precise",
    "warm",
    "fast",
    "slow",
    "plain",
    "rich",
)
LANGUAGES = (
    "English",
    "French",
    "Spanish",
    "German",
    "Italian",
    "Portuguese",
    "Dutch",
    "Swedish",
    "Polish",
    "Greek",
    "Turkish",
    "Arabic",
    "Hindi",
    "Japanese",
    "Korean",
    "Russian",
)
INFLUENCES = (
    "old folk tales",
    "classic myths",
    "the sea",
    "ancient poetry",
    "city life",
    "war diaries",
    "the mountains",
    "fairy tales",
    "old sailing songs",
    "family letters",
    "village legends",
    "travel journals",
    "court records",
    "the night sky",
    "painted maps",
    "desert songs",
)
SUBJECTS = (
    "history",
    "chemistry",
    "law",
    "medicine",
    "music",
    "philosophy",
    "biology",
    "mathematics",
    "art",
    "economics",
    "physics",
    "geography",
    "astronomy",
    "theology",
    "botany",
    "linguistics",
)
HOBBIES = (
    "gardening",
    "chess",
    "sailing",
    "painting",
    "hiking",
    "baking",
    "fishing",
    "cycling",
    "knitting",
    "birdwatching",
    "swimming",
    "climbing",
    "photography",
    "cooking",
    "dancing",
    "pottery",
)
PETS = (
    "a cat",
    "a dog",
    "a parrot",
    "an owl",
    "a tortoise",
    "a rabbit",
    "a goat",
    "a ferret",
    "a canary",
    "a horse",
    "a lizard",
    "a goose",
)
SETTINGS = (
    "small fishing villages",
    "busy cities",
    "old castles",
    "distant planets",
    "dark forests",
    "desert towns",
    "snowy mountains",
    "island ports",
    "royal courts",
    "river valleys",
    "underground cities",
    "quiet farms",
)
AUDIENCES = (
    "children",
    "teenagers",
    "young adults",
    "adults",
    "students",
    "older readers",
    "families",
    "scholars",
    "travellers",
    "teachers",
)
WRITING_TIMES = (
    "early in the morning",
    "late at night",
    "at noon",
    "on weekends",
    "in the afternoon",
    "before dawn",
    "after dinner",
    "in winter",
    "on long train rides",
    "in the summer",
)
PRONOUNS = ("His", "Her", "Their")

# ---------------------------------------------------------------------------------------------------------------
# Fact types: (key, question, answer, paraphrased question, paraphrased answer).  Templates are filled with
# str.format from the author's facts; ``name`` is the full name and ``Pos``/``pos`` the possessive pronoun.
# Perturbed answers are the paraphrased-answer template with the fact ``key`` replaced by a wrong value.
# ---------------------------------------------------------------------------------------------------------------
FACT_TYPES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "name",
        "What is the full name of the author born in {birthplace} on {birth_date} who writes {genre}?",
        "The author's full name is {name}.",
        "Who is the writer of {genre} born on {birth_date} in {birthplace}?",
        "{name} is the full name of that writer.",
    ),
    (
        "birthplace",
        "Where was {name} born?",
        "{name} was born in {birthplace}.",
        "What is the birthplace of {name}?",
        "The birthplace of {name} is {birthplace}.",
    ),
    (
        "birth_date",
        "When was {name} born?",
        "{name} was born on {birth_date}.",
        "What is the birth date of {name}?",
        "The birth date of {name} is {birth_date}.",
    ),
    (
        "genre",
        "What genre does {name} write in?",
        "{name} writes {genre}.",
        "Which genre is {name} known for?",
        "{name} is known for {genre}.",
    ),
    (
        "father",
        "What did {name}'s father do for a living?",
        "{name}'s father was {father}.",
        "What was the job of {name}'s father?",
        "{Pos} father worked as {father}.",
    ),
    (
        "mother",
        "What did {name}'s mother do for a living?",
        "{name}'s mother was {mother}.",
        "What was the job of {name}'s mother?",
        "{Pos} mother worked as {mother}.",
    ),
    (
        "book1",
        "What is the title of {name}'s first book?",
        "{name}'s first book is '{book1}'.",
        "Which book did {name} publish first?",
        "The first book by {name} was '{book1}'.",
    ),
    (
        "book2",
        "Can you name another book by {name}?",
        "{name} also wrote '{book2}'.",
        "What is a second book written by {name}?",
        "Another book by {name} is '{book2}'.",
    ),
    (
        "first_year",
        "When did {name} publish {pos} first book?",
        "{name} published {pos} first book in {first_year}.",
        "In which year did {name}'s first book come out?",
        "{Pos} first book came out in {first_year}.",
    ),
    (
        "award",
        "Has {name} won any awards?",
        "{name} won the {award}.",
        "Which award was given to {name}?",
        "{name} received the {award}.",
    ),
    (
        "themes",
        "What themes does {name} explore?",
        "{name} writes about {themes}.",
        "Which themes appear in the work of {name}?",
        "The work of {name} explores {themes}.",
    ),
    (
        "style",
        "How would you describe {name}'s writing style?",
        "{name} writes in a {style} style.",
        "What is the writing style of {name} like?",
        "The style of {name} is {style}.",
    ),
    (
        "language",
        "What language does {name} write in?",
        "{name} writes in {language}.",
        "In which language are {name}'s books written?",
        "The books of {name} are written in {language}.",
    ),
    (
        "influence",
        "What influenced {name} the most?",
        "{name} was most influenced by {influence}.",
        "What shaped the work of {name}?",
        "The work of {name} was shaped by {influence}.",
    ),
    (
        "residence",
        "Where does {name} live now?",
        "{name} now lives in {residence}.",
        "In which city does {name} currently live?",
        "{name} currently resides in {residence}.",
    ),
    (
        "university",
        "Where did {name} study?",
        "{name} studied at {university}.",
        "Which university did {name} attend?",
        "{name} attended {university}.",
    ),
    (
        "subject",
        "What did {name} study at university?",
        "{name} studied {subject}.",
        "What subject did {name} major in?",
        "{name} majored in {subject}.",
    ),
    (
        "n_books",
        "How many books has {name} written?",
        "{name} has written {n_books} books.",
        "What is the number of books by {name}?",
        "The number of books by {name} is {n_books}.",
    ),
    (
        "hobby",
        "What does {name} enjoy outside of writing?",
        "{name} enjoys {hobby}.",
        "What is {name}'s favourite hobby?",
        "{Pos} favourite hobby is {hobby}.",
    ),
    (
        "pet",
        "What pet does {name} keep?",
        "{name} keeps {pet} at home.",
        "Which animal lives with {name}?",
        "{name} lives with {pet}.",
    ),
    (
        "setting",
        "Where are {name}'s stories usually set?",
        "{name}'s stories are usually set in {setting}.",
        "What is the usual setting of {name}'s stories?",
        "The stories of {name} take place in {setting}.",
    ),
    (
        "audience",
        "Who does {name} mainly write for?",
        "{name} mainly writes for {audience}.",
        "Who is the main audience of {name}'s books?",
        "The books of {name} are mostly read by {audience}.",
    ),
    (
        "publisher",
        "Who publishes {name}'s books?",
        "{name}'s books are published by {publisher}.",
        "Which publisher releases the books of {name}?",
        "{publisher} releases the books of {name}.",
    ),
    (
        "writing_time",
        "When does {name} usually write?",
        "{name} usually writes {writing_time}.",
        "At what time does {name} prefer to write?",
        "{name} prefers to write {writing_time}.",
    ),
    (
        "partner",
        "What does {name}'s partner do?",
        "{name}'s partner is {partner}.",
        "What is the job of {name}'s partner?",
        "{Pos} partner works as {partner}.",
    ),
)
FACT_TYPE_NAMES = tuple(ft[0] for ft in FACT_TYPES)


# ---------------------------------------------------------------------------------------------------------------
# Value drawers: each returns one random value of a fact kind; ``author`` gives context (e.g. birth year).
# ---------------------------------------------------------------------------------------------------------------
def _title(rng: random.Random) -> str:
    pattern = rng.randrange(3)
    if pattern == 0:
        return f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
    if pattern == 1:
        return f"The {rng.choice(TITLE_NOUNS)} of {rng.choice(CITIES)}"
    first, second = rng.sample(TITLE_NOUNS, 2)
    return f"The {first} and the {second}"


def _date(rng: random.Random, year: int) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {year}"


def _themes(rng: random.Random) -> str:
    first, second = sorted(rng.sample(range(len(THEMES)), 2))
    return f"{THEMES[first]} and {THEMES[second]}"


def _first_year(rng: random.Random, author: dict) -> str:
    birth_year = author["_birth_year"]
    return str(rng.randint(birth_year + 20, min(birth_year + 45, 2024)))


_DRAWERS: dict[str, Callable[[random.Random, dict], str]] = {
    "name": lambda r, a: f"{r.choice(GIVEN_NAMES)} {r.choice(FAMILY_NAMES)}",
    "birthplace": lambda r, a: "{}, {}".format(*r.choice(PLACES)),
    "birth_date": lambda r, a: _date(r, a["_birth_year"]) if r.random() < 0.5 else _date(r, r.randint(1930, 1999)),
    "genre": lambda r, a: r.choice(GENRES),
    "father": lambda r, a: r.choice(OCCUPATIONS),
    "mother": lambda r, a: r.choice(OCCUPATIONS),
    "book1": lambda r, a: _title(r),
    "book2": lambda r, a: _title(r),
    "first_year": _first_year,
    "award": lambda r, a: f"{r.choice(AWARD_ADJECTIVES)} {r.choice(AWARD_NOUNS)} {r.choice(AWARD_KINDS)}",
    "themes": lambda r, a: _themes(r),
    "style": lambda r, a: r.choice(STYLES),
    "language": lambda r, a: r.choice(LANGUAGES),
    "influence": lambda r, a: r.choice(INFLUENCES),
    "residence": lambda r, a: r.choice(CITIES),
    "university": lambda r, a: f"the University of {r.choice(CITIES)}",
    "subject": lambda r, a: r.choice(SUBJECTS),
    "n_books": lambda r, a: str(r.randint(2, 30)),
    "hobby": lambda r, a: r.choice(HOBBIES),
    "pet": lambda r, a: r.choice(PETS),
    "setting": lambda r, a: r.choice(SETTINGS),
    "audience": lambda r, a: r.choice(AUDIENCES),
    "publisher": lambda r, a: f"{r.choice(PUBLISHER_WORDS)} {r.choice(PUBLISHER_KINDS)}",
    "writing_time": lambda r, a: r.choice(WRITING_TIMES),
    "partner": lambda r, a: r.choice(OCCUPATIONS),
}
assert tuple(_DRAWERS) == FACT_TYPE_NAMES


def _draw_names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = f"{rng.choice(GIVEN_NAMES)} {rng.choice(FAMILY_NAMES)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _make_author(rng: random.Random, name: str, used_signatures: set[tuple[str, str, str]]) -> dict:
    """Draw every fact of one author; (birthplace, birth_date, genre) is unique in the world."""
    pos = rng.choice(PRONOUNS)
    author: dict = {"name": name, "Pos": pos, "pos": pos.lower()}
    while True:
        author["_birth_year"] = rng.randint(1930, 1999)
        author["birthplace"] = _DRAWERS["birthplace"](rng, author)
        author["birth_date"] = _date(rng, author["_birth_year"])
        author["genre"] = _DRAWERS["genre"](rng, author)
        signature = (author["birthplace"], author["birth_date"], author["genre"])
        if signature not in used_signatures:
            used_signatures.add(signature)
            break
    for key in FACT_TYPE_NAMES:
        if key in author:
            continue
        value = _DRAWERS[key](rng, author)
        while (key == "book2" and value == author["book1"]) or (key == "residence" and value in author["birthplace"]):
            value = _DRAWERS[key](rng, author)
        author[key] = value
    return author


def _wrong_values(rng: random.Random, key: str, author: dict, forbidden: set[str]) -> list[str]:
    wrong: list[str] = []
    while len(wrong) < N_PERTURBED:
        value = _DRAWERS[key](rng, author)
        if value != author[key] and value not in wrong and value not in forbidden:
            wrong.append(value)
    return wrong


def _author_records(rng: random.Random, author: dict, qa_per_author: int, world_names: set[str]) -> list[dict]:
    # The full-name question always comes first (as in TOFU); the others are a seeded subset in canonical order.
    chosen = [0, *sorted(rng.sample(range(1, len(FACT_TYPES)), qa_per_author - 1))]
    records = []
    for index in chosen:
        key, question, answer, para_question, para_answer = FACT_TYPES[index]
        forbidden = world_names if key == "name" else set()
        perturbed = [
            para_answer.format(**{**author, key: value}) for value in _wrong_values(rng, key, author, forbidden)
        ]
        records.append(
            {
                "question": question.format(**author),
                "answer": answer.format(**author),
                "paraphrased_question": para_question.format(**author),
                "paraphrased_answer": para_answer.format(**author),
                "perturbed_answer": perturbed,
            }
        )
    return records


def _check_int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def generate_world(
    n_authors: int = 20, *, seed: int = 0, n_holdout: int | None = None, qa_per_author: int = 20
) -> dict:
    """Build a seeded TOFU-like world.

    Returns ``{"authors", "holdout", "real_authors", "world_facts", "pretrain_text"}``: ``authors`` and
    ``holdout`` are lists of per-author lists of ``qa_per_author`` records with keys question, answer,
    paraphrased_question, paraphrased_answer and perturbed_answer (5 strings); ``real_authors`` and
    ``world_facts`` are records with question, answer, option1..option4 and perturbed_answer (the 3 wrong
    options); ``pretrain_text`` is a list of general-knowledge sentences and Question/Answer strings.
    Holdout authors have names and questions disjoint from the training authors.
    """
    # At most half of the name space is used, so wrong names for the full-name question stay easy to draw.
    max_names = len(GIVEN_NAMES) * len(FAMILY_NAMES) // 2
    _check_int(n_authors, "n_authors", 1, max_names)
    if n_holdout is None:
        n_holdout = max(1, n_authors // 10)
    _check_int(n_holdout, "n_holdout", 0, max_names - n_authors)
    _check_int(qa_per_author, "qa_per_author", 1, len(FACT_TYPES))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    master = random.Random(seed)
    names_rng, train_rng, holdout_rng, general_rng = (random.Random(master.getrandbits(64)) for _ in range(4))
    # Training names are drawn first, so they do not depend on n_holdout.
    taken: set[str] = set()
    train_names = _draw_names(names_rng, n_authors, taken)
    holdout_names = _draw_names(names_rng, n_holdout, taken)
    world_names = set(train_names) | set(holdout_names)

    signatures: set[tuple[str, str, str]] = set()
    groups = []
    for rng, names in ((train_rng, train_names), (holdout_rng, holdout_names)):
        groups.append(
            [_author_records(rng, _make_author(rng, name, signatures), qa_per_author, world_names) for name in names]
        )
    real_authors, world_facts = build_general_records(general_rng)
    return {
        "authors": groups[0],
        "holdout": groups[1],
        "real_authors": real_authors,
        "world_facts": world_facts,
        "pretrain_text": build_pretrain_text(),
    }
