// fuzz/fuzz_writer.cpp: arbitrary sequences of Writer calls, with and without a sink, never
// crash, and streaming through a sink yields the same bytes as writing to memory.
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "picklex/writer.hpp"

namespace {

struct StringSink : picklex::Sink {
    std::string out;
    bool write(const char* data, std::size_t size, const void*) override {
        out.append(data, size);
        return true;
    }
};

/// Interpret the input as Writer calls: one command byte, then its operands.
void run(picklex::Writer& w, const std::uint8_t* data, std::size_t size) {
    if (size == 0) return;
    const int protocol = data[0] % 6;
    w.begin(protocol, 16);
    if (protocol >= 4) w.enable_framing(true);
    std::size_t i = 1;
    auto take = [&](std::size_t n) -> std::uint64_t {
        std::uint64_t v = 0;
        for (std::size_t k = 0; k < n && i < size; ++k, ++i) v |= std::uint64_t(data[i]) << 8 * k;
        return v;
    };
    const std::string payload(70000, 'p');
    while (i < size && !w.error()) {
        w.opcode_boundary();
        switch (data[i++] % 12) {
        case 0: w.save_int(static_cast<std::int64_t>(take(8))); break;
        case 1: w.save_float(std::bit_cast<double>(take(8))); break;
        case 2: w.save_unicode_utf8(payload.data(), take(3) % payload.size()); break;
        case 3: if (protocol >= 3) w.save_bytes(payload.data(), take(3) % payload.size()); break;
        case 4: w.save_bytearray(payload.data(), take(3) % payload.size()); break;
        case 5: w.save_memo_put(take(4)); break;
        case 6: w.save_memo_get(take(4)); break;
        case 7: w.save_ext(static_cast<std::uint32_t>(take(4) & 0x7fffffff) | 1); break;
        case 8: {
            const std::uint32_t units[] = {0x41, 0x5c, 0x0a, 0xe9, 0x20ac, 0x1f600, 0xd800};
            const std::size_t n = take(1) % 8;
            w.save_unicode_text(4, units, n < 7 ? n : 7);
            break;
        }
        case 9: w.save_bool(take(1) & 1); break;
        case 10: w.flush(); break;
        default: w.save_long_text(std::to_string(take(8)));
        }
    }
    w.write_op(picklex::Op::STOP);
    w.flush();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    picklex::Writer memory;
    run(memory, data, size);
    StringSink sink;
    picklex::Writer streaming;
    streaming.set_sink(&sink);
    run(streaming, data, size);
    if (memory.error() || streaming.error()) return 0; // e.g. an oversized memo id
    if (std::string(memory.data(), memory.size()) != sink.out) std::abort();
    return 0;
}
