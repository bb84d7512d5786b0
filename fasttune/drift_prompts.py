"""The general prompts of eval.drift (fasttune/drift.py): everyday questions, code, arithmetic and other
languages, none of them from any recipe's data. Fixed and shipped, so every run is measured on the same
ones; changing them changes what earlier runs' eval.json figures mean. PROMPTS takes the four kinds in
turn, so `eval.drift_prompts=N` (the first N) asks some of each."""

from itertools import chain, zip_longest

EVERYDAY = [
    "What is the capital of Canada?",
    "How many days are there in a week?",
    "What colour is the sky on a clear day?",
    "Why do we need to sleep?",
    "What is the boiling point of water at sea level?",
    "Name three fruits that are red.",
    "How do I make a cup of tea?",
    "What is the largest planet in our solar system?",
    "Who painted the Mona Lisa?",
    "What does a thermometer measure?",
    "Give me one tip for saving money.",
    "What is photosynthesis?",
    "How many continents are there?",
    "What is the opposite of 'hot'?",
    "Suggest a name for a pet cat.",
    "What language is spoken in Brazil?",
    "Why is exercise good for you?",
    "What is the freezing point of water in Fahrenheit?",
    "Write one sentence about the ocean.",
    "What is the main ingredient of guacamole?",
]
CODE = [
    "Write a Python function that returns the square of a number.",
    "How do I reverse a list in Python?",
    "What does the SQL statement SELECT * FROM users do?",
    "Write a JavaScript line that prints 'hello' to the console.",
    "What is a variable in programming?",
    "How do I read a file line by line in Python?",
    "What does HTML stand for?",
    "Write a bash command that lists the files in a folder.",
    "What is the difference between a list and a tuple in Python?",
    "Write a Python loop that prints the numbers 1 to 5.",
]
ARITHMETIC = [
    "What is 7 + 5?",
    "What is 12 times 3?",
    "What is 100 divided by 4?",
    "What is 15 minus 9?",
    "What is the square root of 81?",
    "What is 2 to the power of 5?",
    "If I have 3 apples and buy 4 more, how many do I have?",
    "What is half of 50?",
    "What is 10% of 200?",
    "Is 17 a prime number?",
]
LANGUAGES = [
    "Quelle est la capitale de l'Italie ?",
    "¿Cuántos días tiene un año?",
    "Wie spät ist es, wenn es Mittag ist?",
    "Traduis en anglais : « Le chat dort sur le canapé. »",
    "¿Cuál es el color de la hierba?",
    "Was ist die Hauptstadt von Deutschland?",
    "Come si dice 'thank you' in italiano?",
    "Qual é a capital de Portugal?",
    "Nenne drei Farben auf Deutsch.",
    "Écris une phrase sur le soleil.",
]

PROMPTS = [p for p in chain.from_iterable(zip_longest(EVERYDAY, CODE, ARITHMETIC, LANGUAGES)) if p is not None]
