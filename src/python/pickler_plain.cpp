// src/python/pickler_plain.cpp: plain class instances without calling __reduce_ex__.
//
// For an ordinary class, object.__reduce_ex__(proto >= 2) returns
// (copyreg.__newobj__, (cls,), state, None, None), state being None, the instance __dict__,
// or (dict or None, {slot: value}) for __slots__ classes, and the pickler writes
// `cls () NEWOBJ MEMOIZE [state BUILD]`. A namedtuple is the same with its items as the
// arguments: `cls (items) NEWOBJ`, the items coming from its Python __getnewargs__, which
// the shortcut also skips. Building that tuple costs
// several attribute lookups, an import, and three allocations per instance. Here a class is
// certified once: its reduction hooks must all be object's own and one real __reduce_ex__
// call must have returned exactly that shape. Certified instances are then written directly,
// through the same save() calls, so hooks and bytes are unchanged. The certificate is keyed
// by the type's version tag, which CPython changes whenever the class or a base is modified.
#include <cstdint>

#include "module_state.hpp"
#include "pickler.hpp"

namespace picklex::py {

namespace {

/// The class's cached __slotnames__ list (borrowed), or nullptr.
PyObject* slotnames_of(const ModuleState& st, PyTypeObject* type) {
    PyObject* names = PyDict_GetItemWithError(type->tp_dict, st.names.__slotnames__);
    if (!names) PyErr_Clear();
    return names && PyList_CheckExact(names) ? names : nullptr;
}

// Direct-mapped: a miss only costs one slow-path reduction, which re-certifies.
Certificate& certificate_slot(ModuleState& st, PyTypeObject* type) {
    return st.certificates[(reinterpret_cast<std::uintptr_t>(type) >> 6) &
                           (ModuleState::kCertificateSlots - 1)];
}

bool has_valid_version(PyTypeObject* type) {
#if PY_VERSION_HEX >= 0x030D0000
    // 3.13 dropped the flag: a modified type's tag goes back to 0 until it gets a new one.
    return type->tp_version_tag != 0;
#else
    return PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG) && type->tp_version_tag != 0;
#endif
}

/// object's own entry for `name`, the one a plain class inherits.
PyObject* object_attribute(PyObject* name) { return _PyType_Lookup(&PyBaseObject_Type, name); }

/// Whether every hook object.__reduce_ex__ consults resolves to object's default, or for
/// NewArgs::items, to namedtuple's __getnewargs__.
bool has_default_reduction(const ModuleState& st, PyTypeObject* type, NewArgs new_args) {
    const Names& names = st.names;
    const bool items = new_args == NewArgs::items;
    if (!PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE) || type->tp_getattro != PyObject_GenericGetAttr ||
        (items ? !PyType_IsSubtype(type, &PyTuple_Type) : type->tp_itemsize != 0))
        return false;
    // Only Python classes over object (and tuple, for namedtuples): another static base
    // (list, dict, an extension type) brings its own reduction or C-level state.
    PyObject* mro = type->tp_mro;
    if (!mro || !PyTuple_Check(mro)) return false;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); ++i) {
        auto* base = reinterpret_cast<PyTypeObject*>(PyTuple_GET_ITEM(mro, i));
        if (base != &PyBaseObject_Type && !(items && base == &PyTuple_Type) &&
            !PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE))
            return false;
    }
    for (PyObject* name : {names.__reduce_ex__, names.__reduce__, names.__getstate__, names.__class__})
        if (_PyType_Lookup(type, name) != object_attribute(name)) return false;
    if (_PyType_Lookup(type, names.__getnewargs_ex__)) return false;
    PyObject* getnewargs = _PyType_Lookup(type, names.__getnewargs__);
    if (items) {
        if (!getnewargs || !PyFunction_Check(getnewargs) ||
            PyFunction_GET_CODE(getnewargs) != st.namedtuple_getnewargs)
            return false;
    } else if (getnewargs) {
        return false;
    }
    // copyreg._slotnames caches the slot names in the class's own dict (a first real
    // reduction puts them there).
    PyObject* slotnames = PyDict_GetItemWithError(type->tp_dict, names.__slotnames__);
    return slotnames && PyList_CheckExact(slotnames);
}

/// The instance dict, or nullptr when it has none.
PyObject* instance_dict(PyObject* obj) {
    PyObject** dictptr = _PyObject_GetDictPtr(obj);
    return dictptr ? *dictptr : nullptr;
}

/// The state object.__getstate__ returns for a certified class: None, the instance dict,
/// or (dict or None, {slot: value}) when slot attributes are set. New reference, or nullptr
/// with an exception.
PyObject* default_state(const ModuleState& st, PyObject* obj, PyObject* dict) {
    PyObject* base = dict && PyDict_GET_SIZE(dict) ? dict : Py_None;
    PyObject* slotnames = PyDict_GetItemWithError(Py_TYPE(obj)->tp_dict, st.names.__slotnames__);
    if (!slotnames || !PyList_CheckExact(slotnames)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "__slotnames__ vanished");
        return nullptr;
    }
    const Py_ssize_t count = PyList_GET_SIZE(slotnames);
    if (count == 0) return Py_NewRef(base);
    Ref slots = Ref::steal(PyDict_New());
    if (!slots) return nullptr;
    for (Py_ssize_t i = 0; i < count; ++i) {
        Ref name = Ref::borrow(PyList_GET_ITEM(slotnames, i));
        Ref value;
        if (lookup_attr(obj, name.get(), value) < 0) return nullptr;
        if (value && PyDict_SetItem(slots.get(), name.get(), value.get()) < 0) return nullptr;
        if (PyList_GET_SIZE(slotnames) != count) {
            PyErr_SetString(PyExc_RuntimeError, "__slotsname__ changed size during iteration");
            return nullptr;
        }
    }
    if (PyDict_GET_SIZE(slots.get()) == 0) return Py_NewRef(base);
    return PyTuple_Pack(2, base, slots.get());
}

/// Whether `actual` (from a real __reduce_ex__) is the state default_state() rebuilds.
bool same_state(PyObject* actual, PyObject* expected) {
    if (actual == expected) return true;
    if (!PyTuple_CheckExact(actual) || !PyTuple_CheckExact(expected) ||
        PyTuple_GET_SIZE(actual) != 2 || PyTuple_GET_SIZE(expected) != 2 ||
        PyTuple_GET_ITEM(actual, 0) != PyTuple_GET_ITEM(expected, 0) ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(actual, 1)))
        return false;
    const int equal = PyObject_RichCompareBool(PyTuple_GET_ITEM(actual, 1),
                                               PyTuple_GET_ITEM(expected, 1), Py_EQ);
    if (equal < 0) PyErr_Clear();
    return equal == 1;
}

/// An instance attribute can shadow the non-data descriptors the reduction looks up.
bool shadows_reduction(const ModuleState& st, PyObject* dict) {
    if (!dict || PyDict_GET_SIZE(dict) == 0) return false;
    const Names& names = st.names;
    for (PyObject* name : {names.__reduce_ex__, names.__reduce__, names.__getstate__}) {
        if (PyDict_GetItemWithError(dict, name)) return true;
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return true;
        }
    }
    return false;
}

} // namespace

bool PicklerCore::plain_certificate(PyTypeObject* type, Certificate& out) const {
    const Certificate& cert = certificate_slot(st(), type);
    if (cert.type != type || cert.version != type->tp_version_tag || !has_valid_version(type))
        return false;
    // The list can be mutated in place without a new version tag.
    PyObject* slotnames = slotnames_of(st(), type);
    if (!slotnames || PyList_GET_SIZE(slotnames) != cert.slot_count) return false;
    // A copy: the table slot may be given to another class by any Python code run later.
    out = cert;
    return true;
}

void PicklerCore::maybe_certify_plain(PyObject* obj, PyObject* reduce_value) {
    // Expect (copyreg.__newobj__, (cls, *new_args), state, None, None) with the state that
    // default_state() rebuilds: then writing it directly gives identical bytes.
    if (proto < 2 || !PyTuple_CheckExact(reduce_value) || PyTuple_GET_SIZE(reduce_value) != 5)
        return;
    PyTypeObject* type = Py_TYPE(obj);
    PyObject* callable = PyTuple_GET_ITEM(reduce_value, 0);
    PyObject* args = PyTuple_GET_ITEM(reduce_value, 1);
    PyObject* state_obj = PyTuple_GET_ITEM(reduce_value, 2);
    if (callable != st().copyreg_newobj || !PyTuple_CheckExact(args) ||
        PyTuple_GET_SIZE(args) < 1 || PyTuple_GET_ITEM(args, 0) != reinterpret_cast<PyObject*>(type) ||
        PyTuple_GET_ITEM(reduce_value, 3) != Py_None || PyTuple_GET_ITEM(reduce_value, 4) != Py_None)
        return;
    NewArgs new_args = NewArgs::none;
    if (PyTuple_Check(obj)) {
        // A namedtuple's arguments are its items.
        const Py_ssize_t n = PyTuple_GET_SIZE(obj);
        if (PyTuple_GET_SIZE(args) != n + 1) return;
        for (Py_ssize_t i = 0; i < n; ++i)
            if (PyTuple_GET_ITEM(args, i + 1) != PyTuple_GET_ITEM(obj, i)) return;
        new_args = NewArgs::items;
    } else if (PyTuple_GET_SIZE(args) != 1) {
        return;
    }
    if (!has_default_reduction(st(), type, new_args)) {
        PyErr_Clear();
        return;
    }
    Ref expected = Ref::steal(default_state(st(), obj, instance_dict(obj)));
    if (!expected) {
        PyErr_Clear();
        return;
    }
    if (!same_state(state_obj, expected.get())) return;
    PyObject* slotnames = slotnames_of(st(), type);
    if (slotnames && has_valid_version(type))
        certificate_slot(st(), type) =
            Certificate{type, type->tp_version_tag, PyList_GET_SIZE(slotnames), new_args};
}

int PicklerCore::save_plain_instance(PyObject* obj, const Certificate& cert) {
    PyObject* dict = instance_dict(obj);
    if (shadows_reduction(st(), dict)) return 0;
    // Built before anything is written, as object.__reduce_ex__ does.
    Ref args = Ref::steal(cert.new_args == NewArgs::items
                              ? PyTuple_GetSlice(obj, 0, PyTuple_GET_SIZE(obj))
                              : Py_NewRef(st().empty_tuple));
    if (!args) return -1;
    Ref state_obj = Ref::steal(default_state(st(), obj, dict));
    if (!state_obj) return -1;
    if (state_obj.get() == Py_None) state_obj.reset();
    // Reading the state ran Python code (descriptors, keys' __eq__), which may have changed
    // the class: the certificate must still stand before anything is written.
    Certificate now;
    if (!plain_certificate(Py_TYPE(obj), now) || now.version != cert.version ||
        now.new_args != cert.new_args)
        return 0;
    if (!save(reinterpret_cast<PyObject*>(Py_TYPE(obj))) || !save(args.get())) return -1;
    if (!writer.write_op(Op::NEWOBJ)) return writer_failed(), -1;
    const std::size_t index = memo.find(obj);
    if (index != MemoTable::kNotFound)
        return (writer.write_op(Op::POP) || writer_failed()) && memo_get(index) ? 1 : -1;
    if (!memo_put(obj)) return -1;
    if (state_obj && (!save(state_obj.get()) || !(writer.write_op(Op::BUILD) || writer_failed())))
        return -1;
    return 1;
}

} // namespace picklex::py
