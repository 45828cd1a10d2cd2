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

} // namespace picklex::py
