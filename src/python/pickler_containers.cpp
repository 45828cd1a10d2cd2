// src/python/pickler_containers.cpp: tuples, lists, dicts, sets and frozensets.
//
// Batching (MARK ... APPENDS/SETITEMS/ADDITEMS per 1000 items, a lone APPEND/SETITEM for one
// item) and the recursive-tuple dance follow the stdlib pickler exactly: they shape the bytes.
#include "module_state.hpp"
#include "pickler.hpp"

namespace picklex::py {

namespace {

/// Py_EnterRecursiveCall around the items of a container, as the stdlib guards them.
template <typename F> bool with_recursion_guard(F&& body) {
    if (Py_EnterRecursiveCall(" while pickling an object")) return false;
    const bool ok = body();
    Py_LeaveRecursiveCall();
    return ok;
}

/// Next item of an iterator: 1 with a new reference in `out`, 0 when exhausted, -1 on error.
int next_item(PyObject* iter, Ref& out) {
    out = Ref::steal(PyIter_Next(iter));
    if (out) return 1;
    return PyErr_Occurred() ? -1 : 0;
}

bool is_pair(PyObject* item) {
    if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) return true;
    PyErr_SetString(PyExc_TypeError, "dict items iterator must return 2-tuples");
    return false;
}

} // namespace

// ---- tuple ----

bool PicklerCore::save_tuple(PyObject* obj) {
    const Py_ssize_t len = PyTuple_GET_SIZE(obj);
    if (len == 0) {
        const bool ok = proto ? writer.write_op(Op::EMPTY_TUPLE)
                              : writer.write_op(Op::MARK) && writer.write_op(Op::TUPLE);
        return ok || writer_failed();
    }

    const bool short_form = len <= 3 && proto >= 2;
    if (!short_form && !writer.write_op(Op::MARK)) return writer_failed();
    for (Py_ssize_t i = 0; i < len; ++i)
        if (!save(PyTuple_GET_ITEM(obj, i))) return false;

    // A tuple that reached itself through its items is in the memo now: drop what was
    // pushed and fetch the memoized copy instead.
    const std::size_t index = memo.find(obj);
    if (index != MemoTable::kNotFound) {
        if (short_form) {
            for (Py_ssize_t i = 0; i < len; ++i)
                if (!writer.write_op(Op::POP)) return writer_failed();
        } else if (writer.bin()) {
            if (!writer.write_op(Op::POP_MARK)) return writer_failed();
        } else {
            for (Py_ssize_t i = 0; i <= len; ++i)
                if (!writer.write_op(Op::POP)) return writer_failed();
        }
        return memo_get(index);
    }
    static constexpr Op kSmallTuple[] = {Op::EMPTY_TUPLE, Op::TUPLE1, Op::TUPLE2, Op::TUPLE3};
    if (!writer.write_op(short_form ? kSmallTuple[len] : Op::TUPLE)) return writer_failed();
    return memo_put(obj);
}

// ---- list ----

bool PicklerCore::batch_list(PyObject* iter) {
    Ref item;
    int got;
    if (proto == 0) {
        while ((got = next_item(iter, item)) > 0) {
            if (!save(item.get())) return false;
            if (!writer.write_op(Op::APPEND)) return writer_failed();
        }
        return got == 0;
    }
    std::size_t n;
    do {
        Ref first;
        if ((got = next_item(iter, first)) <= 0) return got == 0;
        if ((got = next_item(iter, item)) < 0) return false;
        if (got == 0) {
            return save(first.get()) && (writer.write_op(Op::APPEND) || writer_failed());
        }
        if (!writer.write_op(Op::MARK)) return writer_failed();
        if (!save(first.get())) return false;
        n = 1;
        while (item) {
            if (!save(item.get())) return false;
            item.reset();
            if (++n == wire::kBatchSize) break;
            if (next_item(iter, item) < 0) return false;
        }
        if (!writer.write_op(Op::APPENDS)) return writer_failed();
    } while (n == wire::kBatchSize);
    return true;
}

bool PicklerCore::batch_list_exact(PyObject* list) {
    if (PyList_GET_SIZE(list) == 1) {
        Ref item = Ref::borrow(PyList_GET_ITEM(list, 0));
        return save(item.get()) && (writer.write_op(Op::APPEND) || writer_failed());
    }
    // The list may change while its items are saved: re-read its size every step.
    Py_ssize_t total = 0;
    do {
        if (!writer.write_op(Op::MARK)) return writer_failed();
        std::size_t this_batch = 0;
        while (total < PyList_GET_SIZE(list)) {
            Ref item = Ref::borrow(PyList_GET_ITEM(list, total));
            if (!save(item.get())) return false;
            ++total;
            if (++this_batch == wire::kBatchSize) break;
        }
        if (!writer.write_op(Op::APPENDS)) return writer_failed();
    } while (total < PyList_GET_SIZE(list));
    return true;
}

bool PicklerCore::save_list(PyObject* obj) {
    bool ok = !fast || fast_save_enter(obj);
    if (ok) {
        ok = (writer.bin() ? writer.write_op(Op::EMPTY_LIST)
                           : writer.write_op(Op::MARK) && writer.write_op(Op::LIST)) ||
             writer_failed();
    }
    ok = ok && memo_put(obj);
    if (ok && PyList_GET_SIZE(obj) != 0) {
        if (PyList_CheckExact(obj) && proto > 0) {
            ok = with_recursion_guard([&] { return batch_list_exact(obj); });
        } else {
            Ref iter = Ref::steal(PyObject_GetIter(obj));
            ok = iter && with_recursion_guard([&] { return batch_list(iter.get()); });
        }
    }
    if (fast && !fast_save_leave(obj)) ok = false;
    return ok;
}

// ---- dict ----

bool PicklerCore::batch_dict(PyObject* iter) {
    Ref item;
    int got;
    if (proto == 0) {
        while ((got = next_item(iter, item)) > 0) {
            if (!is_pair(item.get())) return false;
            if (!save(PyTuple_GET_ITEM(item.get(), 0)) || !save(PyTuple_GET_ITEM(item.get(), 1)))
                return false;
            if (!writer.write_op(Op::SETITEM)) return writer_failed();
        }
        return got == 0;
    }
    std::size_t n;
    do {
        Ref first;
        if ((got = next_item(iter, first)) <= 0) return got == 0;
        if (!is_pair(first.get())) return false;
        if ((got = next_item(iter, item)) < 0) return false;
        if (got == 0) {
            return save(PyTuple_GET_ITEM(first.get(), 0)) &&
                   save(PyTuple_GET_ITEM(first.get(), 1)) &&
                   (writer.write_op(Op::SETITEM) || writer_failed());
        }
        if (!writer.write_op(Op::MARK)) return writer_failed();
        if (!save(PyTuple_GET_ITEM(first.get(), 0)) || !save(PyTuple_GET_ITEM(first.get(), 1)))
            return false;
        n = 1;
        while (item) {
            if (!is_pair(item.get())) return false;
            if (!save(PyTuple_GET_ITEM(item.get(), 0)) || !save(PyTuple_GET_ITEM(item.get(), 1)))
                return false;
            item.reset();
            if (++n == wire::kBatchSize) break;
            if (next_item(iter, item) < 0) return false;
        }
        if (!writer.write_op(Op::SETITEMS)) return writer_failed();
    } while (n == wire::kBatchSize);
    return true;
}

bool PicklerCore::batch_dict_exact(PyObject* dict) {
    const Py_ssize_t dict_size = PyDict_GET_SIZE(dict);
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* value;
    if (dict_size == 1) {
        PyDict_Next(dict, &pos, &key, &value);
        Ref k = Ref::borrow(key), v = Ref::borrow(value);
        return save(k.get()) && save(v.get()) && (writer.write_op(Op::SETITEM) || writer_failed());
    }
    std::size_t i;
    do {
        i = 0;
        if (!writer.write_op(Op::MARK)) return writer_failed();
        while (PyDict_Next(dict, &pos, &key, &value)) {
            Ref k = Ref::borrow(key), v = Ref::borrow(value);
            if (!save(k.get()) || !save(v.get())) return false;
            if (++i == wire::kBatchSize) break;
        }
        if (!writer.write_op(Op::SETITEMS)) return writer_failed();
        if (PyDict_GET_SIZE(dict) != dict_size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            return false;
        }
    } while (i == wire::kBatchSize);
    return true;
}

bool PicklerCore::save_dict(PyObject* obj) {
    bool ok = !fast || fast_save_enter(obj);
    if (ok) {
        ok = (writer.bin() ? writer.write_op(Op::EMPTY_DICT)
                           : writer.write_op(Op::MARK) && writer.write_op(Op::DICT)) ||
             writer_failed();
    }
    ok = ok && memo_put(obj);
    if (ok && PyDict_GET_SIZE(obj) != 0) {
        if (PyDict_CheckExact(obj) && proto > 0) {
            ok = with_recursion_guard([&] { return batch_dict_exact(obj); });
        } else {
            Ref items = Ref::steal(PyObject_CallMethodNoArgs(obj, st().names.items));
            Ref iter = Ref::steal(items ? PyObject_GetIter(items.get()) : nullptr);
            ok = iter && with_recursion_guard([&] { return batch_dict(iter.get()); });
        }
    }
    if (fast && !fast_save_leave(obj)) ok = false;
    return ok;
}

// ---- set and frozenset ----

namespace {

/// (type, (list(items),)): how sets travel before protocol 4.
PyObject* set_reduce_value(PyTypeObject* type, PyObject* obj) {
    Ref items = Ref::steal(PySequence_List(obj));
    if (!items) return nullptr;
    return Py_BuildValue("(O(O))", reinterpret_cast<PyObject*>(type), items.get());
}

} // namespace

bool PicklerCore::save_set(PyObject* obj) {
    if (proto < 4) {
        Ref reduce_value = Ref::steal(set_reduce_value(&PySet_Type, obj));
        return reduce_value && save_reduce(reduce_value.get(), obj);
    }
    if (!writer.write_op(Op::EMPTY_SET)) return writer_failed();
    if (!memo_put(obj)) return false;
    const Py_ssize_t set_size = PySet_GET_SIZE(obj);
    if (set_size == 0) return true;
    Py_ssize_t pos = 0;
    PyObject* key;
    Py_hash_t hash;
    std::size_t i;
    do {
        i = 0;
        if (!writer.write_op(Op::MARK)) return writer_failed();
        while (_PySet_NextEntry(obj, &pos, &key, &hash)) {
            Ref item = Ref::borrow(key);
            if (!save(item.get())) return false;
            if (++i == wire::kBatchSize) break;
        }
        if (!writer.write_op(Op::ADDITEMS)) return writer_failed();
        if (PySet_GET_SIZE(obj) != set_size) {
            PyErr_SetString(PyExc_RuntimeError, "set changed size during iteration");
            return false;
        }
    } while (i == wire::kBatchSize);
    return true;
}

bool PicklerCore::save_frozenset(PyObject* obj) {
    if (fast && !fast_save_enter(obj)) return false;
    auto body = [&]() -> bool {
        if (proto < 4) {
            Ref reduce_value = Ref::steal(set_reduce_value(&PyFrozenSet_Type, obj));
            return reduce_value && save_reduce(reduce_value.get(), obj);
        }
        if (!writer.write_op(Op::MARK)) return writer_failed();
        Ref iter = Ref::steal(PyObject_GetIter(obj));
        if (!iter) return false;
        Ref item;
        int got;
        while ((got = next_item(iter.get(), item)) > 0)
            if (!save(item.get())) return false;
        if (got < 0) return false;
        // Reached itself through its items (via a reduce): use the memoized copy.
        const std::size_t index = memo.find(obj);
        if (index != MemoTable::kNotFound)
            return (writer.write_op(Op::POP_MARK) || writer_failed()) && memo_get(index);
        return (writer.write_op(Op::FROZENSET) || writer_failed()) && memo_put(obj);
    };
    bool ok = body();
    if (fast && !fast_save_leave(obj)) ok = false;
    return ok;
}

} // namespace picklex::py
