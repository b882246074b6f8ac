/* The recorder's per-call hot path in C: the twin of the pure-Python code in recorder.py.
 *
 * Python-visible behaviour is the same as the pure twin's (recorder.py documents it); only
 * the cost differs. What moves to C is what runs on every call: reading and replacing the
 * current frame, the call id and clock reads, the shape budget, the scalar shape caches and
 * the finished record, which is packed as 13 int64 into a growable C array instead of
 * becoming a Python tuple. Everything rare (a session's first call, a shape that has to be
 * described, an exception's name, sampling) calls back into recorder.py, so the policy lives
 * in one place.
 *
 * Frames stay Python lists with recorder.py's layout: generators, request roots and the
 * profile backend keep working on frames this module creates, and the other way round.
 *
 * Errors inside the agent are counted in S.agent_errors and never raised into the program;
 * an exception the program raised into agent code asynchronously (KeyboardInterrupt, a
 * signal handler's or PyThreadState_SetAsyncExc's exception arriving while a Python callback
 * runs) propagates, as it does through the pure twin: recorder.program_exception decides.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <pthread.h>
#include <sys/mman.h>
#endif

#include "_guard.h"
#include "_hotpath.h"
#include "_shapekey.h"

/* Bumped whenever the interface recorder.py relies on changes: a stale build is refused. */
#define ABI 4

/* Frame layout: recorder.py's CID, PARENT, ... (checked against FRAME_LAYOUT at import). */
enum { CID, PARENT, SES, FID, T0, INS, FLAGS, OUTER, GEN, THR, EXC, YIELDED, RV, CPU, FRAME_LEN };
enum { F_ERR = 1, F_CHILD_ERR = 2, F_SKIP = 4, F_SHAPED = 8 };
enum { R_SUCCESS = 0, R_ERROR = 1, R_PARTIAL = 2 };
/* Record fields, wire.CALL_FIELDS order. */
enum { C_CID, C_PAR, C_SES, C_FID, C_PFID, C_INS, C_OUT, C_RES, C_EXC, C_T0, C_T1, C_THR, C_CPU,
       N_FIELDS };

/* ---------------------------------------------------------------------------------------- */
/* Process-wide state, visible to Python as recorder.S (attributes of the pure twin's _State). */

typedef struct {
    PyObject_HEAD
    char on, sync_sessions, user_functions, cpu;
    int sample_ppm;
    Py_ssize_t max_buf, flush_at;
    long long dropped, agent_errors, sampled_out, next_cid;
    PyObject *gen, *session_starts, *wake, *flush_now;
    int64_t *buf;            /* n records of N_FIELDS values, row-major */
    Py_ssize_t n, cap;       /* in records */
} StateObject;

static StateObject *S;               /* the one instance (module attribute S) */
static PyObject *cur_var;            /* ContextVar holding the current frame */
static PyObject *noexit;             /* context manager of calls that are not recorded */
static PyObject *int_zero;           /* 0, what an empty YIELDED field reads as */

/* Python callbacks for the rare paths (set by configure()). */
static PyObject *h_input_sid, *h_output_sid, *h_exc_sid, *h_yield_sid, *h_session_start,
                *h_random, *h_thread_time, *h_program_exception, *h_unknown_error;

/* Shape budget (configure()): the first `shape_first` calls of a function are shaped, then
   one in `shape_every` up to `shape_warm` calls, then one in `shape_hot_every`. */
static uint64_t shape_first = 64, shape_every = 16, shape_warm = 1024, shape_hot_every = 256;

/* Per-function tables, indexed by fid and grown on demand. */
typedef struct {
    uint64_t shape_calls;   /* calls seen, for the shape budget */
    uint64_t in_key;        /* scalar argument types of the cached input shape (0: none) */
    long long in_sid;       /* ... and its shape id */
    Fp in_fp;               /* fingerprint of the last structured input shaped ... */
    long long in_fp_sid;    /* ... its shape id (0: none) ... */
    unsigned in_fp_epoch;   /* ... valid while fp_epoch is this (the caches not emptied) */
    PyObject *exit;         /* the function's `with` context manager (a singleton) */
} FnSlot;
static FnSlot *fns;
static Py_ssize_t fns_cap;

/* Output shape ids of the builtin scalar types, by scalar code (0 = not cached yet). */
static long long out_sid[8];

/* Shape ids of fixed output shapes (a request root's "HTTP 200"), by the exact str, so that
   closing a root costs a dict lookup, not two calls into Python. Valid while the hooks'
   intern table is: emptied by configure() (new hooks) and reset() (a forked child), and
   when it reaches FIXED_SIDS_MAX entries (bounded whatever the program sets). */
#define FIXED_SIDS_MAX 256
static PyObject *fixed_sids;

/* The last thread seen and its ident as a Python int (most programs have one busy thread). */
static unsigned long last_ident;
static PyObject *last_ident_obj;

/* ---------------------------------------------------------------------------------------- */
/* Small helpers */

static inline int64_t
clock_ns(void)
{
#if defined(__linux__)
    /* What time.perf_counter_ns() reads on Linux, without the Python call. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#elif PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    (void)PyTime_PerfCounterRaw(&t);
    return (int64_t)t;
#else
    return (int64_t)_PyTime_GetPerfCounter();
#endif
}

/* CPU time of this thread (time.thread_time_ns()); -1 with an exception set on failure. */
static inline int64_t
thread_time_ns(void)
{
#if defined(__linux__)
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#else
    PyObject *r = PyObject_CallNoArgs(h_thread_time);
    if (r == NULL)
        return -1;
    int64_t v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    return v;
#endif
}

/* An agent error: counted and cleared, unless it must reach the program (see top). */
static int
swallow(void)
{
    if (PyErr_Occurred() && fa_program_error(h_program_exception))
        return -1;
    PyErr_Clear();
    S->agent_errors++;
    return 0;
}

static inline long long
as_ll(PyObject *o)
{
    /* Most values a frame holds (ids, flags, shape ids) fit one digit, and a start time (ns
       since boot) two: read them inline. */
#if PY_VERSION_HEX >= 0x030C0000
    if (PyLong_CheckExact(o)) {
        PyLongObject *l = (PyLongObject *)o;
        if (PyUnstable_Long_IsCompact(l))
            return (long long)PyUnstable_Long_CompactValue(l);
        if (PyLong_SHIFT == 30 && l->long_value.lv_tag == (2 << _PyLong_NON_SIZE_BITS))
            return (long long)l->long_value.ob_digit[0]   /* two digits, positive */
                   | (long long)l->long_value.ob_digit[1] << PyLong_SHIFT;
    }
#else
    if (PyLong_CheckExact(o)) {
        Py_ssize_t size = Py_SIZE(o);
        if (size >= -1 && size <= 1)
            return (long long)size * (long long)((PyLongObject *)o)->ob_digit[0];
        if (PyLong_SHIFT == 30 && size == 2)
            return (long long)((PyLongObject *)o)->ob_digit[0]
                   | (long long)((PyLongObject *)o)->ob_digit[1] << PyLong_SHIFT;
    }
#endif
#if LONG_MAX >= LLONG_MAX
    /* PyLong_AsLongLong goes through a byte array for every int above 2**30 (times, ids). */
    return PyLong_AsLong(o);
#else
    return PyLong_AsLongLong(o);
#endif
}

static PyObject *
thread_ident(void)
{
    unsigned long ident = PyThread_get_thread_ident();
    if (last_ident_obj == NULL || ident != last_ident) {
        PyObject *o = PyLong_FromUnsignedLong(ident);
        if (o == NULL)
            return NULL;
        Py_XSETREF(last_ident_obj, o);
        last_ident = ident;
    }
    return Py_NewRef(last_ident_obj);
}

/* ---------------------------------------------------------------------------------------- */
/* Frames: the open call as a C object */

/* What this twin opens a call as: recorder.py's frame layout in a struct, with int64 fields
   where the pure twin's list holds int objects (none to make, read back or free per call),
   and a free list of closed ones so that opening a call allocates nothing. Python code
   indexes it as it indexes the pure twin's list (frame[recorder.FLAGS] |= ...), with two
   more slots, XA and XB, for what a backend keeps with a call (the profile backend's). Lists
   of the same layout (a generator's Frame, a request root, frames made by the pure twin)
   stay frames: the code below reads and writes every frame through the fr_* accessors. */
enum { XA = FRAME_LEN, XB, CALL_LEN };
typedef struct {
    PyObject_HEAD
    int64_t cid, ses, fid, t0, ins, flags, exc, cpu;
    uint64_t thr;
    /* NULL reads as None (YIELDED: as 0, what the pure twin starts it with) */
    PyObject *parent, *outer, *gen, *yielded, *rv, *x[2];
} CallObject;

static PyTypeObject CallType;
#define IS_CALL(f) Py_IS_TYPE((f), &CallType)
#define CALL(f) ((CallObject *)(f))
#define CALL_FREE_MAX 64
static CallObject *call_free[CALL_FREE_MAX];
static int call_free_n;

/* A new frame, every field 0 or NULL, tracked by the collector (new reference). */
static inline CallObject *
call_new(void)
{
    CallObject *c;
    if (call_free_n > 0) {
        c = call_free[--call_free_n];
        (void)PyObject_Init((PyObject *)c, &CallType);
    }
    else if ((c = PyObject_GC_New(CallObject, &CallType)) == NULL)
        return NULL;
    memset(&c->cid, 0, sizeof(CallObject) - offsetof(CallObject, cid));
    PyObject_GC_Track(c);
    return c;
}

static int
call_traverse(CallObject *c, visitproc visit, void *arg)
{
    Py_VISIT(c->parent);
    Py_VISIT(c->outer);
    Py_VISIT(c->gen);
    Py_VISIT(c->yielded);
    Py_VISIT(c->rv);
    Py_VISIT(c->x[0]);
    Py_VISIT(c->x[1]);
    return 0;
}

static int
call_clear(CallObject *c)
{
    Py_CLEAR(c->parent);
    Py_CLEAR(c->outer);
    Py_CLEAR(c->gen);
    Py_CLEAR(c->yielded);
    Py_CLEAR(c->rv);
    Py_CLEAR(c->x[0]);
    Py_CLEAR(c->x[1]);
    return 0;
}

static inline void
call_free_or_del(CallObject *c)
{
    if (call_free_n < CALL_FREE_MAX)
        call_free[call_free_n++] = c;
    else
        PyObject_GC_Del(c);
}

static void
call_dealloc(CallObject *c)
{
    PyObject_GC_UnTrack(c);
    /* A closed call whose caller's frame lives on (held by the caller's own call) frees
       nothing else that could free more: no recursion, no trashcan (the common case). */
    PyObject *p = c->parent, *o = c->outer;
    if (c->yielded == NULL && c->rv == NULL && c->x[0] == NULL && c->x[1] == NULL
            && (p == NULL || Py_REFCNT(p) > 1 + (o == p))
            && (o == NULL || o == p || Py_REFCNT(o) > 1)) {
        PyObject *g = c->gen;
        c->parent = c->outer = c->gen = NULL;
        Py_XDECREF(p);
        Py_XDECREF(o);
        Py_XDECREF(g);
        call_free_or_del(c);
        return;
    }
    /* The trashcan: a long chain of parents freed at once would recurse once per frame. */
    Py_TRASHCAN_BEGIN(c, call_dealloc)
    call_clear(c);
    call_free_or_del(c);
    Py_TRASHCAN_END
}

static Py_ssize_t
call_length(PyObject *self)
{
    return CALL_LEN;
}

static PyObject **
call_slot(CallObject *c, Py_ssize_t i)
{
    switch (i) {
    case PARENT: return &c->parent;
    case OUTER: return &c->outer;
    case GEN: return &c->gen;
    case YIELDED: return &c->yielded;
    case RV: return &c->rv;
    case XA: return &c->x[0];
    case XB: return &c->x[1];
    default: return NULL;
    }
}

static int64_t *
call_int(CallObject *c, Py_ssize_t i)
{
    switch (i) {
    case CID: return &c->cid;
    case SES: return &c->ses;
    case FID: return &c->fid;
    case T0: return &c->t0;
    case INS: return &c->ins;
    case FLAGS: return &c->flags;
    case EXC: return &c->exc;
    case CPU: return &c->cpu;
    default: return NULL;
    }
}

static PyObject *
call_item(PyObject *self, Py_ssize_t i)
{
    CallObject *c = CALL(self);
    if (i == THR)
        return PyLong_FromUnsignedLongLong(c->thr);
    int64_t *n = call_int(c, i);
    if (n != NULL)
        return PyLong_FromLongLong(*n);
    PyObject **o = call_slot(c, i);
    if (o == NULL) {
        PyErr_SetString(PyExc_IndexError, "frame index out of range");
        return NULL;
    }
    return Py_NewRef(*o != NULL ? *o : i == YIELDED ? int_zero : Py_None);
}

static int
call_ass_item(PyObject *self, Py_ssize_t i, PyObject *v)
{
    CallObject *c = CALL(self);
    if (v == NULL) {
        PyErr_SetString(PyExc_TypeError, "a frame's fields cannot be deleted");
        return -1;
    }
    PyObject **o = call_slot(c, i);
    if (o != NULL) {
        PyObject *old = *o;
        *o = Py_NewRef(v);
        Py_XDECREF(old);
        return 0;
    }
    if (i < 0 || i >= CALL_LEN) {
        PyErr_SetString(PyExc_IndexError, "frame assignment index out of range");
        return -1;
    }
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "frame field %zd holds an int, not %.100s", i,
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    if (i == THR) {
        unsigned long long t = PyLong_AsUnsignedLongLong(v);
        if (t == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        c->thr = t;
        return 0;
    }
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    *call_int(c, i) = n;
    return 0;
}

static PySequenceMethods call_as_sequence = {
    .sq_length = call_length,
    .sq_item = call_item,
    .sq_ass_item = call_ass_item,
};

static PyTypeObject CallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._speedups.Call",
    .tp_basicsize = sizeof(CallObject),
    .tp_dealloc = (destructor)call_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An open call (a recorder frame): indexed as recorder.py's frame layout.",
    .tp_traverse = (traverseproc)call_traverse,
    .tp_clear = (inquiry)call_clear,
    .tp_as_sequence = &call_as_sequence,
};

/* A frame: a Call, or a list with recorder.py's layout. */
static inline int
is_frame(PyObject *f)
{
    return IS_CALL(f) || (PyList_Check(f) && PyList_GET_SIZE(f) >= FRAME_LEN);
}

#define ITEM(f, i) PyList_GET_ITEM((f), (i))

static inline void
set_item(PyObject *f, Py_ssize_t i, PyObject *v)   /* steals v */
{
    PyObject *old = ITEM(f, i);
    PyList_SET_ITEM(f, i, v);
    Py_XDECREF(old);
}

/* An int field of a frame (-1 with an exception set when a list's item is not an int). */
static inline long long
fr_ll(PyObject *f, Py_ssize_t i)
{
    if (IS_CALL(f))
        return i == THR ? (long long)CALL(f)->thr : *call_int(CALL(f), i);
    return as_ll(ITEM(f, i));
}

/* An object field of a frame (borrowed; None for an empty one, YIELDED included). */
static inline PyObject *
fr_obj(PyObject *f, Py_ssize_t i)
{
    if (IS_CALL(f)) {
        PyObject *o = *call_slot(CALL(f), i);
        return o != NULL ? o : Py_None;
    }
    return ITEM(f, i);
}

/* Store an object field (a new reference is taken; NULL empties it). */
static inline void
fr_set_obj(PyObject *f, Py_ssize_t i, PyObject *v)
{
    if (IS_CALL(f)) {
        PyObject **o = call_slot(CALL(f), i);
        PyObject *old = *o;
        *o = Py_XNewRef(v);
        Py_XDECREF(old);
    }
    else
        set_item(f, i, Py_NewRef(v != NULL ? v : Py_None));
}

static FnSlot *
fn_slot(Py_ssize_t fid)
{
    if (fid < 0) {
        PyErr_SetString(PyExc_ValueError, "negative function id");
        return NULL;
    }
    if (fid >= fns_cap) {
        Py_ssize_t cap = fns_cap ? fns_cap : 256;
        while (cap <= fid)
            cap *= 2;
        FnSlot *grown = PyMem_Realloc(fns, cap * sizeof(FnSlot));
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(grown + fns_cap, 0, (cap - fns_cap) * sizeof(FnSlot));
        fns = grown;
        fns_cap = cap;
    }
    return &fns[fid];
}

/* Describing values runs Python code (shapes.py) on top of the call being opened. Near the
   recursion limit that would make the program's own recursion fail sooner than it does
   plainly, so a call opened with fewer than SHAPE_HEADROOM Python frames to spare is left
   unshaped (it still counts against the budget). */
#define SHAPE_HEADROOM 100

static inline int
near_recursion_limit(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030C0000
    return ts->py_recursion_remaining < SHAPE_HEADROOM;
#else
    return ts->recursion_remaining < SHAPE_HEADROOM;
#endif
}

static inline int
shaped(FnSlot *slot)
{
    uint64_t n = ++slot->shape_calls;
    if (n <= shape_first)
        return 1;
    if (n <= shape_warm)
        return n % shape_every == 0;
    return n % shape_hot_every == 0;
}

/* 1..7 for the builtin scalar types whose shape is their type name, else 0. */
static inline unsigned
scalar_code(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyLong_Type) return 1;
    if (t == &PyUnicode_Type) return 2;
    if (t == &PyFloat_Type) return 3;
    if (t == &PyBool_Type) return 4;
    if (o == Py_None) return 5;
    if (t == &PyBytes_Type) return 6;
    if (t == &PyComplex_Type) return 7;
    return 0;
}

/* The argument types as one integer when all are builtin scalars (the input shape is then
   known from the types alone), else 0. The count leads, so (int,) and (int, int) differ. */
static inline uint64_t
scalar_key(PyObject *const *args, Py_ssize_t n)
{
    if (n > 19)
        return 0;
    uint64_t key = (uint64_t)n + 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned code = scalar_code(args[i]);
        if (code == 0)
            return 0;
        key = (key << 3) | code;
    }
    return key;
}

static long long
call_sid(PyObject *hook, PyObject *arg)
{
    PyObject *r = PyObject_CallOneArg(hook, arg);
    if (r == NULL)
        return -1;
    long long sid = as_ll(r);
    Py_DECREF(r);
    return sid;
}

/* The shape id of a fixed output shape `y` (an exact str): cached, else by the yield_sid hook. */
static long long
fixed_sid(PyObject *y)
{
    PyObject *hit = PyDict_GetItemWithError(fixed_sids, y);  /* borrowed; a str hashes as str */
    if (hit != NULL)
        return as_ll(hit);
    if (PyErr_Occurred())
        return -1;
    long long sid = call_sid(h_yield_sid, y);
    if (sid <= 0)
        return sid;
    if (PyDict_GET_SIZE(fixed_sids) >= FIXED_SIDS_MAX)
        PyDict_Clear(fixed_sids);
    PyObject *v = PyLong_FromLongLong(sid);
    if (v == NULL || PyDict_SetItem(fixed_sids, y, v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    return sid;
}

/* A fingerprint walk's outcome: 1 (fingerprinted), 0 (refused: describe the value), -1 (an
   exception that belongs to the program; the agent's own are cleared and count as refused). */
static int
fp_done(int st)
{
    if (st == FP_OK)
        return 1;
    if (st == FP_ERROR && PyErr_Occurred()) {
        if (fa_program_error(h_program_exception))
            return -1;
        PyErr_Clear();
    }
    fp_refused++;
    return 0;
}

/* Python code ran during a walk (FP_RETRY): every value is walked again from the first, so
   that the fingerprint describes them all as they are after it. */
static int
fp_args(Fp *f, PyObject *const *args, Py_ssize_t n)
{
    int st = FP_RETRY;
    for (int attempt = 0; attempt < FP_ATTEMPTS && st == FP_RETRY; attempt++) {
        f->a = f->b = FPM_ARGS;
        fp_mix(f, (uint64_t)n);
        st = FP_OK;
        for (Py_ssize_t i = 0; i < n && st == FP_OK; i++)
            st = fp_value_into(f, args[i]);  /* one shape_of() per argument: a walk each */
    }
    return fp_done(st == FP_RETRY ? FP_BAIL : st);
}

static int
fp_output(Fp *f, PyObject *value)
{
    int st = FP_RETRY;
    for (int attempt = 0; attempt < FP_ATTEMPTS && st == FP_RETRY; attempt++) {
        f->a = f->b = FPM_OUTPUT;
        st = fp_value_into(f, value);
    }
    return fp_done(st == FP_RETRY ? FP_BAIL : st);
}

static long long
input_sid(FnSlot *slot, PyObject *const *args, Py_ssize_t n)
{
    uint64_t key = scalar_key(args, n);
    if (key != 0 && key == slot->in_key)
        return slot->in_sid;
    Fp f;
    int known = fp_args(&f, args, n);
    if (known < 0)
        return -1;
    if (known) {
        /* A function is mostly called with one structure: its last one is checked first. */
        if (slot->in_fp_sid != 0 && slot->in_fp_epoch == fp_epoch && slot->in_fp.a == f.a
                && slot->in_fp.b == f.b) {
            fp_hits++;
            return slot->in_fp_sid;
        }
        long long sid = fp_sid_get(&f);
        if (sid == 0) {
            fp_misses++;
            PyObject *tuple = PyTuple_New(n);
            if (tuple == NULL)
                return -1;
            for (Py_ssize_t i = 0; i < n; i++)
                PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
            sid = call_sid(h_input_sid, tuple);
            Py_DECREF(tuple);
            if (sid <= 0)
                return sid;
            fp_sid_put(&f, sid);
        }
        else
            fp_hits++;
        slot->in_fp = f;
        slot->in_fp_sid = sid;
        slot->in_fp_epoch = fp_epoch;
        if (key != 0) {
            slot->in_key = key;
            slot->in_sid = sid;
        }
        return sid;
    }
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    long long sid = call_sid(h_input_sid, tuple);
    Py_DECREF(tuple);
    if (sid >= 0 && key != 0) {
        slot->in_key = key;
        slot->in_sid = sid;
    }
    return sid;
}

static long long
output_sid(PyObject *value)
{
    unsigned code = scalar_code(value);
    if (code && out_sid[code])
        return out_sid[code];
    Fp f = {0, 0};
    int known = code == 0 ? fp_output(&f, value) : 0;
    if (known < 0)
        return -1;
    if (known) {
        long long sid = fp_sid_get(&f);
        if (sid) {
            fp_hits++;
            return sid;
        }
        fp_misses++;
    }
    long long sid = call_sid(h_output_sid, value);
    if (sid > 0 && known)
        fp_sid_put(&f, sid);
    if (code && sid > 0)
        out_sid[code] = sid;
    return sid;
}

/* ---------------------------------------------------------------------------------------- */
/* The current frame
 *
 * cur_var (a ContextVar) holds a Holder whose `frame` is the current frame. ContextVar.set
 * builds a new HAMT, a new path of nodes and a Token: about 40% of a recorded call. So a
 * call writes holder->frame in place instead, whenever no other context can observe the
 * holder; a write is then indistinguishable from a set. A copy of a context (copy_context,
 * an asyncio task, asyncio.to_thread) shares the HAMT, and so the holder, with the context
 * it was copied from, and must keep the frame as of the copy (a child task nests under the
 * call that created it): a holder that is shared is never written, it is replaced by a new
 * one with a real PyContextVar_Set (counted in context_sets).
 *
 * "Nobody else can observe it" is proven from CPython's private structures: the current
 * context's HAMT is referenced once (by that context), every node on the path from its root
 * to our key is referenced once (by its parent), and the holder once (by that node) besides
 * the reference we hold. A copy raises the HAMT's count; a copy that has since set a
 * variable of its own shares nodes or the holder, which raises theirs; a Token or Python
 * code holding the holder raises the holder's. Every other shape (a collision node, an
 * unknown node type) takes the set. The mirrored structs are checked against the running
 * interpreter when the module loads (in_place_self_test); if anything differs, or on a
 * build they were not written for, every write is a set.
 */

typedef struct {
    PyObject_HEAD
    PyObject *frame;    /* the current frame or None; NULL only while the GC clears a cycle */
} HolderObject;

static int
holder_traverse(HolderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->frame);
    return 0;
}

static int
holder_clear(HolderObject *self)
{
    Py_CLEAR(self->frame);
    return 0;
}

static void
holder_dealloc(HolderObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->frame);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject HolderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._speedups.Holder",
    .tp_basicsize = sizeof(HolderObject),
    .tp_dealloc = (destructor)holder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The current frame of one context (the value of the current-call ContextVar).",
    .tp_traverse = (traverseproc)holder_traverse,
    .tp_clear = (inquiry)holder_clear,
};

static PyObject *
holder_new(PyObject *frame)
{
    HolderObject *h = PyObject_GC_New(HolderObject, &HolderType);
    if (h == NULL)
        return NULL;
    h->frame = Py_NewRef(frame);
    PyObject_GC_Track(h);
    return (PyObject *)h;
}

static long long context_sets;      /* writes that had to be a PyContextVar_Set */

/* The mirror is written for CPython 3.11 to 3.13 with the GIL, where these structs are the
   same (Include/internal/pycore_context.h, pycore_hamt.h, Python/hamt.c). A free-threaded
   build has no GIL to make the check and the write one step: it always sets. So does a
   subinterpreter: this module's state is the main interpreter's. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#define IN_PLACE_BUILD 1

typedef struct {            /* PyContext */
    PyObject_HEAD
    PyObject *ctx_prev;
    PyObject *ctx_vars;     /* PyHamtObject */
    PyObject *ctx_weakreflist;
    int ctx_entered;
} MirrorContext;

typedef struct {            /* PyHamtObject */
    PyObject_HEAD
    PyObject *h_root;
    PyObject *h_weakreflist;
    Py_ssize_t h_count;
} MirrorHamt;

typedef struct {            /* PyHamtNode_Bitmap: key/value pairs; a NULL key: a sub-node */
    PyObject_VAR_HEAD
    uint32_t b_bitmap;
    PyObject *b_array[1];
} MirrorBitmapNode;

typedef struct {            /* PyHamtNode_Array: 32 sub-nodes */
    PyObject_HEAD
    PyObject *a_array[32];
    Py_ssize_t a_count;
} MirrorArrayNode;

typedef struct {            /* PyContextVar: CPython's per-variable cache of its last read */
    PyObject_HEAD
    PyObject *var_name;
    PyObject *var_default;
    PyObject *var_cached;
    uint64_t var_cached_tsid;
    uint64_t var_cached_tsver;
    Py_hash_t var_hash;
} MirrorContextVar;

static int in_place_ok;                 /* the self-test passed */
static int var_cache_ok;                /* ... and found the variable's cache where mirrored */
static uint32_t var_hash;               /* hamt_hash(cur_var) */
static PyTypeObject *hamt_type, *bitmap_node_type, *array_node_type;  /* learnt in the test */
static PyInterpreterState *main_interp;

static inline unsigned
popcount32(uint32_t x)
{
    /* Inline: without -mpopcnt, __builtin_popcount is a call into libgcc. */
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (((x + (x >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24;
}

/* The value cur_var maps to in `hamt` if every node on the way to it is referenced once,
   else NULL. Follows hamt.c's lookup: 5 hash bits per level, bitmap nodes store a pair at
   popcount(bitmap below our bit), array nodes a sub-node per 5 bits. */
static PyObject *
private_value(MirrorHamt *hamt)
{
    PyObject *node = hamt->h_root;
    for (unsigned shift = 0; shift < 32; shift += 5) {
        if (node == NULL || Py_REFCNT(node) != 1)
            return NULL;
        unsigned index = (var_hash >> shift) & 0x1f;
        if (Py_IS_TYPE(node, bitmap_node_type)) {
            MirrorBitmapNode *b = (MirrorBitmapNode *)node;
            uint32_t bit = (uint32_t)1 << index;
            if (!(b->b_bitmap & bit))
                return NULL;
            Py_ssize_t k = 2 * (Py_ssize_t)popcount32(b->b_bitmap & (bit - 1));
            if (k + 1 >= Py_SIZE(b))
                return NULL;
            if (b->b_array[k] == cur_var)
                return b->b_array[k + 1];
            if (b->b_array[k] != NULL)
                return NULL;        /* another key: ours is not in this HAMT */
            node = b->b_array[k + 1];
        }
        else if (Py_IS_TYPE(node, array_node_type))
            node = ((MirrorArrayNode *)node)->a_array[index];
        else
            return NULL;            /* a collision node (equal 32-bit hashes): rare, not walked */
    }
    return NULL;
}
#endif

/* May `h`, the value cur_var has in this context, be written in place? `h` is a reference
   of our own: a holder nobody else shares has a reference count of exactly 2. */
static inline int
holder_is_private(PyThreadState *ts, PyObject *h)
{
#ifdef IN_PLACE_BUILD
    if (!in_place_ok || !Py_IS_TYPE(h, &HolderType) || Py_REFCNT(h) != 2)
        return 0;
    if (ts->interp != main_interp || ts->context == NULL
            || !Py_IS_TYPE(ts->context, &PyContext_Type))
        return 0;
    PyObject *hamt = ((MirrorContext *)ts->context)->ctx_vars;
    if (hamt == NULL || !Py_IS_TYPE(hamt, hamt_type) || Py_REFCNT(hamt) != 1)
        return 0;
    /* Inline, the usual case: a root bitmap node holding the variable itself. */
    MirrorBitmapNode *b = (MirrorBitmapNode *)((MirrorHamt *)hamt)->h_root;
    if (b != NULL && Py_REFCNT(b) == 1 && Py_IS_TYPE(b, bitmap_node_type)) {
        uint32_t bit = (uint32_t)1 << (var_hash & 0x1f);
        Py_ssize_t k = 2 * (Py_ssize_t)popcount32(b->b_bitmap & (bit - 1));
        if ((b->b_bitmap & bit) && k + 1 < Py_SIZE(b) && b->b_array[k] == cur_var)
            return b->b_array[k + 1] == h;
    }
    return private_value((MirrorHamt *)hamt) == h;
#else
    return 0;
#endif
}

/* The hot path reads the context variable once per open and once per close: its value
   (a Holder, or the default None) is kept while the frame it holds is read and replaced. */

/* The variable's value in this context (new reference). What PyContextVar_Get does, its
   cache read inline: CPython keeps a variable's last value with the thread and the version
   of the thread's context it was read or set in (any switch of context bumps the version),
   so a hit is the value without a call. */
static inline PyObject *
cur_value_ts(PyThreadState *ts)
{
#ifdef IN_PLACE_BUILD
    MirrorContextVar *var = (MirrorContextVar *)cur_var;
    if (var_cache_ok && ts->context != NULL && var->var_cached != NULL
            && var->var_cached_tsid == ts->id && var->var_cached_tsver == ts->context_ver)
        return Py_NewRef(var->var_cached);
#endif
    PyObject *v;
    if (PyContextVar_Get(cur_var, NULL, &v) < 0)
        return NULL;
    return v;
}

static inline PyObject *
cur_value(void)
{
    return cur_value_ts(PyThreadState_Get());
}

/* The frame a value of the variable holds (borrowed; None when there is none). */
static inline PyObject *
value_frame(PyObject *v)
{
    if (!Py_IS_TYPE(v, &HolderType))
        return v;           /* the variable's default, None: nothing set in this context */
    PyObject *frame = ((HolderObject *)v)->frame;
    return frame != NULL ? frame : Py_None;
}

/* Make `frame` (or None) current; `h` is the value cur_value() returned, still held. */
static int
cur_replace_ts(PyThreadState *ts, PyObject *h, PyObject *frame)
{
    if (holder_is_private(ts, h)) {
        HolderObject *holder = (HolderObject *)h;
        PyObject *old = holder->frame;
        holder->frame = Py_NewRef(frame);
        Py_XDECREF(old);    /* last: freeing a frame can run a return value's __del__ */
        return 0;
    }
    context_sets++;
    PyObject *fresh = holder_new(frame);
    if (fresh == NULL)
        return -1;
    /* The collector is held off: a collection inside PyContextVar_Set runs finalizers (a
       recorded __del__, a weakref callback) that would set the variable again while CPython
       is in the middle of setting it, reading the context's mapping after it was freed. */
    int gc_was_on = PyGC_Disable();
    PyObject *token = PyContextVar_Set(cur_var, fresh);
    if (gc_was_on)
        PyGC_Enable();
    Py_DECREF(fresh);
    if (token == NULL)
        return -1;
    Py_DECREF(token);
    return 0;
}

static int
cur_replace(PyObject *h, PyObject *frame)
{
    return cur_replace_ts(PyThreadState_Get(), h, frame);
}

/* The current frame (new reference; None when there is none). */
static inline PyObject *
cur_get(void)
{
    PyObject *v = cur_value();
    if (v == NULL)
        return NULL;
    PyObject *frame = Py_NewRef(value_frame(v));
    Py_DECREF(v);
    return frame;
}

/* Make `frame` (or None) current in this context. */
static int
cur_set(PyObject *frame)
{
    PyObject *h = cur_value();
    if (h == NULL)
        return -1;
    int r = cur_replace(h, frame);
    Py_DECREF(h);
    return r;
}

/* Drop a reference to a closed frame (a Call nothing else holds goes to the free list). */
static void
frame_release(PyObject *f)
{
    Py_DECREF(f);
}

/* ---------------------------------------------------------------------------------------- */
/* Opening a call */

/* A session left out by sampling: a frame that only keeps its calls from recording. */
static PyObject *
skip_session(Py_ssize_t fid, PyObject *current, PyObject *value)
{
    S->sampled_out++;
    CallObject *f = call_new();
    if (f == NULL)
        return NULL;
    f->fid = fid;
    f->flags = F_SKIP;
    f->outer = Py_NewRef(current);
    f->gen = Py_NewRef(S->gen);
    if (cur_replace(value, (PyObject *)f) < 0) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

/* The input shape id of arguments `fetch` reads (open_lazy), or -1 with an exception set. */
static long long
fetched_input_sid(FnSlot *slot, FaArgsFn fetch, void *ctx, Py_ssize_t nargs)
{
    PyObject *argv[FA_LAZY_MAX_ARGS];
    if (nargs < 0 || nargs > FA_LAZY_MAX_ARGS) {
        PyErr_SetString(PyExc_ValueError, "open_lazy: too many arguments");
        return -1;
    }
    if (fetch(ctx, argv, nargs) < 0)
        return -1;
    long long sid = input_sid(slot, argv, nargs);
    for (Py_ssize_t i = 0; i < nargs; i++)
        Py_DECREF(argv[i]);
    return sid;
}

/* The new frame (new reference), or NULL: not recorded (no error set) or an error. The
   arguments are `args`, or, when `fetch` is not NULL, what it reads if the input is shaped. */
static PyObject *
open_with(PyThreadState *ts, PyObject *fidobj, PyObject *const *args, Py_ssize_t nargs,
          FaArgsFn fetch, void *ctx)
{
    Py_ssize_t fid = (Py_ssize_t)as_ll(fidobj);
    if (fid == -1 && PyErr_Occurred())
        return NULL;
    FnSlot *slot = fn_slot(fid);
    if (slot == NULL)
        return NULL;
    PyObject *value = cur_value_ts(ts);
    if (value == NULL)
        return NULL;
    /* Our own reference: replacing the frame in place releases the holder's. */
    PyObject *current = Py_NewRef(value_frame(value));
    PyObject *parent = current;
    CallObject *frame = NULL;
    int new_session = 0, made_current = 0;
    long long ses = 0;
    if (!is_frame(current) || fr_obj(current, GEN) != S->gen) {
        if (S->sample_ppm < 1000000) {
            PyObject *r = PyObject_CallNoArgs(h_random);
            if (r == NULL)
                goto done;
            double x = PyFloat_AsDouble(r);
            Py_DECREF(r);
            if (x * 1000000.0 >= (double)S->sample_ppm) {
                frame = (CallObject *)skip_session(fid, current, value);
                goto done;
            }
        }
        parent = Py_None;
        new_session = 1;
    }
    else {
        long long flags = fr_ll(current, FLAGS);
        if (flags & F_SKIP)
            goto done;
        if ((ses = fr_ll(parent, SES)) == -1 && PyErr_Occurred())
            goto done;
    }
    long long ins = 0;
    int shape = shaped(slot) && !near_recursion_limit(ts);
    if (shape && (ins = fetch == NULL ? input_sid(slot, args, nargs)
                                      : fetched_input_sid(slot, fetch, ctx, nargs)) < 0)
        goto done;
    frame = call_new();
    if (frame == NULL)
        goto done;
    frame->cid = ++S->next_cid;
    frame->ses = new_session ? frame->cid : ses;
    frame->fid = fid;
    frame->ins = ins;
    frame->flags = shape ? F_SHAPED : 0;
    if (parent != Py_None) {
        frame->parent = Py_NewRef(parent);
        frame->outer = Py_NewRef(parent);
    }
    frame->gen = Py_NewRef(S->gen);
    frame->thr = PyThread_get_thread_ident();
    if (cur_replace_ts(ts, value, (PyObject *)frame) < 0)
        goto fail;
    made_current = 1;
    if (new_session) {
        /* The thread's name now (a short-lived thread may be gone before the flusher looks). */
        PyObject *thr = thread_ident(), *cid = PyLong_FromLongLong(frame->cid);
        PyObject *r = thr == NULL || cid == NULL ? NULL : PyObject_CallFunctionObjArgs(
            h_session_start, cid, fidobj, thr, NULL);
        Py_XDECREF(thr);
        Py_XDECREF(cid);
        if (r == NULL)
            goto fail;
        Py_DECREF(r);
    }
    if (S->cpu) {
        int64_t c = thread_time_ns();
        if (c < 0 && PyErr_Occurred())
            goto fail;
        frame->cpu = c;
    }
    frame->t0 = clock_ns();
    goto done;
fail:
    if (made_current) {
        /* Never leave a half-opened frame current: the caller would never close it. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (cur_set(current) < 0)  /* a fresh read: the write may have made a new holder */
            PyErr_Clear();
        PyErr_Restore(et, ev, tb);
    }
    Py_CLEAR(frame);
done:
    Py_DECREF(current);
    Py_DECREF(value);
    return (PyObject *)frame;
}

static inline PyObject *
open_impl(PyObject *fidobj, PyObject *const *args, Py_ssize_t nargs)
{
    return open_with(PyThreadState_Get(), fidobj, args, nargs, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Closing a call */

/* The record buffer's memory: on Linux an anonymous mapping of its own, excluded from fork
   (MADV_DONTFORK). The records pending in a parent are the parent's to send (a forked child
   starts empty), and fork() copies the page tables of all resident memory: a backlog of tens
   of MB, as threads recording flat out build, made every os.fork() of the program that much
   slower. A pthread_atfork child handler forgets the buffers (absent in the child) before
   any code of the child runs, also for a fork() made from C without Python's hooks. */
#if defined(__linux__) && defined(MADV_DONTFORK) && defined(MREMAP_MAYMOVE)
#define BUF_OWN_MAPPING 1
#endif

static size_t
buf_bytes(Py_ssize_t cap)
{
    return (size_t)cap * N_FIELDS * sizeof(int64_t);
}

static int64_t *
buf_resize(int64_t *old, Py_ssize_t old_cap, Py_ssize_t cap)
{
#ifdef BUF_OWN_MAPPING
    void *p = old == NULL
        ? mmap(NULL, buf_bytes(cap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        : mremap(old, buf_bytes(old_cap), buf_bytes(cap), MREMAP_MAYMOVE);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, buf_bytes(cap), MADV_DONTFORK);  /* kept by mremap; cheap to repeat */
    return (int64_t *)p;
#else
    (void)old_cap;
    return PyMem_Realloc(old, buf_bytes(cap));
#endif
}

static void
buf_free(int64_t *buf, Py_ssize_t cap)
{
#ifdef BUF_OWN_MAPPING
    if (buf != NULL)
        munmap(buf, buf_bytes(cap));
#else
    (void)cap;
    PyMem_Free(buf);
#endif
}

/* A buffer the flusher has emptied, kept for the recording threads' next fresh buffer (see
   sp_take_calls): its pages are already mapped in. A buffer of fresh pages takes a page fault
   of the kernel's per 4 KiB written (~40 records), which counted ~20 % of the program's CPU
   time on 1M small calls. Kept only up to SPARE_MAX records: a burst's larger buffer is
   given back. */
#define SPARE_MAX 65536
static int64_t *spare;
static Py_ssize_t spare_cap;

/* `buf` (of `cap` records) is no longer used: kept as the spare, or freed. */
static void
buf_retire(int64_t *buf, Py_ssize_t cap)
{
    if (buf != NULL && spare == NULL && cap <= SPARE_MAX) {
        spare = buf;
        spare_cap = cap;
    }
    else
        buf_free(buf, cap);
}

static int
grow_buffer(void)
{
    if (S->buf == NULL && spare != NULL) {
        S->buf = spare;
        S->cap = spare_cap;
        spare = NULL;
        spare_cap = 0;
        if (S->cap > S->n)
            return 0;
    }
    Py_ssize_t cap = S->cap ? S->cap * 2 : 1024;
    if (cap > S->max_buf)
        cap = S->max_buf;
    int64_t *grown = buf_resize(S->buf, S->cap, cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    S->buf = grown;
    S->cap = cap;
    return 0;
}

/* `value` is the variable's value as cur_value() returned it, still held by the caller. */
static int
close_impl(PyThreadState *ts, PyObject *frame, PyObject *exc_type, PyObject *value)
{
    int64_t t1 = clock_ns();
    int64_t cpu = 0;
    long long cpu0 = fr_ll(frame, CPU);
    if (cpu0 == -1 && PyErr_Occurred())
        return -1;
    if (cpu0) {
        int64_t c = thread_time_ns();
        if (c < 0 && PyErr_Occurred())
            return -1;
        cpu = c - cpu0;
    }
    if (value_frame(value) == frame && cur_replace_ts(ts, value, fr_obj(frame, OUTER)) < 0)
        return -1;
    long long flags = fr_ll(frame, FLAGS);
    if (flags == -1 && PyErr_Occurred())
        return -1;
    if (fr_obj(frame, GEN) != S->gen || flags & F_SKIP)
        return 0;  /* open when this process forked (the parent records it), or sampled out */
    long long res, out = 0, exc = 0;
    PyObject *y = fr_obj(frame, YIELDED);
    if (exc_type != Py_None && exc_type != PyExc_GeneratorExit) {
        /* A consumer closing a generator early (GeneratorExit) is not a failure. */
        res = R_ERROR;
        if ((exc = call_sid(h_exc_sid, exc_type)) < 0)
            return -1;
        /* A fixed output shape (a request root's HTTP status) holds when it failed too. */
        if (PyUnicode_CheckExact(y) && (out = fixed_sid(y)) < 0)
            return -1;
    }
    else {
        res = flags & F_CHILD_ERR ? R_PARTIAL : R_SUCCESS;
        int yielded = y == Py_None ? 0 : PyObject_IsTrue(y);
        if (yielded < 0)
            return -1;
        if (yielded)
            out = PyUnicode_CheckExact(y) ? fixed_sid(y) : call_sid(h_yield_sid, y);
        else if (flags & F_SHAPED)
            out = output_sid(fr_obj(frame, RV));
        if (out < 0)
            return -1;
    }
    fr_set_obj(frame, RV, IS_CALL(frame) ? NULL : Py_None);
    PyObject *parent = fr_obj(frame, PARENT);
    int has_parent = is_frame(parent);
    if (res && has_parent) {
        if (IS_CALL(parent))
            CALL(parent)->flags |= F_CHILD_ERR;
        else {
            long long pflags = as_ll(ITEM(parent, FLAGS));
            if (!(pflags & F_CHILD_ERR)) {
                PyObject *v = PyLong_FromLongLong(pflags | F_CHILD_ERR);
                if (v == NULL)
                    return -1;
                set_item(parent, FLAGS, v);
            }
        }
    }
    int64_t rec[N_FIELDS];
    rec[C_OUT] = out;
    rec[C_RES] = res;
    rec[C_EXC] = exc;
    rec[C_T1] = t1;
    rec[C_CPU] = cpu;
    if (IS_CALL(frame)) {
        CallObject *c = CALL(frame);
        rec[C_CID] = c->cid;
        rec[C_SES] = c->ses;
        rec[C_FID] = c->fid;
        rec[C_INS] = c->ins;
        rec[C_T0] = c->t0;
        rec[C_THR] = (int64_t)c->thr;
    }
    else {
        rec[C_CID] = as_ll(ITEM(frame, CID));
        rec[C_SES] = as_ll(ITEM(frame, SES));
        rec[C_FID] = as_ll(ITEM(frame, FID));
        rec[C_INS] = as_ll(ITEM(frame, INS));
        rec[C_T0] = as_ll(ITEM(frame, T0));
        PyObject *thr = ITEM(frame, THR);
        rec[C_THR] = thr == last_ident_obj ? (int64_t)last_ident
                                           : (int64_t)PyLong_AsUnsignedLongLongMask(thr);
    }
    rec[C_PAR] = has_parent ? fr_ll(parent, CID) : 0;
    rec[C_PFID] = has_parent ? fr_ll(parent, FID) : 0;
    /* Only a list's field can fail to read (not an int): a Call's are C ints. */
    if ((!IS_CALL(frame) || (has_parent && !IS_CALL(parent))) && PyErr_Occurred())
        return -1;
    Py_ssize_t n = S->n;
    if (n < S->max_buf) {
        if (n == S->cap && grow_buffer() < 0)
            return -1;
        memcpy(S->buf + n * N_FIELDS, rec, sizeof rec);
        S->n = n + 1;
    }
    else {
        /* The flusher cannot keep up (or is starved of the GIL): bounded memory, counted. */
        S->dropped++;
    }
    PyObject *hook = NULL;
    if (!has_parent && S->sync_sessions)
        hook = S->flush_now;
    else if (n == S->flush_at)
        /* Once per buffer: waking the flusher at every session end would make one small,
           badly compressed batch per web request; otherwise it runs on its interval. */
        hook = S->wake;
    if (hook != NULL && hook != Py_None) {
        PyObject *r = PyObject_CallNoArgs(hook);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static inline int
fid_matches(PyObject *frame, Py_ssize_t fid, PyObject *fidobj)
{
    if (IS_CALL(frame))
        return CALL(frame)->fid == fid;
    PyObject *have = ITEM(frame, FID);
    if (have == fidobj)
        return 1;
    Py_ssize_t v = PyLong_AsSsize_t(have);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return v == fid;
}

/* ---------------------------------------------------------------------------------------- */
/* Context managers: a per-function `with` singleton, and the one for unrecorded calls. */

typedef struct {
    PyObject_HEAD
    Py_ssize_t fid;
    PyObject *fidobj;
    vectorcallfunc vectorcall;  /* exit_exit: the object is its own bound __exit__ */
} ExitObject;

#define MAX_ABANDONED 64

static PyObject *
return_none(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

/* Is a frame of this function within a few callers of `f`? (See exit_exit.) */
static int
below_abandoned(PyObject *f, ExitObject *self)
{
    for (int hops = 0; hops < MAX_ABANDONED && is_frame(f); hops++) {
        f = fr_obj(f, OUTER);
        if (is_frame(f) && fid_matches(f, self->fid, self->fidobj))
            return 1;
    }
    return 0;
}

static PyObject *
exit_exit(ExitObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    /* At exit the call's frame is the current one: everything it called restored it --
       unless an exception the program raised asynchronously (a signal handler's, another
       thread's PyThreadState_SetAsyncExc) arrived between a callee's `__fa_call__` and the
       start of its `with` block, which then never closed. Such abandoned frames above ours
       are closed first, as having raised what is propagating (or an unknown exception). */
    PyObject *et = nargs > 0 ? args[0] : Py_None;
    PyThreadState *ts = PyThreadState_Get();
    for (int hops = 0;; hops++) {
        PyObject *value = cur_value_ts(ts);
        if (value == NULL) {
            if (swallow() < 0)
                return NULL;
            Py_RETURN_NONE;
        }
        /* Held while closing: restoring the caller in place releases the holder's reference. */
        PyObject *f = Py_NewRef(value_frame(value));
        int r = 0, again = 0;
        if (is_frame(f)) {
            if (fid_matches(f, self->fid, self->fidobj))
                r = close_impl(ts, f, et, value);
            else if (hops < MAX_ABANDONED && below_abandoned(f, self)) {
                PyObject *t = et != Py_None || h_unknown_error == NULL ? et : h_unknown_error;
                r = close_impl(ts, f, t, value);
                again = 1;
            }
        }
        Py_DECREF(value);
        frame_release(f);
        if (r < 0 && swallow() < 0)
            return NULL;
        if (!again || r < 0)
            Py_RETURN_NONE;
    }
}

static void
exit_dealloc(ExitObject *self)
{
    Py_XDECREF(self->fidobj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* `with` looks __exit__ up on the type and binds it: a method descriptor would allocate a
   bound method per call (and free it at the end of the block). The `__exit__` of an Exit is
   this descriptor instead, whose binding is the Exit object itself, callable as __exit__. */
static PyObject *
self_descr_get(PyObject *descr, PyObject *obj, PyObject *type)
{
    return Py_NewRef(obj != NULL && obj != Py_None ? obj : descr);
}

static PyTypeObject SelfDescrType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._speedups.SelfDescr",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An attribute whose value on an instance is the instance itself.",
    .tp_descr_get = self_descr_get,
};

static int
add_self_descr(PyTypeObject *type, const char *name)
{
    PyObject *d = PyObject_New(PyObject, &SelfDescrType);
    if (d == NULL)
        return -1;
    int r = PyDict_SetItemString(type->tp_dict, name, d);
    Py_DECREF(d);
    PyType_Modified(type);
    return r;
}

static PyMemberDef exit_members[] = {
    {"fid", T_PYSSIZET, offsetof(ExitObject, fid), READONLY, NULL},
    {NULL}
};

static PyTypeObject ExitType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._speedups.Exit",
    .tp_basicsize = sizeof(ExitObject),
    .tp_dealloc = (destructor)exit_dealloc,
    .tp_doc = "The `with` context manager of one instrumented function (one per function); "
              "calling it is its __exit__.",
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(ExitObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = exit_members,
};

static PyObject *
noexit_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_RETURN_NONE;
}

static PyTypeObject NoExitType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._speedups.NoExit",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Returned when a call is not recorded (paused, sampled out, agent trouble).",
};

/* `with` looks __enter__ and __exit__ up on the type and binds them, allocating a method
   object per call. A builtin function is not a descriptor and is called unbound, so the
   methods that need no `self` are plain functions in the type's dict. */
static PyMethodDef unbound_enter = {"__enter__", return_none, METH_NOARGS, NULL};
static PyMethodDef unbound_noexit = {"__exit__", (PyCFunction)(void (*)(void))noexit_exit,
                                     METH_FASTCALL, NULL};

static int
add_unbound(PyTypeObject *type, PyMethodDef *def)
{
    PyObject *fn = PyCFunction_New(def, NULL);
    if (fn == NULL)
        return -1;
    int r = PyDict_SetItemString(type->tp_dict, def->ml_name, fn);
    Py_DECREF(fn);
    PyType_Modified(type);
    return r;
}

static PyObject *
exit_for(FnSlot *slot, Py_ssize_t fid, PyObject *fidobj)
{
    if (slot->exit == NULL) {
        ExitObject *e = PyObject_New(ExitObject, &ExitType);
        if (e == NULL)
            return NULL;
        e->fid = fid;
        e->fidobj = Py_NewRef(fidobj);
        e->vectorcall = (vectorcallfunc)exit_exit;
        slot->exit = (PyObject *)e;
    }
    return Py_NewRef(slot->exit);
}

/* ---------------------------------------------------------------------------------------- */
/* Module functions: what instrumented code, backends and the flusher call */

static PyObject *
sp_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!S->on || nargs < 1)
        return Py_NewRef(noexit);
    PyObject *frame = open_impl(args[0], args + 1, nargs - 1);
    if (frame == NULL) {
        if (PyErr_Occurred() && swallow() < 0)
            return NULL;
        return Py_NewRef(noexit);
    }
    Py_DECREF(frame);
    Py_ssize_t fid = PyLong_AsSsize_t(args[0]);  /* valid: open_impl converted it */
    PyObject *e = exit_for(&fns[fid], fid, args[0]);
    if (e == NULL) {
        if (swallow() < 0)
            return NULL;
        return Py_NewRef(noexit);
    }
    return e;
}

static PyObject *
sp_open_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "open_call(fid, args: tuple)");
        return NULL;
    }
    if (!S->on)
        Py_RETURN_NONE;
    PyObject *frame = open_impl(args[0], &PyTuple_GET_ITEM(args[1], 0),
                                PyTuple_GET_SIZE(args[1]));
    if (frame == NULL) {
        if (PyErr_Occurred() && swallow() < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return frame;
}

/* The C API (_hotpath.h): open_call and close_call without their Python calling convention. */
static PyObject *
api_open(PyObject *fid, PyObject *const *args, Py_ssize_t nargs)
{
    if (!S->on)
        Py_RETURN_NONE;
    PyObject *frame = open_impl(fid, args, nargs);
    if (frame == NULL) {
        if (PyErr_Occurred() && swallow() < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return frame;
}

static PyObject *
api_open_lazy(PyThreadState *ts, PyObject *fid, FaArgsFn fetch, void *ctx, Py_ssize_t nargs)
{
    if (!S->on)
        Py_RETURN_NONE;
    PyObject *frame = open_with(ts, fid, NULL, nargs, fetch, ctx);
    if (frame == NULL) {
        if (PyErr_Occurred() && swallow() < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return frame;
}

/* close_call on the calling thread's `ts`, `frame` checked by the caller. */
static int
close_ts(PyThreadState *ts, PyObject *frame, PyObject *exc_type)
{
    PyObject *value = cur_value_ts(ts);
    int r = value == NULL ? -1 : close_impl(ts, frame, exc_type, value);
    Py_XDECREF(value);
    return r < 0 ? swallow() : 0;
}

static int
api_close(PyObject *frame, PyObject *exc_type)
{
    if (!is_frame(frame)) {
        PyErr_SetString(PyExc_TypeError, "close_call(frame, exc_type)");
        return swallow();
    }
    return close_ts(PyThreadState_Get(), frame, exc_type);
}

/* The return value kept, the call closed and released, in one call (see _hotpath.h). */
static int
api_finish(PyThreadState *ts, PyObject *frame, PyObject *rv, PyObject *exc_type)
{
    int r;
    if (!is_frame(frame)) {
        PyErr_SetString(PyExc_TypeError, "finish(frame, value, exc_type)");
        r = swallow();
    }
    else {
        if (rv != NULL && (!IS_CALL(frame) || CALL(frame)->flags & F_SHAPED))  /* else unread */
            fr_set_obj(frame, RV, rv);
        r = close_ts(ts, frame, exc_type);
    }
    frame_release(frame);
    return r;
}

static FaHotPath hot_path_api = {FA_HOTPATH_VERSION, api_open, api_close, frame_release, NULL,
                                 NULL, api_open_lazy, api_finish};

static PyObject *
sp_close_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !is_frame(args[0])) {
        PyErr_SetString(PyExc_TypeError, "close_call(frame, exc_type)");
        return NULL;
    }
    PyThreadState *ts = PyThreadState_Get();
    PyObject *value = cur_value_ts(ts);
    int r = value == NULL ? -1 : close_impl(ts, args[0], args[1], value);
    Py_XDECREF(value);
    if (r < 0 && swallow() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
sp_ret(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ret(fid, value)");
        return NULL;
    }
    PyObject *v = cur_value();
    if (v == NULL) {
        if (swallow() < 0)
            return NULL;
        return Py_NewRef(args[1]);
    }
    PyObject *f = value_frame(v);     /* borrowed: v holds it */
    long long fid = as_ll(args[0]);
    if (fid == -1 && PyErr_Occurred())
        PyErr_Clear();                /* not an int: no call's */
    else if (IS_CALL(f)) {
        /* Only a shaped call's return value is read (for its output shape). */
        if (CALL(f)->flags & F_SHAPED && CALL(f)->fid == fid)
            fr_set_obj(f, RV, args[1]);
    }
    else if (is_frame(f) && fid_matches(f, (Py_ssize_t)fid, args[0]))
        fr_set_obj(f, RV, args[1]);
    Py_DECREF(v);
    return Py_NewRef(args[1]);
}

static PyObject *
sp_current(PyObject *module, PyObject *unused)
{
    return cur_get();
}

static PyObject *
sp_set_current(PyObject *module, PyObject *frame)
{
    if (cur_set(frame) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
sp_context_sets(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(context_sets);
}

static PyObject *
sp_clock(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(clock_ns());
}

/* Transposes the 8x8 byte matrix of v (value j, byte b) in place: afterwards v[b] holds
   byte b of every value, value j's in its byte j (three rounds of block swaps, written out:
   a loop over the rounds with its skip test cost ~3x the swaps themselves). */
#define FA_SWAP(a, b, s, m) do { uint64_t t_ = ((v[a] >> (s)) ^ v[b]) & (m); \
                                 v[b] ^= t_; v[a] ^= t_ << (s); } while (0)
static inline void
transpose8(uint64_t v[8])
{
    const uint64_t m8 = 0x00FF00FF00FF00FFull, m16 = 0x0000FFFF0000FFFFull,
                   m32 = 0x00000000FFFFFFFFull;
    FA_SWAP(0, 1, 8, m8);
    FA_SWAP(2, 3, 8, m8);
    FA_SWAP(4, 5, 8, m8);
    FA_SWAP(6, 7, 8, m8);
    FA_SWAP(0, 2, 16, m16);
    FA_SWAP(1, 3, 16, m16);
    FA_SWAP(4, 6, 16, m16);
    FA_SWAP(5, 7, 16, m16);
    FA_SWAP(0, 4, 32, m32);
    FA_SWAP(1, 5, 32, m32);
    FA_SWAP(2, 6, 32, m32);
    FA_SWAP(3, 7, 32, m32);
}
#undef FA_SWAP

/* The first k bytes of x, least significant first. */
static inline void
store_le(unsigned char *dst, uint64_t x, int k)
{
#if !PY_BIG_ENDIAN
    if (k == 8) {
        memcpy(dst, &x, 8);
        return;
    }
#endif
    for (int b = 0; b < k; b++)
        dst[b] = (unsigned char)(x >> (8 * b));
}

#if defined(__SSE2__) && !PY_BIG_ENDIAN
#include <emmintrin.h>
#define FA_SSE2_PLANES 1
/* transpose8 and eight 8-byte store_le of the result, in SSE2 registers: plane b of the
   eight values (byte b of each, value j's at byte j) is stored at dst + b * stride. Three
   rounds of interleaving (bytes, then pairs, then quads) instead of twelve 64-bit swaps. */
static inline void
store_planes8(unsigned char *dst, Py_ssize_t stride, const uint64_t v[8])
{
    __m128i x0 = _mm_loadu_si128((const __m128i *)&v[0]);
    __m128i x1 = _mm_loadu_si128((const __m128i *)&v[2]);
    __m128i x2 = _mm_loadu_si128((const __m128i *)&v[4]);
    __m128i x3 = _mm_loadu_si128((const __m128i *)&v[6]);
    /* byte k of value 2i and of 2i+1, side by side */
    __m128i y0 = _mm_unpacklo_epi8(x0, _mm_srli_si128(x0, 8));
    __m128i y1 = _mm_unpacklo_epi8(x1, _mm_srli_si128(x1, 8));
    __m128i y2 = _mm_unpacklo_epi8(x2, _mm_srli_si128(x2, 8));
    __m128i y3 = _mm_unpacklo_epi8(x3, _mm_srli_si128(x3, 8));
    /* byte k of values 0-3 (z0: k = 0..3, z1: 4..7) and of values 4-7 (z2, z3) */
    __m128i z0 = _mm_unpacklo_epi16(y0, y1), z1 = _mm_unpackhi_epi16(y0, y1);
    __m128i z2 = _mm_unpacklo_epi16(y2, y3), z3 = _mm_unpackhi_epi16(y2, y3);
    /* planes 0-1, 2-3, 4-5, 6-7 */
    __m128i w0 = _mm_unpacklo_epi32(z0, z2), w1 = _mm_unpackhi_epi32(z0, z2);
    __m128i w2 = _mm_unpacklo_epi32(z1, z3), w3 = _mm_unpackhi_epi32(z1, z3);
    _mm_storel_epi64((__m128i *)dst, w0);
    _mm_storel_epi64((__m128i *)(dst + stride), _mm_unpackhi_epi64(w0, w0));
    _mm_storel_epi64((__m128i *)(dst + 2 * stride), w1);
    _mm_storel_epi64((__m128i *)(dst + 3 * stride), _mm_unpackhi_epi64(w1, w1));
    _mm_storel_epi64((__m128i *)(dst + 4 * stride), w2);
    _mm_storel_epi64((__m128i *)(dst + 5 * stride), _mm_unpackhi_epi64(w2, w2));
    _mm_storel_epi64((__m128i *)(dst + 6 * stride), w3);
    _mm_storel_epi64((__m128i *)(dst + 7 * stride), _mm_unpackhi_epi64(w3, w3));
}
#endif

/* How a field's values go on the wire (see sp_take_calls). */
enum { WIRE_PLAIN, WIRE_DELTA, WIRE_DURATION };

/* A backlog larger than one batch, taken out of the buffer whole (the recording threads
   start a fresh one) and handed out `limit` records at a time, oldest first. */
static int64_t *taken;
static Py_ssize_t taken_n, taken_off, taken_cap;

#ifdef BUF_OWN_MAPPING
/* In a forked child (see buf_resize): the parent's buffers were not copied. */
static void
buf_forget_in_child(void)
{
    if (S != NULL) {
        S->buf = NULL;
        S->n = S->cap = 0;
    }
    taken = NULL;
    taken_n = taken_off = taken_cap = 0;
    spare = NULL;
    spare_cap = 0;
}
#endif

/* (count, wire columns, thread idents) of the oldest `limit` records buffered (0: all of
 * them), removed from the buffer.
 *
 * The columns are wire.py's call columns: column-major, call id and start time as deltas,
 * end time as a duration, each value little-endian int64, the bytes regrouped by
 * significance (all lowest bytes first): zstd then finds long runs of zeros. */
static PyObject *
sp_take_calls(PyObject *module, PyObject *args)
{
    Py_ssize_t limit = 0;
    if (!PyArg_ParseTuple(args, "|n:take_calls", &limit))
        return NULL;
    if (taken == NULL && limit > 0 && S->n > limit) {
        /* No copy and no memmove of the backlog, however large it grew. */
        taken = S->buf;
        taken_n = S->n;
        taken_cap = S->cap;
        taken_off = 0;
        S->buf = NULL;
        S->n = S->cap = 0;
    }
    else if (taken != NULL && limit > 0 && taken_n - taken_off < limit && S->n > 0) {
        /* Fewer than `limit` records tells the flusher that nothing is left. The end of a
           backlog is topped up with the oldest records made since: a flush that stopped
           part-way through a backlog (for a fork) leaves it here while the program records
           into a fresh buffer, and a final flush that took only the backlog's end lost
           those. Done before any allocation: a finalizer run by a collection appends to
           the buffer, never into the records moved here. taken_cap > limit, see above. */
        Py_ssize_t rest = taken_n - taken_off;
        Py_ssize_t more = S->n < limit - rest ? S->n : limit - rest;
        size_t rec = N_FIELDS * sizeof(int64_t);
        memmove(taken, taken + taken_off * N_FIELDS, (size_t)rest * rec);
        memcpy(taken + rest * N_FIELDS, S->buf, (size_t)more * rec);
        memmove(S->buf, S->buf + more * N_FIELDS, (size_t)(S->n - more) * rec);
        S->n -= more;
        taken_off = 0;
        taken_n = rest + more;
    }
    Py_ssize_t n = taken != NULL ? taken_n - taken_off : S->n;
    if (limit > 0 && n > limit)
        n = limit;
    Py_ssize_t total = n * N_FIELDS;
    PyObject *data = PyBytes_FromStringAndSize(NULL, total * 8);
    PyObject *threads = PySet_New(NULL);
    if (data == NULL || threads == NULL)
        goto error;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    const int64_t *buf = taken != NULL ? taken + taken_off * N_FIELDS : S->buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t thr = buf[i * N_FIELDS + C_THR];
        if (i == 0 || thr != buf[(i - 1) * N_FIELDS + C_THR]) {
            PyObject *t = PyLong_FromUnsignedLongLong((unsigned long long)thr);
            if (t == NULL || PySet_Add(threads, t) < 0) {
                Py_XDECREF(t);
                goto error;
            }
            Py_DECREF(t);
        }
    }
    /* In blocks of records that stay in the CPU cache, field by field, eight values at a
       time: their 8x8 bytes are transposed in registers and land as one 8-byte store per
       byte plane. */
    for (Py_ssize_t start = 0; start < n; start += 512) {
        Py_ssize_t stop = n - start < 512 ? n : start + 512;
        for (int f = 0; f < N_FIELDS; f++) {
            unsigned char *col = out + (Py_ssize_t)f * n;
            const int64_t *r = buf + start * N_FIELDS + f;
            /* How the field goes on the wire, decided once per field, not per value. */
            int kind = f == C_T1 ? WIRE_DURATION : f == C_CID || f == C_T0 ? WIRE_DELTA
                                                                            : WIRE_PLAIN;
            uint64_t v[8];
            for (Py_ssize_t i = start; i < stop; i += 8) {
                int k = stop - i < 8 ? (int)(stop - i) : 8;
                if (k == 8 && kind == WIRE_PLAIN)
                    for (int j = 0; j < 8; j++)
                        v[j] = (uint64_t)r[j * N_FIELDS];
                else if (k == 8 && kind == WIRE_DURATION)
                    for (int j = 0; j < 8; j++)
                        v[j] = (uint64_t)r[j * N_FIELDS]
                               - (uint64_t)r[j * N_FIELDS + C_T0 - C_T1];
                else if (k == 8 && i > 0)
                    for (int j = 0; j < 8; j++)
                        v[j] = (uint64_t)r[j * N_FIELDS] - (uint64_t)r[(j - 1) * N_FIELDS];
                else
                    for (int j = 0; j < 8; j++) {
                        const int64_t *q = r + j * N_FIELDS;
                        if (j >= k)
                            v[j] = 0;
                        else if (kind == WIRE_DURATION)
                            v[j] = (uint64_t)q[0] - (uint64_t)q[C_T0 - C_T1];
                        else if (kind == WIRE_DELTA && i + j > 0)
                            v[j] = (uint64_t)q[0] - (uint64_t)q[-N_FIELDS];
                        else
                            v[j] = (uint64_t)q[0];
                    }
                r += 8 * N_FIELDS;
#ifdef FA_SSE2_PLANES
                if (k == 8) {
                    store_planes8(col + i, total, v);
                    continue;
                }
#endif
                transpose8(v);
                for (int b = 0; b < 8; b++)
                    store_le(col + (Py_ssize_t)b * total + i, v[b], k);
            }
        }
    }
    if (taken != NULL) {
        taken_off += n;
        if (taken_off >= taken_n) {
            buf_retire(taken, taken_cap);
            taken = NULL;
            taken_n = taken_off = taken_cap = 0;
        }
    }
    else {
        /* A collection while the objects above were made can run a recorded finalizer,
           which appends after the n records taken: keep those. */
        Py_ssize_t rest = S->n - n;
        if (rest > 0)
            memmove(S->buf, S->buf + n * N_FIELDS, (size_t)rest * N_FIELDS * sizeof(int64_t));
        S->n = rest;
        if (rest == 0 && S->cap > 65536) {
            /* A burst grew the buffer: give the memory back rather than keep the peak. */
            buf_free(S->buf, S->cap);
            S->buf = NULL;
            S->cap = 0;
        }
    }
    return Py_BuildValue("(nNN)", n, data, threads);
error:
    Py_XDECREF(data);
    Py_XDECREF(threads);
    return NULL;
}

/* A forked child starts with an empty buffer and empty caches (recorder.reset_after_fork). */
static PyObject *
sp_reset(PyObject *module, PyObject *unused)
{
    S->n = 0;
    buf_free(taken, taken_cap);  /* the parent's backlog: the parent sends it */
    taken = NULL;
    taken_n = taken_off = taken_cap = 0;
    for (Py_ssize_t i = 0; i < fns_cap; i++)
        fns[i].in_key = 0;
    memset(out_sid, 0, sizeof out_sid);
    PyDict_Clear(fixed_sids);
    fp_sids_clear();
    fp_plans_clear();
    Py_CLEAR(last_ident_obj);
    Py_RETURN_NONE;
}

/* The fingerprint of a value (a pair of ints) as the shape cache keys it, or None where the
   value is described afresh each time (see _shapekey.h). For tests and benchmarks. */
static PyObject *
sp_fingerprint(PyObject *module, PyObject *value)
{
    Fp f;
    int known = fp_output(&f, value);
    if (known < 0)
        return NULL;
    if (!known)
        Py_RETURN_NONE;
    return Py_BuildValue("(KK)", (unsigned long long)f.a, (unsigned long long)f.b);
}

static PyObject *
sp_shape_cache_stats(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("{sKsKsKsKsKsisi}", "hits", fp_hits, "misses", fp_misses,
                         "refused", fp_refused, "records_reused", fp_memo_hits,
                         "values_reused", fp_value_hits,
                         "record_reuse", fp_memo_on, "record_reuse_attrs", fp_memo_attrs);
}

/* Why records of dicts and of instance dicts are reused or not (see _shapekey.h). */
static PyObject *
sp_record_reuse_why(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("(ss)", fp_memo_why, fp_memo_attrs_why);
}

static PyObject *
sp_configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"input_sid", "output_sid", "exc_sid", "yield_sid",
                             "session_start", "random", "thread_time", "shape_first",
                             "shape_every", "shape_warm", "shape_hot_every",
                             "program_exception", "unknown_error", NULL};
    PyObject *hooks[9];
    unsigned long long first, every, warm, hot;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOOOKKKKOO", kwlist, &hooks[0],
                                     &hooks[1], &hooks[2], &hooks[3], &hooks[4], &hooks[5],
                                     &hooks[6], &first, &every, &warm, &hot, &hooks[7],
                                     &hooks[8]))
        return NULL;
    if (every == 0 || hot == 0) {
        PyErr_SetString(PyExc_ValueError, "shape_every and shape_hot_every must be positive");
        return NULL;
    }
    PyObject **slots[9] = {&h_input_sid, &h_output_sid, &h_exc_sid, &h_yield_sid,
                           &h_session_start, &h_random, &h_thread_time, &h_program_exception,
                           &h_unknown_error};
    for (int i = 0; i < 9; i++)
        Py_XSETREF(*slots[i], Py_NewRef(hooks[i]));
    PyDict_Clear(fixed_sids);  /* ids of the old hooks' intern table */
    shape_first = first;
    shape_every = every;
    shape_warm = warm;
    shape_hot_every = hot;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------- */
/* The State type */

static PyObject *
state_next_id(StateObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(++self->next_cid);
}

static PyMethodDef state_methods[] = {
    {"next_id", (PyCFunction)state_next_id, METH_NOARGS, "A new call id."},
    {NULL}
};

#define M(name, type, field) {name, type, offsetof(StateObject, field), 0, NULL}
static PyMemberDef state_members[] = {
    M("on", T_BOOL, on),
    M("sync_sessions", T_BOOL, sync_sessions),
    M("user_functions", T_BOOL, user_functions),
    M("cpu", T_BOOL, cpu),
    M("sample_ppm", T_INT, sample_ppm),
    M("max_buf", T_PYSSIZET, max_buf),
    M("flush_at", T_PYSSIZET, flush_at),
    M("dropped", T_LONGLONG, dropped),
    M("agent_errors", T_LONGLONG, agent_errors),
    M("sampled_out", T_LONGLONG, sampled_out),
    M("gen", T_OBJECT_EX, gen),
    M("session_starts", T_OBJECT_EX, session_starts),
    M("wake", T_OBJECT_EX, wake),
    M("flush_now", T_OBJECT_EX, flush_now),
    {"buffered", T_PYSSIZET, offsetof(StateObject, n), READONLY, "records not yet taken"},
    {NULL}
};
#undef M

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flowagent.agent._speedups.State",
    .tp_basicsize = sizeof(StateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Process-wide recorder state (recorder.S), read by the C hot path directly.",
    .tp_methods = state_methods,
    .tp_members = state_members,
};

/* ---------------------------------------------------------------------------------------- */
/* Proof, at import, that the mirror of CPython's context structures is the running
 * interpreter's: in a context of its own, the holder is found where the public API says it
 * is, through a bitmap root, a sub-node and an array root; a copy of the context, a copy
 * that has set a variable of its own and an extra reference are each refused; an in-place
 * write is seen by the API and not by a copy. Any difference turns in-place writes off. */

#ifdef IN_PLACE_BUILD
/* hamt.c's hamt_hash: an object's hash folded to 32 bits. */
static uint32_t
hamt_hash32(Py_hash_t hash)
{
#if SIZEOF_PY_HASH_T <= 4
    return (uint32_t)hash;
#else
    int32_t x = (int32_t)(hash & 0xffffffffl) ^ (int32_t)(hash >> 32);
    return (uint32_t)(x == -1 ? -2 : x);
#endif
}

static PyObject *
hamt_root_of(PyObject *ctx)
{
    return ((MirrorHamt *)((MirrorContext *)ctx)->ctx_vars)->h_root;
}

/* The holder cur_var has in this context (borrowed: the context keeps it alive). */
static PyObject *
current_holder(void)
{
    PyObject *h;
    if (PyContextVar_Get(cur_var, NULL, &h) < 0)
        return NULL;
    Py_DECREF(h);
    return h;
}

static int
current_is_private(void)
{
    PyObject *h;
    if (PyContextVar_Get(cur_var, NULL, &h) < 0)
        return -1;
    int r = holder_is_private(PyThreadState_Get(), h);
    Py_DECREF(h);
    return r;
}

/* Sets a new ContextVar whose hash puts it in cur_var's root slot, or in another slot. A
   variable's hash mixes its address and its name's hash: the names differ, and `keep` keeps
   the variables alive so that no two share an address. */
static int
set_other_var(PyObject *keep, int same_slot)
{
    for (int i = 0; i < 4096; i++) {
        char name[48];
        snprintf(name, sizeof name, "flowagent_self_test_%d", i);
        PyObject *v = PyContextVar_New(name, NULL);
        if (v == NULL || PyList_Append(keep, v) < 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
        Py_hash_t hash = PyObject_Hash(v);
        if (hash == -1)
            return -1;
        if (((hamt_hash32(hash) & 0x1f) == (var_hash & 0x1f)) != same_slot)
            continue;
        PyObject *token = PyContextVar_Set(v, Py_None);
        if (token == NULL)
            return -1;
        Py_DECREF(token);
        return 0;
    }
    PyErr_SetString(PyExc_RuntimeError, "no context variable with the wanted hash");
    return -1;
}

static int
type_is(PyObject *o, const char *name, Py_ssize_t basicsize, Py_ssize_t itemsize)
{
    return o != NULL && strcmp(Py_TYPE(o)->tp_name, name) == 0
           && Py_TYPE(o)->tp_basicsize == basicsize && Py_TYPE(o)->tp_itemsize == itemsize;
}

#define EXPECT(cond, what) do { if (!(cond)) return PyErr_Occurred() ? "the self-test raised" \
                                                                    : (what); } while (0)

/* The checks, run inside the fresh context `ctx`; NULL when all pass, else what failed. */
static const char *
check_mirror_in(PyObject *ctx, PyObject *keep, PyObject *marker, int *cache_seen)
{
    EXPECT(PyThreadState_Get()->context == ctx, "the thread's context is not where it is read");
    EXPECT(cur_set(Py_None) == 0, "the first write failed");
    MirrorHamt *hamt = (MirrorHamt *)((MirrorContext *)ctx)->ctx_vars;
    EXPECT(type_is((PyObject *)hamt, "hamt", sizeof(MirrorHamt), 0) && hamt->h_count == 1,
           "the context's HAMT differs from the mirror");
    EXPECT(type_is(hamt->h_root, "hamt_bitmap_node",
                   sizeof(MirrorBitmapNode) - sizeof(PyObject *), sizeof(PyObject *)),
           "the HAMT's bitmap node differs from the mirror");
    hamt_type = Py_TYPE(hamt);
    bitmap_node_type = Py_TYPE(hamt->h_root);
    in_place_ok = 1;    /* for holder_is_private below; the caller clears it on failure */

    PyObject *h = current_holder();
    EXPECT(h != NULL && Py_IS_TYPE(h, &HolderType) && private_value(hamt) == h,
           "the holder is not where the mirror looks");
    /* The read just made left the variable's cache with this thread and context version. */
    MirrorContextVar *var = (MirrorContextVar *)cur_var;
    PyThreadState *ts = PyThreadState_Get();
    *cache_seen = PyContextVar_Type.tp_basicsize == sizeof(MirrorContextVar)
                  && var->var_cached == h && var->var_cached_tsid == ts->id
                  && var->var_cached_tsver == ts->context_ver;
    EXPECT(current_is_private() == 1, "a private holder is not recognised");
    long long sets = context_sets;
    EXPECT(cur_set(marker) == 0 && context_sets == sets && current_holder() == h
           && ((HolderObject *)h)->frame == marker, "a write was not made in place");

    /* A copy shares the holder: the write is a set, and the copy keeps the old frame. */
    PyObject *copy = PyContext_CopyCurrent();
    EXPECT(copy != NULL, "copy_context failed");
    int shared = current_is_private();
    int written = cur_set(Py_None);
    PyObject *seen = NULL;
    if (PyContext_Enter(copy) == 0) {
        seen = cur_get();
        if (PyContext_Exit(copy) < 0)
            Py_CLEAR(seen);
    }
    Py_DECREF(copy);
    int kept = seen == marker;
    Py_XDECREF(seen);
    EXPECT(shared == 0 && written == 0 && context_sets == sets + 1 && kept,
           "a copied context is not protected");
    EXPECT(current_is_private() == 1, "the holder is not private once the copy is gone");

    /* A holder referenced from elsewhere (a Token, Python code) is refused. */
    h = current_holder();
    Py_XINCREF(h);
    int extra = current_is_private();
    Py_XDECREF(h);
    EXPECT(h != NULL && extra == 0, "a holder with another reference is not refused");

    /* Our key in a sub-node: another variable in its root slot. */
    EXPECT(set_other_var(keep, 1) == 0, "setting another variable failed");
    MirrorBitmapNode *root = (MirrorBitmapNode *)hamt_root_of(ctx);
    EXPECT(Py_IS_TYPE(root, bitmap_node_type), "the root is no longer a bitmap node");
    uint32_t bit = (uint32_t)1 << (var_hash & 0x1f);
    Py_ssize_t k = 2 * (Py_ssize_t)popcount32(root->b_bitmap & (bit - 1));
    EXPECT((root->b_bitmap & bit) && k + 1 < Py_SIZE(root) && root->b_array[k] == NULL,
           "two keys in one slot did not make a sub-node");
    EXPECT(current_is_private() == 1, "the holder is not found in a sub-node");

    /* Our key under an array root: more than 16 root slots in use. */
    Py_ssize_t count = 2;
    while (Py_IS_TYPE(hamt_root_of(ctx), bitmap_node_type) && count < 200) {
        EXPECT(set_other_var(keep, 0) == 0, "setting another variable failed");
        count++;
    }
    PyObject *aroot = hamt_root_of(ctx);
    EXPECT(type_is(aroot, "hamt_array_node", sizeof(MirrorArrayNode), 0)
           && ((MirrorHamt *)((MirrorContext *)ctx)->ctx_vars)->h_count == count,
           "the HAMT's array node differs from the mirror");
    array_node_type = Py_TYPE(aroot);
    EXPECT(current_is_private() == 1, "the holder is not found under an array node");
    sets = context_sets;
    EXPECT(cur_set(marker) == 0 && context_sets == sets, "a write was not made in place");

    /* A copy that sets a variable of its own shares the nodes below its new root (or the
       holder) with this context: refused on both sides, until the copy is gone. */
    copy = PyContext_CopyCurrent();
    EXPECT(copy != NULL, "copy_context failed");
    int in_copy = -1, in_original;
    if (PyContext_Enter(copy) == 0) {
        if (set_other_var(keep, 0) == 0)
            in_copy = current_is_private();
        if (PyContext_Exit(copy) < 0)
            in_copy = -1;
    }
    in_original = current_is_private();
    Py_DECREF(copy);
    EXPECT(in_copy == 0 && in_original == 0, "a context sharing nodes is not refused");
    EXPECT(current_is_private() == 1, "the holder is not private once the copy is gone");
    EXPECT(cur_set(Py_None) == 0, "the last write failed");
    return NULL;
}
#undef EXPECT

static const char *
in_place_self_test(void)
{
    main_interp = PyInterpreterState_Main();
    if (PyInterpreterState_Get() != main_interp)
        return "loaded in a subinterpreter";
    if (PyContext_Type.tp_basicsize != sizeof(MirrorContext))
        return "the context object differs from the mirror";
    Py_hash_t hash = PyObject_Hash(cur_var);
    if (hash == -1)
        return "the self-test raised";
    var_hash = hamt_hash32(hash);
    const char *why = "the self-test raised";
    int cache_seen = 0;
    PyObject *keep = PyList_New(0), *marker = PyList_New(0), *ctx = PyContext_New();
    if (keep != NULL && marker != NULL && ctx != NULL && PyContext_Enter(ctx) == 0) {
        why = check_mirror_in(ctx, keep, marker, &cache_seen);
        if (PyContext_Exit(ctx) < 0 && why == NULL)
            why = "the self-test raised";
    }
    Py_XDECREF(ctx);
    Py_XDECREF(keep);
    Py_XDECREF(marker);
    PyErr_Clear();
    in_place_ok = why == NULL;
    var_cache_ok = in_place_ok && cache_seen;
    context_sets = 0;
    return why;
}
#endif

/* ---------------------------------------------------------------------------------------- */

/* set_const(code, index, value): replace one constant of a code object that has not run yet
   (mainhook.py: the main script's functions swapped for their instrumented twins). A code
   object's constants are a tuple only it holds; the old constant is released. */
static PyObject *
sp_set_const(PyObject *self, PyObject *args)
{
    PyObject *code, *value;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "O!nO:set_const", &PyCode_Type, &code, &i, &value))
        return NULL;
    PyObject *consts = ((PyCodeObject *)code)->co_consts;
    if (!PyTuple_CheckExact(consts) || i < 0 || i >= PyTuple_GET_SIZE(consts)) {
        PyErr_SetString(PyExc_IndexError, "constant index out of range");
        return NULL;
    }
    PyObject *old = PyTuple_GET_ITEM(consts, i);
    Py_INCREF(value);
    PyTuple_SET_ITEM(consts, i, value);
    Py_DECREF(old);
    Py_RETURN_NONE;
}

/* setprofile(callback): sys.setprofile(callback) for this thread, except that an exception
   leaving the callback does not remove it. CPython's own trampoline (sys.setprofile)
   uninstalls a profile function that raises; the profile backend must let an exception the
   program raised asynchronously inside it (a signal handler's) reach the program, and keep
   recording afterwards. sys.getprofile() still returns `callback`. */
static PyObject *profile_events[8];
static PyObject *profile_on_error;  /* on_error(frame, event, exception), see below */

static int
profile_trampoline(PyObject *callback, PyFrameObject *frame, int what, PyObject *arg)
{
    if (what < 0 || what >= 8 || profile_events[what] == NULL)
        return 0;
    PyObject *args[3] = {(PyObject *)frame, profile_events[what], arg ? arg : Py_None};
    PyObject *r = PyObject_Vectorcall(callback, args, 3, NULL);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_RecursionError)) {
        /* The program is at its recursion limit: the callback's own frame did not fit. Not
           recording this event is the agent's loss; the program meets the limit itself, in
           its own code, on its next call, with a traceback of its own frames only. */
        PyErr_Clear();
        S->agent_errors++;
        return 0;
    }
    if (r == NULL) {
        /* The callback can be interrupted anywhere, even before its first line: on_error
           puts the recording of the frame in order, then the exception goes on. */
        if (profile_on_error != NULL) {
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            PyErr_NormalizeException(&et, &ev, &tb);
            PyObject *eargs[3] = {(PyObject *)frame, profile_events[what], ev ? ev : Py_None};
            PyObject *h = PyObject_Vectorcall(profile_on_error, eargs, 3, NULL);
            if (h == NULL)
                PyErr_Clear();
            Py_XDECREF(h);
            PyErr_Restore(et, ev, tb);
        }
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
sp_profile_on_error(PyObject *module, PyObject *handler)
{
    Py_XSETREF(profile_on_error, handler == Py_None ? NULL : Py_NewRef(handler));
    Py_RETURN_NONE;
}

static PyObject *
sp_setprofile(PyObject *module, PyObject *callback)
{
    if (profile_events[0] == NULL) {
        static const char *names[8] = {"call", "exception", "line", "return", "c_call",
                                       "c_exception", "c_return", "opcode"};
        for (int i = 0; i < 8; i++) {
            profile_events[i] = PyUnicode_InternFromString(names[i]);
            if (profile_events[i] == NULL)
                return NULL;
        }
    }
    if (callback == Py_None)
        PyEval_SetProfile(NULL, NULL);
    else
        PyEval_SetProfile(profile_trampoline, callback);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* -- the agent's audit hook --------------------------------------------------------------
 * One C audit hook (PySys_AddAuditHook) instead of Python ones: a Python hook is a Python call
 * for every audited event of the program for the rest of its life (every id(), deepcopy's
 * per-object id(), sys._getframe, open ...), whether or not the agent wants that event. This
 * one calls the Python dispatcher only for the events asked for (audit_watch), or for every
 * event while some part of the agent wants them all (a displaced profiler, a flusher waiting
 * to restart after a fork). C hooks are process-wide: events of other interpreters are left
 * alone. */
#define AUDIT_MAX_NAMES 8
static PyObject *audit_dispatch = NULL;
static PyInterpreterState *audit_interp = NULL;
static int audit_all = 0;
static int audit_n = 0;
static char audit_names[AUDIT_MAX_NAMES][32];

static int
fa_audit_hook(const char *event, PyObject *args, void *unused)
{
    PyObject *fn = audit_dispatch, *r;
    PyThreadState *tstate;
    (void)unused;
    if (fn == NULL || PyInterpreterState_Get() != audit_interp)
        return 0;
    if (!audit_all) {
        int i;
        for (i = 0; i < audit_n; i++)
            if (strcmp(event, audit_names[i]) == 0)
                break;
        if (i == audit_n)
            return 0;
    }
    /* As CPython runs Python hooks: with tracing and profiling paused, so the dispatcher's
     * own calls reach no profile function (the program's, or the agent's profile backend). */
    tstate = PyThreadState_Get();
    Py_INCREF(fn);
    PyThreadState_EnterTracing(tstate);
    r = PyObject_CallFunction(fn, "sO", event, args != NULL ? args : Py_None);
    PyThreadState_LeaveTracing(tstate);
    Py_DECREF(fn);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
sp_audit_install(PyObject *self, PyObject *dispatch)
{
    if (!PyCallable_Check(dispatch)) {
        PyErr_SetString(PyExc_TypeError, "audit_install(dispatch): a callable");
        return NULL;
    }
    if (audit_dispatch == NULL) {
        Py_INCREF(dispatch);
        audit_dispatch = dispatch;
        audit_interp = PyInterpreterState_Get();
        if (PySys_AddAuditHook(fa_audit_hook, NULL) < 0) {
            Py_CLEAR(audit_dispatch);
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
sp_audit_watch(PyObject *self, PyObject *args)
{
    PyObject *names;
    int all;
    Py_ssize_t i, n;
    if (!PyArg_ParseTuple(args, "O!p", &PyTuple_Type, &names, &all))
        return NULL;
    n = PyTuple_GET_SIZE(names);
    if (n > AUDIT_MAX_NAMES) {
        PyErr_SetString(PyExc_ValueError, "audit_watch: too many event names");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(names, i), &len);
        if (name == NULL)
            return NULL;
        if (len >= (Py_ssize_t)sizeof(audit_names[0])) {
            PyErr_SetString(PyExc_ValueError, "audit_watch: event name too long");
            return NULL;
        }
    }
    audit_n = 0;  /* (the hook runs with the GIL held, as this does) */
    for (i = 0; i < n; i++) {
        strcpy(audit_names[i], PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i)));
    }
    audit_n = (int)n;
    audit_all = all;
    Py_RETURN_NONE;
}

/* -- os.fork() returning in the parent (Python 3.13) ---------------------------------------
 * Python 3.13 counts the process's threads for its multi-threaded fork warning after the
 * parent's after-fork hooks ran, so the flusher, stopped for a fork of a program without
 * threads of its own, cannot start again in a hook. It starts in the parent once os.fork()
 * (os.forkpty()) has returned: these wrappers call the real function, then, in the parent
 * only, `on_return()`, after the warning was counted and after the program's own hooks.
 * Being C, they add no frame: tracebacks, the warning's location and the child's view of
 * the stack that forked it stay as plainly. on_return runs as the audit dispatcher does,
 * with tracing and profiling paused, and an exception it raises is dropped (the caller
 * counts its own errors): the program's fork result or exception is returned unchanged. */
static PyObject *fork_real[2];              /* os.fork, os.forkpty as they were */
static PyObject *fork_on_return = NULL;
static PyObject *fork_doc[2];               /* the real docstrings (their text signatures) */

static PyObject *
fork_call(int which, PyObject *args, PyObject *kwargs)
{
    pid_t before = getpid();
    /* (arguments passed on: a wrong call fails in the real function, with its message) */
    PyObject *result = PyObject_Call(fork_real[which], args, kwargs);
    if (getpid() == before && fork_on_return != NULL) {
        PyThreadState *tstate = PyThreadState_Get();
        PyObject *r;
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *exc = PyErr_GetRaisedException();
#else
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
#endif
        PyThreadState_EnterTracing(tstate);
        r = PyObject_CallNoArgs(fork_on_return);
        PyThreadState_LeaveTracing(tstate);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
#if PY_VERSION_HEX >= 0x030C0000
        PyErr_SetRaisedException(exc);
#else
        PyErr_Restore(type, value, tb);
#endif
    }
    return result;
}

static PyObject *
fork_wrapper(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return fork_call(0, args, kwargs);
}

static PyObject *
forkpty_wrapper(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return fork_call(1, args, kwargs);
}

static PyMethodDef fork_defs[2] = {
    {"fork", (PyCFunction)(void (*)(void))fork_wrapper, METH_VARARGS | METH_KEYWORDS, NULL},
    {"forkpty", (PyCFunction)(void (*)(void))forkpty_wrapper, METH_VARARGS | METH_KEYWORDS,
     NULL},
};

static PyObject *
sp_fork_wrappers(PyObject *self, PyObject *args)
{
    PyObject *real[2], *on_return, *out[2] = {NULL, NULL}, *module;
    int i;
    if (!PyArg_ParseTuple(args, "OOO", &real[0], &real[1], &on_return))
        return NULL;
    if (fork_on_return != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fork_wrappers: already made");
        return NULL;
    }
    module = PyUnicode_FromString("os");  /* where the program (and pickle) finds them */
    if (module == NULL)
        return NULL;
    for (i = 0; i < 2; i++) {
        if (real[i] == Py_None) {
            out[i] = Py_NewRef(Py_None);
            continue;
        }
        {   /* the real docstring, with its text signature as CPython keeps them */
            PyObject *doc = PyObject_GetAttrString(real[i], "__doc__");
            PyObject *sig = PyObject_GetAttrString(real[i], "__text_signature__");
            if (doc != NULL && PyUnicode_Check(doc)) {
                if (sig != NULL && PyUnicode_Check(sig))
                    fork_doc[i] = PyUnicode_FromFormat("%s%U\n--\n\n%U",
                                                       fork_defs[i].ml_name, sig, doc);
                else
                    fork_doc[i] = Py_NewRef(doc);
            }
            if (fork_doc[i] != NULL)
                fork_defs[i].ml_doc = PyUnicode_AsUTF8(fork_doc[i]);
            Py_XDECREF(doc);
            Py_XDECREF(sig);
            PyErr_Clear();
        }
        fork_real[i] = Py_NewRef(real[i]);
        out[i] = PyCFunction_NewEx(&fork_defs[i], self, module);
        if (out[i] == NULL)
            break;
    }
    Py_DECREF(module);
    if (out[0] == NULL || out[1] == NULL) {
        Py_XDECREF(out[0]);
        return NULL;
    }
    fork_on_return = Py_NewRef(on_return);
    return Py_BuildValue("(NN)", out[0], out[1]);
}

static PyMethodDef module_methods[] = {
    {"audit_install", sp_audit_install, METH_O,
     "audit_install(dispatch): add the agent's C audit hook (once); it calls "
     "dispatch(event, args) for the events audit_watch names."},
    {"fork_wrappers", sp_fork_wrappers, METH_VARARGS,
     "fork_wrappers(fork, forkpty, on_return): os.fork and os.forkpty (or None) wrapped to call "
     "on_return() in the parent once they returned."},
    {"audit_watch", sp_audit_watch, METH_VARARGS,
     "audit_watch(names, all): the events the audit hook hands to its dispatcher (every event "
     "while `all`)."},
    {"profile_on_error", sp_profile_on_error, METH_O,
     "on_error(frame, event, exception) for an exception leaving the setprofile callback."},
    {"setprofile", sp_setprofile, METH_O,
     "sys.setprofile for this thread, but an exception leaving the callback keeps it."},
    {"set_const", sp_set_const, METH_VARARGS,
     "Replace constant ``index`` of a code object that has not run yet."},
    {"call", (PyCFunction)(void (*)(void))sp_call, METH_FASTCALL,
     "``with __fa_call__(fid, *args):`` around a plain function's or coroutine's body."},
    {"open_call", (PyCFunction)(void (*)(void))sp_open_call, METH_FASTCALL,
     "Start a call of ``fid``; the new frame, or None when not recording."},
    {"close_call", (PyCFunction)(void (*)(void))sp_close_call, METH_FASTCALL,
     "End a call: restore the caller as current and buffer the call record."},
    {"ret", (PyCFunction)(void (*)(void))sp_ret, METH_FASTCALL,
     "``return __fa_ret__(fid, value)``: keep the return value for the output shape."},
    {"current", sp_current, METH_NOARGS, "The current frame in this context (or None)."},
    {"set_current", sp_set_current, METH_O, "Make a frame (or None) current in this context."},
    {"context_sets", sp_context_sets, METH_NOARGS,
     "How many writes of the current frame were ContextVar.set calls (not made in place)."},
    {"clock", sp_clock, METH_NOARGS, "The clock call records use (time.perf_counter_ns)."},
    {"take_calls", sp_take_calls, METH_VARARGS,
     "take_calls(limit=0): (count, wire columns, thread idents) of the oldest `limit` buffered "
     "records (0: all), removed from the buffer."},
    {"fingerprint", sp_fingerprint, METH_O,
     "The structural fingerprint the shape cache keys a value by, or None if refused."},
    {"shape_cache_stats", sp_shape_cache_stats, METH_NOARGS,
     "Shape cache counters: hits, misses (described, then kept), refused (described), "
     "records reused unread, and whether dict / instance records may be (1, 0, -1 untested)."},
    {"record_reuse_why", sp_record_reuse_why, METH_NOARGS,
     "Why records of dicts and of instance dicts are reused or not."},
    {"reset", sp_reset, METH_NOARGS, "Empty the buffer and caches (in a forked child)."},
    {"configure", (PyCFunction)(void (*)(void))sp_configure, METH_VARARGS | METH_KEYWORDS,
     "Install recorder.py's callbacks for the rare paths, and the shape budget."},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "flowagent.agent._speedups",
    "The recorder's per-call hot path in C (see recorder.py for the pure-Python twin).",
    -1, module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    int in_place = 0;           /* current-frame writes in place (see "The current frame") */
    const char *in_place_why;
    if (PyType_Ready(&StateType) < 0 || PyType_Ready(&ExitType) < 0
            || PyType_Ready(&CallType) < 0
            || PyType_Ready(&HolderType) < 0
            || PyType_Ready(&NoExitType) < 0 || PyType_Ready(&SelfDescrType) < 0
            || add_unbound(&ExitType, &unbound_enter) < 0
            || add_self_descr(&ExitType, "__exit__") < 0
            || add_unbound(&NoExitType, &unbound_enter) < 0
            || add_unbound(&NoExitType, &unbound_noexit) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    S = PyObject_New(StateObject, &StateType);
    if (S == NULL)
        goto fail;
    S->on = S->sync_sessions = S->user_functions = S->cpu = 0;
    S->sample_ppm = 1000000;
    S->max_buf = 1 << 18;
    S->flush_at = 1 << 13;
    S->dropped = S->agent_errors = S->sampled_out = S->next_cid = 0;
    S->buf = NULL;
    S->n = S->cap = 0;
#ifdef BUF_OWN_MAPPING
    {
        static int registered;
        if (!registered && pthread_atfork(NULL, NULL, buf_forget_in_child) == 0)
            registered = 1;
    }
#endif
    S->gen = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    S->session_starts = PyList_New(0);
    S->wake = Py_NewRef(Py_None);
    S->flush_now = Py_NewRef(Py_None);
    cur_var = PyContextVar_New("flowagent_current_call", Py_None);
    noexit = PyObject_New(PyObject, &NoExitType);
    int_zero = PyLong_FromLong(0);
    fixed_sids = PyDict_New();
    if (S->gen == NULL || S->session_starts == NULL || cur_var == NULL || noexit == NULL
            || int_zero == NULL || fixed_sids == NULL)
        goto fail;
#ifdef IN_PLACE_BUILD
    const char *refused = in_place_self_test();
    in_place = refused == NULL;
    in_place_why = in_place ? "in place while no other context shares the frame's holder "
                              "(CPython's context structures verified at import)" : refused;
#else
    in_place_why = "built for a Python whose context structures are not mirrored "
                   "(only CPython 3.11-3.13 with the GIL are)";
#endif
    /* The shape walk's dict version tags, proven now, as the agent starts: the proof runs
       Python code (a compile), which audit hooks the program adds later must not see, and
       which must not wait for a first fingerprint in one of the program's threads or at its
       exit. */
    fp_memo_prove();
    hot_path_api.open_fn = PyObject_GetAttrString(m, "open_call");
    hot_path_api.close_fn = PyObject_GetAttrString(m, "close_call");
    Py_XDECREF(hot_path_api.open_fn);   /* borrowed: the module keeps them */
    Py_XDECREF(hot_path_api.close_fn);
    if (hot_path_api.open_fn == NULL || hot_path_api.close_fn == NULL
            || PyModule_AddObject(m, "_C_API", PyCapsule_New(&hot_path_api, FA_HOTPATH_CAPSULE,
                                                              NULL)) < 0)
        goto fail;
    if (PyModule_AddObject(m, "S", Py_NewRef((PyObject *)S)) < 0
            || PyModule_AddObject(m, "IN_PLACE", PyBool_FromLong(in_place)) < 0
            || PyModule_AddStringConstant(m, "IN_PLACE_WHY", in_place_why) < 0
            || PyModule_AddObject(m, "NOEXIT", Py_NewRef(noexit)) < 0
            || PyModule_AddObject(m, "Call", Py_NewRef((PyObject *)&CallType)) < 0
            || PyModule_AddIntConstant(m, "ABI", ABI) < 0
            || PyModule_AddObject(m, "FRAME_LAYOUT", Py_BuildValue(
                   "(iiiiiiiiiiiiii)", CID, PARENT, SES, FID, T0, INS, FLAGS, OUTER, GEN, THR,
                   EXC, YIELDED, RV, CPU)) < 0
            || PyModule_AddObject(m, "FLAG_BITS", Py_BuildValue(
                   "(iiii)", F_ERR, F_CHILD_ERR, F_SKIP, F_SHAPED)) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
