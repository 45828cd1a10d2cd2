// src/python/stack_guard.hpp: stop before the C stack runs out.
//
// Python's recursion limit bounds the depth of save() calls, but a program may raise that
// limit far beyond what the C stack of its thread can hold (sys.setrecursionlimit(10**6)),
// and then a deeply nested object would crash the process. The pickler also checks the real
// stack: below a safety margin above the thread's stack end it raises RecursionError.
#pragma once

#include "python.hpp"

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace picklex::py {

class StackGuard {
  public:
    /// The lowest stack address this thread may reach before save() refuses to recurse.
    /// Looked up once per dump: thread-local storage in a shared library costs a call.
    static std::uintptr_t floor() {
        char probe;
        thread_local std::uintptr_t floor = compute_floor(reinterpret_cast<std::uintptr_t>(&probe));
        return floor;
    }

    /// True (with RecursionError set) when the stack has reached `floor`.
    static bool exhausted(std::uintptr_t floor) {
        char probe;
        if (reinterpret_cast<std::uintptr_t>(&probe) > floor) return false;
        PyErr_SetString(PyExc_RecursionError,
                        "maximum recursion depth exceeded while pickling an object "
                        "(the thread's C stack is nearly full)");
        return true;
    }

  private:
    // Room kept free for the C-API calls a single save() makes (reductions, hooks).
    static constexpr std::size_t kMargin = 256 * 1024;

    static std::uintptr_t compute_floor(std::uintptr_t here) {
#if defined(__linux__)
        pthread_attr_t attr;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            void* base = nullptr;
            std::size_t size = 0;
            const int status = pthread_attr_getstack(&attr, &base, &size);
            pthread_attr_destroy(&attr);
            const auto low = reinterpret_cast<std::uintptr_t>(base);
            if (status == 0 && here > low && here - low <= size) {
                // A large stack keeps 1/8 of itself free; a small one a quarter.
                const std::size_t margin =
                    size / 8 > kMargin ? size / 8 : (size / 4 < kMargin ? size / 4 : kMargin);
                return low + margin;
            }
        }
#endif
        // Unknown layout: assume the smallest stack any supported platform gives a thread.
        constexpr std::size_t kAssumedStack = 512 * 1024;
        return here > kAssumedStack ? here - kAssumedStack + kMargin : 0;
    }
};

} // namespace picklex::py
