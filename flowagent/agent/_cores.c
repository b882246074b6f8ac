/* Tracer cores in C: the interpreter calls these instead of Python callbacks.
 *
 * MonitorCore (Python 3.12+) holds the six sys.monitoring callbacks of the ``monitor``
 * backend (monitor.py documents the events and why each). They do what monitor.py's Python
 * callbacks do, statement for statement, without a Python frame per event, without building
 * ``frame.f_locals`` (the parameters are read one by one with PyFrame_GetVar) and without
 * attribute lookups. Everything they call is a recorder function handed in at construction
 * (open_call, close_call, resume, ...), so a core works on either recorder twin and the
 * record policy stays in one place. The rare path, deciding whether a code object is
 * recorded, is a Python callable too: it runs once per code object.
 *
 * Errors inside the agent are counted in S.agent_errors and never raised into the program;
 * only a BaseException that is not an Exception propagates, as through ``except Exception``.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* co_flags bits (code.h names them too; spelled out so the intent is local). */
#define FA_CO_GENERATOR 0x20
#define FA_CO_ASYNC_GENERATOR 0x200
#define FA_YIELDING (FA_CO_GENERATOR | FA_CO_ASYNC_GENERATOR)

#if PY_VERSION_HEX >= 0x030C0000

typedef struct {
    PyObject_HEAD
    PyObject *classify;      /* (code, frame) -> info tuple or None; registers the code */
    PyObject *infos;         /* dict: id(code) -> (fid, parameter names, co_flags, code) */
    PyObject *live;          /* dict: python frame -> recorder frame, while the call is open */
    PyObject *open_call, *close_call, *resume, *deactivate, *note_yield;
    PyObject *is_async_yield, *unwrap_async_yield;
    PyObject *state;         /* recorder.S, for agent_errors */
    PyObject *disable;       /* sys.monitoring.DISABLE */
    PyObject *iterator, *async_iterator;   /* the yield kinds note_yield records */
    Py_ssize_t rv;           /* recorder.RV: where a return value goes in a recorder frame */
} CoreObject;

/* An error inside the agent: counted and cleared if it is an Exception (0), else kept (-1). */
static int
swallow(CoreObject *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    PyObject *n = PyObject_GetAttrString(self->state, "agent_errors");
    if (n != NULL) {
        PyObject *one = PyLong_FromLong(1);  /* a cached small int */
        PyObject *m = PyNumber_Add(n, one);
        Py_DECREF(one);
        Py_DECREF(n);
        if (m != NULL) {
            if (PyObject_SetAttrString(self->state, "agent_errors", m) < 0)
                PyErr_Clear();
            Py_DECREF(m);
        }
    }
    PyErr_Clear();
    return 0;
}

static PyObject *
done(CoreObject *self, int failed)
{
    if (failed && swallow(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
call1(PyObject *fn, PyObject *a)
{
    PyObject *args[1] = {a};
    return PyObject_Vectorcall(fn, args, 1, NULL);
}

static PyObject *
call2(PyObject *fn, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, 2, NULL);
}

static PyObject *
call3(PyObject *fn, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *args[3] = {a, b, c};
    return PyObject_Vectorcall(fn, args, 3, NULL);
}

/* The info of a recorded code object (borrowed), or NULL: not recorded, or an error. Keyed by
   id: equal code objects in two files are two functions. */
static PyObject *
info_of(CoreObject *self, PyObject *code)
{
    PyObject *key = PyLong_FromVoidPtr(code);
    if (key == NULL)
        return NULL;
    PyObject *info = PyDict_GetItemWithError(self->infos, key);
    Py_DECREF(key);
    if (info != NULL && (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) < 4)) {
        PyErr_SetString(PyExc_TypeError, "a code info is (fid, params, flags, code)");
        return NULL;
    }
    return info;
}

/* The frame that fired the event (borrowed); a C callback runs on no frame of its own. */
static PyObject *
event_frame(void)
{
    PyObject *f = (PyObject *)PyEval_GetFrame();
    if (f == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "no Python frame for a monitoring event");
    return f;
}

/* The recorder frame of `frame` (new reference, removed from live), or NULL: none or error. */
static PyObject *
pop_live(CoreObject *self, PyObject *frame)
{
    PyObject *rec = PyDict_GetItemWithError(self->live, frame);
    if (rec == NULL)
        return NULL;
    Py_INCREF(rec);
    if (PyDict_DelItem(self->live, frame) < 0) {
        Py_DECREF(rec);
        return NULL;
    }
    return rec;
}

/* The parameters' values as a tuple, None for one not bound (yet). */
static PyObject *
arguments(PyObject *frame, PyObject *names)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    PyObject *args = PyTuple_New(n);
    if (args == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyFrame_GetVar((PyFrameObject *)frame, PyTuple_GET_ITEM(names, i));
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_NameError)) {
                Py_DECREF(args);
                return NULL;
            }
            PyErr_Clear();
            v = Py_NewRef(Py_None);
        }
        PyTuple_SET_ITEM(args, i, v);
    }
    return args;
}

static PyObject *
core_py_start(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1)
        return done(self, 0);
    PyObject *code = args[0];
    PyObject *frame = event_frame();
    if (frame == NULL)
        return done(self, 1);
    PyObject *info = info_of(self, code);
    if (info == NULL) {
        if (PyErr_Occurred())
            return done(self, 1);
        PyObject *r = call2(self->classify, code, frame);
        if (r == NULL)
            return done(self, 1);
        if (r == Py_None) {
            Py_DECREF(r);
            return Py_NewRef(self->disable);
        }
        Py_DECREF(r);
        info = info_of(self, code);  /* classify stored it */
        if (info == NULL)
            return done(self, PyErr_Occurred() != NULL);
    }
    Py_INCREF(info);
    PyObject *values = arguments(frame, PyTuple_GET_ITEM(info, 1));
    if (values == NULL) {
        Py_DECREF(info);
        return done(self, 1);
    }
    PyObject *rec = call2(self->open_call, PyTuple_GET_ITEM(info, 0), values);
    Py_DECREF(values);
    Py_DECREF(info);
    if (rec == NULL)
        return done(self, 1);
    int failed = 0;
    if (rec != Py_None)
        failed = PyDict_SetItem(self->live, frame, rec) < 0;
    Py_DECREF(rec);
    return done(self, failed);
}

static PyObject *
core_py_return(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *frame = event_frame();
    if (frame == NULL)
        return done(self, 1);
    PyObject *rec = pop_live(self, frame);
    if (rec == NULL)
        return done(self, PyErr_Occurred() != NULL);
    int failed = 0;
    if (nargs >= 3 && PyList_Check(rec) && self->rv < PyList_GET_SIZE(rec))
        failed = PyList_SetItem(rec, self->rv, Py_NewRef(args[2])) < 0;
    if (!failed) {
        PyObject *r = call2(self->close_call, rec, Py_None);
        failed = r == NULL;
        Py_XDECREF(r);
    }
    Py_DECREF(rec);
    return done(self, failed);
}

static PyObject *
core_py_unwind(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3)
        return done(self, 0);
    /* A global event: most unwinding frames are not ours. */
    if (info_of(self, args[0]) == NULL)
        return done(self, PyErr_Occurred() != NULL);
    PyObject *frame = event_frame();
    if (frame == NULL)
        return done(self, 1);
    PyObject *rec = pop_live(self, frame);
    if (rec == NULL)
        return done(self, PyErr_Occurred() != NULL);
    PyObject *r = call2(self->close_call, rec, (PyObject *)Py_TYPE(args[2]));
    Py_DECREF(rec);
    Py_XDECREF(r);
    return done(self, r == NULL);
}

/* co_flags of a recorded code object, or -1 (not recorded, or an error: check it). */
static long
recorded_flags(CoreObject *self, PyObject *code)
{
    PyObject *info = info_of(self, code);
    if (info == NULL)
        return -1;
    return PyLong_AsLong(PyTuple_GET_ITEM(info, 2));
}

static PyObject *
core_py_yield(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3)
        return done(self, 0);
    PyObject *frame = event_frame();
    if (frame == NULL)
        return done(self, 1);
    PyObject *rec = PyDict_GetItemWithError(self->live, frame);
    if (rec == NULL)
        return done(self, PyErr_Occurred() != NULL);
    Py_INCREF(rec);
    long flags = recorded_flags(self, args[0]);
    PyObject *value = Py_NewRef(args[2]), *kind = self->iterator, *r;
    int failed = flags == -1 && PyErr_Occurred();
    if (failed)
        goto out;
    if (flags & FA_CO_ASYNC_GENERATOR) {
        r = call1(self->is_async_yield, value);
        if (r == NULL) {
            failed = 1;
            goto out;
        }
        int real = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (real <= 0) {  /* an await inside the async generator: still its call */
            failed = real < 0;
            goto out;
        }
        Py_SETREF(value, call1(self->unwrap_async_yield, value));
        if (value == NULL) {
            failed = 1;
            goto out;
        }
        kind = self->async_iterator;
    }
    r = call3(self->note_yield, rec, value, kind);
    if (r == NULL) {
        failed = 1;
        goto out;
    }
    Py_DECREF(r);
    r = call1(self->deactivate, rec);  /* whoever resumed it is the current call again */
    failed = r == NULL;
    Py_XDECREF(r);
out:
    Py_XDECREF(value);
    Py_DECREF(rec);
    return done(self, failed);
}

/* The generator running in the event's frame is the current call again. */
static PyObject *
resume_frame(CoreObject *self)
{
    PyObject *frame = event_frame();
    if (frame == NULL)
        return done(self, 1);
    PyObject *rec = PyDict_GetItemWithError(self->live, frame);
    if (rec == NULL)
        return done(self, PyErr_Occurred() != NULL);
    Py_INCREF(rec);
    PyObject *r = call1(self->resume, rec);
    Py_DECREF(rec);
    Py_XDECREF(r);
    return done(self, r == NULL);
}

static PyObject *
core_py_resume(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return resume_frame(self);
}

static PyObject *
core_py_throw(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* throw() or close() resumes a suspended generator with an exception: it is the current
       call again until it yields, returns or the exception unwinds it. */
    if (nargs < 1)
        return done(self, 0);
    long flags = recorded_flags(self, args[0]);
    if (flags == -1)
        return done(self, PyErr_Occurred() != NULL);
    if (!(flags & FA_YIELDING))
        return done(self, 0);
    return resume_frame(self);
}

static int
core_traverse(CoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->classify);
    Py_VISIT(self->infos);
    Py_VISIT(self->live);
    Py_VISIT(self->open_call);
    Py_VISIT(self->close_call);
    Py_VISIT(self->resume);
    Py_VISIT(self->deactivate);
    Py_VISIT(self->note_yield);
    Py_VISIT(self->is_async_yield);
    Py_VISIT(self->unwrap_async_yield);
    Py_VISIT(self->state);
    Py_VISIT(self->disable);
    return 0;
}

static int
core_clear(CoreObject *self)
{
    Py_CLEAR(self->classify);
    Py_CLEAR(self->infos);
    Py_CLEAR(self->live);
    Py_CLEAR(self->open_call);
    Py_CLEAR(self->close_call);
    Py_CLEAR(self->resume);
    Py_CLEAR(self->deactivate);
    Py_CLEAR(self->note_yield);
    Py_CLEAR(self->is_async_yield);
    Py_CLEAR(self->unwrap_async_yield);
    Py_CLEAR(self->state);
    Py_CLEAR(self->disable);
    Py_CLEAR(self->iterator);
    Py_CLEAR(self->async_iterator);
    return 0;
}

static void
core_dealloc(CoreObject *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
core_init(CoreObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"classify", "infos", "live", "open_call", "close_call", "resume",
                             "deactivate", "note_yield", "is_async_yield",
                             "unwrap_async_yield", "state", "disable", "rv", NULL};
    PyObject *o[12];
    Py_ssize_t rv;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!OOOOOOOOOn", kwlist, &o[0],
                                     &PyDict_Type, &o[1], &PyDict_Type, &o[2], &o[3], &o[4],
                                     &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &rv))
        return -1;
    core_clear(self);
    self->classify = Py_NewRef(o[0]);
    self->infos = Py_NewRef(o[1]);
    self->live = Py_NewRef(o[2]);
    self->open_call = Py_NewRef(o[3]);
    self->close_call = Py_NewRef(o[4]);
    self->resume = Py_NewRef(o[5]);
    self->deactivate = Py_NewRef(o[6]);
    self->note_yield = Py_NewRef(o[7]);
    self->is_async_yield = Py_NewRef(o[8]);
    self->unwrap_async_yield = Py_NewRef(o[9]);
    self->state = Py_NewRef(o[10]);
    self->disable = Py_NewRef(o[11]);
    self->rv = rv;
    self->iterator = PyUnicode_InternFromString("Iterator");
    self->async_iterator = PyUnicode_InternFromString("AsyncIterator");
    if (self->iterator == NULL || self->async_iterator == NULL)
        return -1;
    return 0;
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef core_methods[] = {
    {"py_start", FASTCALL(core_py_start), "PY_START: open the call of a recorded code object."},
    {"py_return", FASTCALL(core_py_return), "PY_RETURN: close it with its return value."},
    {"py_yield", FASTCALL(core_py_yield), "PY_YIELD: a generator's call is suspended."},
    {"py_resume", FASTCALL(core_py_resume), "PY_RESUME: it is the current call again."},
    {"py_unwind", FASTCALL(core_py_unwind), "PY_UNWIND: close it with the exception's type."},
    {"py_throw", FASTCALL(core_py_throw), "PY_THROW: throw()/close() resumes a generator."},
    {NULL}
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._cores.MonitorCore",
    .tp_basicsize = sizeof(CoreObject),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The monitor backend's sys.monitoring callbacks, in C.",
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_init = (initproc)core_init,
    .tp_new = PyType_GenericNew,
};

#endif  /* 3.12+ */

static struct PyModuleDef cores_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flowagent.agent._cores",
    .m_doc = "Tracer cores in C (see monitor.py and backends.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__cores(void)
{
    PyObject *m = PyModule_Create(&cores_module);
    if (m == NULL)
        return NULL;
#if PY_VERSION_HEX >= 0x030C0000
    if (PyType_Ready(&CoreType) < 0 || PyModule_AddObjectRef(m, "MonitorCore",
                                                             (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
