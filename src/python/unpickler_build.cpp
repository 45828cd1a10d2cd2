// src/python/unpickler_build.cpp: BUILD, the default __setstate__ and its fast path.
//
// Without a __setstate__, CPython's BUILD fetches inst.__dict__ (which makes a 3.11 instance
// give up its compact inline attribute values for a real dict), interns each key and stores
// it there, then sets slot state with setattr(). For instances of plain classes the same
// stores go through the generic attribute store instead, with the names already interned:
// it writes the same instance dict (keeping the inline values where the object has them),
// and is taken only where it cannot differ: no data descriptor for the name, no instance
// dict of a dict subclass, no custom __dict__.
#include "unpickler_ops.hpp"

#include "module_state.hpp"

#include <optional>

namespace picklex::py {

namespace {

/// May BUILD store the default state of `type`'s instances with the generic attribute store?
/// Attribute lookup is the generic one, no class in the MRO defines __setstate__, __dict__ is
/// the standard descriptor, and no builtin base keeps its own dict (which subtype_dict would
/// defer to).
bool compute_plain_state_type(const ModuleState& st, PyTypeObject* type) {
    if (type->tp_getattro != PyObject_GenericGetAttr || type->tp_setattro != PyObject_GenericSetAttr)
        return false;
    const Names& names = st.names;
    if (_PyType_Lookup(type, names.__setstate__)) return false;
    PyObject* dict_descr = _PyType_Lookup(type, names.__dict__);
    if (!dict_descr || !Py_IS_TYPE(dict_descr, &PyGetSetDescr_Type) ||
        reinterpret_cast<PyGetSetDescrObject*>(dict_descr)->d_getset->get != st.plain_dict_getter)
        return false;
    for (PyTypeObject* base = type; base; base = base->tp_base)
        if (base->tp_dictoffset != 0 && !(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) return false;
    return true;
}

/// The instance dict if the object has one already, or null while its attributes live in
/// inline values (3.11) or it never needed one.
PyObject* existing_instance_dict(PyObject* inst) {
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    // 3.11 keeps a managed dict pointer three words before the object (pycore_object.h).
    if (Py_TYPE(inst)->tp_flags & Py_TPFLAGS_MANAGED_DICT)
        return reinterpret_cast<PyObject**>(inst)[-3];
#endif
    PyObject** slot = _PyObject_GetDictPtr(inst);
    return slot ? *slot : nullptr;
}

} // namespace

bool PyOps::is_plain_state_type(PyTypeObject* type) {
    bool known = false;
    const bool plain = state_types_.lookup(type, known);
    if (known) return plain;
    const bool computed = st().plain_dict_getter && compute_plain_state_type(st(), type);
    state_types_.remember(type, computed);
    return computed;
}

bool PyOps::store_plain_state(PyObject* inst, PyObject* dict_state) {
    PyTypeObject* type = Py_TYPE(inst);
    Ref dict; // the instance dict, fetched only for a name the attribute store must not take
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict_state, &pos, &key, &value)) {
        Ref name = Ref::steal(interned_.get(key));
        if (PyUnicode_CheckExact(key)) {
            PyObject* descr = _PyType_Lookup(type, name.get());
            if (!descr || !Py_TYPE(descr)->tp_descr_set) {
                if (PyObject_GenericSetAttr(inst, name.get(), value) < 0) return false;
                continue;
            }
        }
        if (!dict) {
            dict = Ref::steal(PyObject_GenericGetDict(inst, nullptr));
            if (!dict) return false;
        }
        if (PyDict_SetItem(dict.get(), name.get(), value) < 0) return false;
    }
    return true;
}

bool PyOps::build(PyObject* inst, PyObject* state_obj) {
    const Names& names = st().names;
    PyObject* setstate = nullptr;
    if (_PyObject_LookupAttr(inst, names.__setstate__, &setstate) < 0) return false;
    if (setstate) {
        Ref method = Ref::steal(setstate);
        GcPause::Resume user_code(gc_);
        Ref result = Ref::steal(PyObject_CallOneArg(method.get(), state_obj));
        return static_cast<bool>(result);
    }
    // The default __setstate__: state may embed a slot-state dict (protocol 2).
    PyObject* dict_state = state_obj;
    PyObject* slot_state = nullptr;
    if (PyTuple_Check(state_obj) && PyTuple_GET_SIZE(state_obj) == 2) {
        dict_state = PyTuple_GET_ITEM(state_obj, 0);
        slot_state = PyTuple_GET_ITEM(state_obj, 1);
    }
    Ref keep_state = Ref::borrow(state_obj); // the items above are borrowed from it
    if (dict_state != Py_None) {
        if (!PyDict_Check(dict_state))
            return own_error(st().UnpicklingError, "state is not a dictionary"), false;
        PyObject* current = nullptr;
        if (is_plain_state_type(Py_TYPE(inst)) &&
            (!(current = existing_instance_dict(inst)) || PyDict_CheckExact(current))) {
            if (!store_plain_state(inst, dict_state)) return false;
        } else {
            Ref dict = Ref::steal(PyObject_GetAttr(inst, names.__dict__));
            if (!dict) return false;
            const bool exact = PyDict_CheckExact(dict.get());
            std::optional<GcPause::Resume> user_code;
            if (!exact) user_code.emplace(gc_); // a mapping with its own __setitem__
            Py_ssize_t pos = 0;
            PyObject *key, *value;
            while (PyDict_Next(dict_state, &pos, &key, &value)) {
                // Instance attribute names are normally interned; keep them so.
                Ref owned_key = Ref::steal(interned_.get(key));
                const int rc = exact ? PyDict_SetItem(dict.get(), owned_key.get(), value)
                                     : PyObject_SetItem(dict.get(), owned_key.get(), value);
                if (rc < 0) return false;
            }
        }
    }
    if (slot_state) {
        if (!PyDict_Check(slot_state))
            return own_error(st().UnpicklingError, "slot state is not a dictionary"), false;
        GcPause::Resume user_code(gc_); // descriptors may run code
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(slot_state, &pos, &key, &value)) {
            // setattr interns the name anyway; the cached twin spares it the interpreter's
            // table and lets the type's attribute cache (interned names only) answer.
            Ref name = Ref::steal(interned_.get(key));
            if (PyObject_SetAttr(inst, name.get(), value) < 0) return false;
        }
    }
    return true;
}

} // namespace picklex::py
