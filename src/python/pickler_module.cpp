// src/python/pickler_module.cpp: dumps(), dump() and the Pickler type's registration.
#include "args.hpp"
#include "module_api.hpp"
#include "module_state.hpp"
#include "pickler.hpp"
#include "pickler_type.hpp"

namespace picklex::py {

namespace {

/// The module functions reuse one PicklerCore per interpreter (its memo table and scratch
/// buffer survive between calls); a nested call, from a __reduce__ that pickles, gets a
/// fresh one.
class CoreLease {
  public:
    explicit CoreLease(ModuleState& st) : st_(st) {
        if (!st.spare_pickler_busy) {
            if (!st.spare_pickler) st.spare_pickler = new PicklerCore(st);
            st.spare_pickler_busy = true;
            core_ = st.spare_pickler;
        } else {
            core_ = new PicklerCore(st);
        }
    }
    ~CoreLease() {
        if (core_ == st_.spare_pickler) {
            core_->reset_for_reuse();
            st_.spare_pickler_busy = false;
        } else {
            delete core_;
        }
    }
    CoreLease(const CoreLease&) = delete;
    CoreLease& operator=(const CoreLease&) = delete;
    PicklerCore& operator*() const { return *core_; }
    PicklerCore* operator->() const { return core_; }

  private:
    ModuleState& st_;
    PicklerCore* core_;
};

/// Protocol, fix_imports and buffer_callback from the call, applied to `core`.
bool configure(PicklerCore& core, PyObject* protocol, PyObject* fix_imports_arg,
               PyObject* buffer_callback) {
    const int fix_imports = truth_or(fix_imports_arg, true);
    if (fix_imports < 0) return false;
    return core.set_protocol(protocol, fix_imports != 0) &&
           core.set_buffer_callback(buffer_callback ? buffer_callback : Py_None);
}

PyObject* module_dumps(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    static const Param params[] = {
        {"obj", false, true}, {"protocol"}, {"fix_imports", true}, {"buffer_callback", true}};
    PyObject* values[4];
    if (!parse_args("dumps", params, args, nargs, kwnames, values)) return nullptr;
    CoreLease core(state_of_module(module));
    if (!configure(*core, values[1], values[2], values[3])) return nullptr;
    if (!core->dump(values[0], nullptr)) return nullptr;
    return core->take_result();
}

PyObject* module_dump(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    static const Param params[] = {{"obj", false, true},
                                   {"file", false, true},
                                   {"protocol"},
                                   {"fix_imports", true},
                                   {"buffer_callback", true}};
    PyObject* values[5];
    if (!parse_args("dump", params, args, nargs, kwnames, values)) return nullptr;
    CoreLease core(state_of_module(module));
    if (!configure(*core, values[2], values[3], values[4]) || !core->set_output_file(values[1]))
        return nullptr;
    if (!core->dump(values[0], nullptr)) return nullptr;
    Py_RETURN_NONE;
}

PyMethodDef pickler_functions[] = {
    {"dumps", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_dumps)),
     METH_FASTCALL | METH_KEYWORDS,
     "dumps($module, /, obj, protocol=None, *, fix_imports=True, buffer_callback=None)\n--\n\n"
     "Return the pickled representation of the object as a bytes object.\n\n"
     "The same bytes as the standard pickle.dumps() for the same arguments."},
    {"dump", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_dump)),
     METH_FASTCALL | METH_KEYWORDS,
     "dump($module, /, obj, file, protocol=None, *, fix_imports=True, buffer_callback=None)\n--\n\n"
     "Write a pickled representation of obj to the open file object file.\n\n"
     "Large pickles are streamed frame by frame (protocol 4 and up) rather than built whole "
     "in memory first."},
    {nullptr, nullptr, 0, nullptr},
};

} // namespace

void clear_spare_pickler(ModuleState& st) noexcept {
    // A lease in progress (a module clear from inside a dump) keeps the core it holds.
    if (st.spare_pickler_busy) return;
    delete st.spare_pickler;
    st.spare_pickler = nullptr;
}

bool add_pickler_api(PyObject* module, ModuleState& st) {
    if (!add_pickler_types(module, st)) return false;
    return PyModule_AddFunctions(module, pickler_functions) == 0;
}

} // namespace picklex::py
