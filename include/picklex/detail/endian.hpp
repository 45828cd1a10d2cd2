// include/picklex/detail/endian.hpp: fixed-width little/big-endian loads and stores.
//
// The wire format is little-endian except BINFLOAT; these compile to single moves on
// little-endian machines and stay correct elsewhere.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace picklex::detail {

template <typename T> inline T load_raw(const void* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T> inline T to_little(T v) noexcept {
    if constexpr (std::endian::native == std::endian::little) return v;
    else return __builtin_bswap64(v) >> (64 - 8 * sizeof(T));
}

inline std::uint16_t load_le16(const void* p) noexcept {
    const auto* b = static_cast<const unsigned char*>(p);
    return static_cast<std::uint16_t>(b[0] | (b[1] << 8));
}
inline std::uint32_t load_le32(const void* p) noexcept {
    return to_little(load_raw<std::uint32_t>(p));
}
inline std::uint64_t load_le64(const void* p) noexcept {
    return to_little(load_raw<std::uint64_t>(p));
}
inline std::uint64_t load_be64(const void* p) noexcept {
    const std::uint64_t v = load_raw<std::uint64_t>(p);
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap64(v);
    else return v;
}

inline void store_le32(void* p, std::uint32_t v) noexcept {
    v = to_little(v);
    std::memcpy(p, &v, sizeof v);
}
inline void store_le64(void* p, std::uint64_t v) noexcept {
    v = to_little(v);
    std::memcpy(p, &v, sizeof v);
}
inline void store_be64(void* p, std::uint64_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap64(v);
    std::memcpy(p, &v, sizeof v);
}

} // namespace picklex::detail
