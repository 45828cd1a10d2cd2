// fuzz/fuzz_reader.cpp: the decoder (Reader + StackMachine) on arbitrary bytes. It must never
// crash, leak a reference or read out of bounds; in-memory and chunked streaming input must
// agree (up to how running out of input is named); and an Ops failure injected at any call
// must unwind without leaks.
#include "symbolic_ops.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace picklex::fuzz;
    picklex::MemorySource memory(data, size);
    const Outcome whole = decode(memory, 0);
    ChunkedSource chunked(data, size, size ? 1 + data[size - 1] % 16 : 1);
    const Outcome streamed = decode(chunked, 0);
    // Running out of input may be "truncated" in memory but "empty_input" on a stream, as
    // in CPython (an empty payload at the very end); every other outcome must match.
    const bool ran_out = (whole.code == picklex::Errc::truncated ||
                          whole.code == picklex::Errc::empty_input) &&
                         (streamed.code == picklex::Errc::truncated ||
                          streamed.code == picklex::Errc::empty_input);
    if (whole.ok != streamed.ok || (whole.code != streamed.code && !ran_out) ||
        whole.digest != streamed.digest)
        std::abort();
    picklex::MemorySource again(data, size);
    decode(again, size ? 1 + data[0] % 64 : 1); // leaks are checked inside
    return 0;
}
