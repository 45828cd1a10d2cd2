// src/python/unpickler_memory.hpp: making large fresh buffers cheap to fill.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace picklex::py {

/// Ask for transparent huge pages under [data, data + size) before it is first written.
/// A fresh 100 MiB block costs 25,600 page faults on first touch, which take longer than
/// copying the data; with 2 MiB pages it is a few dozen. Only a hint: ignored where
/// unsupported, and only the 2 MiB-aligned interior is advised.
inline void advise_huge_pages(void* data, std::size_t size) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
    const auto begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
    const auto end = (reinterpret_cast<std::uintptr_t>(data) + size) & ~(kHuge - 1);
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
    (void)data;
    (void)size;
#endif
}

} // namespace picklex::py
