"""Python code that re-enters picklex in the middle of a save and changes what it relies on.

Each test pins a bug where a hook, a property or an ``__eq__`` called by the pickler
replaced state that the pickler held across the call: a cache entry, the pickler's own
configuration, a hook. The pickle must come out right (the stdlib's bytes) or the call must
raise; it must never crash or write another object's name.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types

import picklex
import pytest

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def colliding_pair(make_first, make_second, slot_of, tries=4096):
    """A make_first(i) and a make_second(j) whose slot_of() agree (the caches are
    direct-mapped); everything made stays alive as a module global."""
    seen = {}
    for i in range(tries):
        for kind, make in enumerate((make_first, make_second)):
            slot = seen.setdefault(slot_of(obj := make(i)), {})
            slot.setdefault(kind, obj)
            if len(slot) == 2:
                return slot[0], slot[1]
    raise AssertionError("no slot shared by both kinds")


def global_cache_slot(obj):
    # The pickler's cache of resolved globals: (address >> 4) % 256 (pickler_reduce.cpp).
    return (id(obj) >> 4) % 256


def certificate_slot(cls):
    # The pickler's plain-class certificates: (address >> 6) & 255 (pickler_plain.cpp).
    return (id(cls) >> 6) & 255


def define_global(name, cls):
    cls.__qualname__ = cls.__name__ = name
    if not isinstance(type(cls).__dict__.get("__module__"), property):
        cls.__module__ = __name__
    setattr(sys.modules[__name__], name, cls)
    return cls


def test_global_cache_entry_swapped_while_it_is_checked():
    """A metaclass __module__ property that pickles a class sharing the cache slot."""
    other_cell = []

    class Meta(type):
        @property
        def __module__(cls):
            if other_cell:
                picklex.dumps(other_cell[0], 4)  # lands in the slot being checked
            return "".join([__name__])  # a fresh string each time: only the cache owns it

    target, other = colliding_pair(
        lambda i: define_global(f"_CacheTarget{i}", Meta(f"_CacheTarget{i}", (), {})),
        lambda i: define_global(f"_CacheOther{i}", type(f"_CacheOther{i}", (), {})),
        global_cache_slot,
    )
    expected = {proto: pickle.dumps(target, proto) for proto in PROTOCOLS}
    for proto in PROTOCOLS:
        assert picklex.dumps(target, proto) == expected[proto]  # cached, then checked
    other_cell.append(other)
    for _ in range(3):
        for proto in PROTOCOLS:
            data = picklex.dumps(target, proto)
            assert data == expected[proto]
            assert picklex.loads(data) is target


class _EvilKey(str):
    """An instance-dict key that probes as a reduction hook name and, when compared, pickles
    an object whose class shares the certificate slot of the class being saved."""

    victim = None

    def __hash__(self):
        return hash("__reduce_ex__")

    def __eq__(self, other):
        if _EvilKey.victim is not None:
            picklex.dumps(_EvilKey.victim, 4)
        return False


def test_certificate_swapped_while_an_instance_is_saved():
    base = collections.namedtuple("_Rec", "a b")

    plain_cls, record_cls = colliding_pair(
        lambda i: define_global(f"_PlainRecord{i}", type(f"_PlainRecord{i}", (), {})),
        lambda i: define_global(f"_RecordWithDict{i}", type(f"_RecordWithDict{i}", (base,), {})),
        certificate_slot,
    )
    plain, record = plain_cls(), record_cls(1, 2)
    plain.x = 1
    record.y = 2
    for obj in (plain, record):
        picklex.dumps(obj, 4)  # certify both
    try:
        for obj, victim in ((plain, record_cls(3, 4)), (record, plain_cls())):
            obj.__dict__[_EvilKey("evil")] = 0
            _EvilKey.victim = victim
            for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
                _EvilKey.victim = None
                expected = pickle.dumps(obj, proto)
                _EvilKey.victim = victim
                data = picklex.dumps(obj, proto)
                assert data == expected
                _EvilKey.victim = None
                loaded = picklex.loads(data)
                assert type(loaded) is type(obj)
                if isinstance(obj, tuple):
                    assert tuple(loaded) == (1, 2)
    finally:
        _EvilKey.victim = None


def test_pickler_reinitialised_during_its_own_dump():
    f = io.BytesIO()
    pickler = picklex.Pickler(f, 4)

    class Reinit:
        def __init__(self, file):
            self.file = file

        def __reduce__(self):
            pickler.__init__(self.file)
            return (int, (1,))

    for file in (object(), io.BytesIO()):
        with pytest.raises(RuntimeError, match="while the pickler is dumping"):
            pickler.dump([1, Reinit(file), "tail"])
    # The pickler is intact afterwards and writes to its own file.
    f.seek(0)
    f.truncate()
    pickler.dump("after")
    assert picklex.loads(f.getvalue()) == "after"


def test_member_attributes_have_the_stdlib_descriptor_kind():
    """loky tells the C pickler apart by these descriptors (joblib's process backend)."""
    import _pickle

    for name in ("bin", "fast", "dispatch_table"):
        assert type(picklex.Pickler.__dict__[name]) is type(_pickle.Pickler.__dict__[name])
        assert isinstance(picklex.Pickler.__dict__[name], types.MemberDescriptorType)
    for cls in (picklex.Pickler, picklex.Unpickler):
        theirs = getattr(_pickle, cls.__name__)
        for name, descriptor in vars(theirs).items():
            if name.startswith("__"):
                continue
            assert type(cls.__dict__[name]) is type(descriptor), (cls.__name__, name)


def test_dispatch_table_member_behaves_like_the_stdlib():
    import _pickle

    for cls in (picklex.Pickler, _pickle.Pickler):
        p = cls(io.BytesIO())
        with pytest.raises(AttributeError):
            p.dispatch_table  # noqa: B018
        p.dispatch_table = {complex: lambda c: (complex, (1.0, 2.0))}
        p.dump(3j)
        del p.dispatch_table
        with pytest.raises(AttributeError):
            p.dispatch_table  # noqa: B018
        with pytest.raises(TypeError):
            p.fast = "x"
