// src/python/refs.hpp: an owned PyObject reference with RAII, and small C-API helpers.
#pragma once

#include "python.hpp"

#include <utility>

namespace picklex::py {

/// Owns one strong reference (or none). Move-only; releases on destruction.
class Ref {
  public:
    Ref() noexcept = default;
    /// Take over a new reference (e.g. a C-API return value); nullptr allowed.
    static Ref steal(PyObject* obj) noexcept { return Ref(obj); }
    /// Add a reference to a borrowed object; nullptr allowed.
    static Ref borrow(PyObject* obj) noexcept {
        Py_XINCREF(obj);
        return Ref(obj);
    }

    Ref(Ref&& other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}
    Ref& operator=(Ref&& other) noexcept {
        if (this != &other) {
            PyObject* old = std::exchange(obj_, std::exchange(other.obj_, nullptr));
            Py_XDECREF(old);
        }
        return *this;
    }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    ~Ref() { Py_XDECREF(obj_); }

    PyObject* get() const noexcept { return obj_; }
    /// Give up ownership: the caller now holds the reference.
    PyObject* release() noexcept { return std::exchange(obj_, nullptr); }
    /// A new reference for the caller, keeping ours.
    PyObject* new_ref() const noexcept {
        Py_XINCREF(obj_);
        return obj_;
    }
    void reset(PyObject* stolen = nullptr) noexcept {
        PyObject* old = std::exchange(obj_, stolen);
        Py_XDECREF(old);
    }
    explicit operator bool() const noexcept { return obj_ != nullptr; }

  private:
    explicit Ref(PyObject* obj) noexcept : obj_(obj) {}
    PyObject* obj_ = nullptr;
};

/// getattr(obj, name) that reports "missing" as a null result without an exception.
/// Returns -1 on a real error, 0 if missing, 1 if found.
inline int lookup_attr(PyObject* obj, PyObject* name, Ref& out) {
    PyObject* value = nullptr;
    int found = _PyObject_LookupAttr(obj, name, &value);
    out.reset(value);
    return found;
}

/// Look up a hook method of a Pickler or Unpickler (`self`) and keep it without a reference
/// cycle: a method bound to `self` itself is kept as (function, borrowed self) and rebound on
/// demand; anything else is kept as found. Returns -1 on error, 0 otherwise.
inline int init_method_ref(PyObject* self, PyObject* name, Ref& func, PyObject*& func_self) {
    Ref found;
    const int status = lookup_attr(self, name, found);
    func_self = nullptr;
    if (status <= 0) {
        func.reset();
        return status;
    }
    if (PyMethod_Check(found.get()) && PyMethod_GET_SELF(found.get()) == self) {
        func = Ref::borrow(PyMethod_GET_FUNCTION(found.get()));
        func_self = self;
    } else {
        func = std::move(found);
    }
    return 0;
}

/// init_method_ref for a hook that the type itself defines as a method (persistent_id and
/// persistent_load from 3.13 on): the type's own do-nothing method, `builtin`, counts as no
/// hook at all, so the common case pays no call per object.
inline int init_hook_ref(PyObject* self, PyObject* name, PyCFunction builtin, Ref& func,
                         PyObject*& func_self) {
    if (init_method_ref(self, name, func, func_self) < 0) return -1;
    if (func && PyCFunction_Check(func.get()) && PyCFunction_GET_SELF(func.get()) == self &&
        PyCFunction_GET_FUNCTION(func.get()) == builtin)
        func.reset();
    return 0;
}

/// A heap type of `module` from `spec` (new reference), or nullptr with an exception set.
/// A type that Python code may not instantiate has PICKLEX_TPFLAGS_NO_INSTANCES in its spec.
inline PyTypeObject* make_heap_type(PyObject* module, PyType_Spec* spec) {
    auto* type = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, spec, nullptr));
#if PY_VERSION_HEX < 0x030A0000
    // Before Py_TPFLAGS_DISALLOW_INSTANTIATION, a spec without Py_tp_new inherits object's;
    // every type here that has no constructor of its own is one of those.
    bool has_new = false;
    for (const PyType_Slot* slot = spec->slots; slot->slot; ++slot)
        has_new = has_new || slot->slot == Py_tp_new;
    if (type && !has_new) type->tp_new = nullptr;
#endif
    return type;
}

} // namespace picklex::py
