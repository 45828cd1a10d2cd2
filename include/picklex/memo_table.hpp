// include/picklex/memo_table.hpp: the encoder's memo, keyed by object identity.
//
// Open addressing on the pointer value, linear probing, power-of-two capacity, no deletion
// (a pickle only ever adds to its memo). One probe sequence serves both "is it memoized?"
// and "memoize it", so saving a new container costs a single lookup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace picklex {

class MemoTable {
  public:
    static constexpr std::size_t kNotFound = static_cast<std::size_t>(-1);

    struct Entry {
        const void* key;   ///< object identity; nullptr marks an empty slot
        std::size_t value; ///< memo index
    };

    MemoTable() = default;
    ~MemoTable() { std::free(slots_); }
    MemoTable(const MemoTable&) = delete;
    MemoTable& operator=(const MemoTable&) = delete;

    std::size_t size() const noexcept { return used_; }
    std::size_t capacity() const noexcept { return mask_ ? mask_ + 1 : 0; }

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
        if ((used_ + 1) * 3 >= capacity() * 2 && !rehash(capacity() ? capacity() * 4 : 16))
            return false;
        for (std::size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
            Entry& e = slots_[i];
            if (e.key == key) {
                e.value = value;
                if (inserted) *inserted = false;
                return true;
            }
            if (!e.key) {
                e.key = key;
                e.value = value;
                ++used_;
                if (inserted) *inserted = true;
                return true;
            }
        }
    }

    /// Forget every entry; keep the allocation for the next pickle.
    void clear() noexcept {
        if (slots_ && used_) std::memset(slots_, 0, capacity() * sizeof(Entry));
        used_ = 0;
    }

    /// Visit every (key, value) entry in slot order.
    template <typename F> void for_each(F&& f) const {
        if (!slots_) return;
        for (std::size_t i = 0; i <= mask_; ++i)
            if (slots_[i].key) f(slots_[i].key, slots_[i].value);
    }

  private:
    static std::size_t hash(const void* key) noexcept {
        // Objects are 16-byte aligned: drop the dead low bits, then mix the rest so that
        // neighbouring allocations spread over the table.
        auto x = reinterpret_cast<std::uintptr_t>(key) >> 4;
        x *= 0x9E3779B97F4A7C15ull;
        return static_cast<std::size_t>(x ^ (x >> 29));
    }

    bool rehash(std::size_t new_capacity) {
        auto* fresh = static_cast<Entry*>(std::calloc(new_capacity, sizeof(Entry)));
        if (!fresh) return false;
        const std::size_t new_mask = new_capacity - 1;
        if (slots_) {
            for (std::size_t i = 0; i <= mask_; ++i) {
                if (!slots_[i].key) continue;
                std::size_t j = hash(slots_[i].key) & new_mask;
                while (fresh[j].key) j = (j + 1) & new_mask;
                fresh[j] = slots_[i];
            }
            std::free(slots_);
        }
        slots_ = fresh;
        mask_ = new_mask;
        return true;
    }

    Entry* slots_ = nullptr;
    std::size_t mask_ = 0;
    std::size_t used_ = 0;
};

} // namespace picklex
