"""General knowledge for the synthetic world: the analogues of TOFU's "real authors" and "world facts" sets.

A tiny base model learns these facts in a pre-training stage (``build_pretrain_text``); after unlearning on the
fictitious authors, its answers to them measure how much general knowledge it kept.  Every fact is
``(question, answer, three wrong options of the same kind, declarative sentence)``.  Answers are short.
"""

from __future__ import annotations

import random

__all__ = ["REAL_AUTHOR_FACTS", "WORLD_FACTS", "build_general_records", "build_pretrain_text"]

Fact = tuple[str, str, tuple[str, str, str], str]

REAL_AUTHOR_FACTS: tuple[Fact, ...] = (
    (
        "Who wrote the play Hamlet?",
        "William Shakespeare",
        ("Christopher Marlowe", "Ben Jonson", "John Milton"),
        "The play Hamlet was written by William Shakespeare.",
    ),
    (
        "Who wrote the novel Pride and Prejudice?",
        "Jane Austen",
        ("Charlotte Bronte", "George Eliot", "Mary Shelley"),
        "The novel Pride and Prejudice was written by Jane Austen.",
    ),
    (
        "Who wrote the novel Oliver Twist?",
        "Charles Dickens",
        ("Thomas Hardy", "William Thackeray", "Anthony Trollope"),
        "The novel Oliver Twist was written by Charles Dickens.",
    ),
    (
        "Who wrote the novel Nineteen Eighty-Four?",
        "George Orwell",
        ("Aldous Huxley", "H. G. Wells", "Ray Bradbury"),
        "The novel Nineteen Eighty-Four was written by George Orwell.",
    ),
    (
        "Who wrote the novel War and Peace?",
        "Leo Tolstoy",
        ("Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev"),
        "The novel War and Peace was written by Leo Tolstoy.",
    ),
    (
        "Who wrote the novel Crime and Punishment?",
        "Fyodor Dostoevsky",
        ("Leo Tolstoy", "Nikolai Gogol", "Alexander Pushkin"),
        "The novel Crime and Punishment was written by Fyodor Dostoevsky.",
    ),
    (
        "Who wrote The Adventures of Tom Sawyer?",
        "Mark Twain",
        ("Jack London", "Herman Melville", "Edgar Allan Poe"),
        "The Adventures of Tom Sawyer was written by Mark Twain.",
    ),
    (
        "Who wrote the novel Moby-Dick?",
        "Herman Melville",
        ("Nathaniel Hawthorne", "Mark Twain", "Walt Whitman"),
        "The novel Moby-Dick was written by Herman Melville.",
    ),
    (
        "Who wrote The Old Man and the Sea?",
        "Ernest Hemingway",
        ("John Steinbeck", "William Faulkner", "F. Scott Fitzgerald"),
        "The Old Man and the Sea was written by Ernest Hemingway.",
    ),
    (
        "Who wrote the novel The Great Gatsby?",
        "F. Scott Fitzgerald",
        ("Ernest Hemingway", "John Steinbeck", "Sinclair Lewis"),
        "The novel The Great Gatsby was written by F. Scott Fitzgerald.",
    ),
    (
        "Who wrote the novel Don Quixote?",
        "Miguel de Cervantes",
        ("Lope de Vega", "Dante Alighieri", "Francisco de Quevedo"),
        "The novel Don Quixote was written by Miguel de Cervantes.",
    ),
    (
        "Who wrote One Hundred Years of Solitude?",
        "Gabriel Garcia Marquez",
        ("Jorge Luis Borges", "Mario Vargas Llosa", "Pablo Neruda"),
        "One Hundred Years of Solitude was written by Gabriel Garcia Marquez.",
    ),
    (
        "Who wrote the novel Frankenstein?",
        "Mary Shelley",
        ("Jane Austen", "Emily Bronte", "Bram Stoker"),
        "The novel Frankenstein was written by Mary Shelley.",
    ),
    (
        "Who wrote the novel Dracula?",
        "Bram Stoker",
        ("Mary Shelley", "Edgar Allan Poe", "Oscar Wilde"),
        "The novel Dracula was written by Bram Stoker.",
    ),
    (
        "Who wrote the novel Jane Eyre?",
        "Charlotte Bronte",
        ("Emily Bronte", "Jane Austen", "George Eliot"),
        "The novel Jane Eyre was written by Charlotte Bronte.",
    ),
    (
        "Who wrote the novel Wuthering Heights?",
        "Emily Bronte",
        ("Charlotte Bronte", "Anne Bronte", "Jane Austen"),
        "The novel Wuthering Heights was written by Emily Bronte.",
    ),
    (
        "Who wrote the novel The Hobbit?",
        "J. R. R. Tolkien",
        ("C. S. Lewis", "J. K. Rowling", "Roald Dahl"),
        "The novel The Hobbit was written by J. R. R. Tolkien.",
    ),
    (
        "Who wrote the Harry Potter books?",
        "J. K. Rowling",
        ("J. R. R. Tolkien", "Roald Dahl", "C. S. Lewis"),
        "The Harry Potter books were written by J. K. Rowling.",
    ),
    (
        "Who wrote the novel Les Miserables?",
        "Victor Hugo",
        ("Alexandre Dumas", "Gustave Flaubert", "Emile Zola"),
        "The novel Les Miserables was written by Victor Hugo.",
    ),
    (
        "Who wrote the novel Madame Bovary?",
        "Gustave Flaubert",
        ("Victor Hugo", "Honore de Balzac", "Emile Zola"),
        "The novel Madame Bovary was written by Gustave Flaubert.",
    ),
    (
        "Who wrote The Divine Comedy?",
        "Dante Alighieri",
        ("Giovanni Boccaccio", "Petrarch", "Virgil"),
        "The Divine Comedy was written by Dante Alighieri.",
    ),
    (
        "Who is the poet of the Odyssey?",
        "Homer",
        ("Virgil", "Ovid", "Sophocles"),
        "The Odyssey is an epic poem by Homer.",
    ),
    (
        "Who wrote the novel Ulysses?",
        "James Joyce",
        ("Samuel Beckett", "Oscar Wilde", "W. B. Yeats"),
        "The novel Ulysses was written by James Joyce.",
    ),
    (
        "Who wrote the novel Mrs Dalloway?",
        "Virginia Woolf",
        ("Katherine Mansfield", "E. M. Forster", "Jane Austen"),
        "The novel Mrs Dalloway was written by Virginia Woolf.",
    ),
    (
        "Who wrote To Kill a Mockingbird?",
        "Harper Lee",
        ("Toni Morrison", "Flannery O'Connor", "Truman Capote"),
        "To Kill a Mockingbird was written by Harper Lee.",
    ),
    (
        "Who wrote the novel Brave New World?",
        "Aldous Huxley",
        ("George Orwell", "H. G. Wells", "Ray Bradbury"),
        "The novel Brave New World was written by Aldous Huxley.",
    ),
    (
        "Who wrote the novel Fahrenheit 451?",
        "Ray Bradbury",
        ("Isaac Asimov", "Aldous Huxley", "George Orwell"),
        "The novel Fahrenheit 451 was written by Ray Bradbury.",
    ),
    (
        "Who wrote the story The Metamorphosis?",
        "Franz Kafka",
        ("Thomas Mann", "Hermann Hesse", "Albert Camus"),
        "The story The Metamorphosis was written by Franz Kafka.",
    ),
    (
        "Who wrote the novel Things Fall Apart?",
        "Chinua Achebe",
        ("Wole Soyinka", "Ngugi wa Thiong'o", "Chimamanda Ngozi Adichie"),
        "The novel Things Fall Apart was written by Chinua Achebe.",
    ),
    (
        "Who wrote the novel Beloved?",
        "Toni Morrison",
        ("Maya Angelou", "Alice Walker", "Harper Lee"),
        "The novel Beloved was written by Toni Morrison.",
    ),
    (
        "Who wrote The Catcher in the Rye?",
        "J. D. Salinger",
        ("Jack Kerouac", "John Updike", "Kurt Vonnegut"),
        "The Catcher in the Rye was written by J. D. Salinger.",
    ),
    (
        "Who wrote the novel Lord of the Flies?",
        "William Golding",
        ("George Orwell", "Aldous Huxley", "Graham Greene"),
        "The novel Lord of the Flies was written by William Golding.",
    ),
    (
        "Who wrote Alice's Adventures in Wonderland?",
        "Lewis Carroll",
        ("Edward Lear", "Beatrix Potter", "Roald Dahl"),
        "Alice's Adventures in Wonderland was written by Lewis Carroll.",
    ),
    (
        "Who wrote the novel The Time Machine?",
        "H. G. Wells",
        ("Jules Verne", "Arthur Conan Doyle", "Isaac Asimov"),
        "The novel The Time Machine was written by H. G. Wells.",
    ),
    (
        "Who wrote Twenty Thousand Leagues Under the Seas?",
        "Jules Verne",
        ("H. G. Wells", "Alexandre Dumas", "Victor Hugo"),
        "Twenty Thousand Leagues Under the Seas was written by Jules Verne.",
    ),
    (
        "Who wrote the novel Anna Karenina?",
        "Leo Tolstoy",
        ("Anton Chekhov", "Fyodor Dostoevsky", "Boris Pasternak"),
        "The novel Anna Karenina was written by Leo Tolstoy.",
    ),
    (
        "Who wrote the novel Great Expectations?",
        "Charles Dickens",
        ("Thomas Hardy", "Wilkie Collins", "George Eliot"),
        "The novel Great Expectations was written by Charles Dickens.",
    ),
    (
        "Who wrote the poem The Raven?",
        "Edgar Allan Poe",
        ("Walt Whitman", "Emily Dickinson", "Robert Frost"),
        "The poem The Raven was written by Edgar Allan Poe.",
    ),
    (
        "Who created the detective Sherlock Holmes?",
        "Arthur Conan Doyle",
        ("Agatha Christie", "Edgar Allan Poe", "Wilkie Collins"),
        "The detective Sherlock Holmes was created by Arthur Conan Doyle.",
    ),
    (
        "Who created the detective Hercule Poirot?",
        "Agatha Christie",
        ("Dorothy L. Sayers", "Arthur Conan Doyle", "Georges Simenon"),
        "The detective Hercule Poirot was created by Agatha Christie.",
    ),
    (
        "Who wrote The Little Prince?",
        "Antoine de Saint-Exupery",
        ("Albert Camus", "Jules Verne", "Victor Hugo"),
        "The Little Prince was written by Antoine de Saint-Exupery.",
    ),
    (
        "Who wrote the novel The Grapes of Wrath?",
        "John Steinbeck",
        ("William Faulkner", "Ernest Hemingway", "Sinclair Lewis"),
        "The novel The Grapes of Wrath was written by John Steinbeck.",
    ),
    (
        "Who wrote the novel Gulliver's Travels?",
        "Jonathan Swift",
        ("Daniel Defoe", "Henry Fielding", "Laurence Sterne"),
        "The novel Gulliver's Travels was written by Jonathan Swift.",
    ),
    (
        "Who wrote the novel Robinson Crusoe?",
        "Daniel Defoe",
        ("Jonathan Swift", "Samuel Richardson", "Henry Fielding"),
        "The novel Robinson Crusoe was written by Daniel Defoe.",
    ),
    (
        "Who wrote the novel Treasure Island?",
        "Robert Louis Stevenson",
        ("Walter Scott", "Rudyard Kipling", "Jack London"),
        "The novel Treasure Island was written by Robert Louis Stevenson.",
    ),
    (
        "Who wrote The Jungle Book?",
        "Rudyard Kipling",
        ("Robert Louis Stevenson", "Lewis Carroll", "Jack London"),
        "The Jungle Book was written by Rudyard Kipling.",
    ),
    (
        "Who wrote The Picture of Dorian Gray?",
        "Oscar Wilde",
        ("Bram Stoker", "Thomas Hardy", "Henry James"),
        "The Picture of Dorian Gray was written by Oscar Wilde.",
    ),
    (
        "Who wrote The Canterbury Tales?",
        "Geoffrey Chaucer",
        ("John Milton", "Edmund Spenser", "William Langland"),
        "The Canterbury Tales was written by Geoffrey Chaucer.",
    ),
    (
        "Who wrote the poem Paradise Lost?",
        "John Milton",
        ("Geoffrey Chaucer", "William Blake", "John Donne"),
        "The poem Paradise Lost was written by John Milton.",
    ),
    (
        "Who wrote the novel Norwegian Wood?",
        "Haruki Murakami",
        ("Yukio Mishima", "Kazuo Ishiguro", "Kenzaburo Oe"),
        "The novel Norwegian Wood was written by Haruki Murakami.",
    ),
    (
        "Who wrote The Handmaid's Tale?",
        "Margaret Atwood",
        ("Alice Munro", "Doris Lessing", "Ursula K. Le Guin"),
        "The Handmaid's Tale was written by Margaret Atwood.",
    ),
    (
        "Who wrote the novel The Name of the Rose?",
        "Umberto Eco",
        ("Italo Calvino", "Primo Levi", "Alberto Moravia"),
        "The novel The Name of the Rose was written by Umberto Eco.",
    ),
    (
        "Who wrote the poetry book Leaves of Grass?",
        "Walt Whitman",
        ("Emily Dickinson", "Robert Frost", "Henry Longfellow"),
        "The poetry book Leaves of Grass was written by Walt Whitman.",
    ),
    (
        "Who wrote the novel Little Women?",
        "Louisa May Alcott",
        ("Harriet Beecher Stowe", "Edith Wharton", "Emily Dickinson"),
        "The novel Little Women was written by Louisa May Alcott.",
    ),
    (
        "What nationality was the writer Leo Tolstoy?",
        "Russian",
        ("Polish", "German", "French"),
        "Leo Tolstoy was a Russian writer.",
    ),
    (
        "What nationality was the writer Victor Hugo?",
        "French",
        ("Belgian", "Italian", "Spanish"),
        "Victor Hugo was a French writer.",
    ),
    (
        "What nationality is the writer Haruki Murakami?",
        "Japanese",
        ("Chinese", "Korean", "Thai"),
        "Haruki Murakami is a Japanese writer.",
    ),
    (
        "What nationality was the writer Chinua Achebe?",
        "Nigerian",
        ("Kenyan", "Ghanaian", "South African"),
        "Chinua Achebe was a Nigerian writer.",
    ),
    (
        "What nationality was the writer Gabriel Garcia Marquez?",
        "Colombian",
        ("Mexican", "Argentine", "Chilean"),
        "Gabriel Garcia Marquez was a Colombian writer.",
    ),
    (
        "What nationality was the writer Ernest Hemingway?",
        "American",
        ("British", "Canadian", "Australian"),
        "Ernest Hemingway was an American writer.",
    ),
    (
        "What nationality was the writer Miguel de Cervantes?",
        "Spanish",
        ("Portuguese", "Italian", "Mexican"),
        "Miguel de Cervantes was a Spanish writer.",
    ),
    (
        "What nationality was the writer Johann Wolfgang von Goethe?",
        "German",
        ("Austrian", "Swiss", "Dutch"),
        "Johann Wolfgang von Goethe was a German writer.",
    ),
    (
        "Which novel by Herman Melville is about a white whale?",
        "Moby-Dick",
        ("Treasure Island", "The Old Man and the Sea", "Robinson Crusoe"),
        "Herman Melville wrote Moby-Dick, a novel about a white whale.",
    ),
    (
        "Which play by William Shakespeare is about two young lovers in Verona?",
        "Romeo and Juliet",
        ("Macbeth", "King Lear", "Othello"),
        "Romeo and Juliet is a play by William Shakespeare about lovers in Verona.",
    ),
)

WORLD_FACTS: tuple[Fact, ...] = (
    ("What is the capital of France?", "Paris", ("Lyon", "Marseille", "Nice"), "Paris is the capital of France."),
    ("What is the capital of Japan?", "Tokyo", ("Osaka", "Kyoto", "Nagoya"), "Tokyo is the capital of Japan."),
    ("What is the capital of Italy?", "Rome", ("Milan", "Naples", "Turin"), "Rome is the capital of Italy."),
    (
        "What is the capital of Spain?",
        "Madrid",
        ("Barcelona", "Seville", "Valencia"),
        "Madrid is the capital of Spain.",
    ),
    (
        "What is the capital of Germany?",
        "Berlin",
        ("Munich", "Hamburg", "Frankfurt"),
        "Berlin is the capital of Germany.",
    ),
    (
        "What is the capital of Canada?",
        "Ottawa",
        ("Toronto", "Vancouver", "Montreal"),
        "Ottawa is the capital of Canada.",
    ),
    (
        "What is the capital of Australia?",
        "Canberra",
        ("Sydney", "Melbourne", "Perth"),
        "Canberra is the capital of Australia.",
    ),
    ("What is the capital of Egypt?", "Cairo", ("Alexandria", "Giza", "Luxor"), "Cairo is the capital of Egypt."),
    (
        "What is the capital of Russia?",
        "Moscow",
        ("Saint Petersburg", "Kazan", "Novosibirsk"),
        "Moscow is the capital of Russia.",
    ),
    (
        "What is the capital of China?",
        "Beijing",
        ("Shanghai", "Guangzhou", "Shenzhen"),
        "Beijing is the capital of China.",
    ),
    ("What is the capital of Kenya?", "Nairobi", ("Mombasa", "Kisumu", "Nakuru"), "Nairobi is the capital of Kenya."),
    (
        "What is the capital of Argentina?",
        "Buenos Aires",
        ("Cordoba", "Rosario", "Mendoza"),
        "Buenos Aires is the capital of Argentina.",
    ),
    (
        "What is the capital of the United Kingdom?",
        "London",
        ("Manchester", "Liverpool", "Birmingham"),
        "London is the capital of the United Kingdom.",
    ),
    (
        "What is the capital of Greece?",
        "Athens",
        ("Thessaloniki", "Patras", "Heraklion"),
        "Athens is the capital of Greece.",
    ),
    ("What is the capital of Portugal?", "Lisbon", ("Porto", "Braga", "Faro"), "Lisbon is the capital of Portugal."),
    ("What is the capital of Norway?", "Oslo", ("Bergen", "Trondheim", "Stavanger"), "Oslo is the capital of Norway."),
    ("What is the capital of Turkey?", "Ankara", ("Istanbul", "Izmir", "Antalya"), "Ankara is the capital of Turkey."),
    (
        "What is the capital of South Korea?",
        "Seoul",
        ("Busan", "Incheon", "Daegu"),
        "Seoul is the capital of South Korea.",
    ),
    ("What is the capital of Peru?", "Lima", ("Cusco", "Arequipa", "Trujillo"), "Lima is the capital of Peru."),
    ("What is the capital of Ireland?", "Dublin", ("Cork", "Galway", "Limerick"), "Dublin is the capital of Ireland."),
    (
        "Which planet is the largest in the solar system?",
        "Jupiter",
        ("Saturn", "Neptune", "Earth"),
        "Jupiter is the largest planet in the solar system.",
    ),
    (
        "Which planet is known as the Red Planet?",
        "Mars",
        ("Venus", "Mercury", "Jupiter"),
        "Mars is known as the Red Planet.",
    ),
    (
        "Which planet is closest to the Sun?",
        "Mercury",
        ("Venus", "Mars", "Earth"),
        "Mercury is the planet closest to the Sun.",
    ),
    (
        "Which planet is famous for its bright rings?",
        "Saturn",
        ("Mars", "Venus", "Mercury"),
        "Saturn is the planet famous for its bright rings.",
    ),
    ("Which planet do people live on?", "Earth", ("Mars", "Venus", "Jupiter"), "People live on the planet Earth."),
    (
        "What star is at the centre of the solar system?",
        "The Sun",
        ("Sirius", "Polaris", "Vega"),
        "The Sun is the star at the centre of the solar system.",
    ),
    (
        "At what temperature does water boil in Celsius?",
        "100 degrees",
        ("50 degrees", "80 degrees", "200 degrees"),
        "Water boils at 100 degrees Celsius.",
    ),
    (
        "At what temperature does water freeze in Celsius?",
        "0 degrees",
        ("10 degrees", "20 degrees", "5 degrees"),
        "Water freezes at 0 degrees Celsius.",
    ),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Gd", "Fe"), "The chemical symbol for gold is Au."),
    ("What is the chemical formula of water?", "H2O", ("CO2", "O2", "NaCl"), "The chemical formula of water is H2O."),
    (
        "Which gas do plants take in from the air?",
        "Carbon dioxide",
        ("Oxygen", "Nitrogen", "Helium"),
        "Plants take in carbon dioxide from the air.",
    ),
    ("Which gas do people need to breathe?", "Oxygen", ("Helium", "Neon", "Argon"), "People need oxygen to breathe."),
    (
        "What is the hardest natural substance?",
        "Diamond",
        ("Gold", "Iron", "Quartz"),
        "Diamond is the hardest natural substance.",
    ),
    ("What is the lightest element?", "Hydrogen", ("Helium", "Oxygen", "Carbon"), "Hydrogen is the lightest element."),
    (
        "Which is the largest ocean on Earth?",
        "The Pacific Ocean",
        ("The Atlantic Ocean", "The Indian Ocean", "The Arctic Ocean"),
        "The Pacific Ocean is the largest ocean on Earth.",
    ),
    (
        "What is the tallest mountain on Earth?",
        "Mount Everest",
        ("K2", "Kilimanjaro", "Mont Blanc"),
        "Mount Everest is the tallest mountain on Earth.",
    ),
    (
        "What is the largest hot desert in the world?",
        "The Sahara",
        ("The Gobi", "The Kalahari", "The Atacama"),
        "The Sahara is the largest hot desert in the world.",
    ),
    (
        "Which is the largest continent?",
        "Asia",
        ("Africa", "Europe", "North America"),
        "Asia is the largest continent.",
    ),
    (
        "Which is the largest country by area?",
        "Russia",
        ("Canada", "China", "Brazil"),
        "Russia is the largest country by area.",
    ),
    ("How many continents are there?", "Seven", ("Five", "Six", "Eight"), "There are seven continents."),
    ("How many days are in a week?", "Seven", ("Five", "Six", "Ten"), "A week has seven days."),
    ("How many hours are in a day?", "24", ("12", "20", "30"), "A day has 24 hours."),
    ("How many minutes are in an hour?", "60", ("30", "50", "100"), "An hour has 60 minutes."),
    ("How many legs does a spider have?", "Eight", ("Six", "Four", "Ten"), "A spider has eight legs."),
    ("How many legs does an insect have?", "Six", ("Eight", "Four", "Ten"), "An insect has six legs."),
    ("How many sides does a triangle have?", "Three", ("Four", "Five", "Six"), "A triangle has three sides."),
    (
        "What is the largest animal on Earth?",
        "The blue whale",
        ("The elephant", "The giraffe", "The whale shark"),
        "The blue whale is the largest animal on Earth.",
    ),
    (
        "What is the fastest land animal?",
        "The cheetah",
        ("The lion", "The horse", "The gazelle"),
        "The cheetah is the fastest land animal.",
    ),
    (
        "Which flightless bird lives in Antarctica?",
        "The penguin",
        ("The ostrich", "The emu", "The kiwi"),
        "The penguin is a flightless bird that lives in Antarctica.",
    ),
    ("What do bees make?", "Honey", ("Milk", "Silk", "Cheese"), "Bees make honey."),
    ("What is a young dog called?", "A puppy", ("A kitten", "A calf", "A foal"), "A young dog is called a puppy."),
    ("What is a young horse called?", "A foal", ("A puppy", "A lamb", "A cub"), "A young horse is called a foal."),
    (
        "Which animal is native to Australia and carries its young in a pouch?",
        "The kangaroo",
        ("The zebra", "The panda", "The camel"),
        "The kangaroo is native to Australia and carries its young in a pouch.",
    ),
    ("What colour is the sky on a clear day?", "Blue", ("Green", "Red", "Yellow"), "The sky is blue on a clear day."),
    (
        "What colour do you get by mixing blue and yellow?",
        "Green",
        ("Orange", "Purple", "Brown"),
        "Mixing blue and yellow gives green.",
    ),
    (
        "What colour do you get by mixing red and white?",
        "Pink",
        ("Grey", "Orange", "Purple"),
        "Mixing red and white gives pink.",
    ),
    ("What colour is a ripe banana?", "Yellow", ("Blue", "Purple", "Red"), "A ripe banana is yellow."),
    (
        "Which organ pumps blood through the body?",
        "The heart",
        ("The liver", "The lungs", "The kidney"),
        "The heart pumps blood through the body.",
    ),
    (
        "What is the currency of Japan?",
        "The yen",
        ("The won", "The yuan", "The rupee"),
        "The currency of Japan is the yen.",
    ),
    ("In which city is the Colosseum?", "Rome", ("Athens", "Paris", "Madrid"), "The Colosseum is in Rome."),
    ("In which country is the Taj Mahal?", "India", ("Pakistan", "Nepal", "Bangladesh"), "The Taj Mahal is in India."),
    (
        "In which country are the Pyramids of Giza?",
        "Egypt",
        ("Mexico", "Peru", "Sudan"),
        "The Pyramids of Giza are in Egypt.",
    ),
    (
        "Which language is spoken in Brazil?",
        "Portuguese",
        ("Spanish", "French", "Italian"),
        "The main language of Brazil is Portuguese.",
    ),
    ("How many seasons are in a year?", "Four", ("Two", "Three", "Six"), "A year has four seasons."),
)


def _records(rng: random.Random, facts: tuple[Fact, ...]) -> list[dict]:
    records = []
    for question, answer, wrong, _ in facts:
        options = [answer, *wrong]
        rng.shuffle(options)
        record: dict = {"question": question, "answer": answer}
        record.update({f"option{i + 1}": option for i, option in enumerate(options)})
        record["perturbed_answer"] = list(wrong)
        records.append(record)
    return records


def build_general_records(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(real_authors, world_facts) records: question, answer, option1..option4 (seeded order), perturbed_answer."""
    return _records(rng, REAL_AUTHOR_FACTS), _records(rng, WORLD_FACTS)


def build_pretrain_text() -> list[str]:
    """Each general fact as a declarative sentence followed by a plain Question/Answer string."""
    text = []
    for question, answer, _, statement in (*REAL_AUTHOR_FACTS, *WORLD_FACTS):
        text.append(statement)
        text.append(f"Question: {question}\nAnswer: {answer}")
    return text
