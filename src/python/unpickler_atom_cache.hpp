// src/python/unpickler_atom_cache.hpp: one object per value among recently loaded small ints
// and short ASCII strings.
//
// Pickled data repeats small ints (counts, codes, flags, ids in a narrow range) and short
// strings (the keys of records, enum-like values) over and over. The pickler memoizes a str
// only within one pickle and never an int, so every occurrence costs an allocation on load,
// for a dict key a fresh hash too, and a deallocation when the result dies. Both types are
// immutable and CPython makes no promise about the identity of equal values, so handing out
// one object per value is safe; the loaded result is smaller, and a cached str keeps its hash.
//
// The pickler memoizes strs (a str met twice is written once and referenced after), so a
// load must not share one str object between two places its pickle kept apart: dumping the
// result again would write different bytes than the stdlib's round trip does. A cached str
// is therefore handed out at most once per load; sharing across separate loads (the keys of
// many small messages) is where the gain is. Ints are never memoized and share freely.
//
// The tables are direct-mapped and shared by every load of one interpreter (they live in its
// module state, under its GIL, and keep a few dozen KiB of objects alive). They are not part
// of a load's machine because a spare machine is kept per thread and freed at thread exit
// without the GIL: it must hold no Python objects. Each load gives up on a table when its values do
// not repeat, so a stream of distinct values pays only for a short trial.
#pragma once

#include "python.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "module_state.hpp"
#include "picklex/stack_machine.hpp"

namespace picklex::py {

/// Whether one load keeps probing a table: after every kTrialMisses misses, a hit rate under
/// a quarter turns probing off until the next load.
class CacheTrial {
  public:
    void rearm() noexcept {
        misses_ = 0;
        hits_ = 0;
        enabled_ = true;
    }
    bool enabled() const noexcept { return enabled_; }
    void hit() noexcept { ++hits_; }
    void miss() noexcept {
        if (++misses_ < kTrialMisses) return;
        if (hits_ < kTrialMisses / 4) enabled_ = false;
        misses_ = 0;
        hits_ = 0;
    }

  private:
    static constexpr std::uint32_t kTrialMisses = 256;
    std::uint32_t misses_ = 0;
    std::uint64_t hits_ = 0;
    bool enabled_ = true;
};

/// Replace a table entry's object (a strong reference the table owns) with `fresh`.
inline void replace_entry(PyObject*& slot, PyObject* fresh) noexcept {
    PyObject* old = slot;
    slot = Py_NewRef(fresh);
    Py_XDECREF(old);
}

// ---- ints ----

/// One load's use of the shared int table.
class IntCache {
  public:
    void rearm(IntCacheTable& table) noexcept {
        table_ = &table;
        trial_.rearm();
    }

    /// A new reference to an int equal to `value`, or nullptr with an exception set.
    PICKLEX_DECODE_INLINE PyObject* get(std::int64_t value) {
        IntCacheTable::Entry& e =
            table_->slots[static_cast<std::uint64_t>(value) & (IntCacheTable::kSlots - 1)];
        if (e.value == value && e.object && trial_.enabled()) [[likely]] {
            trial_.hit();
            return Py_NewRef(e.object);
        }
        return miss(e, value);
    }

  private:
    PICKLEX_DECODE_COLD PyObject* miss(IntCacheTable::Entry& e, std::int64_t value) {
        if (!trial_.enabled()) return PyLong_FromLongLong(value);
        trial_.miss();
        PyObject* fresh = PyLong_FromLongLong(value);
        if (!fresh) return nullptr;
        replace_entry(e.object, fresh);
        e.value = value;
        return fresh;
    }

    IntCacheTable* table_ = nullptr;
    CacheTrial trial_;
};

// ---- short ASCII strings ----

/// A new str of the `n` ASCII bytes at `p`, or nullptr with an exception set.
inline PyObject* new_ascii_str(const char* p, std::size_t n) {
    PyObject* str = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
    if (str) std::memcpy(PyUnicode_1BYTE_DATA(str), p, n);
    return str;
}

/// One load's use of the shared str table.
class StrCache {
  public:
    void rearm(StrCacheTable& table) noexcept {
        table_ = &table;
        trial_.rearm();
        load_ = ++table.loads;
    }

    /// A new reference to the str of the `n` ASCII bytes at `p` (2 <= n <= kMaxLength), or
    /// nullptr with an exception set.
    PICKLEX_DECODE_INLINE PyObject* get(const char* p, std::size_t n) {
        StrCacheTable::Entry& e = table_->slots[slot_of(p, n)];
        if (e.length == n && e.load != load_ && e.object && trial_.enabled() &&
            std::memcmp(PyUnicode_1BYTE_DATA(e.object), p, n) == 0) [[likely]] {
            trial_.hit();
            e.load = load_;
            return Py_NewRef(e.object);
        }
        return miss(e, p, n);
    }

  private:
    /// A multiplicative hash of the first, middle and last bytes (as up to three 8-byte words).
    PICKLEX_DECODE_INLINE static std::size_t slot_of(const char* p, std::size_t n) noexcept {
        std::uint64_t a = 0, b = 0, c = 0;
        if (n >= 8) {
            std::memcpy(&a, p, 8);
            std::memcpy(&b, p + n - 8, 8);
            std::memcpy(&c, p + n / 2 - 4, 8);
        } else if (n >= 4) {
            std::uint32_t x, y;
            std::memcpy(&x, p, 4);
            std::memcpy(&y, p + n - 4, 4);
            a = x;
            b = y;
        } else {
            a = static_cast<unsigned char>(p[0]) | static_cast<std::uint64_t>(static_cast<unsigned char>(p[n - 1])) << 8;
        }
        const std::uint64_t h = (a * 0x9E3779B97F4A7C15u) ^ (b * 0xC2B2AE3D27D4EB4Fu) ^
                                (c * 0x165667B19E3779F9u) ^ n;
        return static_cast<std::size_t>((h ^ (h >> 29)) * 0xD6E8FEB86659FD93u >> 54) &
               (StrCacheTable::kSlots - 1);
    }

    PICKLEX_DECODE_COLD PyObject* miss(StrCacheTable::Entry& e, const char* p, std::size_t n) {
        PyObject* fresh = new_ascii_str(p, n);
        if (!fresh || !trial_.enabled()) return fresh;
        trial_.miss();
        replace_entry(e.object, fresh);
        e.length = n;
        e.load = load_;
        return fresh;
    }

    StrCacheTable* table_ = nullptr;
    CacheTrial trial_;
    std::uint64_t load_ = 0;
};

} // namespace picklex::py
