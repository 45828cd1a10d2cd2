// tests/core/test_writer_framing.cpp: framing, batching and large payloads on whole pickles.
//
// ListPickler drives the Writer the way CPython's pickler does for a list (opcode boundary
// before each save, EMPTY_LIST + memo, MARK/APPENDS batches of 1000, STOP, final commit), so
// its output must equal pickle.dumps of the same list: writer_streams.txt holds the size,
// CRC-32 and frame lengths of the real pickles.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "golden.hpp"
#include "picklex/writer.hpp"

namespace picklex {
namespace {

using namespace std::string_literals;

std::string bytes_of(const Writer& w) { return std::string(w.data(), w.size()); }

/// The items of one golden stream case, built exactly as scripts/gen_core_goldens.py does.
struct StreamCase {
    std::string kind;
    int protocol = 0;
    std::size_t n = 0;
    std::vector<std::u32string> strs;
    std::vector<std::string> bytes;

    StreamCase(std::string kind_, int protocol_, std::size_t n_)
        : kind(std::move(kind_)), protocol(protocol_), n(n_) {
        if (kind == "strs") {
            for (std::size_t i = 0; i < n; ++i) {
                std::size_t size;
                switch (i % 500) {
                case 7: size = 70000; break;
                case 300: size = 65536; break;
                case 301: size = 65535; break;
                case 5: size = 255; break;
                case 6: size = 256; break;
                default: size = 2 + i % 40;
                }
                std::u32string stem;
                for (char c : std::to_string(i) + ":") stem.push_back(static_cast<char32_t>(c));
                stem.push_back(i % 3 == 0 ? U'\u00e9' : U's');
                std::u32string text;
                while (text.size() < size) text += stem;
                strs.push_back(text.substr(0, size));
            }
        } else if (kind == "bytes") {
            static constexpr std::size_t kSizes[] = {3, 10, 65535, 65536, 70000, 255, 256, 2};
            for (std::size_t i = 0; i < n; ++i)
                bytes.push_back(std::string(kSizes[i % 8], static_cast<char>(i % 256)));
        }
    }

    /// Save item i as the pickler's save() would: boundary, the atom, then its memo PUT.
    bool save_item(Writer& w, std::size_t i, std::size_t& memo) const {
        if (!w.opcode_boundary()) return false;
        if (kind == "ints") return w.save_int(static_cast<std::int64_t>(i));
        if (kind == "strs") {
            const std::u32string& text = strs[i];
            bool ok;
            if (w.protocol() == 0) {
                const test::Units units = test::to_units(text);
                ok = w.save_unicode_text(units.kind, units.data(), text.size());
            } else {
                const std::string utf8 = test::encode_utf8(text);
                ok = w.save_unicode_utf8(utf8.data(), utf8.size(), &strs[i]);
            }
            return ok && w.save_memo_put(memo++);
        }
        return w.save_bytes(bytes[i].data(), bytes[i].size(), &bytes[i]) &&
               w.save_memo_put(memo++);
    }

    /// pickle.dumps(the list, protocol); with a sink, the final flush hands over the rest.
    bool dump(Writer& w) const {
        std::size_t memo = 0;
        if (!w.begin(protocol)) return false;
        if (protocol >= 2) {
            if (!w.write_op_u8(Op::PROTO, static_cast<std::uint8_t>(protocol))) return false;
            if (protocol >= 4) w.enable_framing(true);
        }
        if (!w.opcode_boundary()) return false;
        if (w.bin() ? !w.write_op(Op::EMPTY_LIST) : !(w.write_op(Op::MARK) && w.write_op(Op::LIST)))
            return false;
        if (!w.save_memo_put(memo++)) return false;
        if (protocol == 0) {
            for (std::size_t i = 0; i < n; ++i)
                if (!save_item(w, i, memo) || !w.write_op(Op::APPEND)) return false;
        } else if (n == 1) {
            if (!save_item(w, 0, memo) || !w.write_op(Op::APPEND)) return false;
        } else if (n > 1) {
            std::size_t i = 0;
            do {
                if (!w.write_op(Op::MARK)) return false;
                for (std::size_t batch = 0; batch < wire::kBatchSize && i < n; ++batch, ++i)
                    if (!save_item(w, i, memo)) return false;
                if (!w.write_op(Op::APPENDS)) return false;
            } while (i < n);
        }
        if (!w.write_op(Op::STOP)) return false;
        w.commit_frame();
        return w.flush();
    }
};

struct GoldenStream {
    StreamCase spec;
    std::size_t size;
    std::uint32_t crc;
    std::string frames;
};

std::vector<GoldenStream> golden_streams() {
    std::vector<GoldenStream> out;
    for (const auto& f : test::read_golden("writer_streams.txt"))
        out.push_back({StreamCase(f.at(0), std::stoi(f.at(1)), std::stoul(f.at(2))),
                       std::stoul(f.at(3)), static_cast<std::uint32_t>(std::stoul(f.at(4), nullptr, 16)),
                       f.at(5)});
    return out;
}

TEST(WriterFraming, WholePicklesMatchPickleGolden) {
    const auto cases = golden_streams();
    ASSERT_GT(cases.size(), 50u);
    for (const GoldenStream& g : cases) {
        SCOPED_TRACE(g.spec.kind + " protocol " + std::to_string(g.spec.protocol) + " n " +
                     std::to_string(g.spec.n) + " (pickle's frames: " + g.frames + ")");
        Writer w;
        ASSERT_TRUE(g.spec.dump(w)) << w.error().message();
        EXPECT_EQ(w.size(), g.size);
        EXPECT_EQ(test::crc32(bytes_of(w)), g.crc);
    }
}

/// Collects what the Writer hands over, remembering which writes were payloads.
class StringSink : public Sink {
  public:
    bool write(const char* data, std::size_t size, const void* owner) override {
        out.append(data, size);
        writes.push_back({size, owner});
        return !fail_next;
    }
    struct Write {
        std::size_t size;
        const void* owner;
    };
    std::string out;
    std::vector<Write> writes;
    bool fail_next = false;
};

TEST(WriterFraming, SinkReceivesTheSameBytesInBoundedPieces) {
    for (const GoldenStream& g : golden_streams()) {
        SCOPED_TRACE(g.spec.kind + " protocol " + std::to_string(g.spec.protocol) + " n " +
                     std::to_string(g.spec.n));
        StringSink sink;
        Writer w;
        w.set_sink(&sink);
        ASSERT_TRUE(g.spec.dump(w)) << w.error().message();
        EXPECT_EQ(w.size(), 0u) << "everything was flushed to the sink";
        EXPECT_EQ(sink.out.size(), g.size);
        EXPECT_EQ(test::crc32(sink.out), g.crc);
        if (g.spec.protocol < 4) continue; // no framing: unframed pickles go out in one piece
        for (const auto& write : sink.writes) {
            if (write.owner) {
                // Payloads pass through untouched, from the object that owns them.
                EXPECT_GE(write.size, wire::kFrameSizeTarget);
            } else {
                // The Writer's own buffer never holds much more than one frame.
                EXPECT_LE(write.size, 2 * wire::kFrameSizeTarget);
            }
        }
    }
}

TEST(WriterFraming, SinkFailureIsReported) {
    StringSink sink;
    sink.fail_next = true;
    Writer w;
    w.set_sink(&sink);
    ASSERT_TRUE(w.begin(4));
    ASSERT_TRUE(w.save_int(1));
    EXPECT_FALSE(w.flush());
    EXPECT_EQ(w.error().code, Errc::external);
}

std::string framed_pickle(int protocol, std::size_t payload_ints) {
    Writer w;
    EXPECT_TRUE(w.begin(protocol));
    EXPECT_TRUE(w.write_op_u8(Op::PROTO, static_cast<std::uint8_t>(protocol)));
    w.enable_framing(true);
    for (std::size_t i = 0; i < payload_ints; ++i) {
        EXPECT_TRUE(w.opcode_boundary());
        EXPECT_TRUE(w.save_int(1));
    }
    EXPECT_TRUE(w.write_op(Op::STOP));
    w.commit_frame();
    return bytes_of(w);
}

TEST(WriterFraming, FramesBelowFourBytesAreUnframed) {
    EXPECT_EQ(framed_pickle(4, 0), "\x80\x04."s);            // 1-byte frame dropped
    EXPECT_EQ(framed_pickle(4, 1), "\x80\x04K\x01."s);       // 3-byte frame dropped
    EXPECT_EQ(framed_pickle(5, 2), "\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01K\x01."s);
}

TEST(WriterFraming, FrameIsCommittedOnceItReachesTheTarget) {
    // 2-byte BININT1s: the frame closes at the first boundary at or past 64 KiB.
    const std::size_t per_frame = wire::kFrameSizeTarget / 2;
    const std::string out = framed_pickle(4, per_frame + 1);
    ASSERT_EQ(out.substr(0, 3), "\x80\x04\x95"s);
    std::uint64_t first = 0;
    for (int i = 0; i < 8; ++i) first |= std::uint64_t(static_cast<unsigned char>(out[3 + i])) << 8 * i;
    EXPECT_EQ(first, wire::kFrameSizeTarget);
    const std::size_t second_at = 2 + 9 + first;
    // The last int and STOP make 3 bytes: too small for a frame of their own.
    EXPECT_EQ(out.substr(second_at), "K\x01."s);
}

TEST(WriterFraming, LargePayloadsGoOutsideFrames) {
    const std::string big(wire::kFrameSizeTarget, 'x');
    Writer w;
    ASSERT_TRUE(w.begin(4));
    ASSERT_TRUE(w.write_op_u8(Op::PROTO, 4));
    w.enable_framing(true);
    ASSERT_TRUE(w.opcode_boundary());
    ASSERT_TRUE(w.save_bytes(big.data(), big.size()));
    ASSERT_TRUE(w.save_memo_put(0));
    ASSERT_TRUE(w.write_op(Op::STOP));
    w.commit_frame();
    EXPECT_EQ(bytes_of(w), "\x80\x04" "B\x00\x00\x01\x00"s + big + "\x94.");
    // One byte less stays inside the frame.
    const std::string small(wire::kFrameSizeTarget - 1, 'y');
    ASSERT_TRUE(w.begin(4));
    w.enable_framing(true);
    ASSERT_TRUE(w.save_unicode_utf8(small.data(), small.size()));
    w.commit_frame();
    EXPECT_EQ(bytes_of(w).substr(0, 14), "\x95\x04\x00\x01\x00\x00\x00\x00\x00X\xff\xff\x00\x00"s);
}

TEST(WriterFraming, NoFramesBeforeProtocolFour) {
    for (int protocol = 0; protocol < 4; ++protocol) {
        Writer w;
        ASSERT_TRUE(w.begin(protocol));
        EXPECT_FALSE(w.framing());
        ASSERT_TRUE(w.save_int(1));
        ASSERT_TRUE(w.opcode_boundary());
        w.commit_frame();
        EXPECT_EQ(w.size(), protocol == 0 ? 3u : 2u);
    }
}

// ---- buffer management ----

struct CountingStorage {
    int resizes = 0;
    std::size_t fail_above = static_cast<std::size_t>(-1);
    static char* resize(void* ctx, char* data, std::size_t, std::size_t capacity) {
        auto* self = static_cast<CountingStorage*>(ctx);
        if (capacity == 0) {
            std::free(data);
            return nullptr;
        }
        if (capacity > self->fail_above) return nullptr;
        ++self->resizes;
        return static_cast<char*>(std::realloc(data, capacity));
    }
    OutputStorage storage() { return {this, &CountingStorage::resize}; }
};

TEST(WriterBuffer, GrowsThroughTheStorageAndKeepsContent) {
    CountingStorage storage;
    Writer w(storage.storage());
    ASSERT_TRUE(w.begin(3, 16));
    std::size_t expected_size = 0;
    for (int i = 0; i < 100000; ++i) {
        ASSERT_TRUE(w.save_int(i));
        expected_size += i < 256 ? 2 : i < 65536 ? 3 : 5;
    }
    EXPECT_EQ(w.size(), expected_size);
    // Geometric growth: a few dozen resizes at most for ~400 KB.
    EXPECT_LT(storage.resizes, 40);
    std::size_t size = 0;
    char* block = w.release(&size);
    ASSERT_NE(block, nullptr);
    EXPECT_EQ(size, expected_size);
    EXPECT_EQ(block[0], 'K');
    std::free(block);
    EXPECT_EQ(w.size(), 0u);
    ASSERT_TRUE(w.begin(3));
    ASSERT_TRUE(w.save_none());
    EXPECT_EQ(bytes_of(w), "N");
}

TEST(WriterBuffer, AllocationFailureBecomesAnError) {
    CountingStorage storage;
    storage.fail_above = 1024;
    Writer w(storage.storage());
    ASSERT_TRUE(w.begin(3, 64));
    const std::string big(4096, 'z');
    EXPECT_FALSE(w.save_bytes(big.data(), big.size()));
    EXPECT_EQ(w.error().code, Errc::out_of_memory);
    Writer w2(storage.storage());
    EXPECT_FALSE(w2.begin(3, 1 << 20));
    EXPECT_EQ(w2.error().code, Errc::out_of_memory);
}

} // namespace
} // namespace picklex
