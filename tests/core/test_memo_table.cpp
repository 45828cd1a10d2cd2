// tests/core/test_memo_table.cpp: the encoder's identity-keyed memo.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

#include "picklex/memo_table.hpp"

namespace picklex {
namespace {

// Real, distinct addresses, spaced as heap objects are.
std::vector<std::unique_ptr<std::max_align_t[]>> objects(std::size_t n) {
    std::vector<std::unique_ptr<std::max_align_t[]>> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.push_back(std::make_unique<std::max_align_t[]>(2));
    return out;
}

TEST(MemoTable, EmptyTableFindsNothing) {
    MemoTable memo;
    int x = 0;
    EXPECT_EQ(memo.size(), 0u);
    EXPECT_EQ(memo.capacity(), 0u);
    EXPECT_EQ(memo.find(&x), MemoTable::kNotFound);
    memo.clear(); // on an unallocated table
    std::size_t visited = 0;
    memo.for_each([&](const void*, std::size_t) { ++visited; });
    EXPECT_EQ(visited, 0u);
}

TEST(MemoTable, InsertFindAndOverwrite) {
    MemoTable memo;
    int a = 0, b = 0;
    bool inserted = false;
    ASSERT_TRUE(memo.set(&a, 0, &inserted));
    EXPECT_TRUE(inserted);
    ASSERT_TRUE(memo.set(&b, 1, &inserted));
    EXPECT_TRUE(inserted);
    EXPECT_EQ(memo.find(&a), 0u);
    EXPECT_EQ(memo.find(&b), 1u);
    ASSERT_TRUE(memo.set(&a, 7, &inserted));
    EXPECT_FALSE(inserted);
    EXPECT_EQ(memo.find(&a), 7u);
    EXPECT_EQ(memo.size(), 2u);
    ASSERT_TRUE(memo.set(&b, 9)); // `inserted` is optional
    EXPECT_EQ(memo.find(&b), 9u);
}

TEST(MemoTable, GrowsAndKeepsEveryEntry) {
    const auto objs = objects(200000);
    MemoTable memo;
    std::size_t last_capacity = 0;
    int growths = 0;
    for (std::size_t i = 0; i < objs.size(); ++i) {
        ASSERT_TRUE(memo.set(objs[i].get(), i));
        if (memo.capacity() != last_capacity) {
            ++growths;
            last_capacity = memo.capacity();
            ASSERT_EQ(last_capacity & (last_capacity - 1), 0u) << "capacity is a power of two";
        }
        // An empty slot always remains, so a probe for an absent key terminates; and the
        // table never runs fuller than 3/4, so probes stay short.
        ASSERT_LE(memo.size() * 4, memo.capacity() * 3);
    }
    EXPECT_EQ(memo.size(), objs.size());
    EXPECT_LT(growths, 12);
    for (std::size_t i = 0; i < objs.size(); ++i) ASSERT_EQ(memo.find(objs[i].get()), i);
    // Addresses never inserted are absent (stack and interior pointers).
    int local = 0;
    EXPECT_EQ(memo.find(&local), MemoTable::kNotFound);
    EXPECT_EQ(memo.find(reinterpret_cast<const char*>(objs[0].get()) + 1), MemoTable::kNotFound);
}

TEST(MemoTable, AlignedNeighboursDoNotCollideIntoWrongAnswers) {
    // Keys 16 bytes apart (the low bits the hash discards) and keys 8 bytes apart.
    std::vector<std::max_align_t> block(4096);
    MemoTable memo;
    const char* base = reinterpret_cast<const char*>(block.data());
    for (std::size_t i = 0; i < 4096; ++i) ASSERT_TRUE(memo.set(base + 8 * i, i));
    for (std::size_t i = 0; i < 4096; ++i) ASSERT_EQ(memo.find(base + 8 * i), i);
}

TEST(MemoTable, ClearForgetsEntriesAndKeepsASmallAllocation) {
    const auto objs = objects(1000);
    MemoTable memo;
    for (std::size_t i = 0; i < objs.size(); ++i) ASSERT_TRUE(memo.set(objs[i].get(), i));
    const std::size_t capacity = memo.capacity();
    memo.clear();
    EXPECT_EQ(memo.size(), 0u);
    EXPECT_EQ(memo.capacity(), capacity);
    for (const auto& o : objs) EXPECT_EQ(memo.find(o.get()), MemoTable::kNotFound);
    // Reusable after clear, with fresh indices.
    for (std::size_t i = 0; i < objs.size(); ++i) ASSERT_TRUE(memo.set(objs[i].get(), i + 5));
    for (std::size_t i = 0; i < objs.size(); ++i) EXPECT_EQ(memo.find(objs[i].get()), i + 5);
}

TEST(MemoTable, ForEachVisitsEveryEntryOnce) {
    const auto objs = objects(5000);
    MemoTable memo;
    for (std::size_t i = 0; i < objs.size(); ++i) ASSERT_TRUE(memo.set(objs[i].get(), i));
    std::unordered_map<const void*, std::size_t> seen;
    memo.for_each([&](const void* key, std::size_t value) { EXPECT_TRUE(seen.emplace(key, value).second); });
    ASSERT_EQ(seen.size(), objs.size());
    for (std::size_t i = 0; i < objs.size(); ++i) EXPECT_EQ(seen.at(objs[i].get()), i);
}

TEST(MemoTable, AgreesWithAReferenceMapUnderRandomOperations) {
    const auto objs = objects(3000);
    std::mt19937 rng(7);
    MemoTable memo;
    std::unordered_map<const void*, std::size_t> reference;
    for (int step = 0; step < 100000; ++step) {
        const void* key = objs[rng() % objs.size()].get();
        if (rng() % 3) {
            const std::size_t value = rng();
            bool inserted = false;
            ASSERT_TRUE(memo.set(key, value, &inserted));
            EXPECT_EQ(inserted, reference.find(key) == reference.end());
            reference[key] = value;
        } else {
            auto it = reference.find(key);
            ASSERT_EQ(memo.find(key), it == reference.end() ? MemoTable::kNotFound : it->second);
        }
        if (step % 25000 == 24999) {
            memo.clear();
            reference.clear();
        }
    }
    EXPECT_EQ(memo.size(), reference.size());
}

} // namespace
} // namespace picklex
