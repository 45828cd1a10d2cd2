// include/picklex/detail/decode_buffer.hpp: a growable array for the decoder's stacks.
//
// The decoder's value stack, mark stack, memo and scratch lines hold trivially copyable
// handles. std::vector would throw on allocation failure; the core reports errors as values,
// so this array returns false instead and never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

// The decode loop is one function: its per-opcode steps must inline into it, and its error
// paths must stay out of it.
#if defined(__GNUC__) || defined(__clang__)
#define PICKLEX_DECODE_INLINE [[gnu::always_inline]] inline
#define PICKLEX_DECODE_COLD [[gnu::cold, gnu::noinline]]
#else
#define PICKLEX_DECODE_INLINE inline
#define PICKLEX_DECODE_COLD
#endif

namespace picklex::detail {

template <typename T> class DecodeBuffer {
    static_assert(std::is_trivially_copyable_v<T>, "DecodeBuffer holds plain handles only");

  public:
    DecodeBuffer() noexcept = default;
    ~DecodeBuffer() { std::free(data_); }
    DecodeBuffer(DecodeBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
          capacity_(std::exchange(other.capacity_, 0)) {}
    DecodeBuffer& operator=(DecodeBuffer&& other) noexcept {
        if (this != &other) {
            std::free(data_);
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
            capacity_ = std::exchange(other.capacity_, 0);
        }
        return *this;
    }
    DecodeBuffer(const DecodeBuffer&) = delete;
    DecodeBuffer& operator=(const DecodeBuffer&) = delete;

    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return capacity_; }
    bool empty() const noexcept { return size_ == 0; }
    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T& back() noexcept { return data_[size_ - 1]; }
    const T& back() const noexcept { return data_[size_ - 1]; }

    /// Append one value; false (and nothing appended) if memory ran out.
    PICKLEX_DECODE_INLINE bool push_back(T value) noexcept {
        if (size_ == capacity_ && !grow(size_ + 1)) [[unlikely]]
            return false;
        data_[size_++] = value;
        return true;
    }
    /// Append `n` values copied from `values`.
    bool append(const T* values, std::size_t n) noexcept {
        if (n > capacity_ - size_ && !grow(size_ + n)) return false;
        if (n) std::memcpy(data_ + size_, values, n * sizeof(T));
        size_ += n;
        return true;
    }
    void pop_back() noexcept { --size_; }
    /// Forget the values from index `n` on (the caller already released them).
    void truncate(std::size_t n) noexcept { size_ = n; }
    void clear() noexcept { size_ = 0; }

    /// Make room for `n` values in total.
    bool reserve(std::size_t n) noexcept { return n <= capacity_ || grow(n); }
    /// Grow to `n` values, filling the new ones with `fill`.
    bool resize(std::size_t n, T fill) noexcept {
        if (n > capacity_ && !grow(n)) return false;
        for (std::size_t i = size_; i < n; ++i) data_[i] = fill;
        size_ = n;
        return true;
    }
    /// Give the memory back (after a very large pickle, so idle decoders stay small).
    void release_memory() noexcept {
        std::free(data_);
        data_ = nullptr;
        size_ = capacity_ = 0;
    }

  private:
    bool grow(std::size_t min_capacity) noexcept {
        constexpr std::size_t kMax = SIZE_MAX / sizeof(T);
        if (min_capacity > kMax) return false;
        std::size_t capacity = capacity_ < 8 ? 8 : capacity_;
        while (capacity < min_capacity) capacity = capacity > kMax / 2 ? kMax : capacity * 2;
        void* grown = std::realloc(data_, capacity * sizeof(T));
        if (!grown) return false;
        data_ = static_cast<T*>(grown);
        capacity_ = capacity;
        return true;
    }

    T* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

} // namespace picklex::detail
