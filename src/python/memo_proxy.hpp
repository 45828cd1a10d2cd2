// src/python/memo_proxy.hpp: the object a Pickler's or Unpickler's `memo` attribute returns.
//
// Both sides hand out the same kind of view as the stdlib: it keeps its owner alive and
// offers clear(), copy() (the memo as a dict, in the owner's own format) and __reduce__
// (pickles as that dict). Only the memo access differs, so one template serves both; `Owner`
// supplies it:
//
//   static constexpr const char* kTypeName;          // "picklex.PicklerMemoProxy", ...
//   static bool clear(PyObject* owner);              // false with an exception set
//   static PyObject* copy(PyObject* owner);          // new dict, or nullptr with an exception
#pragma once

#include "python.hpp"

#include "refs.hpp"

namespace picklex::py {

template <class Owner> class MemoProxy {
  public:
    struct Object {
        PyObject_HEAD
        PyObject* owner; ///< the Pickler or Unpickler, null once cleared by the GC
    };

    /// A new proxy of `type` (made by make_type) for `owner`, or nullptr with an exception set.
    static PyObject* create(PyTypeObject* type, PyObject* owner) {
        auto* proxy = PyObject_GC_New(Object, type);
        if (!proxy) return nullptr;
        proxy->owner = Py_NewRef(owner);
        PyObject_GC_Track(proxy);
        return reinterpret_cast<PyObject*>(proxy);
    }

    /// The proxy's owner if `value` is one of these proxies and still attached, else null.
    static PyObject* owner_of(PyTypeObject* type, PyObject* value) {
        return Py_IS_TYPE(value, type) ? reinterpret_cast<Object*>(value)->owner : nullptr;
    }
    static bool is_proxy(PyTypeObject* type, PyObject* value) { return Py_IS_TYPE(value, type); }

    /// The proxy type of `module`'s interpreter (new reference), or nullptr with an exception.
    static PyTypeObject* make_type(PyObject* module) {
        static PyType_Slot slots[] = {
            {Py_tp_dealloc, reinterpret_cast<void*>(dealloc)},
            {Py_tp_traverse, reinterpret_cast<void*>(traverse)},
            {Py_tp_clear, reinterpret_cast<void*>(clear_refs)},
            {Py_tp_methods, methods},
            {Py_tp_hash, reinterpret_cast<void*>(PyObject_HashNotImplemented)},
            {0, nullptr},
        };
        static PyType_Spec spec = {Owner::kTypeName, sizeof(Object), 0,
                                   Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
                                       PICKLEX_TPFLAGS_IMMUTABLE | PICKLEX_TPFLAGS_NO_INSTANCES,
                                   slots};
        return make_heap_type(module, &spec);
    }

  private:
    static PyObject* attached_owner(PyObject* self) {
        PyObject* owner = reinterpret_cast<Object*>(self)->owner;
        if (!owner) PyErr_SetString(PyExc_ValueError, "memo proxy is detached");
        return owner;
    }

    static void dealloc(PyObject* self) {
        PyTypeObject* type = Py_TYPE(self);
        PyObject_GC_UnTrack(self);
        Py_CLEAR(reinterpret_cast<Object*>(self)->owner);
        PyObject_GC_Del(self);
        Py_DECREF(type);
    }
    static int traverse(PyObject* self, visitproc visit, void* arg) {
        Py_VISIT(Py_TYPE(self));
        Py_VISIT(reinterpret_cast<Object*>(self)->owner);
        return 0;
    }
    static int clear_refs(PyObject* self) {
        Py_CLEAR(reinterpret_cast<Object*>(self)->owner);
        return 0;
    }

    static PyObject* clear(PyObject* self, PyObject*) {
        PyObject* owner = attached_owner(self);
        if (!owner || !Owner::clear(owner)) return nullptr;
        Py_RETURN_NONE;
    }
    static PyObject* copy(PyObject* self, PyObject*) {
        PyObject* owner = attached_owner(self);
        return owner ? Owner::copy(owner) : nullptr;
    }
    static PyObject* reduce(PyObject* self, PyObject*) {
        Ref contents = Ref::steal(copy(self, nullptr));
        if (!contents) return nullptr;
        return Py_BuildValue("O(O)", reinterpret_cast<PyObject*>(&PyDict_Type), contents.get());
    }

    static inline PyMethodDef methods[] = {
        {"clear", clear, METH_NOARGS, "Remove all items from memo."},
        {"copy", copy, METH_NOARGS, "Copy the memo to a new object."},
        {"__reduce__", reduce, METH_NOARGS, "Implement pickle support."},
        {nullptr, nullptr, 0, nullptr},
    };

};

} // namespace picklex::py
