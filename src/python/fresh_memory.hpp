// src/python/fresh_memory.hpp: making large fresh buffers cheap to fill (unpickler and
// pickler alike).
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

/// Ask for transparent huge pages on every page that [data, data + size) touches, for a
/// block that will be resized afterwards. When the block is a mapping of its own (glibc maps
/// every block of 32 MiB or more), that is the whole mapping: advising only the 2 MiB-aligned
/// interior would split it into three, and mremap, which realloc uses to grow or move a
/// mapping without copying, fails on a range that spans several.
inline void advise_huge_pages_whole(void* data, std::size_t size) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    constexpr std::uintptr_t kPage = 4096;
    const auto begin = reinterpret_cast<std::uintptr_t>(data) & ~(kPage - 1);
    const auto end = (reinterpret_cast<std::uintptr_t>(data) + size + kPage - 1) & ~(kPage - 1);
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
    (void)data;
    (void)size;
#endif
}

} // namespace picklex::py
