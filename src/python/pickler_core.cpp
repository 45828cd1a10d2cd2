// src/python/pickler_core.cpp: configuration, the save() dispatch, dump(), memo and streaming.
#include <cstring>

#include "module_api.hpp"
#include "module_state.hpp"
#include "pickler.hpp"
#include "stack_guard.hpp"

namespace picklex::py {

/// Streams committed frames and large payloads to `file.write`.
class PicklerCore::StreamSink final : public Sink {
  public:
    explicit StreamSink(PicklerCore& core) : core_(core) {}

    bool write(const char* data, std::size_t size, const void* owner) override {
        Ref chunk;
        if (owner) {
            chunk = Ref::borrow(static_cast<PyObject*>(const_cast<void*>(owner)));
        } else if (data == core_.writer.data()) {
            chunk = Ref::steal(core_.output_.take(core_.writer));
        } else {
            chunk = Ref::steal(PyBytes_FromStringAndSize(data, static_cast<Py_ssize_t>(size)));
        }
        if (!chunk) return false;
        Ref result = Ref::steal(PyObject_CallOneArg(core_.write.get(), chunk.get()));
        return static_cast<bool>(result);
    }

  private:
    PicklerCore& core_;
};

PicklerCore::PicklerCore(ModuleState& state) : state_(&state), writer(output_.storage()) {}

PicklerCore::~PicklerCore() { clear_memo(); }

bool PicklerCore::set_protocol(PyObject* protocol, bool fix) {
    long value;
    if (!protocol || protocol == Py_None) {
        value = st().default_protocol;
    } else {
        value = PyLong_AsLong(protocol);
        if (value == -1 && PyErr_Occurred()) return false;
        if (value < 0) {
            value = kHighestProtocol;
        } else if (value > kHighestProtocol) {
            PyErr_Format(PyExc_ValueError, "pickle protocol must be <= %d", kHighestProtocol);
            return false;
        }
    }
    proto = static_cast<int>(value);
    bin = proto > 0;
    fix_imports = fix && proto < 3;
    return true;
}

bool PicklerCore::set_buffer_callback(PyObject* callback) {
    if (callback == Py_None) callback = nullptr;
    if (callback && proto < 5) {
        PyErr_SetString(PyExc_ValueError, "buffer_callback needs protocol >= 5");
        return false;
    }
    buffer_callback = Ref::borrow(callback);
    return true;
}

bool PicklerCore::set_output_file(PyObject* file) {
    if (lookup_attr(file, st().names.write, write) < 0) return false;
    if (!write) {
        PyErr_SetString(PyExc_TypeError, "file must have a 'write' attribute");
        return false;
    }
    return true;
}

void PicklerCore::clear_memo() {
    memo.for_each([](const void* key, std::size_t) {
        Py_DECREF(static_cast<PyObject*>(const_cast<void*>(key)));
    });
    memo.clear();
}

void PicklerCore::clear_refs() {
    write.reset();
    pers_func.reset();
    pers_func_self = nullptr;
    dispatch_table.reset();
    fast_memo_.reset();
    reducer_override_.reset();
    buffer_callback.reset();
    clear_memo();
}

void PicklerCore::reset_for_reuse() {
    clear_refs();
    proto = 0;
    bin = 0;
    fix_imports = false;
    fast = 0;
    output_.reset(writer);
}

int PicklerCore::traverse(visitproc visit, void* arg) {
    Py_VISIT(write.get());
    Py_VISIT(pers_func.get());
    Py_VISIT(dispatch_table.get());
    Py_VISIT(fast_memo_.get());
    Py_VISIT(reducer_override_.get());
    Py_VISIT(buffer_callback.get());
    return 0;
}

bool PicklerCore::writer_failed() {
    raise_core_error(st(), writer.error(), /*unpickling=*/false);
    return false;
}

// ---- fast mode: no memo, so guard against cycles with an id set past a nesting depth ----

namespace {
constexpr int kFastNestingLimit = 50;
}

bool PicklerCore::fast_save_enter(PyObject* obj) {
    if (++fast_nesting_ < kFastNestingLimit) return true;
    // On failure the nesting count goes negative, so the fast_save_leave() calls of every
    // level being unwound do nothing.
    auto failed = [this] {
        fast_nesting_ = -1;
        return false;
    };
    if (!fast_memo_) {
        fast_memo_ = Ref::steal(PyDict_New());
        if (!fast_memo_) return failed();
    }
    Ref key = Ref::steal(PyLong_FromVoidPtr(obj));
    if (!key) return failed();
    const int seen = PyDict_Contains(fast_memo_.get(), key.get());
    if (seen < 0) return failed();
    if (seen) {
        PyErr_Format(PyExc_ValueError,
                     "fast mode: can't pickle cyclic objects including object type %.200s at %p",
                     Py_TYPE(obj)->tp_name, static_cast<void*>(obj));
        return failed();
    }
    return PyDict_SetItem(fast_memo_.get(), key.get(), Py_None) == 0 || failed();
}

bool PicklerCore::fast_save_leave(PyObject* obj) {
    if (fast_nesting_-- < kFastNestingLimit) return true;
    Ref key = Ref::steal(PyLong_FromVoidPtr(obj));
    return key && PyDict_DelItem(fast_memo_.get(), key.get()) == 0;
}

// ---- persistent ids ----

/// 1 when obj was written as a persistent id, 0 when it was not, -1 on error.
int PicklerCore::save_pers(PyObject* obj) {
    // Held for the call: the hook may replace itself (Pickler.persistent_id = ...).
    Ref func = Ref::borrow(pers_func.get());
    PyObject* func_self = pers_func_self;
    Ref pid = Ref::steal(func_self ? PyObject_CallFunctionObjArgs(func.get(), func_self, obj, nullptr)
                                   : PyObject_CallOneArg(func.get(), obj));
    if (!pid) return -1;
    if (pid.get() == Py_None) return 0;
    if (writer.bin()) {
        if (!save(pid.get(), /*pers_save=*/true)) return -1;
        return writer.write_op(Op::BINPERSID) ? 1 : (writer_failed(), -1);
    }
    Ref text = Ref::steal(PyObject_Str(pid.get()));
    if (!text) return -1;
    if (!PyUnicode_IS_ASCII(text.get())) {
        PyErr_SetString(st().PicklingError,
                        "persistent IDs in protocol 0 must be ASCII strings");
        return -1;
    }
    const std::string_view id(static_cast<const char*>(PyUnicode_DATA(text.get())),
                              static_cast<std::size_t>(PyUnicode_GET_LENGTH(text.get())));
    return writer.save_persid_text(id) ? 1 : (writer_failed(), -1);
}

// ---- the dispatch ----

namespace {

/// Py_EnterRecursiveCall paired with its leave on every path.
class RecursionGuard {
  public:
    explicit RecursionGuard(std::uintptr_t stack_floor)
        : entered_(!StackGuard::exhausted(stack_floor) &&
                   Py_EnterRecursiveCall(" while pickling an object") == 0) {}
    ~RecursionGuard() {
        if (entered_) Py_LeaveRecursiveCall();
    }
    bool entered() const { return entered_; }

  private:
    bool entered_;
};

} // namespace

bool PicklerCore::save_object(PyObject* obj, bool pers_save) {
    if (!pers_save && pers_func) {
        const int status = save_pers(obj);
        if (status != 0) return status > 0;
    }

    PyTypeObject* type = Py_TYPE(obj);

    // Atoms are never memoized, so they skip the memo lookup and the recursion guard.
    if (obj == Py_None) return writer.save_none() || writer_failed();
    if (obj == Py_True || obj == Py_False) return writer.save_bool(obj == Py_True) || writer_failed();
    if (type == &PyLong_Type) return save_long(obj);
    if (type == &PyFloat_Type) return save_float(obj);

    const std::size_t memo_index = memo.find(obj);
    if (memo_index != MemoTable::kNotFound) return memo_get(memo_index);

    if (type == &PyBytes_Type) return save_bytes(obj);
    if (type == &PyUnicode_Type) return save_unicode(obj);

    RecursionGuard guard(stack_floor_);
    if (!guard.entered()) return false;

    if (type == &PyDict_Type) return save_dict(obj);
    if (type == &PySet_Type) return save_set(obj);
    if (type == &PyFrozenSet_Type) return save_frozenset(obj);
    if (type == &PyList_Type) return save_list(obj);
    if (type == &PyTuple_Type) return save_tuple(obj);
    if (type == &PyByteArray_Type) return save_bytearray(obj);
    if (type == &PyPickleBuffer_Type) return save_picklebuffer(obj);

    if (reducer_override_) {
        Ref reduce_value = Ref::steal(PyObject_CallOneArg(reducer_override_.get(), obj));
        if (!reduce_value) return false;
        if (reduce_value.get() != Py_NotImplemented) return save_reduce_value(obj, reduce_value.get());
    }

    if (type == &PyType_Type) return save_type(obj);
    if (type == &PyFunction_Type) return save_global(obj, nullptr);

    // A reduction callable from the pickler's dispatch table or copyreg's, else the
    // object's own __reduce_ex__ / __reduce__.
    Ref reduce_func;
    if (!dispatch_table) {
        PyObject* found = PyDict_GetItemWithError(st().dispatch_table,
                                                  reinterpret_cast<PyObject*>(type));
        if (!found && PyErr_Occurred()) return false;
        reduce_func = Ref::borrow(found);
    } else {
        reduce_func = Ref::steal(PyObject_GetItem(dispatch_table.get(),
                                                  reinterpret_cast<PyObject*>(type)));
        if (!reduce_func) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) return false;
            PyErr_Clear();
        }
    }

    Ref reduce_value;
    if (reduce_func) {
        reduce_value = Ref::steal(PyObject_CallOneArg(reduce_func.get(), obj));
    } else if (PyType_IsSubtype(type, &PyType_Type)) {
        return save_global(obj, nullptr);
    } else {
        Certificate certificate;
        const bool certified = proto >= 2 && plain_certificate(type, certificate);
        if (certified) {
            const int written = save_plain_instance(obj, certificate);
            if (written != 0) return written > 0;
        }
        const Names& names = st().names;
        if (lookup_attr(obj, names.__reduce_ex__, reduce_func) < 0) return false;
        if (reduce_func) {
            Ref protocol = Ref::steal(PyLong_FromLong(proto));
            if (!protocol) return false;
            reduce_value = Ref::steal(PyObject_CallOneArg(reduce_func.get(), protocol.get()));
            if (reduce_value && !certified) maybe_certify_plain(obj, reduce_value.get());
        } else {
            if (lookup_attr(obj, names.__reduce__, reduce_func) < 0) return false;
            if (!reduce_func) {
                PyErr_Format(st().PicklingError, "can't pickle '%.200s' object: %R",
                             type->tp_name, obj);
                return false;
            }
            reduce_value = Ref::steal(PyObject_CallNoArgs(reduce_func.get()));
        }
    }
    if (!reduce_value) return false;
    return save_reduce_value(obj, reduce_value.get());
}

bool PicklerCore::save_reduce_value(PyObject* obj, PyObject* reduce_value) {
    if (PyUnicode_Check(reduce_value)) return save_global(obj, reduce_value);
    if (!PyTuple_Check(reduce_value)) {
        PyErr_SetString(st().PicklingError, "__reduce__ must return a string or tuple");
        return false;
    }
    return save_reduce(reduce_value, obj);
}

bool PicklerCore::dump(PyObject* obj, PyObject* owner) {
    if (busy_) {
        PyErr_SetString(PyExc_RuntimeError, "Pickler.dump() called while the same pickler is dumping");
        return false;
    }
    busy_ = true;
    stack_floor_ = StackGuard::floor();
    const bool ok = dump_unguarded(obj, owner);
    busy_ = false;
    return ok;
}

bool PicklerCore::dump_unguarded(PyObject* obj, PyObject* owner) {
    // The hook is looked up on every dump, as the stdlib does, and dropped afterwards so
    // the pickler does not keep a bound method of itself alive.
    reducer_override_.reset();
    if (owner && lookup_attr(owner, st().names.reducer_override, reducer_override_) < 0)
        return false;

    StreamSink sink(*this);
    if (!writer.begin(proto)) return writer_failed();
    writer.set_bin(bin != 0);
    writer.set_sink(write ? &sink : nullptr);
    fast_nesting_ = 0;

    bool ok = true;
    if (proto >= 2) {
        ok = writer.write_op_u8(Op::PROTO, static_cast<std::uint8_t>(proto)) || writer_failed();
        if (proto >= 4) writer.enable_framing(true);
    }
    ok = ok && save(obj) && (writer.write_op(Op::STOP) || writer_failed());
    if (ok) {
        writer.commit_frame();
        if (write) ok = writer.flush() || writer_failed();
    }
    writer.enable_framing(false);
    writer.set_sink(nullptr);
    reducer_override_.reset();
    return ok;
}

PyObject* PicklerCore::take_result() { return output_.take(writer); }

} // namespace picklex::py
