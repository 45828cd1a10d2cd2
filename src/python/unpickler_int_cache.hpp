// src/python/unpickler_int_cache.hpp: one int object per value among recently loaded ints.
//
// Pickled data repeats small ints over and over (counts, codes, flags, ids in a narrow range),
// and the pickler never memoizes ints, so every occurrence costs an allocation on load and a
// deallocation when the result dies. Ints are immutable and CPython makes no promise about
// their identity, so handing out one object per value is safe; it also makes the loaded
// result smaller. The table is direct-mapped by the value's low bits and shared by every load
// in the process (all under the GIL; it keeps a few KiB of ints alive). Each load gives up on
// it when the values do not repeat, so a stream of distinct ints pays only for a trial.
//
// The table is process-wide rather than part of a load's machine because a spare machine is
// kept per thread and freed at thread exit without the GIL: it must hold no Python objects.
#pragma once

#include "python.hpp"

#include "picklex/stack_machine.hpp"

#include <cstddef>
#include <cstdint>

namespace picklex::py {

/// The shared table: one int per slot, by the value's low bits.
struct IntCacheTable {
    static constexpr std::size_t kSlots = 1024;
    struct Entry {
        std::int64_t value = 0;
        PyObject* object = nullptr; // a strong reference, never released
    };
    Entry slots[kSlots];
};
inline IntCacheTable g_int_cache_table;

/// One load's use of the shared table.
class IntCache {
  public:
    /// Start a load: probe the cache again.
    void rearm() noexcept {
        probes_ = 0;
        hits_ = 0;
        enabled_ = true;
    }

    /// A new reference to an int equal to `value`, or nullptr with an exception set.
    PICKLEX_DECODE_INLINE PyObject* get(std::int64_t value) {
        IntCacheTable::Entry& e = g_int_cache_table.slots[static_cast<std::uint64_t>(value) &
                                                          (IntCacheTable::kSlots - 1)];
        if (e.value == value && e.object && enabled_) [[likely]] {
            ++hits_;
            return Py_NewRef(e.object);
        }
        return miss(e, value);
    }

  private:
    PICKLEX_DECODE_COLD PyObject* miss(IntCacheTable::Entry& e, std::int64_t value) {
        if (!enabled_) return PyLong_FromLongLong(value);
        if (++probes_ == kTrialProbes) {
            // Mostly distinct values: stop paying for the cache in this load.
            if (hits_ < kTrialProbes / 4) enabled_ = false;
            probes_ = 0;
            hits_ = 0;
        }
        PyObject* fresh = PyLong_FromLongLong(value);
        if (!fresh) return nullptr;
        PyObject* old = e.object;
        e.object = Py_NewRef(fresh);
        e.value = value;
        Py_XDECREF(old);
        return fresh;
    }

    static constexpr std::uint32_t kTrialProbes = 256; // misses per verdict
    std::uint32_t probes_ = 0; // misses since the last verdict
    std::uint64_t hits_ = 0;   // hits since the last verdict
    bool enabled_ = true;
};

} // namespace picklex::py
