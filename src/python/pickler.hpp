// src/python/pickler.hpp: the object walker that pickles PyObject graphs into a Writer.
//
// PicklerCore holds everything one pickling run needs: the Writer, the memo, the hooks
// (persistent_id, dispatch_table, reducer_override, buffer_callback) and the output stream.
// The Python `Pickler` type embeds one; the module-level dumps() uses one on the C stack.
// Each save_<type> mirrors the stdlib pickler's decision for that type, so the bytes match.
#pragma once

#include "python.hpp"

#include "output_buffer.hpp"
#include "picklex/memo_table.hpp"
#include "picklex/writer.hpp"
#include "refs.hpp"

namespace picklex::py {

/// The value of an int stored in a single digit, read without a call; false otherwise.
inline bool compact_long_value(PyObject* obj, long long& value) {
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact(reinterpret_cast<PyLongObject*>(obj))) return false;
    value = PyUnstable_Long_CompactValue(reinterpret_cast<PyLongObject*>(obj));
    return true;
#else
    const Py_ssize_t size = Py_SIZE(obj);
    if (size < -1 || size > 1) return false;
    value = size * static_cast<long long>(reinterpret_cast<PyLongObject*>(obj)->ob_digit[0]);
    return true;
#endif
}

struct ResolvedGlobal;
struct ModuleState;
struct Certificate;

class PicklerCore {
    // Declared first: the Writer below allocates through it.
    OutputBuffer output_;
    ModuleState* state_;

  public:
    /// A pickler of the interpreter whose picklex module state is `state`.
    explicit PicklerCore(ModuleState& state);
    ~PicklerCore();
    PicklerCore(const PicklerCore&) = delete;
    PicklerCore& operator=(const PicklerCore&) = delete;

    /// The module state of this pickler's interpreter.
    ModuleState& st() const noexcept { return *state_; }

    // ---- configuration (the Pickler constructor's arguments) ----

    /// protocol: None for the default, negative for the highest. Raises ValueError/TypeError.
    bool set_protocol(PyObject* protocol, bool fix_imports);
    /// buffer_callback: None or a callable; needs protocol >= 5.
    bool set_buffer_callback(PyObject* callback);
    /// Stream pickling to `file.write`; without it dump() keeps the pickle in memory.
    bool set_output_file(PyObject* file);

    // ---- running ----

    /// Pickle `obj`: PROTO, the object, STOP. In memory, or streamed to the file.
    /// `owner` is the Python Pickler (for the reducer_override lookup), or nullptr.
    bool dump(PyObject* obj, PyObject* owner);
    /// The in-memory pickle as bytes, after dump(); empties the output.
    PyObject* take_result();
    /// Inside dump(): re-initialising or starting another dump must be refused.
    bool dumping() const noexcept { return busy_; }
    /// Forget every memoized object (Pickler.clear_memo()).
    void clear_memo();
    /// Drop every Python reference held (Pickler tp_clear / re-init).
    void clear_refs();
    /// Back to a freshly constructed state, keeping allocations for the next pickle.
    void reset_for_reuse();
    int traverse(visitproc visit, void* arg);

    // ---- state visible through the Pickler type ----

    int proto = 0;
    int bin = 0; ///< binary opcodes; pickle exposes it as a settable attribute
    bool fix_imports = false;
    int fast = 0;
    MemoTable memo;                     ///< keys hold a strong reference each
    Ref write;                          ///< file.write, or empty for dumps()
    Ref pers_func;                      ///< persistent_id (function, or bound method)
    PyObject* pers_func_self = nullptr; ///< borrowed self when pers_func was unbound
    Ref dispatch_table;                 ///< private dispatch table, or empty
    Ref buffer_callback;
    Writer writer;

    /// Memoize `obj` at index `index` (memo proxy assignment); false on allocation failure.
    bool memo_set(PyObject* obj, std::size_t index) {
        bool inserted = false;
        if (!memo.set(obj, index, &inserted)) {
            PyErr_NoMemory();
            return false;
        }
        if (inserted) Py_INCREF(obj);
        return true;
    }

  private:
    class StreamSink;

    bool dump_unguarded(PyObject* obj, PyObject* owner);
    /// Save any object. Floats and small ints, the bulk of numeric data, are written here
    /// inline; everything else goes through save_object().
    bool save(PyObject* obj, bool pers_save = false) {
        if (!writer.opcode_boundary()) return writer_failed();
        if (!pers_func) {
            PyTypeObject* type = Py_TYPE(obj);
            if (type == &PyFloat_Type) return writer.save_float(PyFloat_AS_DOUBLE(obj)) || writer_failed();
            long long small;
            if (type == &PyLong_Type && compact_long_value(obj, small))
                return writer.save_int(small) || writer_failed();
        }
        return save_object(obj, pers_save);
    }
    bool save_object(PyObject* obj, bool pers_save);
    int save_pers(PyObject* obj);
    bool save_reduce_value(PyObject* obj, PyObject* reduce_value);

    // atoms (pickler_atoms.cpp)
    bool save_long(PyObject* obj);
    bool save_big_long(PyObject* obj);
    bool save_float(PyObject* obj);
    bool save_unicode(PyObject* obj);
    bool save_bytes(PyObject* obj);
    bool save_bytearray(PyObject* obj);
    bool save_picklebuffer(PyObject* obj);

    // containers (pickler_containers.cpp)
    bool save_tuple(PyObject* obj);
    bool save_list(PyObject* obj);
    bool batch_list(PyObject* iter);
    bool batch_list_exact(PyObject* list);
    bool save_dict(PyObject* obj);
    bool batch_dict(PyObject* iter);
    bool batch_dict_exact(PyObject* dict);
    bool save_set(PyObject* obj);
    bool save_frozenset(PyObject* obj);

    // globals and reductions (pickler_reduce.cpp)
    bool save_global(PyObject* obj, PyObject* name);
    bool write_global(PyObject* obj, ResolvedGlobal& resolved);
    /// GLOBAL with a module and a name line (protocol < 4), Python 2 names when fixing imports.
    bool write_global_text(PyObject* module, PyObject* name);
    /// A dotted name below protocol 4, as getattr reductions in this interpreter's form.
    bool write_nested_global(const ResolvedGlobal& resolved);
    bool save_type(PyObject* obj);
    bool save_reduce(PyObject* args, PyObject* obj);

    // plain class instances (pickler_plain.cpp)
    /// A copy of the certificate of a class whose instances can skip __reduce_ex__, if any.
    bool plain_certificate(PyTypeObject* type, Certificate& out) const;
    void maybe_certify_plain(PyObject* obj, PyObject* reduce_value);
    /// 1 when written, 0 when the instance needs the general path, -1 on error.
    int save_plain_instance(PyObject* obj, const Certificate& certificate);

    // memo
    bool memo_put(PyObject* obj) {
        if (fast) return true;
        const std::size_t index = memo.size();
        return memo_set(obj, index) && (writer.save_memo_put(index) || writer_failed());
    }
    bool memo_get(std::size_t index) { return writer.save_memo_get(index) || writer_failed(); }

    // fast mode cycle guard
    bool fast_save_enter(PyObject* obj);
    bool fast_save_leave(PyObject* obj);

    /// Turn the Writer's error into a Python exception; always returns false.
    bool writer_failed();

    Ref reducer_override_;
    Ref fast_memo_;
    int fast_nesting_ = 0;
    bool busy_ = false; ///< inside dump(): a second, concurrent or nested, dump is refused
    std::uintptr_t stack_floor_ = 0; ///< this dump's thread's StackGuard::floor()
};

} // namespace picklex::py
