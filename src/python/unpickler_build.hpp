// src/python/unpickler_build.hpp: what BUILD remembers between instances.
//
// A pickle of many instances restores the same few attribute names on objects of the same
// few classes. BUILD therefore remembers, for the length of a load, each name's interned
// twin, and, for as long as a class stays unmodified, whether its instances take the default
// __setstate__ through their plain instance dict.
#pragma once

#include "python.hpp"

#include <cstddef>
#include <cstdint>

namespace picklex::py {

/// The interned twin of each str BUILD used as an attribute name during one load.
///
/// A pickle of many instances names the same few attributes over and over, as the same
/// memoized str objects; interning looks each one up in the interpreter's table every time.
/// This remembers the answer per object. It holds references to both strings, so an address
/// cannot be reused by another string while the entry lives (cleared after every load).
class InternCache {
  public:
    InternCache() = default;
    InternCache(const InternCache&) = delete;
    InternCache& operator=(const InternCache&) = delete;
    ~InternCache() { clear(); }

    /// A new reference to the interned equal of `key` (or to `key` itself if it is not an
    /// exact str or is interned already).
    PyObject* get(PyObject* key) {
        if (!PyUnicode_CheckExact(key) || PyUnicode_CHECK_INTERNED(key)) return Py_NewRef(key);
        const std::size_t home = (reinterpret_cast<std::uintptr_t>(key) >> 4) % kSlots;
        for (std::size_t probe = 0; probe < kProbes; ++probe) {
            Entry& e = slots_[(home + probe) % kSlots];
            if (e.original == key) return Py_NewRef(e.interned);
            if (!e.original) {
                PyObject* interned = Py_NewRef(key);
                PyUnicode_InternInPlace(&interned);
                e.original = Py_NewRef(key);
                e.interned = Py_NewRef(interned);
                used_ = true;
                return interned;
            }
        }
        PyObject* interned = Py_NewRef(key); // table crowded: intern without remembering
        PyUnicode_InternInPlace(&interned);
        return interned;
    }
    void clear() noexcept {
        if (!used_) return;
        used_ = false;
        for (Entry& e : slots_) {
            if (!e.original) continue;
            Py_CLEAR(e.original);
            Py_CLEAR(e.interned);
        }
    }

  private:
    static constexpr std::size_t kSlots = 64;
    static constexpr std::size_t kProbes = 4;
    struct Entry {
        PyObject* original = nullptr;
        PyObject* interned = nullptr;
    };
    Entry slots_[kSlots];
    bool used_ = false;
};

/// Classes whose instances BUILD may fill through the generic attribute store (see
/// is_plain_state_type in unpickler_build.cpp), remembered by type and version tag. CPython
/// gives a modified class a new tag, and never reuses one, so an entry cannot go stale.
class StateTypeCache {
  public:
    /// Is `type` plain, as far as the cache knows? `known` tells whether it knew.
    bool lookup(PyTypeObject* type, bool& known) const noexcept {
        const Entry& e = slots_[slot(type)];
        known = e.type == type && e.version != 0 && e.version == type->tp_version_tag;
        return known && e.plain;
    }
    void remember(PyTypeObject* type, bool plain) noexcept {
        if (type->tp_version_tag == 0) return; // no valid tag: ask again next time
        slots_[slot(type)] = Entry{type, type->tp_version_tag, plain};
    }

  private:
    static constexpr std::size_t kSlots = 16;
    static std::size_t slot(PyTypeObject* type) noexcept {
        return (reinterpret_cast<std::uintptr_t>(type) >> 6) % kSlots;
    }
    struct Entry {
        PyTypeObject* type = nullptr; // never dereferenced: compared only
        unsigned int version = 0;
        bool plain = false;
    };
    Entry slots_[kSlots];
};

} // namespace picklex::py
