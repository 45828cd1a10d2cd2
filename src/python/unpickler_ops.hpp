// src/python/unpickler_ops.hpp: the Ops policy that makes the StackMachine build Python
// objects, and the settings one load runs with.
//
// The hot constructors (ints, floats, str, bytes, tuples, lists, dicts, exact-list APPENDS)
// are inline here so they inline into the decode loop; everything that calls back into
// Python (globals, REDUCE, BUILD, NEWOBJ, persistent ids, buffers) lives in
// unpickler_ops.cpp.
#pragma once

#include "python.hpp"

#include <cstdint>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "picklex/detail/decode_utf8.hpp"
#include "picklex/error.hpp"
#include "picklex/opcodes.hpp"
#include "picklex/stack_machine.hpp"
#include "refs.hpp"
#include "unpickler_build.hpp"
#include "unpickler_gc.hpp"
#include "unpickler_atom_cache.hpp"

namespace picklex::py {

/// What PERSID/BINPERSID raise without a persistent_load hook, as this interpreter words it.
inline constexpr const char* kNoPersistentLoad =
#if PY_VERSION_HEX >= 0x030C0000
    "A load persistent id instruction was encountered, but no persistent_load function was "
    "specified.";
#else
    "A load persistent id instruction was encountered,\nbut no persistent_load function was "
    "specified.";
#endif

/// The stdlib Unpickler's options plus the hooks of the object being loaded for.
struct LoadSettings {
    ModuleState* state = nullptr; // the interpreter's picklex state; set by every caller
    bool fix_imports = true;
    bool encoding_is_bytes = false; // encoding == "bytes": Python 2 str loads as bytes
    std::string encoding = "ASCII";
    std::string errors = "strict";
    PyObject* buffers = nullptr;  // iterator over out-of-band buffers (borrowed), or null
    PyObject* unpickler = nullptr; // the Unpickler object (borrowed), null for load()/loads()
    bool call_find_class = false; // find_class may be overridden: call the method
    // persistent_load lives in the Unpickler object, which may change it mid-load, so it is
    // read through these slots at every PERSID (null for load()/loads()).
    PyObject* const* pers_func = nullptr;
    PyObject* const* pers_func_self = nullptr;
    // A stream source that read a large bytes payload straight into a bytes object hands the
    // object over (a new reference) instead of having it copied; null when it did not.
    PyObject* (*adopt_payload)(void* source, const char* data, std::size_t size) = nullptr;
    void* payload_source = nullptr;
};

/// CPython's Unpickler.find_class: sys.audit, the Python 2 name mapping for protocols < 3,
/// the import, then the (dotted, for protocol >= 4) attribute lookup.
PyObject* find_class(const ModuleState& st, int protocol, bool fix_imports, PyObject* module_name,
                     PyObject* global_name);

class PyOps {
  public:
    using Object = PyObject*;

    /// Start a load with `settings` (protocol back to 0, no pending error).
    void configure(LoadSettings settings) {
        settings_ = std::move(settings);
        protocol_ = 0;
        own_type_ = nullptr;
        ints_.rearm(settings_.state->ints);
        strs_.rearm(settings_.state->strs);
    }
    GcPause& gc() noexcept { return gc_; }
    /// Forget the borrowed pointers and cached strings of the last load.
    void unconfigure() noexcept {
        interned_.clear();
        settings_.buffers = nullptr;
        settings_.unpickler = nullptr;
        settings_.pers_func = settings_.pers_func_self = nullptr;
        settings_.adopt_payload = nullptr;
        settings_.payload_source = nullptr;
    }
    int protocol() const noexcept { return protocol_; }
    /// The module state of the load in progress.
    ModuleState& st() const noexcept { return *settings_.state; }
    /// The exception type of an error this Ops raised itself (its message goes through the
    /// core Error so it gains the opcode context), or null.
    PyObject* own_error_type() const noexcept { return own_type_; }

    // ---- references ----

    static void release(PyObject* obj) noexcept { Py_DECREF(obj); }
    static PyObject* retain(PyObject* obj) noexcept {
        Py_INCREF(obj);
        return obj;
    }
    void describe_failure(Error& error) {
        if (own_type_) {
            error.code = Errc::bad_type;
            error.detail = std::move(own_detail_);
        } else {
            error.code = Errc::external;
        }
    }
    bool set_protocol(int protocol) noexcept {
        protocol_ = protocol;
        return true;
    }

    // ---- atoms ----

    static PyObject* make_none() noexcept { return Py_NewRef(Py_None); }
    static PyObject* make_bool(bool value) noexcept { return Py_NewRef(value ? Py_True : Py_False); }
    PICKLEX_DECODE_INLINE PyObject* make_int(std::int64_t value) { return ints_.get(value); }
    PICKLEX_DECODE_INLINE static PyObject* make_float(double value) noexcept { return PyFloat_FromDouble(value); }
    PyObject* make_int_text(const char* text, Op op);
    static PyObject* make_long_bytes(const char* p, std::size_t n) {
        return _PyLong_FromByteArray(reinterpret_cast<const unsigned char*>(p), n, 1, 1);
    }
    static PyObject* make_float_text(const char* text);

    PICKLEX_DECODE_INLINE PyObject* make_str_utf8(const char* p, std::size_t n) {
        // Most pickled strings are ASCII: build them directly instead of running the
        // general UTF-8 decoder with its error-handler setup.
        const std::size_t ascii = detail::ascii_prefix(p, n);
        if (ascii != n) [[unlikely]]
            return make_str_utf8_wide(p, n, ascii);
        if (n <= 1) return n ? PyUnicode_FromOrdinal(static_cast<unsigned char>(*p)) : PyUnicode_New(0, 0);
        return n <= StrCacheTable::kMaxLength ? strs_.get(p, n) : new_ascii_str(p, n);
    }
    static PyObject* make_str_raw_unicode_escape(const char* p, std::size_t n) {
        return PyUnicode_DecodeRawUnicodeEscape(p, static_cast<Py_ssize_t>(n), nullptr);
    }
    PyObject* make_py2_str(const char* p, std::size_t n);
    PyObject* make_py2_str_escaped(const char* p, std::size_t n);
    PICKLEX_DECODE_INLINE PyObject* make_bytes(const char* p, std::size_t n) {
        if (n >= kLargePayload) return make_large_bytes(p, n);
        return PyBytes_FromStringAndSize(p, static_cast<Py_ssize_t>(n));
    }
    static PyObject* make_bytearray(const char* p, std::size_t n) {
        if (n >= kLargePayload) return make_large_bytearray(p, n);
        return PyByteArray_FromStringAndSize(p, static_cast<Py_ssize_t>(n));
    }
    PyObject* next_buffer();
    static bool make_readonly(PyObject*& top);

    // ---- containers ----

    PICKLEX_DECODE_INLINE static PyObject* make_tuple(PyObject** items, std::size_t n) {
        PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(n));
        if (!tuple) return release_all(items, n), nullptr;
        for (std::size_t i = 0; i < n; ++i)
            PyTuple_SET_ITEM(tuple, static_cast<Py_ssize_t>(i), items[i]);
        return tuple;
    }
    PICKLEX_DECODE_INLINE static PyObject* make_list(PyObject** items, std::size_t n) {
        PyObject* list = PyList_New(static_cast<Py_ssize_t>(n));
        if (!list) return release_all(items, n), nullptr;
        for (std::size_t i = 0; i < n; ++i)
            PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), items[i]);
        return list;
    }
    static PyObject* make_dict(PyObject** items, std::size_t n) {
        PyObject* dict = n > 10 ? _PyDict_NewPresized(static_cast<Py_ssize_t>(n / 2)) : PyDict_New();
        if (dict && !set_pairs(dict, items, n)) Py_CLEAR(dict);
        return dict;
    }
    static PyObject* make_frozenset(PyObject** items, std::size_t n);
    static PyObject* make_empty_list() noexcept { return PyList_New(0); }
    static PyObject* make_empty_dict() noexcept { return PyDict_New(); }
    static PyObject* make_empty_set() noexcept { return PySet_New(nullptr); }

    PICKLEX_DECODE_INLINE bool list_extend(PyObject* list, PyObject** items, std::size_t n) {
        if (PyList_CheckExact(list)) return append_to_exact_list(list, items, n);
        GcPause::Resume user_code(gc_);
        return list_extend_generic(list, items, n);
    }
    PICKLEX_DECODE_INLINE bool dict_setitems(PyObject* dict, PyObject** items, std::size_t n) {
        if (PyDict_CheckExact(dict)) return set_pairs(dict, items, n);
        GcPause::Resume user_code(gc_);
        for (std::size_t i = 0; i < n; i += 2)
            if (PyObject_SetItem(dict, items[i], items[i + 1]) < 0) return false;
        return true;
    }
    bool set_additems(PyObject* set, PyObject** items, std::size_t n);

    // ---- globals, calls, persistence ----

    PyObject* find_global(std::string_view module, std::string_view name, Op op);
    static bool check_module_name(std::string_view module, Op op);
    static bool check_number_text(std::string_view text);
    PyObject* stack_global(PyObject* module, PyObject* name);
    PyObject* extension(std::int32_t code);
    PyObject* reduce(PyObject* callable, PyObject* args) {
        GcPause::Resume user_code(gc_);
        return PyObject_CallObject(callable, args);
    }
    PyObject* newobj(PyObject* cls, PyObject* args) { return newobj_ex(cls, args, nullptr); }
    PyObject* newobj_ex(PyObject* cls, PyObject* args, PyObject* kwargs);
    PyObject* instantiate(PyObject* cls, PyObject* args);
    bool build(PyObject* inst, PyObject* state);
    bool check_persistent_load();
    PyObject* persistent_load(PyObject* pid);
    PyObject* persistent_load_text(std::string_view pid);

  private:
    /// Payloads from this size on are copied into memory backed by huge pages where the OS
    /// offers them: first-touch page faults otherwise cost more than the copy itself.
    static constexpr std::size_t kLargePayload = std::size_t{4} << 20;
    PyObject* make_large_bytes(const char* p, std::size_t n);
    static PyObject* make_large_bytearray(const char* p, std::size_t n);

    /// make_str_utf8() past an ASCII prefix of `ascii` bytes.
    static PyObject* make_str_utf8_wide(const char* p, std::size_t n, std::size_t ascii);
    static void release_all(PyObject** items, std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i) Py_DECREF(items[i]);
    }
    PICKLEX_DECODE_INLINE static bool set_pairs(PyObject* dict, PyObject** items, std::size_t n) {
        for (std::size_t i = 0; i < n; i += 2)
            if (PyDict_SetItem(dict, items[i], items[i + 1]) < 0) return false;
        return true;
    }
    /// APPENDS into an exact list: grow its item array once and move the references in,
    /// with list_resize's over-allocation so repeated batches stay amortized O(1).
    PICKLEX_DECODE_INLINE static bool append_to_exact_list(PyObject* obj, PyObject** items, std::size_t n) {
        auto* list = reinterpret_cast<PyListObject*>(obj);
        const Py_ssize_t size = Py_SIZE(list);
        const auto count = static_cast<Py_ssize_t>(n);
        if (count > PY_SSIZE_T_MAX / 2 - size) return release_all(items, n), PyErr_NoMemory(), false;
        const Py_ssize_t need = size + count;
        if (need > list->allocated) {
            Py_ssize_t allocated = (need + (need >> 3) + 6) & ~static_cast<Py_ssize_t>(3);
            if (static_cast<std::size_t>(allocated) > PY_SSIZE_T_MAX / sizeof(PyObject*))
                return release_all(items, n), PyErr_NoMemory(), false;
            void* grown = PyMem_Realloc(list->ob_item, static_cast<std::size_t>(allocated) *
                                                           sizeof(PyObject*));
            if (!grown) return release_all(items, n), PyErr_NoMemory(), false;
            list->ob_item = static_cast<PyObject**>(grown);
            list->allocated = allocated;
        }
        std::memcpy(list->ob_item + size, items, n * sizeof(PyObject*));
        Py_SET_SIZE(list, need);
        return true;
    }
    bool list_extend_generic(PyObject* list, PyObject** items, std::size_t n);
    /// BUILD: may instances of `type` take the default state through the attribute store?
    bool is_plain_state_type(PyTypeObject* type);
    /// BUILD: the default __setstate__'s dict part for an instance of a plain class.
    bool store_plain_state(PyObject* inst, PyObject* dict_state);
    PyObject* call_find_class(PyObject* module, PyObject* name);
    /// Raise `type(detail)` with the opcode context added by the front (see own_error_type).
    PyObject* own_error(PyObject* type, std::string detail) {
        own_type_ = type;
        own_detail_ = std::move(detail);
        return nullptr;
    }

    LoadSettings settings_;
    GcPause gc_;
    InternCache interned_;
    StateTypeCache state_types_;
    IntCache ints_;
    StrCache strs_;
    int protocol_ = 0;
    PyObject* own_type_ = nullptr;
    std::string own_detail_;
};

using PyMachine = StackMachine<PyOps>;

} // namespace picklex::py
