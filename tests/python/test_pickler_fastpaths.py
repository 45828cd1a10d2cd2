"""The pickler's shortcuts must never change a byte.

picklex writes plain class instances without calling ``__reduce_ex__`` once a class is
certified, reuses one memo and buffer across ``dumps`` calls, and encodes strings straight into
its output. Each test here tries to break one of those shortcuts (shadowing, class changes after
certification, hooks, re-entrancy) and compares the bytes with the stdlib's pickler.
"""

from __future__ import annotations

import copyreg
import io
import pickle

import picklex
import pytest

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def assert_same_bytes(obj, protocols=PROTOCOLS):
    for proto in protocols:
        assert picklex.dumps(obj, proto) == pickle.dumps(obj, proto), proto


_class_counter = iter(range(10**9))


def fresh_class(name="Plain", bases=(), **namespace):
    """A new class, reachable by name from this module so it pickles by reference."""

    def __init__(self):
        self.x = 1
        self.y = [2, "three"]

    namespace.setdefault("__init__", __init__)
    unique = f"{name}{next(_class_counter)}"
    namespace["__qualname__"] = unique
    cls = type(unique, bases, namespace)
    globals()[unique] = cls
    return cls


# ---- certified plain instances ----


def test_plain_instances_before_and_after_certification():
    cls = fresh_class()
    for _ in range(3):  # the first call certifies, the next ones take the shortcut
        assert_same_bytes([cls(), cls(), cls()])


def test_instance_attribute_shadowing_reduce_ex():
    cls = fresh_class()
    assert_same_bytes(cls())
    obj = cls()
    obj.__reduce_ex__ = lambda proto: (int, (7,))
    assert_same_bytes(obj)


def test_instance_attribute_shadowing_getstate():
    cls = fresh_class()
    assert_same_bytes(cls())
    obj = cls()
    obj.__getstate__ = lambda: {"replaced": True}
    assert_same_bytes(obj)


def test_empty_and_emptied_instances():
    cls = fresh_class()
    assert_same_bytes(cls())
    obj = cls()
    del obj.x, obj.y
    bare = fresh_class("Bare", __init__=lambda self: None)
    assert_same_bytes([obj, bare()])


@pytest.mark.parametrize(
    "hook",
    [
        ("__reduce__", lambda self: (int, (1,))),
        ("__reduce_ex__", lambda self, proto: (int, (2,))),
        ("__getstate__", lambda self: {"state": 3}),
        ("__getnewargs__", lambda self: ()),
    ],
)
def test_class_changed_after_certification(hook):
    name, function = hook
    cls = fresh_class()
    assert_same_bytes([cls(), cls()])
    setattr(cls, name, function)
    assert_same_bytes([cls(), cls()])
    delattr(cls, name)
    assert_same_bytes([cls(), cls()])


def test_base_class_changed_after_certification():
    base = fresh_class("Base")
    derived = fresh_class("Derived", (base,))
    assert_same_bytes([derived(), derived()])
    base.__reduce_ex__ = lambda self, proto: (int, (9,))
    assert_same_bytes([derived(), derived()])
    del base.__reduce_ex__
    assert_same_bytes([derived(), derived()])


def test_slots_subclass_of_certified_class():
    base = fresh_class("WithDict")
    assert_same_bytes([base(), base()])
    slotted = fresh_class("Slotted", (base,), __slots__=("q",))
    obj = slotted()
    obj.q = 5
    assert_same_bytes([obj, obj], protocols=range(2, pickle.HIGHEST_PROTOCOL + 1))


SLOT_PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)  # slots need copyreg before 2


def test_slots_classes_set_unset_and_with_dict():
    def init(self):
        self.a = 1
        setattr(self, f"_{type(self).__name__}__hidden", [2])  # a mangled slot name

    def init_with_dict(self):
        self.a = 1

    only_slots = fresh_class("OnlySlots", __slots__=("a", "b", "__hidden"), __init__=init)
    with_dict = fresh_class("SlotsAndDict", __slots__=("a", "__dict__"), __init__=init_with_dict)
    for _ in range(3):
        partly_set = only_slots()
        partly_set.b = "set"
        empty = only_slots.__new__(only_slots)
        extra = with_dict()
        extra.more = {"k": "v"}
        assert_same_bytes([only_slots(), partly_set, empty, extra, with_dict()], SLOT_PROTOCOLS)


def test_slot_read_through_a_subclass_property():
    base = fresh_class("SlotBase", __slots__=("value",), __init__=lambda self: None)
    derived = fresh_class(
        "PropertyOverSlot", (base,), value=property(lambda self: "from the property")
    )
    for _ in range(3):
        assert_same_bytes([derived(), derived()], SLOT_PROTOCOLS)


def test_slotnames_changed_after_certification():
    cls = fresh_class("SlotNames", __slots__=("p", "q"))
    obj = cls.__new__(cls)
    obj.p, obj.q = 1, 2
    assert_same_bytes([obj, obj], SLOT_PROTOCOLS)
    cls.__slotnames__.remove("q")  # the class's cached list, read on every reduction
    try:
        assert_same_outcome([obj, obj], SLOT_PROTOCOLS)  # a layout check now fails
    finally:
        cls.__slotnames__.append("q")
    assert_same_bytes([obj, obj], SLOT_PROTOCOLS)


def fresh_namedtuple(name, fields):
    import collections

    unique = f"{name}{next(_class_counter)}"
    cls = collections.namedtuple(unique, fields, module=__name__)
    globals()[unique] = cls
    return cls


def test_namedtuples_before_and_after_certification():
    point = fresh_namedtuple("Point", "x y")
    empty = fresh_namedtuple("Empty", "")
    shared = [1, 2]
    for _ in range(3):
        assert_same_bytes([point(1, "two"), point(shared, shared), empty(), point(3, point(4, 5))])


def test_namedtuple_subclasses():
    base = fresh_namedtuple("Base", "a b")
    with_dict = fresh_class("WithDict", (base,))  # no __slots__: instances get a dict
    del with_dict.__init__
    custom_args = fresh_class(
        "CustomArgs", (base,), __slots__=(), __getnewargs__=lambda self: (self.b, self.a)
    )
    del custom_args.__init__
    for _ in range(3):
        extra = with_dict(1, 2)
        extra.note = "state"
        assert_same_bytes([extra, with_dict(3, 4), custom_args(5, 6)], SLOT_PROTOCOLS)


def test_namedtuple_changed_after_certification():
    pair = fresh_namedtuple("Pair", "a b")
    assert_same_bytes([pair(1, 2), pair(3, 4)])
    pair.__getnewargs__ = lambda self: (self.b, self.a)
    assert_same_bytes([pair(1, 2), pair(3, 4)])


def test_dispatch_table_registration_after_certification():
    cls = fresh_class("Registered")
    assert_same_bytes([cls(), cls()])
    copyreg.pickle(cls, lambda obj: (int, (4,)))
    try:
        assert_same_bytes([cls(), cls()])
    finally:
        del copyreg.dispatch_table[cls]
    assert_same_bytes([cls(), cls()])


def test_self_referencing_instance():
    cls = fresh_class("Loop")
    obj = cls()
    obj.me = obj
    obj.pair = [obj, (obj,)]
    assert_same_bytes([obj, obj])


def test_persistent_id_sees_every_piece_of_an_instance():
    cls = fresh_class("Seen")

    def record(base):
        seen = []

        class Recorder(base):
            def persistent_id(self, obj):
                seen.append(type(obj).__name__)
                return None

        return Recorder, seen

    for proto in PROTOCOLS:
        ours, ours_seen = record(picklex.Pickler)
        theirs, theirs_seen = record(pickle.Pickler)
        out_ours, out_theirs = io.BytesIO(), io.BytesIO()
        ours(out_ours, proto).dump([cls(), cls()])
        theirs(out_theirs, proto).dump([cls(), cls()])
        assert ours_seen == theirs_seen
        assert out_ours.getvalue() == out_theirs.getvalue()


def test_reducer_override_wins_over_certification():
    cls = fresh_class("Overridden")
    assert_same_bytes([cls(), cls()])

    def make(base):
        class Override(base):
            def reducer_override(self, obj):
                return (int, (5,)) if isinstance(obj, cls) else NotImplemented

        return Override

    for proto in PROTOCOLS:
        out_ours, out_theirs = io.BytesIO(), io.BytesIO()
        make(picklex.Pickler)(out_ours, proto).dump([cls(), 1])
        make(pickle.Pickler)(out_theirs, proto).dump([cls(), 1])
        assert out_ours.getvalue() == out_theirs.getvalue()


# ---- strings ----


@pytest.mark.parametrize(
    "text",
    ["\ud800" * 30000, "a\udfffb" * 10, "\U0001f600\ud800" * 20000, "é" * 70000, "日本" * 40000],
    ids=["lone-surrogates-64k", "surrogates-small", "astral+surrogate", "latin1-64k", "cjk-64k"],
)
def test_non_ascii_strings_in_memory_and_streamed(text):
    class Chunks:
        def __init__(self):
            self.chunks = []

        def write(self, data):
            self.chunks.append(bytes(data))

    for proto in PROTOCOLS:
        assert picklex.dumps(text, proto) == pickle.dumps(text, proto)
        ours, theirs = Chunks(), Chunks()
        picklex.Pickler(ours, proto).dump([text, text + "!"])
        pickle.Pickler(theirs, proto).dump([text, text + "!"])
        assert ours.chunks == theirs.chunks


# ---- reuse of the module-level pickler ----


def test_nested_dumps_from_reduce():
    class Nested:
        def __reduce__(self):
            inner = picklex.dumps({"inner": [1, 2, 3]}, 4)
            return (bytes, (inner,))

    outer = picklex.dumps([Nested(), {"after": "nested"}], 4)
    reference = pickle.dumps([Nested(), {"after": "nested"}], 4)
    assert outer == reference


def test_memo_does_not_leak_between_dumps_calls():
    shared = ["shared"]
    first = picklex.dumps([shared, shared])
    second = picklex.dumps(shared)
    assert second == pickle.dumps(shared)
    assert first == pickle.dumps([shared, shared])


def test_reentrant_dump_on_the_same_pickler_is_refused():
    out = io.BytesIO()

    class Reentrant(picklex.Pickler):
        def persistent_id(self, obj):
            if obj == "again":
                self.dump("inner")
            return None

    with pytest.raises(RuntimeError):
        Reentrant(out, 4).dump(["again"])
    # The pickler is usable again afterwards.
    out2 = io.BytesIO()
    pickler = Reentrant(out2, 4)
    pickler.dump(["fine"])
    assert out2.getvalue() == pickle.dumps(["fine"], 4)


# ---- remembered globals ----


def _module_function():
    return "original"


def assert_same_outcome(obj, protocols=PROTOCOLS):
    """Same bytes, or the same exception type, as the stdlib."""
    for proto in protocols:
        try:
            want = pickle.dumps(obj, proto)
        except Exception as exc:  # the type is what is compared
            with pytest.raises(type(exc)):
                picklex.dumps(obj, proto)
        else:
            assert picklex.dumps(obj, proto) == want


def test_global_rebound_in_its_module_after_being_remembered():
    original = _module_function
    assert_same_outcome([original, original])
    globals()["_module_function"] = lambda: "replacement"
    try:
        assert_same_outcome(original)  # "not the same object" in both
    finally:
        globals()["_module_function"] = original
    assert_same_outcome(original)


def test_global_renamed_after_being_remembered():
    function = _module_function
    assert_same_outcome(function)
    function.__qualname__ = "renamed_function"
    try:
        assert_same_outcome(function)
    finally:
        function.__qualname__ = "_module_function"
    function.__module__ = "collections"
    try:
        assert_same_outcome(function)
    finally:
        function.__module__ = __name__
    assert_same_outcome(function)


def test_global_whose_module_left_sys_modules(monkeypatch):
    import colorsys
    import sys

    assert_same_outcome(colorsys.rgb_to_hsv)
    monkeypatch.delitem(sys.modules, "colorsys")
    assert_same_outcome(colorsys.rgb_to_hsv)  # both import a fresh module: not the same object


def test_global_with_a_custom_import_hook(monkeypatch):
    import builtins
    import datetime

    calls = []
    real_import = builtins.__import__

    def hook(name, *args, **kwargs):
        calls.append(name)
        return real_import(name, *args, **kwargs)

    assert_same_outcome(datetime.date)
    monkeypatch.setattr(builtins, "__import__", hook)
    picklex.dumps(datetime.date, 4)
    assert "datetime" in calls  # the hook is honoured, as by the stdlib pickler
