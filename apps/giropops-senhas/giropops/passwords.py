"""Password generation from the operating system's CSPRNG."""

from __future__ import annotations

import secrets
import string

MIN_LENGTH = 4
MAX_LENGTH = 128

LETTERS = string.ascii_letters
DIGITS = string.digits
SPECIAL_CHARACTERS = string.punctuation

_system_random = secrets.SystemRandom()


def generate_password(length: int, *, include_digits: bool, include_special: bool) -> str:
    """Return a password of `length` characters.

    It always has at least one letter, and at least one digit / special character when those are
    asked for: drawing every character from the union alone would, for short passwords, often
    leave out a class the user asked for.
    """
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"length must be between {MIN_LENGTH} and {MAX_LENGTH}, got {length}")
    required_classes = [LETTERS]
    if include_digits:
        required_classes.append(DIGITS)
    if include_special:
        required_classes.append(SPECIAL_CHARACTERS)
    alphabet = "".join(required_classes)

    characters = [secrets.choice(character_class) for character_class in required_classes]
    characters += [secrets.choice(alphabet) for _ in range(length - len(characters))]
    # The guaranteed characters were drawn first; shuffling spreads them over every position.
    _system_random.shuffle(characters)
    return "".join(characters)
