"""The objects of pyperformance's ``pickle`` benchmarks, rebuilt with the same values.

pyperformance (python/pyperformance, ``benchmarks/bm_pickle/run_benchmark.py``) times
``pickle``/``unpickle`` as 20 calls each on three objects: a user-profile dict with a date
(``DICT``), a tuple of a list of ints and an int (``TUPLE``), and three copies of the profile
whose values were replaced by the string of a seeded random number (``DICT_GROUP``). Its
``pickle_list`` and ``pickle_dict`` cases pickle ``LIST`` and ``MICRO_DICT``. The values
below are the same so the figures compare with published pyperformance results.
"""

from __future__ import annotations

import datetime
import random
import sys
from typing import Any

DICT: dict[str, Any] = {
    "ads_flags": 0,
    "age": 18,
    "birthday": datetime.date(1980, 5, 7),
    "bulletin_count": 0,
    "comment_count": 0,
    "country": "BR",
    "encrypted_id": "G9urXXAJwjE",
    "favorite_count": 9,
    "first_name": "",
    "flags": 412317970704,
    "friend_count": 0,
    "gender": "m",
    "gender_for_display": "Male",
    "id": 302935349,
    "is_custom_profile_icon": 0,
    "last_name": "",
    "locale_preference": "pt_BR",
    "member": 0,
    "tags": ["a", "b", "c", "d", "e", "f", "g"],
    "profile_foo_id": 827119638,
    "secure_encrypted_id": "Z_xxx2dYx3t4YAdnmfgyKw",
    "session_number": 2,
    "signup_id": "201-19225-223",
    "status": "A",
    "theme": 1,
    "time_created": 1225237014,
    "time_updated": 1233134493,
    "unread_message_count": 0,
    "user_group": "0",
    "username": "collinwinter",
    "play_count": 9,
    "view_count": 7,
    "zip": "",
}

_TUPLE_IDS = [
    265867233, 265868503, 265252341, 265243910, 265879514,
    266219766, 266021701, 265843726, 265592821, 265246784,
    265853180, 45526486, 265463699, 265848143, 265863062,
    265392591, 265877490, 265823665, 265828884, 265753032,
]  # fmt: skip
TUPLE: tuple[list[int], int] = (_TUPLE_IDS, 60)


def _randomised_copy(source: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A copy of source whose every value is the str of a random float up to sys.maxsize.

    Mirrors pyperformance's mutate_dict: all keys are str, so every value becomes
    ``str(rng.random() * sys.maxsize)``, drawn in key order.
    """
    return {key: str(rng.random() * sys.maxsize) for key in source}


def _dict_group() -> list[dict[str, Any]]:
    rng = random.Random(5)  # pyperformance's seed
    return [_randomised_copy(DICT, rng) for _ in range(3)]


DICT_GROUP: list[dict[str, Any]] = _dict_group()

LIST: list[list[list[int]]] = [[list(range(10)), list(range(10))] for _ in range(10)]

MICRO_DICT: dict[int, dict[int, None]] = {key: dict.fromkeys(range(10)) for key in range(100)}
