// include/picklex/memo_table.hpp: the encoder's memo, keyed by object identity.
//
// Open addressing on the pointer value with linear probing and inline keys, so a lookup is
// usually one cache line. A pickle only ever adds to its memo, so there is no deletion.
// The slots in use are also listed densely: clearing, iterating and rehashing cost what is
// in the table, not its capacity, which lets one table be reused across many small pickles
// without paying for the largest one it ever held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace picklex {

class MemoTable {
  public:
    static constexpr std::size_t kNotFound = static_cast<std::size_t>(-1);

    struct Entry {
        const void* key;   ///< object identity; nullptr marks an empty slot
        std::size_t value; ///< memo index
    };

    MemoTable() = default;
    ~MemoTable() {
        std::free(slots_);
        std::free(filled_);
    }
    MemoTable(const MemoTable&) = delete;
    MemoTable& operator=(const MemoTable&) = delete;

    std::size_t size() const noexcept { return used_; }
    std::size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }

    /// The memo index of `key`, or kNotFound.
    std::size_t find(const void* key) const noexcept {
        if (!slots_) return kNotFound;
        for (std::size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
            const Entry& e = slots_[i];
            if (e.key == key) return e.value;
            if (!e.key) return kNotFound;
        }
    }

    /// Set `key` to `value` (overwriting an existing entry). Returns false on allocation
    /// failure. `inserted` tells whether the key was new.
    bool set(const void* key, std::size_t value, bool* inserted = nullptr) {
        if (used_ + 1 > (capacity() >> 1) + (capacity() >> 2) && !rehash(grown_capacity()))
            return false;
        std::size_t i = hash(key) & mask_;
        for (;; i = (i + 1) & mask_) {
            Entry& e = slots_[i];
            if (e.key == key) {
                e.value = value;
                if (inserted) *inserted = false;
                return true;
            }
            if (!e.key) break;
        }
        slots_[i] = Entry{key, value};
        filled_[used_++] = i;
        if (inserted) *inserted = true;
        return true;
    }

    /// Forget every entry. Keeps the allocation for the next pickle unless it is much
    /// larger than what this one used.
    void clear() noexcept {
        if (capacity() > kKeepCapacity && used_ * 8 < capacity()) {
            release();
            return;
        }
        for (std::size_t n = 0; n < used_; ++n) slots_[filled_[n]].key = nullptr;
        used_ = 0;
    }

    /// Visit every (key, value) entry, in insertion order unless the table was rehashed.
    template <typename F> void for_each(F&& f) const {
        for (std::size_t n = 0; n < used_; ++n) {
            const Entry& e = slots_[filled_[n]];
            f(e.key, e.value);
        }
    }

  private:
    static constexpr std::size_t kMinCapacity = 32;
    static constexpr std::size_t kKeepCapacity = 1 << 14;

    static std::size_t hash(const void* key) noexcept {
        // Objects are 16-byte aligned: drop the dead low bits, then mix the rest so that
        // neighbouring allocations spread over the table.
        auto x = reinterpret_cast<std::uintptr_t>(key) >> 4;
        x *= 0x9E3779B97F4A7C15ull;
        return static_cast<std::size_t>(x ^ (x >> 32));
    }

    std::size_t grown_capacity() const noexcept {
        return capacity() ? capacity() * (capacity() < (1u << 16) ? 4 : 2) : kMinCapacity;
    }

    void release() noexcept {
        std::free(slots_);
        std::free(filled_);
        slots_ = nullptr;
        filled_ = nullptr;
        mask_ = 0;
        used_ = 0;
    }

    bool rehash(std::size_t new_capacity) {
        // Load factor stays under 3/4, so the dense list never needs more than that.
        const std::size_t max_used = (new_capacity >> 1) + (new_capacity >> 2) + 1;
        auto* fresh = static_cast<Entry*>(std::calloc(new_capacity, sizeof(Entry)));
        auto* fresh_filled = static_cast<std::size_t*>(std::malloc(max_used * sizeof(std::size_t)));
        if (!fresh || !fresh_filled) {
            std::free(fresh);
            std::free(fresh_filled);
            return false;
        }
        const std::size_t new_mask = new_capacity - 1;
        for (std::size_t n = 0; n < used_; ++n) {
            const Entry& e = slots_[filled_[n]];
            std::size_t j = hash(e.key) & new_mask;
            while (fresh[j].key) j = (j + 1) & new_mask;
            fresh[j] = e;
            fresh_filled[n] = j;
        }
        std::free(slots_);
        std::free(filled_);
        slots_ = fresh;
        filled_ = fresh_filled;
        mask_ = new_mask;
        return true;
    }

    Entry* slots_ = nullptr;
    std::size_t* filled_ = nullptr; ///< slot index of each entry, in insertion order
    std::size_t mask_ = 0;
    std::size_t used_ = 0;
};

} // namespace picklex
