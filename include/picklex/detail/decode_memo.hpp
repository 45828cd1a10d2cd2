// include/picklex/detail/decode_memo.hpp: the unpickler's memo, index -> object.
//
// Picklers number memo entries 0, 1, 2, ... so a flat array indexed by the memo key is the
// fast layout (no hashing on BINGET). A hostile pickle can name any key up to 2**63 in a PUT,
// though, and a flat array sized by the key would let 6 bytes of input allocate exabytes. So
// the array only grows in proportion to the number of entries actually stored; keys beyond
// that live in a hash map. Memory stays O(entries) whatever the keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <unordered_map>

#include "picklex/detail/decode_buffer.hpp"

namespace picklex::detail {

template <typename Object> class DecodeMemo {
  public:
    /// Keys below this always go to the flat array, whatever the number of entries.
    static constexpr std::uint64_t kDenseFloor = 4096;

    DecodeMemo() noexcept = default;
    DecodeMemo(DecodeMemo&&) noexcept = default;
    DecodeMemo& operator=(DecodeMemo&&) noexcept = default;

    /// Number of stored entries; MEMOIZE stores at this index.
    std::size_t size() const noexcept { return count_; }

    /// The object stored at `index`, or Object{} when there is none.
    PICKLEX_DECODE_INLINE Object get(std::uint64_t index) const noexcept {
        if (index < dense_.size()) return dense_[index];
        if (!sparse_) return Object{};
        auto it = sparse_->find(index);
        return it == sparse_->end() ? Object{} : it->second;
    }

    /// Store `value` (a reference the memo now owns) at `index`. `displaced` receives the
    /// object previously stored there, or Object{}; the caller releases it. Returns false if
    /// memory ran out; then nothing was stored and the caller still owns `value`.
    PICKLEX_DECODE_INLINE bool put(std::uint64_t index, Object value, Object& displaced) noexcept {
        if (index >= dense_.size()) {
            if (index < kDenseFloor || index <= 2 * static_cast<std::uint64_t>(count_) +
                                                     kDenseFloor) {
                if (!grow_dense(static_cast<std::size_t>(index) + 1)) return false;
            } else {
                return put_sparse(index, value, displaced);
            }
        }
        displaced = dense_[index];
        dense_[index] = value;
        if (!displaced) ++count_;
        if (index >= dense_used_) dense_used_ = static_cast<std::size_t>(index) + 1;
        return true;
    }

    /// Call f(index, object) for every entry: flat keys in order, then the sparse ones.
    template <typename F> void for_each(F&& f) const {
        for (std::size_t i = 0; i < dense_used_; ++i)
            if (dense_[i]) f(static_cast<std::uint64_t>(i), dense_[i]);
        if (sparse_)
            for (const auto& [index, value] : *sparse_) f(index, value);
    }

    /// Release every entry through `release` and empty the memo. The flat array keeps its
    /// capacity up to `keep_capacity` slots, so a reused decoder does not reallocate.
    template <typename Release>
    void clear(Release&& release, std::size_t keep_capacity = SIZE_MAX) noexcept {
        // Detach first: releasing may run arbitrary code that looks at this memo.
        for (std::size_t i = 0; i < dense_used_; ++i) {
            Object value = dense_[i];
            dense_[i] = Object{};
            if (value) release(value);
        }
        dense_used_ = 0;
        if (sparse_) {
            auto sparse = std::move(sparse_);
            for (auto& entry : *sparse) release(entry.second);
        }
        count_ = 0;
        if (dense_.capacity() > keep_capacity) dense_.release_memory();
    }

    /// Slots allocated in the flat array (for __sizeof__).
    std::size_t dense_capacity() const noexcept { return dense_.capacity(); }

  private:
    bool grow_dense(std::size_t min_size) noexcept {
        std::size_t size = dense_.size() < 32 ? 32 : dense_.size() * 2;
        if (size < min_size) size = min_size;
        if (!dense_.resize(size, Object{})) return false;
        if (sparse_) {
            // Keys now covered by the flat array move there, so each key has one home.
            for (auto it = sparse_->begin(); it != sparse_->end();) {
                if (it->first < size) {
                    dense_[it->first] = it->second;
                    if (it->first >= dense_used_) dense_used_ = it->first + 1;
                    it = sparse_->erase(it);
                } else {
                    ++it;
                }
            }
        }
        return true;
    }

    bool put_sparse(std::uint64_t index, Object value, Object& displaced) noexcept {
        try {
            if (!sparse_) sparse_ = std::make_unique<std::unordered_map<std::uint64_t, Object>>();
            auto [it, inserted] = sparse_->try_emplace(index, value);
            if (inserted) {
                displaced = Object{};
                ++count_;
            } else {
                displaced = it->second;
                it->second = value;
            }
            return true;
        } catch (const std::bad_alloc&) {
            return false;
        }
    }

    DecodeBuffer<Object> dense_;
    std::size_t dense_used_ = 0; // one past the highest flat key ever stored since clear()
    std::unique_ptr<std::unordered_map<std::uint64_t, Object>> sparse_;
    std::size_t count_ = 0;
};

} // namespace picklex::detail
