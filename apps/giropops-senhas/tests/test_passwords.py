import string

import pytest

from giropops.passwords import MAX_LENGTH, MIN_LENGTH, generate_password

# Enough draws that a missing guarantee would show up: with 4 characters from letters+digits,
# about 1 password in 6 would lack a digit without it.
SAMPLES = 300


@pytest.mark.parametrize("length", [MIN_LENGTH, 12, MAX_LENGTH])
def test_has_the_requested_length(length):
    assert len(generate_password(length, include_digits=True, include_special=True)) == length


def test_letters_only_when_nothing_else_is_asked_for():
    for _ in range(SAMPLES):
        assert set(generate_password(16, include_digits=False, include_special=False)) <= set(string.ascii_letters)


@pytest.mark.parametrize(
    "include_digits, include_special",
    [(True, False), (False, True), (True, True)],
)
def test_every_requested_class_is_present_even_in_the_shortest_password(include_digits, include_special):
    allowed = set(string.ascii_letters)
    allowed |= set(string.digits) if include_digits else set()
    allowed |= set(string.punctuation) if include_special else set()
    for _ in range(SAMPLES):
        password = generate_password(MIN_LENGTH, include_digits=include_digits, include_special=include_special)
        assert set(password) <= allowed
        assert any(c in string.ascii_letters for c in password)
        assert any(c in string.digits for c in password) == include_digits
        if include_special:
            assert any(c in string.punctuation for c in password)


def test_guaranteed_characters_are_not_always_in_the_same_place():
    first_characters = {
        generate_password(8, include_digits=True, include_special=True)[0] for _ in range(SAMPLES)
    }
    assert any(c in string.digits for c in first_characters)
    assert any(c in string.ascii_letters for c in first_characters)
    assert any(c in string.punctuation for c in first_characters)


def test_passwords_do_not_repeat():
    passwords = {generate_password(16, include_digits=True, include_special=True) for _ in range(SAMPLES)}
    assert len(passwords) == SAMPLES


@pytest.mark.parametrize("length", [MIN_LENGTH - 1, 0, -5, MAX_LENGTH + 1])
def test_rejects_lengths_outside_the_range(length):
    with pytest.raises(ValueError, match=f"between {MIN_LENGTH} and {MAX_LENGTH}"):
        generate_password(length, include_digits=False, include_special=False)
