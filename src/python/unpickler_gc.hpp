// src/python/unpickler_gc.hpp: the collector pause around a load.
#pragma once

#include "python.hpp"

namespace picklex::py {

/// Pauses the cyclic garbage collector while the decoder builds plain objects.
///
/// Loading a large pickle allocates container after container, and each few hundred
/// allocations trigger a collection that walks the young objects (and, as they pile up, all of
/// them) only to find that the stack and memo keep everything alive. Nothing the decoder
/// builds can become garbage before the load ends, so the collector stays off while it builds,
/// and is back on whenever user code runs (find_class, REDUCE, __setstate__, ...), so that code
/// sees the collector as it left it. The pause is only taken if the collector was enabled.
class GcPause {
  public:
    void begin() noexcept { owned_ = PyGC_Disable() != 0; }
    void end() noexcept {
        if (owned_) {
            owned_ = false;
            PyGC_Enable();
        }
    }

    /// The collector as the user left it, for the duration of a call into user code.
    class Resume {
      public:
        explicit Resume(GcPause& pause) noexcept : pause_(pause), active_(pause.owned_) {
            if (active_) PyGC_Enable();
        }
        ~Resume() {
            if (!active_) return;
            // If the user code disabled the collector itself, that is now its choice to keep.
            if (PyGC_IsEnabled()) PyGC_Disable();
            else pause_.owned_ = false;
        }
        Resume(const Resume&) = delete;
        Resume& operator=(const Resume&) = delete;

      private:
        GcPause& pause_;
        bool active_;
    };

  private:
    bool owned_ = false;
};

} // namespace picklex::py
