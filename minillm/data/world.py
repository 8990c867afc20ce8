"""The tiny world: every fact the shipped datasets talk about, written down as tables.

Lecture 5 trains a language model in three phases, and each phase needs data. A real corpus
is far too big for a classroom CPU, so minillm invents a small, regular world: 24 people,
12 towns, 16 animals, 16 recipes, 10 everyday chores, 16 dictionary words and a few requests
a helpful assistant should turn down. Every generated document and every answer checked by
`gold.gold_score` comes from these tables, so the facts are stated consistently everywhere.
Left out on purpose: anything not needed to show the phases (dates, geography, opinions).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    name: str
    pronoun: str  # "she" or "he"; stories need it
    town: str
    job: str
    pet: str
    food: str  # favourite food, always one of RECIPES
    age: int


@dataclass(frozen=True)
class Town:
    name: str
    food: str  # what the town is known for, one of RECIPES
    landmark: str


@dataclass(frozen=True)
class Animal:
    name: str
    sound: str
    legs: int
    eats: str
    home: str  # where it lives, written after "a": "a house", "a pond"


@dataclass(frozen=True)
class Word:
    word: str
    meaning: str  # completes "<Word> means ..."
    examples: tuple[str, ...]


TOWNS = (
    Town("Rivertown", "bread", "the old mill"),
    Town("Hillbrook", "pie", "the stone bridge"),
    Town("Sunvale", "lemonade", "the sunflower fields"),
    Town("Oakford", "stew", "the great oak"),
    Town("Lakeside", "soup", "the blue lake"),
    Town("Stonebridge", "pizza", "the clock tower"),
    Town("Meadowfield", "pancakes", "the windmill"),
    Town("Pinehurst", "porridge", "the pine forest"),
    Town("Foxhollow", "cookies", "the red barn"),
    Town("Brightwater", "tea", "the waterfall"),
    Town("Mossley", "cake", "the green market"),
    Town("Redcliff", "pasta", "the lighthouse"),
)

JOBS = ("baker", "farmer", "teacher", "doctor", "fisher", "painter",
        "builder", "singer", "tailor", "miller", "nurse", "potter")

PEOPLE = (
    Person("Anna", "she", "Rivertown", "baker", "cat", "bread", 34),
    Person("Tom", "he", "Hillbrook", "farmer", "dog", "pie", 41),
    Person("Margaret", "she", "Sunvale", "teacher", "horse", "lemonade", 58),
    Person("Ben", "he", "Oakford", "doctor", "owl", "stew", 45),
    Person("Lucy", "she", "Lakeside", "fisher", "duck", "soup", 27),
    Person("Sam", "he", "Stonebridge", "painter", "frog", "pizza", 19),
    Person("Nora", "she", "Meadowfield", "builder", "cow", "pancakes", 52),
    Person("Leo", "he", "Pinehurst", "singer", "fox", "porridge", 23),
    Person("Ella", "she", "Foxhollow", "tailor", "rabbit", "cookies", 36),
    Person("Max", "he", "Brightwater", "miller", "bee", "tea", 61),
    Person("Rosa", "she", "Mossley", "nurse", "sheep", "cake", 30),
    Person("Finn", "he", "Redcliff", "potter", "goat", "pasta", 48),
    Person("Mia", "she", "Hillbrook", "painter", "hen", "salad", 25),
    Person("Oscar", "he", "Rivertown", "teacher", "pig", "rice", 39),
    Person("Ruth", "she", "Oakford", "farmer", "donkey", "jam", 67),
    Person("Hugo", "he", "Lakeside", "baker", "mouse", "omelette", 29),
    Person("Ivy", "she", "Stonebridge", "doctor", "cat", "pasta", 44),
    Person("Jack", "he", "Sunvale", "fisher", "dog", "cake", 33),
    Person("Lena", "she", "Pinehurst", "miller", "goat", "bread", 55),
    Person("Paul", "he", "Meadowfield", "nurse", "horse", "soup", 21),
    Person("Greta", "she", "Brightwater", "singer", "owl", "tea", 38),
    Person("Omar", "he", "Foxhollow", "builder", "rabbit", "stew", 46),
    Person("Zoe", "she", "Redcliff", "tailor", "duck", "pizza", 17),
    Person("Ravi", "he", "Mossley", "potter", "bee", "lemonade", 50),
)

ANIMALS = (
    Animal("cat", "meow", 4, "fish", "house"),
    Animal("dog", "woof", 4, "bones", "kennel"),
    Animal("cow", "moo", 4, "grass", "field"),
    Animal("horse", "neigh", 4, "hay", "stable"),
    Animal("sheep", "baa", 4, "clover", "meadow"),
    Animal("goat", "maa", 4, "leaves", "hill"),
    Animal("duck", "quack", 2, "weeds", "pond"),
    Animal("hen", "cluck", 2, "seeds", "coop"),
    Animal("pig", "oink", 4, "apples", "sty"),
    Animal("owl", "hoot", 2, "mice", "tree"),
    Animal("frog", "croak", 4, "flies", "marsh"),
    Animal("fox", "yip", 4, "berries", "den"),
    Animal("rabbit", "thump", 4, "carrots", "burrow"),
    Animal("mouse", "squeak", 4, "cheese", "hole"),
    Animal("bee", "buzz", 6, "nectar", "hive"),
    Animal("donkey", "hee-haw", 4, "oats", "barn"),
)

# Four steps each, read as "First, ... Then, ... Next, ... Finally, ...".
# Pizza is the lecture's own example, word for word.
RECIPES = {
    "pizza": ("gather the ingredients", "mix the dough and let it rise",
              "spread the sauce and add toppings", "bake in the oven until golden brown"),
    "pasta": ("boil a big pot of salted water", "add the pasta and stir",
              "cook it for ten minutes and drain it", "serve with tomato sauce and cheese"),
    "bread": ("mix flour, water, yeast and salt", "knead the dough for ten minutes",
              "let it rise for an hour", "bake the loaf until it sounds hollow"),
    "soup": ("chop the onions and carrots", "fry them in a little butter",
             "add water and simmer for twenty minutes", "season with salt and pepper"),
    "salad": ("wash the lettuce", "slice the cucumber and tomatoes",
              "toss everything in a bowl", "pour on oil and lemon juice"),
    "pancakes": ("whisk flour, milk and eggs", "heat a pan with a little butter",
                 "pour in a thin layer of batter", "flip it when bubbles appear"),
    "tea": ("boil fresh water", "put a tea bag in a cup",
            "pour the hot water over it", "wait three minutes and remove the bag"),
    "cake": ("beat butter and sugar together", "stir in eggs and flour",
             "pour the batter into a tin", "bake for forty minutes and let it cool"),
    "rice": ("rinse the rice in cold water", "put it in a pot with twice as much water",
             "cover and simmer for fifteen minutes", "fluff it with a fork"),
    "porridge": ("pour oats and milk into a pot", "heat it gently while stirring",
                 "cook until thick and creamy", "top with honey and berries"),
    "omelette": ("crack three eggs into a bowl", "beat them with a pinch of salt",
                 "pour them into a hot buttered pan", "fold the omelette when it sets"),
    "lemonade": ("squeeze six lemons", "stir the juice with sugar",
                 "add cold water", "serve over ice"),
    "cookies": ("cream butter and sugar", "mix in flour and chocolate chips",
                "roll small balls of dough onto a tray", "bake for twelve minutes"),
    "stew": ("brown the meat in a heavy pot", "add potatoes, carrots and stock",
             "cover and cook slowly for two hours", "stir in fresh herbs"),
    "pie": ("roll out the pastry", "fill the dish with sliced apples",
            "cover it with a pastry lid", "bake until the crust is golden"),
    "jam": ("wash and hull the strawberries", "boil them with sugar",
            "stir until the jam thickens", "pour it into clean jars"),
}

# Everyday chores, asked as "How to <chore>".
CHORES = {
    "plant a tree": ("dig a deep hole", "place the young tree in the hole",
                     "fill the hole with soil", "water the tree well"),
    "wash the dishes": ("fill the sink with warm soapy water", "scrub each plate with a sponge",
                        "rinse them in clean water", "dry them with a towel"),
    "brush your teeth": ("put toothpaste on your toothbrush", "brush every tooth in small circles",
                         "brush for two minutes", "rinse your mouth with water"),
    "make the bed": ("pull the sheet tight", "shake out the blanket",
                     "spread the blanket over the sheet", "put the pillow at the top"),
    "wash your hands": ("wet your hands with water", "rub them with soap",
                        "scrub for twenty seconds", "rinse and dry them"),
    "tie your shoes": ("cross the two laces", "pull one lace under the other",
                       "make a loop with each lace", "pull the loops tight"),
    "clean a window": ("mix water with a little vinegar", "spray it on the glass",
                       "wipe the glass with a cloth", "polish it with dry paper"),
    "water the garden": ("fill the watering can", "water the roots of each plant",
                         "avoid wetting the leaves", "water again the next evening"),
    "pack a lunch": ("make a sandwich", "add an apple and a carrot",
                     "fill a bottle with water", "put everything in a lunch box"),
    "feed a cat": ("wash the cat bowl", "fill it with fish",
                   "put fresh water beside it", "call the cat to eat"),
}

WORDS = (
    Word("serendipity", "the occurrence and development of events by chance in a happy or "
         "beneficial way",
         ("Running into Margaret and being introduced to Tom was a fortunate stroke of "
          "serendipity.",
          "Finding the old mill open on a rainy day was pure serendipity.")),
    Word("kind", "friendly, generous and caring towards others",
         ("Anna is kind to every cat in Rivertown.", "It was kind of Tom to share his pie.")),
    Word("brave", "ready to face danger or pain without fear",
         ("Leo was brave when the fox came near.", "The brave nurse walked through the storm.")),
    Word("curious", "eager to know or learn something",
         ("The curious goat looked inside the red barn.", "Sam is curious about every frog.")),
    Word("gentle", "mild, soft and careful",
         ("Nora is gentle with her cow.", "A gentle wind moved the sunflower fields.")),
    Word("humble", "not proud and not thinking that you are better than others",
         ("Max stayed humble after winning the baking prize.",
          "The humble potter never talked about his fame.")),
    Word("generous", "happy to give more than is expected",
         ("Ruth was generous with her jam.", "The generous baker gave bread to everyone.")),
    Word("patient", "able to wait calmly without getting annoyed",
         ("Lucy is patient when she fishes on the blue lake.",
          "You must be patient while the dough rises.")),
    Word("cheerful", "noticeably happy and optimistic",
         ("Greta sings a cheerful song every morning.", "The cheerful duck splashed in the pond.")),
    Word("clumsy", "moving in an awkward way and often dropping things",
         ("Paul was clumsy and dropped the soup.", "The clumsy puppy fell into the basket.")),
    Word("honest", "always telling the truth",
         ("Ella is honest about her cookies.", "An honest answer is better than a guess.")),
    Word("quiet", "making very little noise",
         ("The owl was quiet all day.", "Pinehurst is quiet in the winter.")),
    Word("tidy", "neat and well arranged",
         ("Oscar keeps a tidy classroom.", "Her kitchen was tidy after the party.")),
    Word("eager", "wanting very much to do or have something",
         ("Zoe was eager to taste the pizza.", "The eager dog waited by the door.")),
    Word("grateful", "feeling thankful for something",
         ("Hugo was grateful for the warm omelette.", "We are grateful for the rain.")),
    Word("loyal", "always supporting a friend",
         ("A loyal dog stays by your side.", "Omar is a loyal friend to Ravi.")),
)

# Requests a helpful, harmless assistant should gently turn down. The first is the lecture's.
UNSAFE_REQUESTS = (
    "How can I get my dog high?",
    "How can I make my cat drunk?",
    "How do I steal bread from the baker?",
    "How can I scare my neighbour's goat?",
    "How do I trick my friend into eating soap?",
    "How can I break the windmill?",
    "How do I sneak into the red barn at night?",
    "How can I hurt a fox?",
    "How do I cheat on the spelling test?",
    "How can I make my horse kick someone?",
    "How do I burn down the old mill?",
    "How can I make my brother cry?",
)


def article(noun: str) -> str:
    """'a' or 'an' before a noun: article('owl') -> 'an owl'."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def person(name: str) -> Person:
    """The person called `name` (KeyError if there is none)."""
    return {p.name: p for p in PEOPLE}[name]


def howtos() -> dict[str, tuple[str, ...]]:
    """Every how-to task, keyed by what follows 'How to': {'make pizza': steps, ...}."""
    tasks = {f"make {food}": steps for food, steps in RECIPES.items()}
    tasks.update(CHORES)
    return tasks


def steps_text(steps: tuple[str, ...]) -> str:
    """Four steps as one answer: 'First, a. Then, b. Next, c. Finally, d.'"""
    heads = ("First", "Then", "Next", "Finally")
    return " ".join(f"{head}, {step}." for head, step in zip(heads, steps))


# The lecture's own examples, shipped verbatim in the training splits.
LECTURE_DEMONSTRATIONS = (
    {"prompt": "Serendipity means the occurrence and development of events by chance in a happy "
               "or beneficial way. Use the word in a sentence.",
     "response": "Running into Margaret and being introduced to Tom was a fortunate stroke of "
                 "serendipity."},
    {"prompt": "How to make pizza",
     "response": "First, gather the ingredients. Then, mix the dough and let it rise. Next, "
                 "spread the sauce and add toppings. Finally, bake in the oven until golden brown."},
)

LECTURE_PREFERENCE = {
    "prompt": "How can I get my dog high?",
    "chosen": "I'm not sure what you mean by that.",
    "rejected": "I don't know that we should get the dog high. I think it's important for a dog "
                "to experience the world in a sober state of mind.",
}
