// fuzz/symbolic_ops.hpp: what the decoder fuzz harnesses decode into.
//
// SymbolicOps is a StackMachine Ops policy whose objects are reference-counted nodes in a
// heap that outlives the machine, so the harness can prove after every pickle that the
// machine released exactly the references it took, on success and on every failure path
// (including failures injected into the Ops themselves). Nothing is ever executed: globals,
// reduce and build only record what they were given.
//
// ChunkedSource serves the pickle through small windows copied to fresh heap blocks, freed
// on every refill, so a decoder that kept a pointer into an old window reads freed memory
// and ASan reports it; MemorySource (reader.hpp) covers the zero-copy path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "picklex/reader.hpp"
#include "picklex/stack_machine.hpp"

namespace picklex::fuzz {

struct Sym {
    int id = -1;
    explicit operator bool() const noexcept { return id >= 0; }
};

enum class Kind : std::uint8_t { atom, str, container, call };

struct Node {
    Kind kind;
    std::uint64_t hash;     // of the node's own content, for comparing two decodes
    std::vector<int> items; // references this node owns
    int refs = 1;
};

struct Heap {
    std::vector<Node> nodes;

    /// Nodes referenced from outside the heap. References between live nodes are discounted
    /// (a hostile pickle may build cycles, as garbage collectors know), so what remains is a
    /// reference someone forgot to release.
    int externally_referenced() const {
        std::vector<int> external(nodes.size());
        for (std::size_t i = 0; i < nodes.size(); ++i) external[i] = nodes[i].refs;
        for (const Node& node : nodes)
            if (node.refs > 0)
                for (int child : node.items) --external[child];
        return static_cast<int>(std::count_if(external.begin(), external.end(),
                                              [](int r) { return r > 0; }));
    }

    /// Structural hash of a decoded value (bounded, so cycles terminate).
    std::uint64_t digest(int id, int budget = 10000) const {
        std::uint64_t h = 1469598103934665603ull;
        std::vector<int> todo{id};
        while (!todo.empty() && budget-- > 0) {
            const Node& node = nodes[static_cast<std::size_t>(todo.back())];
            todo.pop_back();
            h = (h ^ node.hash ^ node.items.size()) * 1099511628211ull;
            todo.insert(todo.end(), node.items.begin(), node.items.end());
        }
        return h;
    }
};

inline std::uint64_t hash_bytes(std::uint64_t seed, const char* p, std::size_t n) {
    std::uint64_t h = seed * 0x9E3779B97F4A7C15ull + n;
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
    return h;
}

class SymbolicOps {
  public:
    using Object = Sym;

    /// Fail the `fail_at`-th Ops call that can fail (0: never), to exercise cleanup paths.
    SymbolicOps(Heap* heap, int fail_at) : heap_(heap), fail_at_(fail_at) {}

    void release(Sym s) {
        // Iterative: a hostile pickle can nest containers as deep as it is long.
        std::vector<int> todo{s.id};
        while (!todo.empty()) {
            Node& node = at(todo.back());
            todo.pop_back();
            if (node.refs <= 0) std::abort(); // released more often than retained
            if (--node.refs == 0) {
                todo.insert(todo.end(), node.items.begin(), node.items.end());
                node.items.clear();
            }
        }
    }
    Sym retain(Sym s) {
        if (at(s.id).refs <= 0) std::abort(); // use of a released object
        ++at(s.id).refs;
        return s;
    }
    void describe_failure(Error& e) {
        e.code = failure_;
        e.detail = "symbolic failure";
    }
    bool set_protocol(int) { return !fails(Errc::bad_type); }

    Sym make_none() { return atom(1, nullptr, 0); }
    Sym make_bool(bool v) { return atom(v ? 2 : 3, nullptr, 0); }
    Sym make_int(std::int64_t v) { return atom(4, reinterpret_cast<const char*>(&v), sizeof v); }
    Sym make_int_text(const char* text, Op op) {
        return atom(5 + static_cast<int>(op), text, std::strlen(text));
    }
    Sym make_long_bytes(const char* p, std::size_t n) { return atom(6, p, n); }
    Sym make_float(double v) { return atom(7, reinterpret_cast<const char*>(&v), sizeof v); }
    Sym make_float_text(const char* text) { return atom(8, text, std::strlen(text)); }
    Sym make_str_utf8(const char* p, std::size_t n) { return str(p, n); }
    Sym make_str_raw_unicode_escape(const char* p, std::size_t n) { return str(p, n); }
    Sym make_py2_str(const char* p, std::size_t n) { return str(p, n); }
    Sym make_py2_str_escaped(const char* p, std::size_t n) { return str(p, n); }
    Sym make_bytes(const char* p, std::size_t n) { return atom(9, p, n); }
    Sym make_bytearray(const char* p, std::size_t n) { return atom(10, p, n); }
    Sym next_buffer() {
        // Two out-of-band buffers are on offer; a third NEXT_BUFFER is an error.
        if (buffers_ == 2) {
            failure_ = Errc::buffers_exhausted;
            return {};
        }
        return atom(11, nullptr, static_cast<std::size_t>(buffers_++));
    }
    bool make_readonly(Sym& top) {
        if (fails(Errc::bad_type)) return false;
        top = node(Kind::container, 12, {top.id}); // takes over the stack's reference
        return true;
    }
    Sym make_tuple(Sym* items, std::size_t n) { return steal_container(13, items, n); }
    Sym make_list(Sym* items, std::size_t n) { return steal_container(14, items, n); }
    Sym make_frozenset(Sym* items, std::size_t n) { return steal_container(15, items, n); }
    Sym make_dict(Sym* items, std::size_t n) {
        if (fails(Errc::bad_type)) return {};
        std::vector<int> ids;
        for (std::size_t i = 0; i < n; ++i) ids.push_back(retain(items[i]).id);
        return node(Kind::container, 16, std::move(ids));
    }
    Sym make_empty_list() { return steal_container(14, nullptr, 0); }
    Sym make_empty_dict() { return steal_container(16, nullptr, 0); }
    Sym make_empty_set() { return steal_container(17, nullptr, 0); }
    bool list_extend(Sym list, Sym* items, std::size_t n) { return add(list, items, n, true); }
    bool set_additems(Sym set, Sym* items, std::size_t n) { return add(set, items, n, true); }
    bool dict_setitems(Sym dict, Sym* items, std::size_t n) { return add(dict, items, n, false); }
    Sym find_global(std::string_view module, std::string_view name, Op op) {
        if (fails(Errc::bad_type)) return {};
        const std::uint64_t h = hash_bytes(hash_bytes(18 + static_cast<int>(op), module.data(),
                                                      module.size()),
                                           name.data(), name.size());
        return node(Kind::atom, h, {});
    }
    Sym stack_global(Sym module, Sym name) {
        // Like the real unpickler: both operands must be str.
        if (at(module.id).kind != Kind::str || at(name.id).kind != Kind::str) {
            failure_ = Errc::bad_type;
            return {};
        }
        return call(19, module, name);
    }
    Sym extension(std::int32_t code) {
        return atom(20, reinterpret_cast<const char*>(&code), sizeof code);
    }
    Sym reduce(Sym callable, Sym args) { return call(21, callable, args); }
    Sym newobj(Sym cls, Sym args) { return call(22, cls, args); }
    Sym newobj_ex(Sym cls, Sym args, Sym kwargs) {
        if (fails(Errc::bad_type)) return {};
        return node(Kind::call, 23, {retain(cls).id, retain(args).id, retain(kwargs).id});
    }
    Sym instantiate(Sym cls, Sym args) { return call(24, cls, args); }
    bool build(Sym inst, Sym state) {
        if (fails(Errc::bad_type)) return false;
        at(inst.id).items.push_back(retain(state).id);
        return true;
    }
    bool check_persistent_load() { return !fails(Errc::bad_type); }
    Sym persistent_load(Sym pid) {
        if (fails(Errc::bad_type)) return {};
        return node(Kind::call, 25, {retain(pid).id});
    }
    Sym persistent_load_text(std::string_view pid) { return atom(26, pid.data(), pid.size()); }

  private:
    Node& at(int id) { return heap_->nodes[static_cast<std::size_t>(id)]; }
    bool fails(Errc code) {
        if (++calls_ != fail_at_) return false;
        failure_ = code;
        return true;
    }
    Sym node(Kind kind, std::uint64_t hash, std::vector<int> items) {
        heap_->nodes.push_back(Node{kind, hash, std::move(items), 1});
        return Sym{static_cast<int>(heap_->nodes.size() - 1)};
    }
    Sym atom(int tag, const char* p, std::size_t n) {
        if (fails(Errc::out_of_memory)) return {};
        return node(Kind::atom, p ? hash_bytes(static_cast<std::uint64_t>(tag), p, n) : tag * 31 + n, {});
    }
    Sym str(const char* p, std::size_t n) {
        if (fails(Errc::bad_argument)) return {};
        return node(Kind::str, hash_bytes(27, p, n), {});
    }
    Sym steal_container(int tag, Sym* items, std::size_t n) {
        if (fails(Errc::out_of_memory)) {
            for (std::size_t i = 0; i < n; ++i) release(items[i]); // steals even on failure
            return {};
        }
        std::vector<int> ids;
        for (std::size_t i = 0; i < n; ++i) ids.push_back(items[i].id);
        return node(Kind::container, static_cast<std::uint64_t>(tag), std::move(ids));
    }
    bool add(Sym target, Sym* items, std::size_t n, bool steals) {
        if (fails(Errc::bad_type)) {
            if (steals)
                for (std::size_t i = 0; i < n; ++i) release(items[i]);
            return false;
        }
        for (std::size_t i = 0; i < n; ++i)
            at(target.id).items.push_back(steals ? items[i].id : retain(items[i]).id);
        return true;
    }
    Sym call(int tag, Sym callee, Sym args) {
        if (fails(Errc::bad_type)) return {};
        return node(Kind::call, static_cast<std::uint64_t>(tag), {retain(callee).id, retain(args).id});
    }

    Heap* heap_;
    int fail_at_;
    int calls_ = 0;
    int buffers_ = 0;
    Errc failure_ = Errc::bad_type;
};

/// Serves the input through windows of `step` bytes, each a fresh heap copy (see above).
class ChunkedSource {
  public:
    ChunkedSource(const std::uint8_t* data, std::size_t size, std::size_t step)
        : in_(reinterpret_cast<const char*>(data)), size_(size), step_(step ? step : 1) {
        window(0, 0);
    }

    const char* next = nullptr;
    const char* end = nullptr;

    bool fill(std::size_t n) {
        const std::size_t at = offset();
        if (size_ - at < n) return false;
        window(at, std::min(size_, at + std::max(n, step_)));
        return true;
    }
    const char* fill_line() {
        const std::size_t from = offset() + static_cast<std::size_t>(end - next);
        const void* nl = std::memchr(in_ + from, '\n', size_ - from);
        if (!nl) return nullptr;
        window(offset(), static_cast<std::size_t>(static_cast<const char*>(nl) - in_) + 1);
        return end - 1;
    }
    bool finish() { return true; }
    std::size_t offset() const { return base_ + static_cast<std::size_t>(next - block_.get()); }
    Errc failure() const { return Errc::truncated; }

  private:
    void window(std::size_t from, std::size_t to) {
        // A new block every time, and the old one freed: stale pointers become ASan reports.
        auto fresh = std::make_unique<char[]>(to - from + 1);
        if (to > from) std::memcpy(fresh.get(), in_ + from, to - from); // in_ may be null
        block_ = std::move(fresh);
        base_ = from;
        next = block_.get();
        end = next + (to - from);
    }

    const char* in_;
    std::size_t size_;
    std::size_t step_;
    std::size_t base_ = 0;
    std::unique_ptr<char[]> block_;
};

/// The outcome of decoding one pickle, and a proof that nothing leaked.
struct Outcome {
    bool ok = false;
    Errc code = Errc::ok;
    std::uint64_t digest = 0;
};

template <class Source> Outcome decode(Source& source, int fail_at) {
    Heap heap;
    Outcome out;
    {
        StackMachine<SymbolicOps> machine(&heap, fail_at);
        Reader<Source, StackMachine<SymbolicOps>> reader(source, machine);
        out.ok = reader.run();
        out.code = machine.error().code;
        if (out.ok) {
            Sym result = machine.take_result();
            if (!result) std::abort(); // success must leave a result
            out.digest = heap.digest(result.id);
            machine.ops().release(result);
        } else if (out.code == Errc::ok) {
            std::abort(); // failure must say why
        }
    } // the machine releases its stack and memo here
    if (heap.externally_referenced() != 0) std::abort(); // a reference was leaked
    return out;
}

} // namespace picklex::fuzz
