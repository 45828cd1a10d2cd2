// include/picklex/stack_machine.hpp: the unpickler's stack semantics, written once.
//
// StackMachine<Ops> is a Reader handler (reader.hpp) that keeps the pickle virtual machine:
// the value stack, the MARK stack and the memo. It checks every stack access exactly as
// CPython's _pickle does (same conditions, same messages), and leaves what an "object" is to
// the Ops policy: real Python objects in the CPython front, native values for the C++ API,
// or symbolic values for a scanner that never executes anything.
//
// ---- Ops ----
// `Object` is a cheap, trivially copyable handle; Object{} is the null handle and valid
// handles convert to true. Each stack and memo slot owns one reference. An Ops call that
// returns a null Object (or false) has failed; the machine then asks describe_failure() to
// fill in the error. "Steals" means the call takes over the references it is given, on
// success and on failure alike; "borrows" means the machine keeps them.
//
//   using Object = ...;
//   void release(Object);                       // drop one reference
//   Object retain(Object);                      // add one reference, return the handle
//   void describe_failure(Error&);              // code (+ detail) of the last failed call
//   bool set_protocol(int);                     // PROTO
//   Object make_none(); make_bool(bool); make_int(std::int64_t);
//   Object make_int_text(const char* cstr, Op); // INT overflow / LONG: int(text, 0)
//   Object make_long_bytes(const char*, std::size_t);   // little-endian two's complement
//   Object make_float(double); make_float_text(const char* cstr);
//   Object make_str_utf8(const char*, std::size_t);     // UTF-8, surrogates allowed
//   Object make_str_raw_unicode_escape(const char*, std::size_t);
//   Object make_py2_str(const char*, std::size_t);      // Python 2 str: decode per settings
//   Object make_py2_str_escaped(const char*, std::size_t); // STRING: unescape, then as above
//   Object make_bytes(const char*, std::size_t); make_bytearray(const char*, std::size_t);
//   Object next_buffer();                       // NEXT_BUFFER
//   bool make_readonly(Object& top);            // READONLY_BUFFER: may replace `top`
//   Object make_tuple(Object* items, std::size_t n);     // steals items
//   Object make_list(Object* items, std::size_t n);      // steals items
//   Object make_dict(Object* items, std::size_t n);      // borrows n/2 key, value pairs
//   Object make_frozenset(Object* items, std::size_t n); // steals items
//   Object make_empty_list(); make_empty_dict(); make_empty_set();
//   bool list_extend(Object list, Object* items, std::size_t n);   // steals items
//   bool dict_setitems(Object dict, Object* items, std::size_t n); // borrows pairs
//   bool set_additems(Object set, Object* items, std::size_t n);   // steals items
//   Object find_global(std::string_view module, std::string_view name, Op op); // GLOBAL/INST
//   bool check_number_text(std::string_view text); // optional: may an invalid GET/PUT key
//                                               // be quoted in the error? (CPython decodes it)
//   bool check_module_name(std::string_view module, Op op); // optional: would find_global
//                                               // accept the module line? (asked only when the
//                                               // name line is missing, CPython's check order)
//   Object stack_global(Object module, Object name);              // borrows
//   Object extension(std::int32_t code);                          // EXT1/2/4
//   Object reduce(Object callable, Object args);                  // borrows
//   Object newobj(Object cls, Object args);                       // borrows
//   Object newobj_ex(Object cls, Object args, Object kwargs);     // borrows
//   Object instantiate(Object cls, Object args);                  // OBJ/INST; borrows
//   bool build(Object inst, Object state);                        // borrows
//   bool check_persistent_load();               // is there a persistent_load at all?
//   Object persistent_load(Object pid);         // borrows
//   Object persistent_load_text(std::string_view pid);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "picklex/detail/decode_buffer.hpp"
#include "picklex/detail/decode_memo.hpp"
#include "picklex/detail/decode_text.hpp"
#include "picklex/error.hpp"
#include "picklex/opcodes.hpp"

namespace picklex {

template <class Ops> class StackMachine {
  public:
    using Object = typename Ops::Object;
    using Memo = detail::DecodeMemo<Object>;

    template <class... Args>
    explicit StackMachine(Args&&... args) : ops_(std::forward<Args>(args)...) {}
    ~StackMachine() {
        reset();
        clear_memo();
    }
    StackMachine(const StackMachine&) = delete;
    StackMachine& operator=(const StackMachine&) = delete;

    Ops& ops() noexcept { return ops_; }
    const Ops& ops() const noexcept { return ops_; }
    Error& error() noexcept { return error_; }
    const Error& error() const noexcept { return error_; }
    Memo& memo() noexcept { return memo_; }
    const Memo& memo() const noexcept { return memo_; }

    /// Prepare for the next pickle: empty stack, no marks, no error. The memo is kept, as
    /// CPython's Unpickler keeps it across load() calls.
    void begin() noexcept {
        reset();
        error_ = Error{};
    }
    /// The object STOP popped; the caller owns it. Null if the pickle has not stopped.
    Object take_result() noexcept { return std::exchange(result_, Object{}); }
    /// Release the stack, the marks and any untaken result.
    void reset() noexcept {
        truncate_release(0);
        marks_.clear();
        if (Object result = std::exchange(result_, Object{})) ops_.release(result);
    }
    /// Release every memo entry; keep at most `keep_capacity` slots allocated.
    void clear_memo(std::size_t keep_capacity = SIZE_MAX) noexcept {
        memo_.clear([this](Object o) { ops_.release(o); }, keep_capacity);
    }
    /// Give back the memory of a stack grown by an unusually large pickle.
    void trim(std::size_t keep_capacity) noexcept {
        if (stack_.empty() && stack_.capacity() > keep_capacity) stack_.release_memory();
        if (marks_.empty() && marks_.capacity() > keep_capacity) marks_.release_memory();
    }
    /// Store `value` (an owned reference) at memo `index`, as the memo setter does.
    PICKLEX_DECODE_INLINE bool memo_put(std::uint64_t index, Object value) noexcept {
        Object displaced{};
        if (!memo_.put(index, value, displaced)) {
            ops_.release(value);
            return fail(Errc::out_of_memory, "out of memory");
        }
        if (displaced) ops_.release(displaced);
        return true;
    }

    std::size_t stack_size() const noexcept { return stack_.size(); }
    std::size_t mark_depth() const noexcept { return marks_.size(); }
    std::size_t stack_capacity() const noexcept { return stack_.capacity(); }
    std::size_t marks_capacity() const noexcept { return marks_.capacity(); }
    /// Visit every object the machine holds (stack, result, memo), e.g. for a GC traversal.
    template <class F> int visit(F&& f) const {
        for (std::size_t i = 0; i < stack_.size(); ++i)
            if (int r = f(stack_[i])) return r;
        if (result_)
            if (int r = f(result_)) return r;
        int r = 0;
        memo_.for_each([&](std::uint64_t, Object o) {
            if (!r) r = f(o);
        });
        return r;
    }

    // ---- Reader handler: control ----

    bool on_proto(int protocol) { return ops_.set_protocol(protocol) || fail_ops(); }
    PICKLEX_DECODE_INLINE bool on_stop() {
        Object top{};
        if (!pop(top)) return false;
        if (Object old = std::exchange(result_, top)) ops_.release(old);
        return true;
    }
    PICKLEX_DECODE_INLINE bool on_mark() {
        return marks_.push_back(stack_.size()) || fail(Errc::out_of_memory, "out of memory");
    }
    PICKLEX_DECODE_INLINE bool on_pop() {
        const std::size_t size = stack_.size();
        // MARK lives on its own stack; POP of a MARK that is on top removes the mark.
        if (!marks_.empty() && marks_.back() == size) {
            marks_.pop_back();
            return true;
        }
        if (size <= fence()) return underflow();
        Object top = stack_.back();
        stack_.pop_back();
        ops_.release(top);
        return true;
    }
    bool on_pop_mark() {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        truncate_release(mark);
        return true;
    }
    PICKLEX_DECODE_INLINE bool on_dup() {
        if (stack_.size() <= fence()) return underflow();
        return push(ops_.retain(stack_.back()));
    }

    // ---- atoms ----

    PICKLEX_DECODE_INLINE bool on_none() { return push(ops_.make_none()); }
    PICKLEX_DECODE_INLINE bool on_bool(bool value) { return push(ops_.make_bool(value)); }
    PICKLEX_DECODE_INLINE bool on_int(std::int64_t value) { return push(ops_.make_int(value)); }
    bool on_int_text(const char* text, Op op) { return push(ops_.make_int_text(text, op)); }
    bool on_long_bytes(const char* p, std::size_t n) { return push(ops_.make_long_bytes(p, n)); }
    PICKLEX_DECODE_INLINE bool on_float(double value) { return push(ops_.make_float(value)); }
    bool on_float_text(const char* text) { return push(ops_.make_float_text(text)); }
    PICKLEX_DECODE_INLINE bool on_str_utf8(const char* p, std::size_t n) { return push(ops_.make_str_utf8(p, n)); }
    bool on_str_raw_unicode_escape(const char* p, std::size_t n) {
        return push(ops_.make_str_raw_unicode_escape(p, n));
    }
    bool on_py2_str(const char* p, std::size_t n) { return push(ops_.make_py2_str(p, n)); }
    bool on_py2_str_escaped(const char* p, std::size_t n) {
        return push(ops_.make_py2_str_escaped(p, n));
    }
    PICKLEX_DECODE_INLINE bool on_bytes(const char* p, std::size_t n) { return push(ops_.make_bytes(p, n)); }
    bool on_bytearray(const char* p, std::size_t n) { return push(ops_.make_bytearray(p, n)); }
    bool on_next_buffer() { return push(ops_.next_buffer()); }
    bool on_readonly_buffer() {
        if (stack_.size() <= fence()) return underflow();
        return ops_.make_readonly(stack_.back()) || fail_ops();
    }

    // ---- containers ----

    PICKLEX_DECODE_INLINE bool on_tuple_n(int n) {
        const std::size_t size = stack_.size();
        const auto count = static_cast<std::size_t>(n);
        if (size < count || size - count < fence()) return underflow();
        return pop_into_tuple(size - count);
    }
    PICKLEX_DECODE_INLINE bool on_tuple() {
        std::size_t mark = 0;
        return marker(mark) && pop_into_tuple(mark);
    }
    PICKLEX_DECODE_INLINE bool on_list() {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        Object* items = stack_.data() + mark;
        const std::size_t n = stack_.size() - mark;
        stack_.truncate(mark);
        return push(ops_.make_list(items, n));
    }
    PICKLEX_DECODE_INLINE bool on_dict() {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        const std::size_t n = stack_.size() - mark;
        if (n % 2 != 0) return fail(Errc::bad_type, "odd number of items for DICT");
        Object dict = ops_.make_dict(stack_.data() + mark, n);
        truncate_release(mark);
        return push(dict);
    }
    bool on_frozenset() {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        Object* items = stack_.data() + mark;
        const std::size_t n = stack_.size() - mark;
        stack_.truncate(mark);
        return push(ops_.make_frozenset(items, n));
    }
    PICKLEX_DECODE_INLINE bool on_empty_list() { return push(ops_.make_empty_list()); }
    PICKLEX_DECODE_INLINE bool on_empty_dict() { return push(ops_.make_empty_dict()); }
    PICKLEX_DECODE_INLINE bool on_empty_set() { return push(ops_.make_empty_set()); }

    PICKLEX_DECODE_INLINE bool on_append() {
        const auto size = static_cast<std::ptrdiff_t>(stack_.size());
        if (size - 1 <= static_cast<std::ptrdiff_t>(fence())) return underflow();
        return extend_from(static_cast<std::size_t>(size - 1));
    }
    PICKLEX_DECODE_INLINE bool on_appends() {
        std::size_t mark = 0;
        return marker(mark) && extend_from(mark);
    }
    PICKLEX_DECODE_INLINE bool on_setitem() {
        return setitems_from(static_cast<std::ptrdiff_t>(stack_.size()) - 2);
    }
    PICKLEX_DECODE_INLINE bool on_setitems() {
        std::size_t mark = 0;
        return marker(mark) && setitems_from(static_cast<std::ptrdiff_t>(mark));
    }
    bool on_additems() {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        const std::size_t size = stack_.size();
        if (mark > size || mark <= fence()) return underflow();
        if (mark == size) return true;
        Object set = stack_[mark - 1];
        Object* items = stack_.data() + mark;
        stack_.truncate(mark);
        return ops_.set_additems(set, items, size - mark) || fail_ops();
    }

    // ---- memo ----

    PICKLEX_DECODE_INLINE bool on_get(std::uint32_t index) { return get(index); }
    PICKLEX_DECODE_INLINE bool on_put(std::uint32_t index) {
        if (stack_.size() <= fence()) return underflow();
        return memo_put(index, ops_.retain(stack_.back()));
    }
    bool on_get_text(std::string_view line) {
        std::int64_t index = 0;
        return parse_key(line, index) && get(index);
    }
    bool on_put_text(std::string_view line) {
        if (stack_.size() <= fence()) return underflow();
        std::int64_t index = 0;
        if (!parse_key(line, index)) return false;
        if (index < 0) return fail(Errc::bad_memo_key, "negative PUT argument");
        return memo_put(static_cast<std::uint64_t>(index), ops_.retain(stack_.back()));
    }
    PICKLEX_DECODE_INLINE bool on_memoize() {
        if (stack_.size() <= fence()) return underflow();
        return memo_put(memo_.size(), ops_.retain(stack_.back()));
    }

    // ---- globals and object construction ----

    bool on_global(std::string_view module, std::string_view name) {
        return push(ops_.find_global(module, name, Op::GLOBAL));
    }
    bool on_inst(std::string_view module, std::string_view name) {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        Object cls = ops_.find_global(module, name, Op::INST);
        if (!cls) return fail_ops();
        Object* items = stack_.data() + mark;
        const std::size_t n = stack_.size() - mark;
        stack_.truncate(mark);
        Object args = ops_.make_tuple(items, n);
        if (!args) {
            ops_.release(cls);
            return fail_ops();
        }
        Object obj = ops_.instantiate(cls, args);
        ops_.release(args);
        ops_.release(cls);
        return push(obj);
    }
    bool on_obj() {
        std::size_t mark = 0;
        if (!marker(mark)) return false;
        const std::size_t size = stack_.size();
        if (size <= mark) return underflow();
        Object* items = stack_.data() + mark + 1;
        stack_.truncate(mark + 1);
        Object args = ops_.make_tuple(items, size - mark - 1);
        if (!args) return fail_ops();
        Object cls{};
        if (!pop(cls)) {
            ops_.release(args);
            return false;
        }
        Object obj = ops_.instantiate(cls, args);
        ops_.release(cls);
        ops_.release(args);
        return push(obj);
    }
    bool check_global_module(std::string_view module, Op op) {
        // INST looks for its MARK before it reads anything.
        if (op == Op::INST && marks_.empty())
            return fail(Errc::mark_missing, "could not find MARK");
        if constexpr (requires { ops_.check_module_name(module, op); })
            return ops_.check_module_name(module, op) || fail_ops();
        return true;
    }
    PICKLEX_DECODE_INLINE bool on_stack_global() {
        Object name{}, module{};
        if (!pop(name)) return false;
        if (!pop(module)) {
            ops_.release(name);
            return false;
        }
        Object obj = ops_.stack_global(module, name);
        ops_.release(name);
        ops_.release(module);
        return push(obj);
    }
    bool on_ext(std::int32_t code) { return push(ops_.extension(code)); }
    PICKLEX_DECODE_INLINE bool on_reduce() {
        Object args{}, callable{};
        if (!pop(args)) return false;
        if (!pop(callable)) {
            ops_.release(args);
            return false;
        }
        Object obj = ops_.reduce(callable, args);
        ops_.release(callable);
        ops_.release(args);
        return push(obj);
    }
    PICKLEX_DECODE_INLINE bool on_newobj() {
        Object args{}, cls{};
        if (!pop(args)) return false;
        if (!pop(cls)) {
            ops_.release(args);
            return false;
        }
        Object obj = ops_.newobj(cls, args);
        ops_.release(cls);
        ops_.release(args);
        return push(obj);
    }
    bool on_newobj_ex() {
        Object kwargs{}, args{}, cls{};
        if (!pop(kwargs)) return false;
        if (!pop(args)) {
            ops_.release(kwargs);
            return false;
        }
        if (!pop(cls)) {
            ops_.release(args);
            ops_.release(kwargs);
            return false;
        }
        Object obj = ops_.newobj_ex(cls, args, kwargs);
        ops_.release(cls);
        ops_.release(args);
        ops_.release(kwargs);
        return push(obj);
    }
    PICKLEX_DECODE_INLINE bool on_build() {
        const auto size = static_cast<std::ptrdiff_t>(stack_.size());
        if (size - 2 < static_cast<std::ptrdiff_t>(fence())) return underflow();
        Object state = stack_.back();
        stack_.pop_back();
        const bool ok = ops_.build(stack_.back(), state);
        ops_.release(state);
        return ok || fail_ops();
    }
    bool on_persid(std::string_view pid) { return push(ops_.persistent_load_text(pid)); }
    bool on_binpersid() {
        if (!ops_.check_persistent_load()) return fail_ops();
        Object pid{};
        if (!pop(pid)) return false;
        Object obj = ops_.persistent_load(pid);
        ops_.release(pid);
        return push(obj);
    }

  private:
    PICKLEX_DECODE_INLINE std::size_t fence() const noexcept { return marks_.empty() ? 0 : marks_.back(); }

    PICKLEX_DECODE_INLINE bool get(std::int64_t index) {
        Object value = index < 0 ? Object{} : memo_.get(static_cast<std::uint64_t>(index));
        if (!value)
            return fail(Errc::memo_missing,
                        "Memo value not found at index " + std::to_string(index));
        return push(ops_.retain(value));
    }
    /// A protocol-0 memo key, parsed as CPython does: int(line, 10) into a Py_ssize_t. The
    /// line is NUL-terminated; like CPython's C-string parse, the key ends at a NUL.
    bool parse_key(std::string_view line, std::int64_t& index) {
        switch (detail::parse_python_decimal(line, index)) {
        case detail::DecimalStatus::ok: return true;
        case detail::DecimalStatus::overflow:
            return fail(Errc::too_large, "Python int too large to convert to C ssize_t");
        case detail::DecimalStatus::invalid: break;
        }
        // CPython quotes the text as a str in its message; text that is not UTF-8 makes that
        // quoting, not the parse, the error.
        if constexpr (requires { ops_.check_number_text(line); })
            if (!ops_.check_number_text(std::string_view(line.data()))) return fail_ops();
        return fail(Errc::bad_argument,
                    "invalid literal for int() with base 10: " +
                        detail::python_repr(std::string_view(line.data())));
    }

    PICKLEX_DECODE_COLD bool fail(Errc code, std::string detail) {
        error_.code = code;
        error_.detail = std::move(detail);
        return false;
    }
    PICKLEX_DECODE_COLD bool fail_ops() {
        error_.code = Errc::external;
        error_.detail.clear();
        ops_.describe_failure(error_);
        return false;
    }
    PICKLEX_DECODE_COLD bool underflow() {
        // Hitting a MARK while popping means the pickle misplaced one.
        return marks_.empty() ? fail(Errc::stack_underflow, "unpickling stack underflow")
                              : fail(Errc::unexpected_mark, "unexpected MARK found");
    }
    PICKLEX_DECODE_INLINE bool marker(std::size_t& mark) {
        if (marks_.empty()) return fail(Errc::mark_missing, "could not find MARK");
        mark = marks_.back();
        marks_.pop_back();
        return true;
    }
    PICKLEX_DECODE_INLINE bool pop(Object& out) {
        if (stack_.size() <= fence()) return underflow();
        out = stack_.back();
        stack_.pop_back();
        return true;
    }
    PICKLEX_DECODE_INLINE bool push(Object obj) {
        if (!obj) [[unlikely]]
            return fail_ops();
        if (!stack_.push_back(obj)) [[unlikely]] {
            ops_.release(obj);
            return fail(Errc::out_of_memory, "out of memory");
        }
        return true;
    }
    void truncate_release(std::size_t size) noexcept {
        // Pop before releasing: a release can run arbitrary code.
        while (stack_.size() > size) {
            Object top = stack_.back();
            stack_.pop_back();
            ops_.release(top);
        }
    }
    PICKLEX_DECODE_INLINE bool pop_into_tuple(std::size_t start) {
        Object* items = stack_.data() + start;
        const std::size_t n = stack_.size() - start;
        // The items leave the stack before the call that steals them, so nothing that runs
        // meanwhile (a GC traversal) sees references the stack no longer owns.
        stack_.truncate(start);
        return push(ops_.make_tuple(items, n));
    }
    PICKLEX_DECODE_INLINE bool extend_from(std::size_t start) {
        const std::size_t size = stack_.size();
        if (start > size || start <= fence()) return underflow();
        if (start == size) return true;
        Object list = stack_[start - 1];
        Object* items = stack_.data() + start;
        stack_.truncate(start);
        return ops_.list_extend(list, items, size - start) || fail_ops();
    }
    PICKLEX_DECODE_INLINE bool setitems_from(std::ptrdiff_t start) {
        const auto size = static_cast<std::ptrdiff_t>(stack_.size());
        if (start > size || start <= static_cast<std::ptrdiff_t>(fence())) return underflow();
        if (start == size) return true;
        if ((size - start) % 2 != 0) return fail(Errc::bad_type, "odd number of items for SETITEMS");
        const auto first = static_cast<std::size_t>(start);
        const bool ok = ops_.dict_setitems(stack_[first - 1], stack_.data() + first,
                                           static_cast<std::size_t>(size - start));
        if (!ok) fail_ops();
        truncate_release(first);
        return ok;
    }

    Ops ops_;
    detail::DecodeBuffer<Object> stack_;
    detail::DecodeBuffer<std::size_t> marks_;
    Memo memo_;
    Object result_{};
    Error error_;
};

} // namespace picklex
