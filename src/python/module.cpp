// src/python/module.cpp: the _picklex extension module: state, error mapping, init.
#include "python.hpp"

#include <atomic>
#include <cstring>
#include <new>

#include "module_api.hpp"
#include "module_state.hpp"
#include "picklex/opcodes.hpp"
#include "refs.hpp"

namespace picklex::py {

namespace {

PyObject* import_attr(const char* module, const char* name) {
    Ref mod = Ref::steal(PyImport_ImportModule(module));
    if (!mod) return nullptr;
    return PyObject_GetAttrString(mod.get(), name);
}

/// Fetch a stdlib dict that the pickle machinery depends on; refuse anything else.
PyObject* import_dict(const char* module, const char* name) {
    PyObject* value = import_attr(module, name);
    if (value && !PyDict_CheckExact(value)) {
        PyErr_Format(PyExc_RuntimeError, "%s.%s should be a dict, not %.200s", module, name,
                     Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

/// The opcode table as a tuple of (name, code byte, argument kind, protocol) for the
/// Python side (pickle's module constants, the disassembler).
PyObject* build_opcode_table() {
    static const char* const kArgNames[] = {
        "none", "uint1", "uint2", "int4", "uint4", "uint8", "decimalnl_short",
        "decimalnl_long", "stringnl", "stringnl_noescape", "stringnl_noescape_pair",
        "string1", "string4", "bytes1", "bytes4", "bytes8", "bytearray8", "unicodestringnl",
        "unicodestring1", "unicodestring4", "unicodestring8", "floatnl", "float8", "long1",
        "long4"};
    Ref table = Ref::steal(PyTuple_New(static_cast<Py_ssize_t>(kOpcodeCount)));
    if (!table) return nullptr;
    for (std::size_t i = 0; i < kOpcodeCount; ++i) {
        const OpInfo& info = kOpcodes[i];
        const char code = static_cast<char>(info.op);
        PyObject* row = Py_BuildValue("(s#y#sis#s#)", info.name.data(),
                                      static_cast<Py_ssize_t>(info.name.size()), &code,
                                      static_cast<Py_ssize_t>(1),
                                      kArgNames[static_cast<int>(info.arg)], info.protocol,
                                      info.stack_before.data(),
                                      static_cast<Py_ssize_t>(info.stack_before.size()),
                                      info.stack_after.data(),
                                      static_cast<Py_ssize_t>(info.stack_after.size()));
        if (!row) return nullptr;
        PyTuple_SET_ITEM(table.get(), static_cast<Py_ssize_t>(i), row);
    }
    return table.release();
}

/// builtins.__import__ if it is still the interpreter's own builtin (a replacement installed
/// before picklex was imported keeps being called), else nullptr (no exception on that path).
PyObject* find_builtin_import() {
    Ref builtins = Ref::steal(PyImport_ImportModule("builtins"));
    if (!builtins) return nullptr;
    Ref import = Ref::steal(PyObject_GetAttrString(builtins.get(), "__import__"));
    if (!import) return nullptr;
    if (PyCFunction_Check(import.get()) &&
        std::strcmp(reinterpret_cast<PyCFunctionObject*>(import.get())->m_ml->ml_name,
                    "__import__") == 0 &&
        PyCFunction_GET_SELF(import.get()) == builtins.get())
        return import.release();
    return nullptr;
}

/// The code object every namedtuple's __getnewargs__ shares (new reference; nullptr, with
/// no exception, if the probe fails).
PyObject* find_namedtuple_getnewargs() {
    Ref factory = Ref::steal(import_attr("collections", "namedtuple"));
    Ref probe = Ref::steal(factory ? PyObject_CallFunction(factory.get(), "ss", "probe", "a")
                                   : nullptr);
    Ref method = Ref::steal(probe ? PyObject_GetAttrString(probe.get(), "__getnewargs__") : nullptr);
    PyObject* found = method && PyFunction_Check(method.get())
                          ? Py_NewRef(PyFunction_GET_CODE(method.get()))
                          : nullptr;
    PyErr_Clear();
    return found;
}

/// The getter behind a plain class's __dict__, as a throwaway class shows it (nullptr with
/// an exception if the class cannot be made).
getter find_plain_dict_getter(PyObject* dict_name) {
    Ref probe = Ref::steal(PyObject_CallFunction(reinterpret_cast<PyObject*>(&PyType_Type), "s()N",
                                                 "_picklex_probe", PyDict_New()));
    if (!probe) return nullptr;
    PyObject* descr = _PyType_Lookup(reinterpret_cast<PyTypeObject*>(probe.get()), dict_name);
    if (descr && Py_IS_TYPE(descr, &PyGetSetDescr_Type))
        return reinterpret_cast<PyGetSetDescrObject*>(descr)->d_getset->get;
    return nullptr;
}

/// Calls f(PyObject*&) for every reference the state owns outside its caches.
template <class F> void for_each_owned(ModuleState& st, F&& f) {
    for (PyObject** slot :
         {&st.PickleError, &st.PicklingError, &st.UnpicklingError, &st.dispatch_table,
          &st.extension_registry, &st.inverted_registry, &st.extension_cache,
          &st.name_mapping_2to3, &st.import_mapping_2to3, &st.name_mapping_3to2,
          &st.import_mapping_3to2, &st.codecs_encode, &st.builtins_getattr,
          &st.functools_partial, &st.copyreg_reconstructor, &st.copyreg_newobj,
          &st.builtins_import, &st.namedtuple_getnewargs, &st.bytes_io, &st.buffered_reader,
          &st.buffered_random, &st.file_io, &st.empty_tuple})
        f(*slot);
    for (PyTypeObject** type : {&st.pickler_type, &st.unpickler_type, &st.pickler_memo_type,
                                &st.unpickler_memo_type})
        f(*reinterpret_cast<PyObject**>(type));
#define PICKLEX_X(name) f(st.names.name);
    PICKLEX_INTERNED_NAMES(PICKLEX_X)
#undef PICKLEX_X
}

/// ModuleStates alive in the process, for tests that check interpreters free theirs. A plain
/// counter, not a Python object: the one piece of process-wide state the front keeps.
std::atomic<long> g_live_states{0};

PyObject* live_states(PyObject*, PyObject*) { return PyLong_FromLong(g_live_states.load()); }

PyMethodDef g_module_functions[] = {
    {"_live_states", live_states, METH_NOARGS,
     "_live_states($module, /)\n--\n\nHow many interpreters hold a picklex module state (tests)."},
    {nullptr, nullptr, 0, nullptr},
};

} // namespace

extern PyModuleDef g_module_def;

ModuleState::ModuleState() { ++g_live_states; }

bool ModuleState::init() {
    ModuleState& st = *this;
#define PICKLEX_X(name)                                                                            \
    if (!(st.names.name = PyUnicode_InternFromString(#name))) return false;
    PICKLEX_INTERNED_NAMES(PICKLEX_X)
#undef PICKLEX_X

    if (!(st.PickleError = import_attr("pickle", "PickleError"))) return false;
    if (!(st.PicklingError = import_attr("pickle", "PicklingError"))) return false;
    if (!(st.UnpicklingError = import_attr("pickle", "UnpicklingError"))) return false;
    if (!(st.dispatch_table = import_dict("copyreg", "dispatch_table"))) return false;
    if (!(st.extension_registry = import_dict("copyreg", "_extension_registry"))) return false;
    if (!(st.inverted_registry = import_dict("copyreg", "_inverted_registry"))) return false;
    if (!(st.extension_cache = import_dict("copyreg", "_extension_cache"))) return false;
    if (!(st.copyreg_reconstructor = import_attr("copyreg", "_reconstructor"))) return false;
    if (!(st.copyreg_newobj = import_attr("copyreg", "__newobj__"))) return false;
    if (!(st.name_mapping_2to3 = import_dict("_compat_pickle", "NAME_MAPPING"))) return false;
    if (!(st.import_mapping_2to3 = import_dict("_compat_pickle", "IMPORT_MAPPING"))) return false;
    if (!(st.name_mapping_3to2 = import_dict("_compat_pickle", "REVERSE_NAME_MAPPING")))
        return false;
    if (!(st.import_mapping_3to2 = import_dict("_compat_pickle", "REVERSE_IMPORT_MAPPING")))
        return false;
    if (!(st.codecs_encode = import_attr("codecs", "encode"))) return false;
    if (!(st.builtins_getattr = import_attr("builtins", "getattr"))) return false;
    if (!(st.functools_partial = import_attr("functools", "partial"))) return false;
    if (!(st.bytes_io = import_attr("io", "BytesIO"))) return false;
    if (!(st.buffered_reader = import_attr("io", "BufferedReader"))) return false;
    if (!(st.buffered_random = import_attr("io", "BufferedRandom"))) return false;
    if (!(st.file_io = import_attr("io", "FileIO"))) return false;
    if (!(st.empty_tuple = PyTuple_New(0))) return false;
    st.builtins_import = find_builtin_import();
    if (!st.builtins_import && PyErr_Occurred()) return false;
    st.namedtuple_getnewargs = find_namedtuple_getnewargs();
    st.plain_dict_getter = find_plain_dict_getter(st.names.__dict__);
    if (PyErr_Occurred()) return false;
    Ref default_protocol = Ref::steal(import_attr("pickle", "DEFAULT_PROTOCOL"));
    if (!default_protocol) return false;
    st.default_protocol = static_cast<int>(PyLong_AsLong(default_protocol.get()));
    if (st.default_protocol == -1 && PyErr_Occurred()) return false;
    return true;
}

int ModuleState::traverse(visitproc visit, void* arg) {
    int status = 0;
    for_each_owned(*this, [&](PyObject*& obj) {
        if (!status && obj) status = visit(obj, arg);
    });
    if (status) return status;
    for (const GlobalCacheEntry& e : global_cache) {
        Py_VISIT(e.obj);
        Py_VISIT(e.module_name);
        Py_VISIT(e.qualname);
        Py_VISIT(e.module);
    }
    for (const IntCacheTable::Entry& e : ints.slots) Py_VISIT(e.object);
    for (const StrCacheTable::Entry& e : strs.slots) Py_VISIT(e.object);
    return 0;
}

void ModuleState::clear() {
    clear_spare_pickler(*this);
    for (GlobalCacheEntry& e : global_cache) {
        Py_CLEAR(e.obj);
        Py_CLEAR(e.module_name);
        Py_CLEAR(e.qualname);
        Py_CLEAR(e.module);
    }
    for (IntCacheTable::Entry& e : ints.slots) Py_CLEAR(e.object);
    for (StrCacheTable::Entry& e : strs.slots) Py_CLEAR(e.object);
    for (Certificate& c : certificates) c = Certificate{};
    for_each_owned(*this, [](PyObject*& obj) { Py_CLEAR(obj); });
}

ModuleState::~ModuleState() {
    clear();
    --g_live_states;
}

ModuleState& state_of_module(PyObject* module) noexcept {
    return **static_cast<ModuleState**>(PyModule_GetState(module));
}

ModuleState* state_of_type(PyTypeObject* type) {
    // The first heap type in the MRO that this module defined (PyType_GetModuleByDef from
    // 3.11 on does the same walk).
    PyObject* mro = type->tp_mro;
    const Py_ssize_t n = mro && PyTuple_Check(mro) ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        auto* base = reinterpret_cast<PyTypeObject*>(PyTuple_GET_ITEM(mro, i));
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE)) continue;
        PyObject* module = reinterpret_cast<PyHeapTypeObject*>(base)->ht_module;
        if (module && PyModule_GetDef(module) == &g_module_def) return &state_of_module(module);
    }
    PyErr_Format(PyExc_TypeError, "%.200s is not a picklex type", type->tp_name);
    return nullptr;
}

void raise_core_error(const ModuleState& st, const Error& error, bool unpickling) {
    if (error.code == Errc::external) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "picklex: external error without an exception");
        return;
    }
    if (PyErr_Occurred()) return;
    const std::string message = error.message();
    PyObject* type = unpickling ? st.UnpicklingError : st.PicklingError;
    switch (error.code) {
    case Errc::empty_input: type = PyExc_EOFError; break;
    case Errc::out_of_memory: type = PyExc_MemoryError; break;
    case Errc::unsupported_protocol: type = PyExc_ValueError; break;
    case Errc::unencodable:
        // The stdlib raises OverflowError for sizes a protocol cannot express.
        type = message.find("large") != std::string::npos ? PyExc_OverflowError : type;
        break;
    default: break;
    }
    PyErr_SetString(type, message.c_str());
}

namespace {

int module_exec(PyObject* module) {
    auto** slot = static_cast<ModuleState**>(PyModule_GetState(module));
    *slot = new (std::nothrow) ModuleState();
    if (!*slot) {
        PyErr_NoMemory();
        return -1;
    }
    ModuleState& st = **slot;
    if (!st.init()) return -1;
    if (PyModule_AddIntConstant(module, "HIGHEST_PROTOCOL", picklex::kHighestProtocol) < 0)
        return -1;
    Ref table = Ref::steal(build_opcode_table());
    if (!table || PyModule_AddObjectRef(module, "OPCODES", table.get()) < 0) return -1;
    if (!add_pickler_api(module, st) || !add_unpickler_api(module, st)) return -1;
    return 0;
}

ModuleState* maybe_state(PyObject* module) {
    void* raw = PyModule_GetState(module);
    return raw ? *static_cast<ModuleState**>(raw) : nullptr;
}

int module_traverse(PyObject* module, visitproc visit, void* arg) {
    ModuleState* st = maybe_state(module);
    return st ? st->traverse(visit, arg) : 0;
}

int module_clear(PyObject* module) {
    if (ModuleState* st = maybe_state(module)) st->clear();
    return 0;
}

void module_free(void* module) {
    auto** slot = static_cast<ModuleState**>(PyModule_GetState(static_cast<PyObject*>(module)));
    if (!slot) return;
    delete *slot;
    *slot = nullptr;
}

PyModuleDef_Slot g_module_slots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(module_exec)},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, nullptr},
};

} // namespace

PyModuleDef g_module_def = {
    PyModuleDef_HEAD_INIT,
    "picklex._picklex",
    "The picklex C++ pickle engine (use the picklex package, not this module).",
    sizeof(ModuleState*),
    g_module_functions,
    g_module_slots,
    module_traverse,
    module_clear,
    module_free,
};

} // namespace picklex::py

PyMODINIT_FUNC PyInit__picklex(void) { return PyModuleDef_Init(&picklex::py::g_module_def); }
