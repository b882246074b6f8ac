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
#include <stddef.h>
#include <string.h>

#include "_guard.h"
#include "_hotpath.h"

/* co_flags bits (code.h names them too; spelled out so the intent is local). */
#define FA_CO_GENERATOR 0x20
#define FA_CO_ASYNC_GENERATOR 0x200
#define FA_YIELDING (FA_CO_GENERATOR | FA_CO_ASYNC_GENERATOR)

/* Code-extra slots: public "unstable" API since 3.12, underscored before. */
#if PY_VERSION_HEX >= 0x030C0000
#define FA_GetExtra PyUnstable_Code_GetExtra
#define FA_SetExtra PyUnstable_Code_SetExtra
#define FA_RequestExtraIndex PyUnstable_Eval_RequestCodeExtraIndex
#else
#define FA_GetExtra _PyCode_GetExtra
#define FA_SetExtra _PyCode_SetExtra
#define FA_RequestExtraIndex _PyEval_RequestCodeExtraIndex
#endif

/* The code-extra slot both cores keep their per-code decision in, requested once per
   process. An entry is a tuple whose first item is the identity (token) of the core that
   wrote it: another core's entry is a miss, and is replaced. */
static Py_ssize_t extra_index = -1;

static void
free_extra(void *p)
{
    Py_XDECREF((PyObject *)p);
}

/* guard.program_exception, imported on first need (the rule lives in one place). */
static PyObject *guard_fn = NULL;

/* Is the pending exception the program's (it must propagate)? The rule's Python side is
   imported on first need, with the exception kept aside meanwhile. */
static int
pending_is_program(void)
{
    if (guard_fn == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyObject *m = PyImport_ImportModule("flowagent.agent.guard");
        if (m != NULL) {
            guard_fn = PyObject_GetAttrString(m, "program_exception");
            Py_DECREF(m);
        }
        PyErr_Clear();
        PyErr_Restore(t, v, tb);
    }
    return fa_program_error(guard_fn);
}

/* An error inside the agent: counted in state.agent_errors and cleared if it is the agent's
   own Exception (0); anything else (KeyboardInterrupt, or an exception the program raised
   into agent code) is kept for the program (-1). */
static int
count_error(PyObject *state)
{
    if (pending_is_program())
        return -1;
    PyErr_Clear();
    PyObject *n = state == NULL ? NULL : PyObject_GetAttrString(state, "agent_errors");
    if (n != NULL) {
        PyObject *one = PyLong_FromLong(1);  /* a cached small int */
        PyObject *m = PyNumber_Add(n, one);
        Py_DECREF(one);
        Py_DECREF(n);
        if (m != NULL) {
            if (PyObject_SetAttrString(state, "agent_errors", m) < 0)
                PyErr_Clear();
            Py_DECREF(m);
        }
    }
    PyErr_Clear();
    return 0;
}

/* Calls of the recorder and backend functions a core was given (one place for both cores). */
#if PY_VERSION_HEX >= 0x030C0000  /* only the monitor core calls with one argument */
static PyObject *
call1(PyObject *fn, PyObject *a)
{
    PyObject *args[1] = {a};
    return PyObject_Vectorcall(fn, args, 1, NULL);
}
#endif

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

static PyObject *
call4(PyObject *fn, PyObject *a, PyObject *b, PyObject *c, PyObject *d)
{
    PyObject *args[4] = {a, b, c, d};
    return PyObject_Vectorcall(fn, args, 4, NULL);
}

#if PY_VERSION_HEX >= 0x030C0000

#define LIVE_STACK 256
#define FA_SUSPENDS (FA_YIELDING | 0x80 | 0x100)  /* + CO_COROUTINE, CO_ITERABLE_COROUTINE */

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
    /* Open calls of plain functions (not generators or coroutines), most recent last: they
       end in the reverse order they began on each thread, so the one ending is found at or
       near the top and a dict insert and delete per call are saved. An entry is keyed by
       the interpreter's frame of the call and its code object (running_frame), so no frame
       object is made for it; it owns its recorder frame. Past LIVE_STACK open calls, or
       where the interpreter's frame cannot be read, the others go to `live`. */
    struct { void *key; PyObject *code, *rec; } stack[LIVE_STACK];
    int depth;
    PyObject *token;         /* this core's identity in the code-extra slot */
    /* _speedups' C functions, when open_call and close_call are _speedups' own (else NULL:
       the recorder functions are called as Python callables). */
    const FaHotPath *hot;
} CoreObject;

/* A recorded code object's entry in the code-extra slot: (token, fid, parameter names,
   co_flags), the dict info without the code object (an entry that held its own code would
   keep it alive for ever). Read once per event instead of a dict lookup by id(code). */
enum { E_TOKEN, E_FID, E_PARAMS, E_FLAGS, E_LEN };
#define MAX_DIRECT_ARGS FA_LAZY_MAX_ARGS

/* An int's value; inline for the small ones an entry holds (co_flags). */
static inline long
small_long(PyObject *o)
{
    if (PyLong_CheckExact(o) && PyUnstable_Long_IsCompact((PyLongObject *)o))
        return (long)PyUnstable_Long_CompactValue((PyLongObject *)o);
    return PyLong_AsLong(o);
}

static PyObject *
done(CoreObject *self, int failed)
{
    if (failed && count_error(self->state) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The entry (E_*) of a recorded code object (borrowed: the code object owns it), or NULL:
   not recorded, or an error. The decision is monitor.py's `infos`, keyed by id (equal code
   objects in two files are two functions); its answer is copied into the code's extra slot
   the first time, so later events read the slot. */
static PyObject *
info_of(CoreObject *self, PyObject *code)
{
    void *extra = NULL;
    if (!PyCode_Check(code))
        return NULL;
    if (FA_GetExtra(code, extra_index, &extra) < 0)
        return NULL;
    if (extra != NULL && PyTuple_GET_ITEM((PyObject *)extra, E_TOKEN) == self->token
            && PyTuple_GET_SIZE((PyObject *)extra) == E_LEN)
        return (PyObject *)extra;
    PyObject *key = PyLong_FromVoidPtr(code);
    if (key == NULL)
        return NULL;
    PyObject *info = PyDict_GetItemWithError(self->infos, key);
    Py_DECREF(key);
    if (info == NULL)
        return NULL;
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) < 4
            || !PyTuple_Check(PyTuple_GET_ITEM(info, 1))) {
        PyErr_SetString(PyExc_TypeError, "a code info is (fid, params, flags, code)");
        return NULL;
    }
    PyObject *entry = PyTuple_Pack(E_LEN, self->token, PyTuple_GET_ITEM(info, 0),
                                   PyTuple_GET_ITEM(info, 1), PyTuple_GET_ITEM(info, 2));
    if (entry == NULL)
        return NULL;
    /* Replacing an entry (another core's, or a miss this core remembered) frees it: the
       slot's free function runs on the old value. */
    if (FA_SetExtra(code, extra_index, entry) < 0) {
        Py_DECREF(entry);
        return NULL;
    }
    return entry;
}

/* info_of for the global events (PY_UNWIND, PY_THROW): they fire for every code object an
   exception leaves or is thrown into, most of them not recorded (~6 per Flask request, in
   werkzeug and Flask). A code object found in no info is remembered in its slot as a miss,
   (token, size of infos then), so its next events read the slot instead of boxing id(code)
   for a dict lookup. `infos` only grows while this core is installed (classify adds the
   code objects it records; uninstall clears it after unregistering the core, and the next
   install makes a new core), so while its size is unchanged the code is still not
   recorded; once classify has added any code object, a remembered miss is looked up again.
   A stale miss can therefore never hide a recorded code object. A miss is no decision:
   py_start still classifies such code (a frame that was running when the core was
   installed unwinds before its code was ever classified). */
static PyObject *
global_event_info(CoreObject *self, PyObject *code)
{
    void *extra = NULL;
    if (!PyCode_Check(code))
        return NULL;
    if (FA_GetExtra(code, extra_index, &extra) < 0)
        return NULL;
    Py_ssize_t known = PyDict_GET_SIZE(self->infos);
    if (extra != NULL && PyTuple_GET_ITEM((PyObject *)extra, E_TOKEN) == self->token) {
        if (PyTuple_GET_SIZE((PyObject *)extra) == E_LEN)
            return (PyObject *)extra;
        if (small_long(PyTuple_GET_ITEM((PyObject *)extra, 1)) == known)
            return NULL;    /* a miss, and no code object was recorded since */
    }
    PyObject *info = info_of(self, code);
    if (info != NULL || PyErr_Occurred())
        return info;
    PyObject *size = PyLong_FromSsize_t(known);
    PyObject *miss = size == NULL ? NULL : PyTuple_Pack(2, self->token, size);
    Py_XDECREF(size);
    if (miss == NULL || FA_SetExtra(code, extra_index, miss) < 0) {
        Py_XDECREF(miss);
        return NULL;
    }
    return NULL;
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

/* The interpreter's frame of the running call of `code`: an identity of the call while it
   runs (a plain function's frame does not move), read without making a frame object (which
   PyEval_GetFrame does: an allocation at the call and a release at its return). NULL where
   it cannot be read so. Its first field is the code object (3.12's f_code, 3.13's
   f_executable): checked, so the frame of other code never passes for this call's. */
static inline void *
running_frame(PyThreadState *ts, PyObject *code)
{
#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#if PY_VERSION_HEX >= 0x030D0000
    struct _PyInterpreterFrame *f = ts->current_frame;
#else
    struct _PyInterpreterFrame *f = ts->cframe == NULL ? NULL : ts->cframe->current_frame;
#endif
    if (f != NULL && *(PyObject **)f == code)
        return f;
#else
    (void)ts;
#endif
    return NULL;
}

/* Keep `rec` as the open call: a plain function's on the stack under `key` (its
   running_frame), else in live under the event's frame object (`frame` if made already). */
static int
push_live(CoreObject *self, void *key, PyObject *code, PyObject *frame, PyObject *rec)
{
    if (key == NULL || self->depth == LIVE_STACK) {
        if (frame == NULL && (frame = event_frame()) == NULL)
            return -1;
        return PyDict_SetItem(self->live, frame, rec);
    }
    self->stack[self->depth].key = key;
    self->stack[self->depth].code = code;   /* compared only: the call holds its code */
    self->stack[self->depth].rec = Py_NewRef(rec);
    self->depth++;
    return 0;
}

/* The recorder frame of the running call of `code` (new reference, no longer kept), or
   NULL: none or error. The event's frame object is made only to look in `live`. */
static PyObject *
pop_live_ts(CoreObject *self, PyThreadState *ts, PyObject *code)
{
    void *key = running_frame(ts, code);
    for (int i = self->depth - 1; key != NULL && i >= 0; i--) {
        if (self->stack[i].key != key || self->stack[i].code != code)
            continue;
        PyObject *rec = self->stack[i].rec;
        self->depth--;
        if (i < self->depth)    /* not the top: a call below it was left open */
            memmove(&self->stack[i], &self->stack[i + 1],
                    (self->depth - i) * sizeof self->stack[0]);
        return rec;
    }
    if (PyDict_GET_SIZE(self->live) == 0)
        return NULL;
    PyObject *frame = event_frame();
    if (frame == NULL)
        return NULL;
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

static PyObject *
pop_live(CoreObject *self, PyObject *code)
{
    return pop_live_ts(self, PyThreadState_Get(), code);
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

/* FaArgsFn of the event's call: the values of the parameters `names` (a tuple), None for
   one not bound (yet). */
static int
frame_args(void *names, PyObject **argv, Py_ssize_t n)
{
    PyObject *frame = event_frame();
    if (frame == NULL)
        return -1;
    for (Py_ssize_t got = 0; got < n; got++) {
        PyObject *v = PyFrame_GetVar((PyFrameObject *)frame,
                                     PyTuple_GET_ITEM((PyObject *)names, got));
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_NameError)) {
                while (got > 0)
                    Py_DECREF(argv[--got]);
                return -1;
            }
            PyErr_Clear();
            v = Py_NewRef(Py_None);
        }
        argv[got] = v;
    }
    return 0;
}

static PyObject *
core_py_start(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1)
        return done(self, 0);
    PyObject *code = args[0], *frame = NULL;
    PyObject *info = info_of(self, code);
    if (info == NULL) {
        if (PyErr_Occurred() || (frame = event_frame()) == NULL)
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
    long co_flags = small_long(PyTuple_GET_ITEM(info, E_FLAGS));
    if (co_flags == -1 && PyErr_Occurred()) {
        Py_DECREF(info);
        return done(self, 1);
    }
    PyObject *names = PyTuple_GET_ITEM(info, E_PARAMS), *rec;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    PyThreadState *ts = PyThreadState_Get();   /* read once for the core and the recorder */
    void *key = co_flags & FA_SUSPENDS ? NULL : running_frame(ts, code);
    if (key == NULL && frame == NULL && (frame = event_frame()) == NULL) {
        Py_DECREF(info);
        return done(self, 1);
    }
    if (self->hot != NULL && n <= MAX_DIRECT_ARGS) {
        /* Into _speedups' open_call with no tuple and no call; the parameters' values are
           read (and a frame object made to read them) only if this call's input is shaped. */
        rec = self->hot->open_lazy(ts, PyTuple_GET_ITEM(info, E_FID), frame_args, names, n);
    }
    else {
        if (frame == NULL && (frame = event_frame()) == NULL) {
            Py_DECREF(info);
            return done(self, 1);
        }
        PyObject *values = arguments(frame, names);
        if (values == NULL) {
            Py_DECREF(info);
            return done(self, 1);
        }
        rec = call2(self->open_call, PyTuple_GET_ITEM(info, E_FID), values);
        Py_DECREF(values);
    }
    Py_DECREF(info);
    if (rec == NULL)
        return done(self, 1);
    int failed = 0;
    if (rec != Py_None)
        failed = push_live(self, key, code, frame, rec) < 0;
    Py_DECREF(rec);
    return done(self, failed);
}

/* close_call(rec, exc_type): 0, or -1 with an exception set. */
static int
close_rec(CoreObject *self, PyObject *rec, PyObject *exc_type)
{
    if (self->hot != NULL)
        return self->hot->close(rec, exc_type);
    PyObject *r = call2(self->close_call, rec, exc_type);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Our reference to a closed rec: back to _speedups' frame pool when it was the last one. */
static inline void
release_rec(CoreObject *self, PyObject *rec)
{
    if (self->hot != NULL)
        self->hot->release(rec);
    else
        Py_DECREF(rec);
}

static PyObject *
core_py_return(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1)
        return done(self, 0);
    PyThreadState *ts = PyThreadState_Get();   /* read once for the core and the recorder */
    PyObject *rec = pop_live_ts(self, ts, args[0]);
    if (rec == NULL)
        return done(self, PyErr_Occurred() != NULL);
    if (self->hot != NULL)  /* the return value kept, the call closed and released: one call */
        return done(self, self->hot->finish(ts, rec, nargs >= 3 ? args[2] : NULL, Py_None) < 0);
    int failed = 0;
    if (nargs >= 3) {
        if (PyList_Check(rec) && self->rv < PyList_GET_SIZE(rec))
            failed = PyList_SetItem(rec, self->rv, Py_NewRef(args[2])) < 0;
        else if (!PyList_Check(rec))  /* the C twin's frame, its functions called as Python */
            failed = PySequence_SetItem(rec, self->rv, args[2]) < 0;
    }
    if (!failed)
        failed = close_rec(self, rec, Py_None) < 0;
    release_rec(self, rec);
    return done(self, failed);
}

static PyObject *
core_py_unwind(CoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3)
        return done(self, 0);
    /* A global event: most unwinding frames are not ours. */
    if (global_event_info(self, args[0]) == NULL)
        return done(self, PyErr_Occurred() != NULL);
    PyObject *rec = pop_live(self, args[0]);
    if (rec == NULL)
        return done(self, PyErr_Occurred() != NULL);
    int failed = close_rec(self, rec, (PyObject *)Py_TYPE(args[2])) < 0;
    release_rec(self, rec);
    return done(self, failed);
}

/* co_flags of a recorded code object, or -1 (not recorded, or an error: check it). */
static long
recorded_flags(CoreObject *self, PyObject *code)
{
    PyObject *info = info_of(self, code);
    if (info == NULL)
        return -1;
    return small_long(PyTuple_GET_ITEM(info, E_FLAGS));
}

/* A generator's steps without a Python frame, where the recorder runs its C twin (the core
   was handed _speedups' open_call and close_call: self->hot). recorder.resume,
   recorder.deactivate and _note_yield are Python in both twins; with the C twin their
   reads and writes of the current call are _speedups.current and set_current, C
   functions, so the same statements run here: per yield, a PY_YIELD and a PY_RESUME event
   no longer call three Python functions (note_yield, deactivate, resume; ~5k instructions
   per yield on 3.12). The recorder's frame indices and its number of sampled yields are
   read from the recorder once. */
static PyObject *gen_current, *gen_set_current;   /* _speedups.current, set_current */
static Py_ssize_t gen_outer = -1, gen_yielded, gen_samples;

/* 1 when the steps can run here, 0 when not (the Python functions are called), -1 on error. */
static int
gen_steps_ready(CoreObject *self)
{
    if (self->hot == NULL)
        return 0;
    if (gen_outer >= 0)
        return 1;
    /* Both are imported: the recorder chose _speedups (nothing is imported from here). */
    PyObject *sp = NULL, *rec = NULL, *cur = NULL, *set = NULL, *o = NULL, *y = NULL,
             *n = NULL, *name = PyUnicode_FromString("flowagent.agent._speedups");
    if (name != NULL) {
        sp = PyImport_GetModule(name);
        Py_SETREF(name, PyUnicode_FromString("flowagent.agent.recorder"));
    }
    if (sp != NULL && name != NULL)
        rec = PyImport_GetModule(name);
    Py_XDECREF(name);
    int ok = PyErr_Occurred() ? -1 : 0;    /* not imported: call the Python functions */
    if (rec != NULL && (cur = PyObject_GetAttrString(sp, "current")) != NULL
            && (set = PyObject_GetAttrString(sp, "set_current")) != NULL
            && (o = PyObject_GetAttrString(rec, "OUTER")) != NULL
            && (y = PyObject_GetAttrString(rec, "YIELDED")) != NULL
            && (n = PyObject_GetAttrString(rec, "_YIELD_SAMPLES")) != NULL) {
        Py_ssize_t io = PyLong_AsSsize_t(o), iy = PyLong_AsSsize_t(y),
                   in = PyLong_AsSsize_t(n);
        if (!PyErr_Occurred()) {
            gen_current = Py_NewRef(cur);
            gen_set_current = Py_NewRef(set);
            gen_yielded = iy;
            gen_samples = in;
            gen_outer = io;
            ok = 1;
        }
    }
    if (ok == 0 && PyErr_Occurred())
        ok = -1;
    Py_XDECREF(sp);
    Py_XDECREF(rec);
    Py_XDECREF(cur);
    Py_XDECREF(set);
    Py_XDECREF(o);
    Py_XDECREF(y);
    Py_XDECREF(n);
    return ok;
}

/* _note_yield's own test: has the frame kept all its sampled yields' shapes already? */
static int
yields_sampled(PyObject *rec)
{
    PyObject *y = PySequence_GetItem(rec, gen_yielded);
    if (y == NULL)
        return -1;
    int full = PyTuple_CheckExact(y) && PyTuple_GET_SIZE(y) == 2
               && PyList_CheckExact(PyTuple_GET_ITEM(y, 1))
               && PyList_GET_SIZE(PyTuple_GET_ITEM(y, 1)) >= gen_samples;
    Py_DECREF(y);
    return full;
}

/* recorder.deactivate(rec): if rec is the current call, the one it runs under is again. */
static int
gen_deactivate(PyObject *rec)
{
    PyObject *cur = PyObject_Vectorcall(gen_current, NULL, 0, NULL);
    if (cur == NULL)
        return -1;
    Py_DECREF(cur);     /* compared only */
    if (cur != rec)
        return 0;
    PyObject *outer = PySequence_GetItem(rec, gen_outer);
    PyObject *r = outer == NULL ? NULL : call1(gen_set_current, outer);
    Py_XDECREF(outer);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* recorder.resume(rec): rec is the current call again, under whichever call is now. */
static int
gen_resume(PyObject *rec)
{
    PyObject *cur = PyObject_Vectorcall(gen_current, NULL, 0, NULL);
    if (cur == NULL)
        return -1;
    int failed = 0;
    if (cur != rec) {
        PyObject *r = NULL;
        if (PySequence_SetItem(rec, gen_outer, cur) == 0)
            r = call1(gen_set_current, rec);
        failed = r == NULL;
        Py_XDECREF(r);
    }
    Py_DECREF(cur);
    return failed ? -1 : 0;
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
    int failed = flags == -1 && PyErr_Occurred(), here = 0;
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
    here = gen_steps_ready(self);
    int sampled = here > 0 ? yields_sampled(rec) : here;
    if (sampled < 0) {
        failed = 1;
        goto out;
    }
    if (!sampled) {
        r = call3(self->note_yield, rec, value, kind);
        if (r == NULL) {
            failed = 1;
            goto out;
        }
        Py_DECREF(r);
    }
    /* whoever resumed it is the current call again */
    if (here > 0) {
        failed = gen_deactivate(rec) < 0;
    }
    else {
        r = call1(self->deactivate, rec);
        failed = r == NULL;
        Py_XDECREF(r);
    }
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
    int here = gen_steps_ready(self), failed = here < 0;
    if (here > 0) {
        failed = gen_resume(rec) < 0;
    }
    else if (here == 0) {
        PyObject *r = call1(self->resume, rec);
        failed = r == NULL;
        Py_XDECREF(r);
    }
    Py_DECREF(rec);
    return done(self, failed);
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
    PyObject *info = global_event_info(self, args[0]);
    if (info == NULL)
        return done(self, PyErr_Occurred() != NULL);
    long flags = small_long(PyTuple_GET_ITEM(info, E_FLAGS));
    if (flags == -1 && PyErr_Occurred())
        return done(self, 1);
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
    for (int i = 0; i < self->depth; i++) {
        Py_VISIT(self->stack[i].rec);
    }
    return 0;
}

static int
core_clear(CoreObject *self)
{
    while (self->depth > 0) {
        self->depth--;
        Py_CLEAR(self->stack[self->depth].rec);
    }
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
    self->hot = NULL;
    return 0;
}

static void
core_dealloc(CoreObject *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_CLEAR(self->token);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* _speedups' C API if `open_call` and `close_call` are its own functions (an import of
   _speedups is never triggered from here: the recorder chose its twin already). */
static const FaHotPath *
hot_path_of(PyObject *open_call, PyObject *close_call)
{
    PyObject *name = PyUnicode_FromString("flowagent.agent._speedups");
    if (name == NULL)
        return NULL;
    PyObject *m = PyImport_GetModule(name);
    Py_DECREF(name);
    if (m == NULL)
        return NULL;        /* not imported: the recorder runs its Python twin */
    PyObject *cap = PyObject_GetAttrString(m, "_C_API");
    Py_DECREF(m);
    const FaHotPath *api = cap == NULL ? NULL : PyCapsule_GetPointer(cap, FA_HOTPATH_CAPSULE);
    Py_XDECREF(cap);
    if (api == NULL) {
        PyErr_Clear();      /* a _speedups without the C API: call it through Python */
        return NULL;
    }
    if (api->version != FA_HOTPATH_VERSION || api->open_fn != open_call
            || api->close_fn != close_call)
        return NULL;
    return api;
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
    if (self->token == NULL && (self->token = PyObject_CallNoArgs(
            (PyObject *)&PyBaseObject_Type)) == NULL)
        return -1;
    self->hot = hot_path_of(o[3], o[4]);
    if (self->hot == NULL && PyErr_Occurred())
        return -1;
    self->iterator = PyUnicode_InternFromString("Iterator");
    self->async_iterator = PyUnicode_InternFromString("AsyncIterator");
    if (self->iterator == NULL || self->async_iterator == NULL)
        return -1;
    return 0;
}

/* An event callback: what sys.monitoring calls for one event of one core. The interpreter
   calls a callback with the vectorcall protocol; a bound method of the core would add a
   method call on top (a recursion check, a result check and an indirect call per event). */
typedef PyObject *(*EventFn)(CoreObject *, PyObject *const *, Py_ssize_t);

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    CoreObject *core;
    EventFn fn;
} CallbackObject;

static PyObject *
callback_call(CallbackObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "a monitoring callback takes no keyword arguments");
        return NULL;
    }
    return self->fn(self->core, args, PyVectorcall_NARGS(nargsf));
}

static int
callback_traverse(CallbackObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->core);
    return 0;
}

static int
callback_clear(CallbackObject *self)
{
    Py_CLEAR(self->core);
    return 0;
}

static void
callback_dealloc(CallbackObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->core);
    PyObject_GC_Del(self);
}

static PyTypeObject CallbackType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._cores.Callback",
    .tp_basicsize = sizeof(CallbackObject),
    .tp_dealloc = (destructor)callback_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "One sys.monitoring event callback of a MonitorCore.",
    .tp_traverse = (traverseproc)callback_traverse,
    .tp_clear = (inquiry)callback_clear,
    .tp_vectorcall_offset = offsetof(CallbackObject, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* A new callback of `core` for one event (each read of the attribute makes one: the core
   does not keep them, so no reference cycle forms). */
static PyObject *
core_callback(CoreObject *core, void *closure)
{
    CallbackObject *cb = PyObject_GC_New(CallbackObject, &CallbackType);
    if (cb == NULL)
        return NULL;
    cb->vectorcall = (vectorcallfunc)callback_call;
    cb->core = (CoreObject *)Py_NewRef(core);
    cb->fn = (EventFn)closure;
    PyObject_GC_Track(cb);
    return (PyObject *)cb;
}

static PyObject *
core_get_direct(CoreObject *self, void *closure)
{
    return PyBool_FromLong(self->hot != NULL);
}

#define CALLBACK(name, fn, doc) {name, (getter)core_callback, NULL, doc, (void *)(fn)}

static PyGetSetDef core_getset[] = {
    {"direct", (getter)core_get_direct, NULL,
     "True when the recorder's C functions are called directly (no Python call per event).",
     NULL},
    CALLBACK("py_start", core_py_start, "PY_START: open the call of a recorded code object."),
    CALLBACK("py_return", core_py_return, "PY_RETURN: close it with its return value."),
    CALLBACK("py_yield", core_py_yield, "PY_YIELD: a generator's call is suspended."),
    CALLBACK("py_resume", core_py_resume, "PY_RESUME: it is the current call again."),
    CALLBACK("py_unwind", core_py_unwind, "PY_UNWIND: close it with the exception's type."),
    CALLBACK("py_throw", core_py_throw, "PY_THROW: throw()/close() resumes a generator."),
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
    .tp_getset = core_getset,
    .tp_init = (initproc)core_init,
    .tp_new = PyType_GenericNew,
};

#endif  /* 3.12+ */

/* ---------------------------------------------------------------------------------------- */
/* ProfileCore: the ``profile`` backend's profile function, in C (any supported Python).
 *
 * The interpreter calls it for every call and return of the program, Python or C. It
 * answers the question "is this code recorded?" once per code object and keeps the answer
 * in a code-extra slot, so a call of unrecorded code costs one slot read; C calls cost one
 * comparison. Events of recorded code go to the backend's Python handler (the same one the
 * Python profile function runs), so the record semantics stay in one place. */

typedef struct {
    PyObject_HEAD
    PyObject *classify;      /* (frame, code) -> fid (0: not recorded); runs once per code */
    PyObject *handle;        /* (frame, event, arg, fid) -> None, for recorded code only */
    PyObject *recover;       /* (frame, event, exc): the program's exception left handle */
    PyObject *token;         /* this core's identity in the code-extra slot */
    PyObject *state;         /* recorder.S, for agent_errors */
    int active;
} ProfileCoreObject;

static PyObject *ev_call, *ev_return;

/* Slot contents: a (token, fid) tuple, owned by the code object. */

/* The fid of the frame's code (borrowed), deciding now if this core has not yet. */
static PyObject *
profile_fid(ProfileCoreObject *self, PyFrameObject *frame)
{
    PyCodeObject *code = PyFrame_GetCode(frame);
    void *extra = NULL;
    PyObject *fid = NULL;
    if (FA_GetExtra((PyObject *)code, extra_index, &extra) < 0)
        goto out;
    if (extra != NULL && PyTuple_GET_ITEM((PyObject *)extra, 0) == self->token) {
        fid = PyTuple_GET_ITEM((PyObject *)extra, 1);
        goto out;
    }
    PyObject *got = call2(self->classify, (PyObject *)frame, (PyObject *)code);
    if (got == NULL)
        goto out;
    PyObject *entry = PyTuple_Pack(2, self->token, got);
    Py_DECREF(got);
    if (entry == NULL)
        goto out;
    if (FA_SetExtra((PyObject *)code, extra_index, entry) < 0) {  /* frees the old one */
        Py_DECREF(entry);
        goto out;
    }
    fid = PyTuple_GET_ITEM(entry, 1);
out:
    Py_DECREF(code);
    return fid;
}

static int
profile_event(ProfileCoreObject *self, PyFrameObject *frame, PyObject *event, PyObject *arg)
{
    PyObject *fid = profile_fid(self, frame);
    if (fid == NULL)
        return count_error(self->state);
    int recorded = PyObject_IsTrue(fid);
    if (recorded <= 0)
        return recorded < 0 ? count_error(self->state) : 0;
    Py_INCREF(fid);
    PyObject *r = call4(self->handle, (PyObject *)frame, event, arg ? arg : Py_None, fid);
    Py_DECREF(fid);
    if (r == NULL) {
        if (self->recover != NULL && pending_is_program()) {
            /* The program's exception (its signal handler ran inside the handler) ends the
               frame the event was about: close its record, then let it propagate. */
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_NormalizeException(&t, &v, &tb);
            PyObject *h = call3(self->recover, (PyObject *)frame, event, v != NULL ? v : Py_None);
            Py_XDECREF(h);
            PyErr_Clear();
            PyErr_Restore(t, v, tb);
            return -1;
        }
        return count_error(self->state);
    }
    Py_DECREF(r);
    return 0;
}

static int
profile_fn(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    if (what != PyTrace_CALL && what != PyTrace_RETURN)
        return 0;  /* c_call, c_return, c_exception: builtins are never recorded */
    ProfileCoreObject *self = (ProfileCoreObject *)obj;
    if (!self->active)
        return 0;
    return profile_event(self, frame, what == PyTrace_CALL ? ev_call : ev_return, arg);
}

static PyObject *
pcore_install(ProfileCoreObject *self, PyObject *unused)
{
    self->active = 1;
    PyEval_SetProfile(profile_fn, (PyObject *)self);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
pcore_uninstall(ProfileCoreObject *self, PyObject *unused)
{
    /* Other threads may still hold this core as their profile function: inactive, it
       returns at once. */
    self->active = 0;
    PyEval_SetProfile(NULL, NULL);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* Called as a Python-level profile function, which is what threading.setprofile() installs
   in each new thread: switch that thread to the C function, then handle the event. */
static PyObject *
pcore_call(ProfileCoreObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *frame, *event, *arg;
    if (!PyArg_ParseTuple(args, "OOO", &frame, &event, &arg))
        return NULL;
    if (self->active) {
        PyEval_SetProfile(profile_fn, (PyObject *)self);
        if (PyErr_Occurred())
            return NULL;
    }
    if (self->active && PyFrame_Check(frame) && PyUnicode_Check(event)) {
        PyObject *ev = PyUnicode_Compare(event, ev_call) == 0 ? ev_call
                     : PyUnicode_Compare(event, ev_return) == 0 ? ev_return : NULL;
        if (ev != NULL && profile_event(self, (PyFrameObject *)frame, ev, arg) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static int
pcore_traverse(ProfileCoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->classify);
    Py_VISIT(self->handle);
    Py_VISIT(self->recover);
    Py_VISIT(self->state);
    return 0;
}

static int
pcore_clear(ProfileCoreObject *self)
{
    Py_CLEAR(self->classify);
    Py_CLEAR(self->handle);
    Py_CLEAR(self->recover);
    Py_CLEAR(self->state);
    return 0;
}

static void
pcore_dealloc(ProfileCoreObject *self)
{
    PyObject_GC_UnTrack(self);
    pcore_clear(self);
    Py_CLEAR(self->token);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
pcore_init(ProfileCoreObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"classify", "handle", "state", "recover", NULL};
    PyObject *classify, *handle, *state, *recover = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|O", kwlist, &classify, &handle, &state,
                                     &recover))
        return -1;
    pcore_clear(self);
    self->classify = Py_NewRef(classify);
    self->handle = Py_NewRef(handle);
    self->recover = recover == Py_None ? NULL : Py_NewRef(recover);
    self->state = Py_NewRef(state);
    if (self->token == NULL)
        self->token = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    return self->token == NULL ? -1 : 0;
}

static PyMethodDef pcore_methods[] = {
    {"install", (PyCFunction)pcore_install, METH_NOARGS,
     "Make this core the profile function of the calling thread."},
    {"uninstall", (PyCFunction)pcore_uninstall, METH_NOARGS,
     "Remove the calling thread's profile function; the core goes inactive everywhere."},
    {NULL}
};

static PyTypeObject ProfileCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._cores.ProfileCore",
    .tp_basicsize = sizeof(ProfileCoreObject),
    .tp_dealloc = (destructor)pcore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The profile backend's profile function, in C (decides once per code object).",
    .tp_traverse = (traverseproc)pcore_traverse,
    .tp_clear = (inquiry)pcore_clear,
    .tp_methods = pcore_methods,
    .tp_init = (initproc)pcore_init,
    .tp_new = PyType_GenericNew,
    .tp_call = (ternaryfunc)pcore_call,
};

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
    if (extra_index < 0)
        extra_index = FA_RequestExtraIndex(free_extra);
    ev_call = PyUnicode_InternFromString("call");
    ev_return = PyUnicode_InternFromString("return");
    if (extra_index < 0 || ev_call == NULL || ev_return == NULL
            || PyType_Ready(&ProfileCoreType) < 0
            || PyModule_AddObjectRef(m, "ProfileCore", (PyObject *)&ProfileCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&CallbackType) < 0
            || PyModule_AddObjectRef(m, "MonitorCore",
                                                             (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
