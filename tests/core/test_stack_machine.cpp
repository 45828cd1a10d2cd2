// tests/core/test_stack_machine.cpp: StackMachine + Reader on hand-written pickles, with a
// symbolic Ops whose values are reference-counted nodes rendered as text. Every test also
// checks that the machine released exactly the references it took (no node leaks), on
// success and on every failure path.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "picklex/reader.hpp"
#include "picklex/stack_machine.hpp"

namespace {

using picklex::Errc;
using picklex::Error;
using picklex::Op;

struct Sym {
    int id = -1;
    explicit operator bool() const noexcept { return id >= 0; }
};

struct Node {
    std::string kind; // "atom", "tuple", "list", "dict", "set", "frozenset", "call", ...
    std::string text; // atom text, or the callee of a call
    std::vector<int> items;
    int refs = 1;
};

/// The symbolic heap: nodes never go away, so a test can check every reference count.
struct Heap {
    std::vector<Node> nodes;
    /// Nodes still referenced from outside the heap. Like Python's cycle detector, references
    /// from one live node to another are discounted, so garbage cycles (which a hostile pickle
    /// can build, e.g. a list appended to itself) do not count as leaks; a reference the
    /// machine forgot to release does.
    int live() const {
        std::vector<int> external(nodes.size());
        for (std::size_t i = 0; i < nodes.size(); ++i) external[i] = nodes[i].refs;
        for (const Node& node : nodes)
            if (node.refs > 0)
                for (int child : node.items) --external[child];
        int n = 0;
        for (int refs : external) n += refs > 0;
        return n;
    }
};

class SymOps {
  public:
    using Object = Sym;
    explicit SymOps(Heap* heap) : heap_(heap) {}

    std::string fail_kind; // make this kind of call fail (to test cleanup paths)
    int protocol = 0;

    void release(Sym s) {
        Node& node = heap_->nodes[s.id];
        if (--node.refs == 0) {
            std::vector<int> items = std::move(node.items);
            for (int child : items) release(Sym{child});
        }
    }
    Sym retain(Sym s) {
        ++heap_->nodes[s.id].refs;
        return s;
    }
    void describe_failure(Error& e) {
        e.code = Errc::bad_type;
        e.detail = failure_;
    }
    bool set_protocol(int p) {
        protocol = p;
        return true;
    }

    Sym make_none() { return atom("None"); }
    Sym make_bool(bool v) { return atom(v ? "True" : "False"); }
    Sym make_int(std::int64_t v) { return atom(std::to_string(v)); }
    Sym make_int_text(const char* text, Op op) {
        return atom((op == Op::INT ? "int:" : "long:") + trim(text));
    }
    Sym make_long_bytes(const char*, std::size_t n) { return atom("long" + std::to_string(n)); }
    Sym make_float(double v) { return atom(std::to_string(v)); }
    Sym make_float_text(const char* text) { return atom("float:" + trim(text)); }
    Sym make_str_utf8(const char* p, std::size_t n) {
        return atom(quoted("", p, n));
    }
    Sym make_str_raw_unicode_escape(const char* p, std::size_t n) {
        return atom(quoted("u", p, n));
    }
    Sym make_py2_str(const char* p, std::size_t n) { return atom(quoted("s", p, n)); }
    Sym make_py2_str_escaped(const char* p, std::size_t n) {
        return atom(quoted("e", p, n));
    }
    Sym make_bytes(const char* p, std::size_t n) { return atom(quoted("b", p, n)); }
    Sym make_bytearray(const char* p, std::size_t n) {
        return atom("bytearray(" + quoted("b", p, n) + ")");
    }
    Sym next_buffer() {
        if (fails("buffer")) return {};
        return atom("buffer" + std::to_string(buffers_++));
    }
    bool make_readonly(Sym& top) {
        if (fails("readonly")) return false;
        Sym view = make_node("readonly", "", {top.id});
        top = view; // the node took over the stack's reference
        return true;
    }
    Sym make_tuple(Sym* items, std::size_t n) { return container("tuple", items, n); }
    Sym make_list(Sym* items, std::size_t n) { return container("list", items, n); }
    Sym make_frozenset(Sym* items, std::size_t n) { return container("frozenset", items, n); }
    Sym make_dict(Sym* items, std::size_t n) {
        if (fails("dict")) return {};
        std::vector<int> ids;
        for (std::size_t i = 0; i < n; ++i) ids.push_back(retain(items[i]).id);
        return make_node("dict", "", ids);
    }
    Sym make_empty_list() { return container("list", nullptr, 0); }
    Sym make_empty_dict() { return container("dict", nullptr, 0); }
    Sym make_empty_set() { return container("set", nullptr, 0); }
    bool list_extend(Sym list, Sym* items, std::size_t n) { return add_items(list, items, n); }
    bool set_additems(Sym set, Sym* items, std::size_t n) { return add_items(set, items, n); }
    bool dict_setitems(Sym dict, Sym* items, std::size_t n) {
        if (fails("setitems")) return false;
        for (std::size_t i = 0; i < n; ++i)
            heap_->nodes[dict.id].items.push_back(retain(items[i]).id);
        return true;
    }
    Sym find_global(std::string_view module, std::string_view name, Op) {
        if (fails("global")) return {};
        return atom(std::string(module) + "." + std::string(name));
    }
    bool check_module_name(std::string_view module, Op) {
        if (module.find('!') == std::string_view::npos) return true;
        failure_ = "bad module name";
        return false;
    }
    Sym stack_global(Sym module, Sym name) {
        const std::string& m = heap_->nodes[module.id].text;
        const std::string& n = heap_->nodes[name.id].text;
        if (m.empty() || m[0] != '\'' || n.empty() || n[0] != '\'') {
            failure_ = "STACK_GLOBAL requires str";
            return {};
        }
        return atom(m.substr(1, m.size() - 2) + "." + n.substr(1, n.size() - 2));
    }
    Sym extension(std::int32_t code) { return atom("ext" + std::to_string(code)); }
    Sym reduce(Sym callable, Sym args) { return call("reduce", callable, args); }
    Sym newobj(Sym cls, Sym args) { return call("new", cls, args); }
    Sym newobj_ex(Sym cls, Sym args, Sym /*kwargs*/) {
        if (fails("new")) return {};
        return make_node("call", heap_->nodes[cls.id].text, {retain(args).id});
    }
    Sym instantiate(Sym cls, Sym args) { return call("instantiate", cls, args); }
    bool build(Sym inst, Sym state) {
        if (fails("build")) return false;
        heap_->nodes[inst.id].items.push_back(retain(state).id);
        return true;
    }
    bool check_persistent_load() { return !fails("persid"); }
    Sym persistent_load(Sym pid) {
        return make_node("persistent", "", {retain(pid).id});
    }
    Sym persistent_load_text(std::string_view pid) {
        if (fails("persid")) return {};
        return atom("persistent:" + std::string(pid));
    }

    std::string render(Sym s, int depth = 0) const {
        const Node& node = heap_->nodes[s.id];
        if (depth > 20) return "...";
        if (node.kind == "atom") return node.text;
        if (node.kind == "call") {
            // callee(args) followed by {state} for each BUILD
            std::string out = node.text + render(Sym{node.items[0]}, depth + 1);
            for (std::size_t i = 1; i < node.items.size(); ++i) {
                out += '{';
                out += render(Sym{node.items[i]}, depth + 1);
                out += '}';
            }
            return out;
        }
        std::string inner;
        for (std::size_t i = 0; i < node.items.size(); ++i) {
            if (i) inner += node.kind == "dict" && i % 2 ? ": " : ", ";
            inner += render(Sym{node.items[i]}, depth + 1);
        }
        if (node.kind == "tuple") return "(" + inner + (node.items.size() == 1 ? ",)" : ")");
        if (node.kind == "list") return "[" + inner + "]";
        if (node.kind == "dict") return "{" + inner + "}";
        return node.kind + "(" + inner + ")"; // set, frozenset, readonly, persistent
    }

  private:
    // Built by append: GCC 12 reports a false -Wrestrict on operator+ with std::string.
    static std::string quoted(const char* prefix, const char* p, std::size_t n) {
        std::string s(prefix);
        s += '\'';
        s.append(p, n);
        s += '\'';
        return s;
    }
    static std::string trim(const char* text) {
        std::string s(text);
        while (!s.empty() && s.back() == '\n') s.pop_back();
        return s;
    }
    bool fails(const char* kind) {
        if (fail_kind != kind) return false;
        failure_ = std::string("injected ") + kind + " failure";
        return true;
    }
    Sym make_node(std::string kind, std::string text, std::vector<int> items) {
        heap_->nodes.push_back(Node{std::move(kind), std::move(text), std::move(items), 1});
        return Sym{static_cast<int>(heap_->nodes.size() - 1)};
    }
    Sym atom(std::string text) {
        if (fails("atom")) return {};
        return make_node("atom", std::move(text), {});
    }
    Sym container(const char* kind, Sym* items, std::size_t n) {
        if (fails(kind)) {
            for (std::size_t i = 0; i < n; ++i) release(items[i]); // steals, even on failure
            return {};
        }
        std::vector<int> ids;
        for (std::size_t i = 0; i < n; ++i) ids.push_back(items[i].id);
        return make_node(kind, "", ids);
    }
    bool add_items(Sym target, Sym* items, std::size_t n) {
        if (fails("extend")) {
            for (std::size_t i = 0; i < n; ++i) release(items[i]);
            return false;
        }
        for (std::size_t i = 0; i < n; ++i) heap_->nodes[target.id].items.push_back(items[i].id);
        return true;
    }
    Sym call(const char* what, Sym callee, Sym args) {
        if (fails(what)) return {};
        return make_node("call", heap_->nodes[callee.id].text, {retain(args).id});
    }

    Heap* heap_;
    std::string failure_;
    int buffers_ = 0;
};

using Machine = picklex::StackMachine<SymOps>;

struct Outcome {
    bool ok = false;
    std::string value; // rendered result
    Error error;
    int leaked = 0; // nodes still referenced after the machine let go of everything
};

#define B(literal) std::string_view(literal, sizeof(literal) - 1)

Outcome run(std::string_view data, std::string fail_kind = {}) {
    Heap heap;
    Outcome out;
    {
        Machine machine(&heap);
        machine.ops().fail_kind = std::move(fail_kind);
        machine.begin();
        out.ok = picklex::read_pickle(data.data(), data.size(), machine);
        if (out.ok) {
            Sym result = machine.take_result();
            out.value = machine.ops().render(result);
            machine.ops().release(result);
        } else {
            out.error = machine.error();
        }
    } // the destructor releases the stack and the memo
    out.leaked = heap.live();
    return out;
}

std::string load(std::string_view data) {
    Outcome o = run(data);
    EXPECT_TRUE(o.ok) << o.error.message();
    EXPECT_EQ(o.leaked, 0);
    return o.value;
}

// ---------------------------------------------------------------------------------------------

TEST(StackMachine, Lists) {
    EXPECT_EQ(load(B("\x80\x02]q\x00(K\x01K\x02" "e.")), "[1, 2]");
    EXPECT_EQ(load(B("(lp0\nI1\naI2\na.")), "[1, 2]");
    EXPECT_EQ(load(B("(K\x01K\x02l.")), "[1, 2]");
    EXPECT_EQ(load(B("](e.")), "[]");
}

TEST(StackMachine, TuplesDictsSets) {
    EXPECT_EQ(load(B(")K\x01\x85K\x01K\x02K\x03\x87\x87.")),
              "((), (1,), (1, 2, 3))");
    EXPECT_EQ(load(B("(K\x01K\x02t.")), "(1, 2)");
    EXPECT_EQ(load(B("}(K\x01K\x02K\x03K\x04u.")), "{1: 2, 3: 4}");
    EXPECT_EQ(load(B("}K\x01K\x02s.")), "{1: 2}");
    EXPECT_EQ(load(B("(K\x01K\x02" "d.")), "{1: 2}");
    EXPECT_EQ(load(B("\x8f(K\x01K\x02\x90.")), "set(1, 2)");
    EXPECT_EQ(load(B("(K\x01\x91.")), "frozenset(1)");
}

TEST(StackMachine, MemoSharesObjects) {
    // (x, x) where x = [] memoized with BINPUT: the same node twice.
    Heap heap;
    Machine machine(&heap);
    machine.begin();
    std::string_view data = B("(]q\xffh\xfft.");
    ASSERT_TRUE(picklex::read_pickle(data.data(), data.size(), machine));
    Sym result = machine.take_result();
    const Node& tuple = heap.nodes[result.id];
    ASSERT_EQ(tuple.items.size(), 2u);
    EXPECT_EQ(tuple.items[0], tuple.items[1]);
    EXPECT_EQ(heap.nodes[tuple.items[0]].refs, 3); // twice in the tuple, once in the memo
    machine.ops().release(result);
}

TEST(StackMachine, StackOps) {
    EXPECT_EQ(load(B("((l2t.")), "([], [])");
    EXPECT_EQ(load(B("K\x01K\x02" "0.")), "1");
    EXPECT_EQ(load(B("K\x01(K\x02K\x03" "1.")), "1");
    EXPECT_EQ(load(B("K\x01(0.")), "1"); // POP of a MARK on top removes the mark
}

TEST(StackMachine, Globals) {
    EXPECT_EQ(load(B("\x80\x02" "c__builtin__\nset\n]K\x01" "a\x85R.")), "__builtin__.set([1],)");
    EXPECT_EQ(load(B("\x80\x04\x8c\x08" "builtins\x8c\x03int\x93.")), "builtins.int");
    EXPECT_EQ(load(B("(imod\nCls\nK\x01.")), "1");
    Outcome bad = run(B("N\x8c\x01x\x93."));
    EXPECT_EQ(bad.error.detail, "STACK_GLOBAL requires str");
    EXPECT_EQ(bad.leaked, 0);
}

TEST(StackMachine, ClassicInstanceAndBuild) {
    // Python 2 protocol 0 and 1 instances (pickletester's test_load_classic_instance).
    EXPECT_EQ(load(B("(i__main__\nC\np0\n(dp1\nb.")), "__main__.C(){{}}");
    EXPECT_EQ(load(B("(c__main__\nC\nq\x00oq\x01}q\x02" "b.")), "__main__.C(){{}}");
    // Protocol 4: STACK_GLOBAL, NEWOBJ, MEMOIZE, BUILD.
    EXPECT_EQ(load(B("\x80\x04\x95\x18\x00\x00\x00\x00\x00\x00\x00\x8c\x01m\x94\x8c\x01" "C\x94"
                     "\x93\x94)\x81\x94}\x94\x8c\x01" "a\x94K\x01sb.")),
              "m.C(){{'a': 1}}");
}

TEST(StackMachine, OutOfBandBuffers) {
    EXPECT_EQ(load(B("\x80\x05\x97\x97\x98\x86.")), "(buffer0, readonly(buffer1))");
}

TEST(StackMachine, PersistentIds) {
    EXPECT_EQ(load(B("Pabc\n.")), "persistent:abc");
    EXPECT_EQ(load(B("K\x05Q.")), "persistent(5)");
}

TEST(StackMachine, MemoErrors) {
    Outcome o = run(B("h\x05."));
    EXPECT_EQ(o.error.code, Errc::memo_missing);
    EXPECT_EQ(o.error.detail, "Memo value not found at index 5");
    EXPECT_EQ(o.error.message(), "Memo value not found at index 5 (at opcode BINGET, offset 0)");
    o = run(B("g-1\n."));
    EXPECT_EQ(o.error.detail, "Memo value not found at index -1");
    o = run(B("Np-1\n."));
    EXPECT_EQ(o.error.code, Errc::bad_memo_key);
    EXPECT_EQ(o.error.detail, "negative PUT argument");
    EXPECT_EQ(o.leaked, 0);
    o = run(B("p1\n."));
    EXPECT_EQ(o.error.code, Errc::stack_underflow);
    // The stack is checked before the key is parsed.
    EXPECT_EQ(run(B("pxyz\n.")).error.code, Errc::stack_underflow);
    o = run(B("g0x1\n."));
    EXPECT_EQ(o.error.code, Errc::bad_argument);
    EXPECT_EQ(o.error.detail, "invalid literal for int() with base 10: '0x1\\n'");
    EXPECT_EQ(run(B("Np99999999999999999999\n.")).error.code, Errc::too_large);
    EXPECT_EQ(run(B("g9223372036854775807\n.")).error.detail,
              "Memo value not found at index 9223372036854775807");
    EXPECT_EQ(load(B("K\x07p 1_0 \ng+10\n\x86.")), "(7, 7)");
}

TEST(StackMachine, HugeMemoKeysStaySparse) {
    // Keys up to 2**62 must not allocate an array of that size.
    EXPECT_EQ(load(B("K\x07p4611686018427387904\nr\xff\xff\xff\xff" "0g4611686018427387904\n"
                     "j\xff\xff\xff\xff\x86.")),
              "(7, 7)");
    Heap heap;
    Machine machine(&heap);
    machine.begin();
    std::string_view data = B("K\x01r\xff\xff\xff\xff.");
    ASSERT_TRUE(picklex::read_pickle(data.data(), data.size(), machine));
    EXPECT_LT(machine.memo().dense_capacity(), 10000u);
    EXPECT_EQ(machine.memo().size(), 1u);
    machine.ops().release(machine.take_result());
}

TEST(StackMachine, MemoizeCountsEntries) {
    // MEMOIZE stores at the number of entries, like CPython's memo_len.
    EXPECT_EQ(load(B("K\x01q\x05K\x02\x94h\x01h\x05\x86.")), "(2, 1)");
}

TEST(StackMachine, MemoPersistsAcrossPickles) {
    Heap heap;
    {
        Machine machine(&heap);
        for (std::string_view data : {B("K\x2aq\x00."), B("h\x00.")}) {
            machine.begin();
            ASSERT_TRUE(picklex::read_pickle(data.data(), data.size(), machine));
            Sym result = machine.take_result();
            EXPECT_EQ(machine.ops().render(result), "42");
            machine.ops().release(result);
        }
    }
    EXPECT_EQ(heap.live(), 0);
}

TEST(DecodeMemo, DenseAndSparseKeys) {
    picklex::detail::DecodeMemo<Sym> memo;
    Sym old;
    ASSERT_TRUE(memo.put(3, Sym{3}, old));
    EXPECT_FALSE(old);
    ASSERT_TRUE(memo.put(std::uint64_t{1} << 40, Sym{40}, old));
    ASSERT_TRUE(memo.put(3, Sym{33}, old));
    EXPECT_EQ(old.id, 3);
    EXPECT_EQ(memo.size(), 2u);
    EXPECT_EQ(memo.get(3).id, 33);
    EXPECT_EQ(memo.get(std::uint64_t{1} << 40).id, 40);
    EXPECT_FALSE(memo.get(4));
    // Filling keys densely moves a sparse key into the array once it is in range.
    ASSERT_TRUE(memo.put(100000, Sym{7}, old));
    for (int i = 0; i < 100000; ++i) ASSERT_TRUE(memo.put(static_cast<std::uint64_t>(i), Sym{i}, old));
    ASSERT_TRUE(memo.put(150000, Sym{8}, old));
    EXPECT_EQ(memo.get(100000).id, 7);
    EXPECT_EQ(memo.get(150000).id, 8);
    std::size_t seen = 0;
    memo.for_each([&](std::uint64_t, Sym) { ++seen; });
    EXPECT_EQ(seen, memo.size());
    int released = 0;
    memo.clear([&](Sym) { ++released; });
    EXPECT_EQ(static_cast<std::size_t>(released), seen);
    EXPECT_EQ(memo.size(), 0u);
    EXPECT_FALSE(memo.get(100000));
}

// pickletester's test_bad_stack: each must fail on the stack, never crash.
const std::string_view kBadStack[] = {
    B("."), B("0"), B("1"), B("2"), B("(2"), B("R"), B(")R"), B("a"), B("Na"), B("b"), B("Nb"),
    B("d"), B("e"), B("(e"), B("ibuiltins\nlist\n"), B("l"), B("o"), B("(o"), B("p1\n"),
    B("q\x00"), B("r\x00\x00\x00\x00"), B("s"), B("Ns"), B("NNs"), B("t"), B("u"), B("(u"),
    B("}(Nu"), B("\x81"), B(")\x81"), B("\x85"), B("\x86"), B("N\x86"), B("\x87"), B("N\x87"),
    B("NN\x87"), B("\x90"), B("(\x90"), B("\x91"), B("\x92"), B(")}\x92"), B("\x93"),
    B("Vlist\n\x93"), B("\x94"),
};

// pickletester's test_bad_mark.
const std::string_view kBadMark[] = {
    B("N(."), B("N(2"), B("cbuiltins\nlist\n)(R"), B("cbuiltins\nlist\n()R"), B("]N(a"),
    B("cbuiltins\nValueError\n)R}(b"), B("cbuiltins\nValueError\n)R(}b"), B("(Nd"),
    B("N(p1\n"), B("N(q\x00"), B("N(r\x00\x00\x00\x00"), B("}NN(s"), B("}N(Ns"), B("}(NNs"),
    B("}((u"), B("cbuiltins\nlist\n)(\x81"), B("cbuiltins\nlist\n()\x81"), B("N(\x85"),
    B("NN(\x86"), B("N(N\x86"), B("NNN(\x87"), B("NN(N\x87"), B("N(NN\x87"), B("]((\x90"),
    B("cbuiltins\nlist\n)}(\x92"), B("cbuiltins\nlist\n)(}\x92"), B("cbuiltins\nlist\n()}\x92"),
    B("Vbuiltins\n(Vlist\n\x93"), B("Vbuiltins\nVlist\n(\x93"), B("N(\x94"),
};

bool is_stack_error(Errc code) {
    return code == Errc::stack_underflow || code == Errc::unexpected_mark ||
           code == Errc::mark_missing || code == Errc::bad_type;
}

TEST(StackMachine, BadStack) {
    for (std::string_view p : kBadStack) {
        Outcome o = run(p);
        EXPECT_FALSE(o.ok);
        EXPECT_TRUE(is_stack_error(o.error.code)) << p << ": " << o.error.message();
        EXPECT_EQ(o.leaked, 0) << p;
    }
}

TEST(StackMachine, BadMark) {
    for (std::string_view p : kBadMark) {
        Outcome o = run(p);
        EXPECT_FALSE(o.ok);
        EXPECT_TRUE(is_stack_error(o.error.code)) << p << ": " << o.error.message();
        EXPECT_EQ(o.leaked, 0) << p;
    }
    EXPECT_EQ(run(B("N(.")).error.detail, "unexpected MARK found");
    EXPECT_EQ(run(B("N1.")).error.detail, "could not find MARK");
    EXPECT_EQ(run(B("(Nd.")).error.detail, "odd number of items for DICT");
    EXPECT_EQ(run(B("}(Nu.")).error.detail, "odd number of items for SETITEMS");
    EXPECT_EQ(run(B("0")).error.detail, "unpickling stack underflow");
    // A GLOBAL/INST missing its name line: INST's MARK, then the module line, come first.
    EXPECT_EQ(run(B("ibad!\nx")).error.code, Errc::mark_missing);
    EXPECT_EQ(run(B("(ibad!\nx")).error.detail, "bad module name");
    EXPECT_EQ(run(B("cbad!\nx")).error.detail, "bad module name");
    EXPECT_EQ(run(B("cgood\nx")).error.code, Errc::truncated);
}

const std::string_view kValid[] = {
    B("\x80\x02]q\x00(K\x01K\x02" "e."),
    B("(lp0\nI1\naL12L\naF1.5\naS'ab'\naVx\na(g0\nt."),
    B("\x80\x02" "c__builtin__\nset\nq\x00]q\x01(K\x01K\x02" "e\x85q\x02Rq\x03."),
    B("\x80\x04\x95\x18\x00\x00\x00\x00\x00\x00\x00\x8c\x01m\x94\x8c\x01" "C\x94\x93\x94)\x81\x94}"
      "\x94\x8c\x01" "a\x94K\x01sb."),
    B("\x80\x05\x97\x97\x98\x86}(K\x01K\x02u\x8f(K\x03\x90(K\x04\x91\x87."),
    B("(i__main__\nC\np0\n(dp1\nb."),
    B("K\x05QPabc\n\x86\x82\x07)}\x92."),
};

TEST(StackMachine, EveryPrefixFailsWithoutLeaks) {
    for (std::string_view full : kValid) {
        ASSERT_TRUE(run(full).ok) << full;
        for (std::size_t cut = 0; cut < full.size(); ++cut) {
            Outcome o = run(full.substr(0, cut));
            EXPECT_FALSE(o.ok);
            EXPECT_EQ(o.leaked, 0) << "cut at " << cut;
        }
    }
}

TEST(StackMachine, FailingOpsReleaseEverything) {
    for (const char* kind : {"atom", "tuple", "list", "dict", "set", "frozenset", "extend",
                             "setitems", "global", "reduce", "new", "build", "buffer",
                             "readonly", "persid", "instantiate"}) {
        for (std::string_view full : kValid) {
            Outcome o = run(full, kind);
            if (!o.ok) {
                EXPECT_NE(o.error.code, Errc::ok);
                EXPECT_GE(o.error.opcode, 0);
            }
            EXPECT_EQ(o.leaked, 0) << kind << " in " << full;
        }
    }
}

TEST(StackMachine, BitFlipsNeverCrashOrLeak) {
    std::uint64_t state = 0x2545f4914f6cdd1du;
    auto next = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    for (std::string_view full : kValid) {
        std::string buf(full);
        for (int round = 0; round < 3000; ++round) {
            buf.assign(full);
            const int flips = 1 + static_cast<int>(next() % 3);
            for (int f = 0; f < flips; ++f) buf[next() % buf.size()] ^= static_cast<char>(1 << (next() % 8));
            Outcome o = run(buf);
            EXPECT_EQ(o.leaked, 0);
        }
    }
}

} // namespace
