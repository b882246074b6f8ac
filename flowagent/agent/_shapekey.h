/* Structural fingerprints of values, so that a shape is described once per structure.
 *
 * shapes.shape_of (Python) describes a value by walking it; most calls of a function get
 * values of the same structure again and again (the same dict keys, the same dataclass, lists
 * of the same element types). A fingerprint is a 128-bit digest of exactly what the walk's
 * result depends on: the types met, the key set of each record dict and the walk's cuts. Two
 * values with the same fingerprint have the same shape, so the shape id of the first is
 * reused (shape_cache_*) and the value is never walked again.
 *
 * The fingerprint walk visits the same elements in the same order as shapes._Walk, under the
 * same limits (MAX_ITEMS, MAX_TUPLE, MAX_FIELDS, MAX_DEPTH), and reads them the same way:
 * through type slots and exact-type checks only (a key is hashed only if it is an exact str,
 * whose hash is cached and runs no user code). Whatever it does not mirror exactly it refuses
 * (FP_BAIL), and the value is described the old way: a value whose walk would run out of
 * budget, a cycle, a dict of more than MAX_FIELDS keys, a subclass of a builtin collection,
 * a class object, a record field that is not in the instance dict.
 *
 * What a class contributes is decided once per class *state* by shapes.fingerprint_plan
 * (Python; the classification rules live there only): a leaf (the shape is the class's
 * name), a record with fields read from the instance dict, a named tuple, or refused. The
 * state is the type's version tag, which CPython replaces whenever the class or a base
 * changes (an attribute set or deleted, __bases__ assigned), and the record marker dicts'
 * sizes (a dataclass's fields dict edited in place). A class freed and another allocated at
 * its address gets a new tag, so the tag, not the address, identifies it.
 */
#ifndef FLOWAGENT_SHAPEKEY_H
#define FLOWAGENT_SHAPEKEY_H

#include <Python.h>
#include <stdint.h>

/* shapes.py's limits (checked against it when the plan hook is first fetched). */
#define FP_MAX_DEPTH 3
#define FP_MAX_FIELDS 16
#define FP_MAX_ITEMS 8
#define FP_MAX_NODES 64
#define FP_MAX_TUPLE 4

#define FP_OK 0
#define FP_BAIL 1
#define FP_ERROR (-1)
#define FP_RETRY 2      /* Python code ran during the walk: walk the value again */
#define FP_ATTEMPTS 3   /* walks of one value: at most two classes planned on the way */

typedef struct {
    uint64_t a, b;
} Fp;

static inline uint64_t
fp_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Two independently mixed lanes: a collision needs both to collide. Each step is a
   bijection of a lane's state for a given word (an xor or add, a multiplication by an odd
   constant, a rotation), so two sequences of words that differ in one place never collide;
   the multiplication carries every bit of a word upward and the rotation brings the high
   bits back down for the next step. */
static inline void
fp_mix(Fp *f, uint64_t x)
{
    f->a = fp_rotl((f->a ^ x) * 0x9E3779B97F4A7C15ULL, 31);
    f->b = fp_rotl(f->b + x, 27) * 0xC2B2AE3D27D4EB4FULL;
}

/* Markers of what the walk met, mixed in besides type addresses. */
enum { FPM_CUT = 1, FPM_EMPTY, FPM_RECORD, FPM_PAIRS, FPM_POSITIONAL, FPM_SAMPLE, FPM_ARGS,
       FPM_OUTPUT };

/* ---------------------------------------------------------------------------------------- */
/* Per-class plans (a direct-mapped table: a class that collides replaces the other) */

enum { PLAN_LEAF = 1, PLAN_RECORD, PLAN_NAMEDTUPLE, PLAN_REFUSED };

#define FP_WATCH 3   /* record marker dicts watched per class (dataclass, pydantic x2) */

typedef struct {
    PyTypeObject *type;        /* compared only, never dereferenced unless it matches */
    unsigned int tag;          /* the type's version tag when planned */
    unsigned gen;              /* this plan's number (fp_plan_gen): what record memos name */
    int kind;
    Py_ssize_t nfields;        /* named tuple: its field count */
    PyObject *fields;          /* record: tuple of exact-str field names (owned) */
    PyObject *watched[FP_WATCH];           /* record marker dicts (owned) and their sizes */
    Py_ssize_t watched_size[FP_WATCH];
} TypePlan;

#define FP_PLANS 1024
static TypePlan fp_plans[FP_PLANS];
static unsigned fp_plan_gen;        /* plans made so far */
static PyObject *fp_plan_hook;      /* shapes.fingerprint_plan, imported on first need */
static PyObject *fp_keywords;       /* frozenset(keyword.kwlist) */
static int fp_unavailable;          /* the hook could not be had: fingerprints refused */
#if PY_VERSION_HEX < 0x030C0000
static PyObject *fp_probe_name;     /* a name looked up to make CPython assign a version tag */
#endif

/* ---------------------------------------------------------------------------------------- */
/* Records read once per dict state (a direct-mapped table: an entry that collides replaces
 * the other)
 *
 * Most dicts the walk reads come back unchanged: a call's result is the next calls'
 * argument (the same request dict, the same line items), and an instance's fields are read
 * again each time the instance is passed on. Reading a record costs a pass over its entries
 * and a check of each key; what it finds (the values in order and, for a dict, its key set)
 * depends on that dict's entries only. CPython gives every dict a version tag (PEP 509,
 * `ma_version_tag`, through 3.13) that is new whenever the dict is created or modified and
 * never repeats within the process. A record read is kept with the dict's address and tag:
 * the same address with the same tag is the same dict, unchanged since, so it still holds
 * the values kept (the pointers are borrowed from it, and alive as long as it is) and they
 * are visited again without reading the entries. The values themselves are always walked:
 * a list or an instance inside has no such tag.
 *
 * That the tag changes as promised is proven against the running interpreter before the
 * first use (fp_memo_self_test: new dicts, a dict freed and another made at its address,
 * every kind of write, through the C API and through specialized bytecode, on plain dicts
 * and on an instance's dict); if any check fails, no record is ever reused. */

#if PY_VERSION_HEX < 0x030E0000
#define FP_MEMO_BUILD 1
#endif

typedef struct {
    PyObject *dict;            /* compared only, never dereferenced */
    uint64_t version;          /* its version tag when read */
    const TypePlan *owner;     /* NULL: a dict read as a record; else the instance's plan ... */
    unsigned gen;              /* ... as made then (its fields) */
    Py_ssize_t n;
    uint64_t ka, kb;           /* a dict's key-set digest */
    PyObject *vals[FP_MAX_FIELDS];
} RecordMemo;

#define FP_MEMOS 512
static RecordMemo fp_memos[FP_MEMOS];
static int fp_memo_on = -1;          /* dict records: -1 not proven yet, 0 refused, 1 proven */
static int fp_memo_attrs = -1;       /* instance records, the same */
static const char *fp_memo_why = "not tested yet (tested as the module loads)";
static const char *fp_memo_attrs_why = "not tested yet (tested as the module loads)";
static unsigned long long fp_memo_hits;

static inline uint64_t
fp_dict_version(PyObject *d)
{
#ifdef FP_MEMO_BUILD
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    return ((PyDictObject *)d)->ma_version_tag;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#else
    (void)d;
    return 0;
#endif
}

static inline RecordMemo *
fp_memo_slot(PyObject *d)
{
    return &fp_memos[((uintptr_t)d >> 4) % FP_MEMOS];
}

/* Version tags count per interpreter from 3.12 on: a dict of another interpreter could get
   a tag the main one gave a dict at the same address. Records are kept and reused only while
   the main interpreter is the only one (then every walk runs in it). */
static PyInterpreterState *fp_main_interp;  /* set when the tags are proven */

static inline int
fp_memo_alone(void)
{
    /* The newest interpreter is at the head of the list and the main one is the oldest: it
       is at the head only when it is alone. */
    return PyInterpreterState_Head() == fp_main_interp;
}

static void
fp_memos_clear(void)
{
    memset(fp_memos, 0, sizeof fp_memos);
}

#ifdef FP_MEMO_BUILD
static const char fp_memo_probe[] =
    "class R:\n"
    "    def __init__(self):\n"
    "        self.a = 1\n"
    "        self.b = 2\n"
    "def store(o, v):\n"
    "    o.a = v\n"
    "def put(d, v):\n"
    "    d['a'] = v\n"
    "def fresh():\n"
    "    return {'a': 1}\n";

/* Calls f(a, b) and tells whether the tag of `d` changed; -1 on an error. */
static int
fp_memo_changes(PyObject *d, PyObject *f, PyObject *a, PyObject *b)
{
    uint64_t before = fp_dict_version(d);
    PyObject *r = PyObject_CallFunctionObjArgs(f, a, b, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return fp_dict_version(d) != before;
}

/* Whether the tags behave as the memo relies on: NULL if they do, else what did not, for
   dicts (*plain) and for instance dicts read as records (*attrs; from 3.13 on an attribute
   set on an instance whose dict shares the instance's values leaves the tag as it was).
   Runs Python code. */
static void
fp_memo_self_test(const char **plain, const char **attrs)
{
    *plain = *attrs = "the self-test raised";
    PyObject *g = PyDict_New(), *one = PyLong_FromLong(1), *key = PyUnicode_FromString("a");
    PyObject *o = NULL, *od = NULL, *d = NULL, *d2 = NULL, *r = NULL;
    if (g == NULL || one == NULL || key == NULL
            || PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins()) < 0)
        goto done;
    /* Compiled, then run as a code object: PyRun_String would also forget that a
       KeyboardInterrupt left the main module (the process must then end by SIGINT), and this
       can run in any thread, also while the interpreter shuts down after one. */
    PyObject *probe = Py_CompileString(fp_memo_probe, "<flowagent shape probe>", Py_file_input);
    if (probe == NULL)
        goto done;
    r = PyEval_EvalCode(probe, g, g);
    Py_DECREF(probe);
    if (r == NULL)
        goto done;
    PyObject *cls = PyDict_GetItemString(g, "R"), *store = PyDict_GetItemString(g, "store");
    PyObject *put = PyDict_GetItemString(g, "put"), *fresh = PyDict_GetItemString(g, "fresh");
    if (cls == NULL || store == NULL || put == NULL || fresh == NULL)
        goto done;
    /* New dicts get new, non-zero tags, also at the address of one just freed. */
    d = PyObject_CallNoArgs(fresh);
    if (d == NULL || !PyDict_CheckExact(d))
        goto done;
    uint64_t first = fp_dict_version(d);
    Py_CLEAR(d);
    d = PyObject_CallNoArgs(fresh);
    d2 = PyDict_New();
    if (d == NULL || d2 == NULL)
        goto done;
    *plain = *attrs = "a new dict's version tag is 0 or repeats";
    if (first == 0 || fp_dict_version(d) == first || fp_dict_version(d2) == 0
            || fp_dict_version(d2) == first || fp_dict_version(d2) == fp_dict_version(d))
        goto done;
    /* Every kind of write through the C API. */
    *plain = *attrs = "a write left a dict's version tag unchanged";
    uint64_t t = fp_dict_version(d2);
    if (PyDict_SetItem(d2, key, one) < 0)
        goto done;
    if (fp_dict_version(d2) == t)
        goto done;
    t = fp_dict_version(d2);
    if (PyDict_SetItem(d2, key, Py_None) < 0)
        goto done;
    if (fp_dict_version(d2) == t)
        goto done;
    t = fp_dict_version(d2);
    if (PyDict_DelItem(d2, key) < 0)
        goto done;
    if (fp_dict_version(d2) == t)
        goto done;
    t = fp_dict_version(d2);
    if (PyDict_Update(d2, d) < 0)
        goto done;
    if (fp_dict_version(d2) == t)
        goto done;
    t = fp_dict_version(d2);
    PyDict_Clear(d2);
    if (fp_dict_version(d2) == t)
        goto done;
    /* The same write from bytecode, also once specialized (warmed up by many calls). */
    for (int i = 0; i < 200; i++) {
        PyObject *v = PyLong_FromLong(i + 1000);
        int changed = v == NULL ? -1 : fp_memo_changes(d, put, d, v);
        Py_XDECREF(v);
        if (changed <= 0) {
            if (changed == 0)
                *plain = *attrs = "a specialized write left a dict's version tag unchanged";
            goto done;
        }
    }
    *plain = NULL;
    /* An instance's dict, made from its attributes on first read as the walk does. */
    *attrs = "the self-test raised";
    o = PyObject_CallNoArgs(cls);
    if (o == NULL)
        goto done;
    od = PyObject_GenericGetDict(o, NULL);
    if (od == NULL || !PyDict_Check(od))
        goto done;
    t = fp_dict_version(od);
    if (PyObject_SetAttr(o, key, Py_None) < 0)
        goto done;
    *attrs = "setting an attribute left its instance dict's version tag unchanged";
    if (fp_dict_version(od) == t)
        goto done;
    for (int i = 0; i < 200; i++) {
        PyObject *v = PyLong_FromLong(i + 1000);
        int changed = v == NULL ? -1 : fp_memo_changes(od, store, o, v);
        Py_XDECREF(v);
        if (changed <= 0) {
            *attrs = changed < 0 ? "the self-test raised"
                                 : "a specialized attribute write left the tag unchanged";
            goto done;
        }
    }
    *attrs = NULL;
done:
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(o);
    Py_XDECREF(od);
    Py_XDECREF(d);
    Py_XDECREF(d2);
    Py_XDECREF(key);
    Py_XDECREF(one);
    Py_XDECREF(g);
}
#endif

/* Decide once whether records may be reused (fp_memo_on, fp_memo_attrs); runs Python code. */
static void
fp_memo_prove(void)
{
    if (fp_memo_on >= 0)
        return;
    fp_memo_on = fp_memo_attrs = 0;  /* while the test runs (it may switch threads) */
    fp_main_interp = PyInterpreterState_Main();
#ifdef FP_MEMO_BUILD
    const char *plain, *attrs;
    fp_memo_self_test(&plain, &attrs);
    fp_memo_why = plain != NULL ? plain : "dicts: their version tags verified as the agent started";
    fp_memo_attrs_why = attrs != NULL ? attrs
                                      : "instance dicts: their version tags verified as the agent started";
    fp_memo_attrs = attrs == NULL;
    fp_memo_on = plain == NULL;
#else
    fp_memo_why = fp_memo_attrs_why = "this Python has no dict version tags";
#endif
}

static void
fp_plan_clear(TypePlan *p)
{
    Py_CLEAR(p->fields);
    for (int i = 0; i < FP_WATCH; i++)
        Py_CLEAR(p->watched[i]);
    p->type = NULL;
    p->kind = 0;
}

static void fp_values_clear(void);

static void
fp_plans_clear(void)
{
    for (Py_ssize_t i = 0; i < FP_PLANS; i++)
        fp_plan_clear(&fp_plans[i]);
    fp_memos_clear();
    fp_values_clear();
}

/* Whether a type's version tag is valid: from Python 3.13 on CPython no longer sets
   Py_TPFLAGS_VALID_VERSION_TAG, and a tag of 0 alone means "none". */
#if PY_VERSION_HEX >= 0x030D0000
#define FP_TAG_VALID(t) ((t)->tp_version_tag != 0)
#else
#define FP_TAG_VALID(t) (((t)->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) && (t)->tp_version_tag != 0)
#endif

/* The type's valid version tag, assigning one if it has none; 0 if CPython will not. */
static unsigned int
fp_type_tag(PyTypeObject *t)
{
    if (FP_TAG_VALID(t))
        return t->tp_version_tag;
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Type_AssignVersionTag(t))
        return 0;
#else
    if (fp_probe_name == NULL
            && (fp_probe_name = PyUnicode_InternFromString("__flowagent_version_probe__")) == NULL) {
        PyErr_Clear();
        return 0;
    }
    (void)_PyType_Lookup(t, fp_probe_name);  /* assigns the tag as a side effect; no user code */
#endif
    if (!FP_TAG_VALID(t))
        return 0;
    return t->tp_version_tag;
}

static int
fp_load_hook(void)
{
    if (fp_plan_hook != NULL)
        return 0;
    if (fp_unavailable)
        return -1;
    fp_unavailable = 1;  /* until proven otherwise: never retried on every call */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *m = PyImport_ImportModule("flowagent.agent.shapes");
    PyObject *kw = PyImport_ImportModule("keyword");
    int ok = 0;
    if (m != NULL && kw != NULL) {
        PyObject *hook = PyObject_GetAttrString(m, "fingerprint_plan");
        PyObject *limits = PyObject_GetAttrString(m, "FINGERPRINT_LIMITS");
        PyObject *kwlist = PyObject_GetAttrString(kw, "kwlist");
        PyObject *want = Py_BuildValue("(iiiii)", FP_MAX_DEPTH, FP_MAX_FIELDS, FP_MAX_ITEMS,
                                       FP_MAX_NODES, FP_MAX_TUPLE);
        if (hook != NULL && limits != NULL && kwlist != NULL && want != NULL
                && PyObject_RichCompareBool(limits, want, Py_EQ) == 1) {
            fp_keywords = PyFrozenSet_New(kwlist);
            if (fp_keywords != NULL) {
                fp_plan_hook = Py_NewRef(hook);
                ok = 1;
            }
        }
        Py_XDECREF(hook);
        Py_XDECREF(limits);
        Py_XDECREF(kwlist);
        Py_XDECREF(want);
    }
    Py_XDECREF(m);
    Py_XDECREF(kw);
    PyErr_Clear();
    if (ok)
        fp_memo_prove();  /* done when the module loaded: a no-op */
    PyErr_Restore(et, ev, tb);
    if (!ok)
        return -1;
    fp_unavailable = 0;
    return 0;
}

/* Fill `p` for type `t` from shapes.fingerprint_plan(t): 0 (leaf), ("record", fields,
   watched dicts), ("namedtuple", n) or None (refused). FP_ERROR only for an error that must
   reach the program; any other failure refuses the class. */
static int
fp_plan_make(TypePlan *p, PyTypeObject *t, unsigned int tag)
{
    fp_plan_clear(p);
    p->type = t;
    p->tag = tag;
    p->gen = ++fp_plan_gen;
    p->kind = PLAN_REFUSED;
    if (fp_load_hook() < 0)
        return FP_OK;
    PyObject *r = PyObject_CallOneArg(fp_plan_hook, (PyObject *)t);
    if (r == NULL)
        return FP_ERROR;  /* the caller decides whose error it is */
    /* The hook ran Python code: a collection may have run finalizers that changed the class
       (and its tag) meanwhile; then this plan is not kept. */
    if (fp_type_tag(t) != tag) {
        Py_DECREF(r);
        p->type = NULL;
        return FP_OK;
    }
    if (PyLong_CheckExact(r) && PyLong_AsLong(r) == 0)
        p->kind = PLAN_LEAF;
    else if (PyTuple_CheckExact(r) && PyTuple_GET_SIZE(r) >= 2
             && PyUnicode_CheckExact(PyTuple_GET_ITEM(r, 0))) {
        PyObject *what = PyTuple_GET_ITEM(r, 0);
        if (PyUnicode_CompareWithASCIIString(what, "namedtuple") == 0
                && PyLong_CheckExact(PyTuple_GET_ITEM(r, 1))) {
            p->nfields = PyLong_AsSsize_t(PyTuple_GET_ITEM(r, 1));
            if (p->nfields >= 0)
                p->kind = PLAN_NAMEDTUPLE;
        }
        else if (PyUnicode_CompareWithASCIIString(what, "record") == 0
                 && PyTuple_GET_SIZE(r) == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(r, 1))
                 && PyTuple_CheckExact(PyTuple_GET_ITEM(r, 2))
                 && PyTuple_GET_SIZE(PyTuple_GET_ITEM(r, 2)) <= FP_WATCH) {
            PyObject *watched = PyTuple_GET_ITEM(r, 2);
            p->fields = Py_NewRef(PyTuple_GET_ITEM(r, 1));
            int w = 0;  /* packed from the first: the first empty slot ends the list */
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(watched); i++) {
                PyObject *d = PyTuple_GET_ITEM(watched, i);
                if (PyDict_CheckExact(d)) {
                    p->watched[w] = Py_NewRef(d);
                    p->watched_size[w++] = PyDict_GET_SIZE(d);
                }
            }
            p->kind = PLAN_RECORD;
        }
    }
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_DECREF(r);
    return FP_OK;
}

/* The plan of `t` (borrowed), or NULL with FP_ERROR/FP_BAIL/FP_RETRY in *status. Making a
   plan runs Python code (the hook), which may change anything the walk holds borrowed: the
   walk is then abandoned (FP_RETRY) and started again, finding the plan made. */
static TypePlan *
fp_plan(PyTypeObject *t, int *status)
{
    unsigned int tag = fp_type_tag(t);
    if (tag == 0) {
        *status = FP_BAIL;
        return NULL;
    }
    TypePlan *p = &fp_plans[((uintptr_t)t >> 4) % FP_PLANS];
    int fresh = p->type == t && p->tag == tag;
    if (fresh && p->kind == PLAN_RECORD) {
        for (int i = 0; i < FP_WATCH && p->watched[i] != NULL; i++)
            if (PyDict_GET_SIZE(p->watched[i]) != p->watched_size[i])
                fresh = 0;
    }
    if (!fresh) {
        if (fp_plan_make(p, t, tag) < 0) {
            fp_plan_clear(p);
            *status = FP_ERROR;
        }
        else
            *status = FP_RETRY;
        return NULL;
    }
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* The walk (mirrors shapes._Walk)
 *
 * The walk holds no references: it reads containers in place (a list's or tuple's item
 * array, a dict's entries) and the elements it visits are borrowed from them. That is safe
 * because nothing it does runs Python code, so nothing can change or free what it reads:
 * type slots, exact-type checks, the cached hash of exact strs, dict lookups of exact-str
 * keys in dicts whose keys are all exact strs, and allocations (an instance dict made on
 * first read, a set iterator) made with the collector held off, so that no finalizer runs
 * (from 3.12 on an allocation only schedules a collection). The two things that do run
 * Python code, importing shapes.py and planning a class, end the walk (FP_RETRY); its caller
 * walks the whole value again, that class now planned. */

#if PY_VERSION_HEX < 0x030C0000
#define FP_GC_HOLD() int fp_gc_was_on = PyGC_Disable()
#define FP_GC_RELEASE() do { if (fp_gc_was_on) PyGC_Enable(); } while (0)
#else
#define FP_GC_HOLD() ((void)0)
#define FP_GC_RELEASE() ((void)0)
#endif

/* What a walk read, in the order it read it, so that a later walk of the same value can tell
   that it would read the same (see "Values walked again" below): each entry names an object
   whose liveness an earlier entry (or the walk's own argument) vouches for. */
enum { FPK_TYPE = 1,   /* obj's type is `a` (a type, planned as plan number `b` if b != 0) */
       FPK_DICT,       /* obj is a dict whose version tag is `b` */
       FPK_INST,       /* obj's instance dict is `a`, its version tag `b` */
       FPK_SEQ,        /* obj is a list or tuple (as checked) of length `a`... */
       FPK_ELEM };     /* ... whose item `a` is obj, of type `b` */

typedef struct {
    PyObject *obj;             /* compared, or dereferenced once an earlier check holds */
    uintptr_t a;
    uint64_t b;
} FpCheck;

#define FP_TAPE_CHECKS 64

typedef struct {
    Fp fp;
    uint64_t pend;                    /* scalar codes not mixed yet, 3 bits each, after a 1 */
    int budget;                       /* nodes left, as in _Walk.budget */
    PyObject *path[FP_MAX_DEPTH + 1]; /* composites on the current path (cycle check) */
    int depth_used;
    int memo;                         /* records may be reused (fp_memo_alone) */
    int rec;                          /* the walk is being kept (see fp_value) */
    unsigned nchecks;
    unsigned char kinds[FP_TAPE_CHECKS];
    FpCheck checks[FP_TAPE_CHECKS];
} FpWalk;

static inline void
fp_check(FpWalk *w, int kind, PyObject *obj, uintptr_t a, uint64_t b)
{
    if (w->nchecks < FP_TAPE_CHECKS) {
        w->kinds[w->nchecks] = (unsigned char)kind;
        w->checks[w->nchecks].obj = obj;
        w->checks[w->nchecks].a = a;
        w->checks[w->nchecks++].b = b;
    }
    else
        w->rec = 0;
}

/* The builtin types the walk tells apart without a plan, by a code: the scalars, whose shape
   is their type alone (1..7), and the collections it reads in place (8..12). Looked up in a
   small table keyed by the type's address (static types: their addresses never change),
   filled on first use with a shift that keeps the twelve apart; where none does, the types
   are compared one by one. */
enum { FPC_INT = 1, FPC_STR, FPC_FLOAT, FPC_BOOL, FPC_NONE, FPC_BYTES, FPC_COMPLEX,
       FPC_DICT, FPC_LIST, FPC_TUPLE, FPC_SET, FPC_FROZENSET, FPC_N };
#define FPC_SCALAR(c) ((c) != 0 && (c) <= FPC_COMPLEX)
#define FP_CODES 256
static PyTypeObject *fp_code_type[FP_CODES];
static unsigned char fp_code_of[FP_CODES];
static int fp_code_shift = -1;   /* -1: not set up; 0: no shift keeps them apart */

static PyTypeObject *
fp_code_types(int c)
{
    switch (c) {
    case FPC_INT: return &PyLong_Type;
    case FPC_STR: return &PyUnicode_Type;
    case FPC_FLOAT: return &PyFloat_Type;
    case FPC_BOOL: return &PyBool_Type;
    case FPC_NONE: return Py_TYPE(Py_None);
    case FPC_BYTES: return &PyBytes_Type;
    case FPC_COMPLEX: return &PyComplex_Type;
    case FPC_DICT: return &PyDict_Type;
    case FPC_LIST: return &PyList_Type;
    case FPC_TUPLE: return &PyTuple_Type;
    case FPC_SET: return &PySet_Type;
    default: return &PyFrozenSet_Type;
    }
}

static void
fp_codes_setup(void)
{
    for (int shift = 3; shift <= 10; shift++) {
        memset(fp_code_type, 0, sizeof fp_code_type);
        int apart = 1;
        for (int c = 1; c < FPC_N && apart; c++) {
            PyTypeObject *t = fp_code_types(c);
            size_t at = ((uintptr_t)t >> shift) % FP_CODES;
            if (fp_code_type[at] != NULL)
                apart = 0;
            fp_code_type[at] = t;
            fp_code_of[at] = (unsigned char)c;
        }
        if (apart) {
            fp_code_shift = shift;
            return;
        }
    }
    memset(fp_code_type, 0, sizeof fp_code_type);
    fp_code_shift = 0;
}

static inline int
fp_code(PyTypeObject *t)
{
    if (fp_code_shift > 0) {
        size_t at = ((uintptr_t)t >> fp_code_shift) % FP_CODES;
        return fp_code_type[at] == t ? fp_code_of[at] : 0;
    }
    for (int c = 1; c < FPC_N; c++)
        if (fp_code_types(c) == t)
            return c;
    return 0;
}

/* Scalars met in a row are kept as codes and mixed as one word, 20 at most (the word's top
   three bits set: no other word the walk mixes has them, short of a key's hash); anything
   else mixed first mixes the codes kept. */
#define FP_PEND_TAG (7ULL << 61)

static inline void
fp_flush(FpWalk *w)
{
    if (w->pend != 1) {
        fp_mix(&w->fp, w->pend | FP_PEND_TAG);
        w->pend = 1;
    }
}

static inline void
fp_put(FpWalk *w, uint64_t x)
{
    fp_flush(w);
    fp_mix(&w->fp, x);
}

static inline void
fp_scalar(FpWalk *w, int code)
{
    w->pend = (w->pend << 3) | (uint64_t)code;
    if (w->pend >> 60)
        fp_flush(w);
}

static int fp_describe(FpWalk *w, PyObject *v, int code, int depth);

/* A value as _Walk.visit sees it: one node of the budget, then described. A scalar (most
   nodes) is its code alone: no call for it. */
static inline int
fp_visit(FpWalk *w, PyObject *v, int depth)
{
    if (w->budget <= 0)
        return FP_BAIL;  /* the walk would cut here: its shape depends on the budget */
    w->budget--;
    int code = fp_code(Py_TYPE(v));
    if (FPC_SCALAR(code)) {
        fp_scalar(w, code);
        return FP_OK;
    }
    return fp_describe(w, v, code, depth);
}

/* Visit n values (borrowed) in order. */
static inline int
fp_visit_all(FpWalk *w, PyObject *const *vals, Py_ssize_t n, int depth)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int st = fp_visit(w, vals[i], depth);
        if (st != FP_OK)
            return st;
    }
    return FP_OK;
}

/* The elements shapes.py samples from a list or tuple, visited in place: all of up to
   `all_upto`, else the first and the last MAX_ITEMS/2 (which may overlap, as the slices do
   in shapes.py). */
static inline int
fp_visit_sample(FpWalk *w, PyObject *const *items, Py_ssize_t n, Py_ssize_t all_upto,
                int depth)
{
    Py_ssize_t half = FP_MAX_ITEMS / 2;
    if (n <= all_upto)
        return fp_visit_all(w, items, n, depth);
    int st = fp_visit_all(w, items, n < half ? n : half, depth);
    if (st != FP_OK)
        return st;
    Py_ssize_t from = n - half < 0 ? 0 : n - half;
    return fp_visit_all(w, items + from, n - from, depth);
}

/* How many elements fp_visit_sample visits. A sample's word carries it: the key is a flat
   sequence, and without the count [[None, None], None] and [[None, None, None]] would mix
   the same words. */
static inline Py_ssize_t
fp_sample_count(Py_ssize_t n, Py_ssize_t all_upto)
{
    Py_ssize_t half = FP_MAX_ITEMS / 2;
    return n <= all_upto ? n : 2 * (n < half ? n : half);
}

/* An exact str's hash: cached in the object after the first time, and never user code. */
static inline Py_hash_t
fp_str_hash(PyObject *k)
{
    Py_hash_t h = ((PyASCIIObject *)k)->hash;
    return h != -1 ? h : PyObject_Hash(k);
}

/* Whether an exact-str key makes a record field: an identifier that is not a keyword. The
   answer is kept by (hash, length), the same identity the fingerprint gives a key, since
   the same few keys come back in every call. */
#define FP_NAMES 512
static struct { Py_hash_t hash; Py_ssize_t len; int field; } fp_names[FP_NAMES];

static inline int
fp_field_name(PyObject *k)
{
    Py_hash_t h = fp_str_hash(k);
    Py_ssize_t len = PyUnicode_GET_LENGTH(k);
    size_t at = (size_t)h % FP_NAMES;
    if (fp_names[at].len == len + 1 && fp_names[at].hash == h)
        return fp_names[at].field;
    int field = PyUnicode_IsIdentifier(k) && PySet_Contains(fp_keywords, k) == 0;
    fp_names[at].hash = h;
    fp_names[at].len = len + 1;  /* 0 marks an empty slot */
    fp_names[at].field = field;
    return field;
}

static int
fp_dict(FpWalk *w, PyObject *v, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(v);
    if (w->rec)  /* its entries are this tag's (nothing runs code until they are read) */
        fp_check(w, FPK_DICT, v, 0, fp_dict_version(v));
    if (n == 0) {
        fp_put(w, FPM_EMPTY);
        return FP_OK;
    }
    if (n > FP_MAX_FIELDS)
        return FP_BAIL;  /* sampled from both ends: left to shapes.py */
    PyObject *keys[FP_MAX_FIELDS], *vals[FP_MAX_FIELDS];
    RecordMemo *memo = NULL;
    uint64_t version = 0;
    if (fp_memo_on > 0 && w->memo) {
        version = fp_dict_version(v);
        memo = fp_memo_slot(v);
        if (memo->dict == v && memo->version == version && memo->owner == NULL
                && memo->n == n) {
            /* The same dict, unchanged since it was read: its key set and values as then
               (copied: a value's walk may replace this entry). */
            memcpy(vals, memo->vals, (size_t)n * sizeof *vals);
            fp_memo_hits++;
            fp_put(w, FPM_RECORD);
            fp_put(w, memo->ka);
            fp_put(w, memo->kb);
            return fp_visit_all(w, vals, n, depth);
        }
    }
    if (fp_plan_hook == NULL)  /* the keyword set comes with it: importing it runs code */
        return fp_load_hook() < 0 ? FP_BAIL : FP_RETRY;
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *x;
    int record = 1;
    while (i < n && PyDict_Next(v, &pos, &k, &x)) {
        keys[i] = k;
        vals[i] = x;
        if (record && (!PyUnicode_CheckExact(k) || !fp_field_name(k)))
            record = 0;
        i++;
    }
    if (i != n)
        return FP_BAIL;
    if (record) {
        /* A record: its key set (exact strs: their cached hash and length, digested apart
           so that a dict read again mixes the digest alone) and each value. */
        Fp ks = {FPM_RECORD, FPM_RECORD};
        for (Py_ssize_t j = 0; j < n; j++)
            fp_mix(&ks, (uint64_t)fp_str_hash(keys[j])
                            ^ ((uint64_t)PyUnicode_GET_LENGTH(keys[j]) << 48));
        if (memo != NULL) {  /* nothing ran since the tag was read: it is this state's */
            memo->dict = v;
            memo->version = version;
            memo->owner = NULL;
            memo->n = n;
            memo->ka = ks.a;
            memo->kb = ks.b;
            memcpy(memo->vals, vals, (size_t)n * sizeof *vals);
        }
        fp_put(w, FPM_RECORD);
        fp_put(w, ks.a);
        fp_put(w, ks.b);
        return fp_visit_all(w, vals, n, depth);
    }
    /* A mapping: the sampled pairs (all, or the first and last halves), key then value,
       after how many values follow (as for a list's sample). */
    fp_put(w, FPM_PAIRS + ((uint64_t)(2 * (n > FP_MAX_ITEMS ? 2 * (FP_MAX_ITEMS / 2) : n)) << 8));
    for (Py_ssize_t j = 0; j < n; j++) {
        if (n > FP_MAX_ITEMS && j >= FP_MAX_ITEMS / 2 && j < n - FP_MAX_ITEMS / 2)
            continue;
        int st = fp_visit(w, keys[j], depth);
        if (st == FP_OK)
            st = fp_visit(w, vals[j], depth);
        if (st != FP_OK)
            return st;
    }
    return FP_OK;
}

/* A record's fields read from the instance dict `d` (borrowed) of `v`, then visited. */
static int
fp_record_fields(FpWalk *w, PyObject *v, PyObject *d, const TypePlan *p, int depth)
{
    PyObject *fields = p->fields;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (!PyDict_Check(d) || n > FP_MAX_FIELDS)
        return FP_BAIL;
    if (w->rec) {
        if (fp_memo_attrs > 0)
            fp_check(w, FPK_INST, v, (uintptr_t)d, fp_dict_version(d));
        else
            w->rec = 0;  /* an instance dict's tag is not proven to follow its writes */
    }
    PyObject *vals[FP_MAX_FIELDS];
    RecordMemo *memo = NULL;
    uint64_t version = 0;
    if (fp_memo_attrs > 0 && w->memo) {
        version = fp_dict_version(d);
        memo = fp_memo_slot(d);
        if (memo->dict == d && memo->version == version && memo->owner == p
                && memo->gen == p->gen && memo->n == n) {
            /* Read before under this same plan, the dict unchanged since: its values. */
            memcpy(vals, memo->vals, (size_t)n * sizeof *vals);
            fp_memo_hits++;
            fp_put(w, FPM_RECORD);
            return fp_visit_all(w, vals, n, depth);
        }
    }
    Py_ssize_t m = 0, pos = 0;
    PyObject *k, *x;
    /* The instance dict usually holds exactly the fields, set in order by __init__ under
       the very name objects the class keeps: then one pass reads them all. */
    if (PyDict_GET_SIZE(d) == n) {
        while (m < n && PyDict_Next(d, &pos, &k, &x) && k == PyTuple_GET_ITEM(fields, m))
            vals[m++] = x;
    }
    if (m < n) {
        /* Looked up by name, which compares keys: only in a dict whose keys are all exact
           strs, where comparing runs no code (shapes.fingerprint refuses the same). */
        pos = 0;
        while (PyDict_Next(d, &pos, &k, &x))
            if (!PyUnicode_CheckExact(k))
                return FP_BAIL;
        for (m = 0; m < n; m++) {
            x = PyDict_GetItemWithError(d, PyTuple_GET_ITEM(fields, m));
            if (x == NULL) {
                PyErr_Clear();
                return FP_BAIL;  /* a default on the class, or unreadable: left to shapes.py */
            }
            vals[m] = x;
        }
    }
    if (memo != NULL) {  /* nothing ran since the tag was read: it is this state's */
        memo->dict = d;
        memo->version = version;
        memo->owner = p;
        memo->gen = p->gen;
        memo->n = n;
        memcpy(memo->vals, vals, (size_t)n * sizeof *vals);
    }
    fp_put(w, FPM_RECORD);
    return fp_visit_all(w, vals, n, depth);
}

static int
fp_record(FpWalk *w, PyObject *v, TypePlan *p, int depth)
{
    FP_GC_HOLD();
    PyObject *d = PyObject_GenericGetDict(v, NULL);  /* made on first read: an allocation */
    FP_GC_RELEASE();
    if (d == NULL) {
        PyErr_Clear();
        return FP_BAIL;
    }
    int st = fp_record_fields(w, v, d, p, depth);
    Py_DECREF(d);  /* the instance holds it: nothing is freed */
    return st;
}

/* The first MAX_ITEMS of a set in iteration order, as islice(set.__iter__(v)) takes them. */
static int
fp_set(FpWalk *w, PyObject *v, int depth)
{
    w->rec = 0;  /* its sample depends on its table, which nothing tells unchanged */
    if (PySet_GET_SIZE(v) == 0) {
        fp_put(w, FPM_EMPTY);
        return FP_OK;
    }
    PyObject *vals[FP_MAX_ITEMS];
    Py_ssize_t m = 0;
    int st = FP_OK;
    FP_GC_HOLD();
    PyObject *it = PyObject_GetIter(v);
    if (it == NULL)
        st = FP_BAIL;
    while (st == FP_OK && m < FP_MAX_ITEMS) {
        PyObject *x = PyIter_Next(it);
        if (x == NULL) {
            if (PyErr_Occurred())
                st = FP_BAIL;
            break;
        }
        vals[m++] = x;
        Py_DECREF(x);  /* the set holds it */
    }
    Py_XDECREF(it);
    FP_GC_RELEASE();
    if (st != FP_OK) {
        PyErr_Clear();
        return st;
    }
    fp_put(w, FPM_SAMPLE + ((uint64_t)m << 8));
    return fp_visit_all(w, vals, m, depth);
}

/* Items from..to-1 of a list's or tuple's item array, as the walk is about to visit them. */
static inline void
fp_check_range(FpWalk *w, PyObject *const *items, Py_ssize_t from, Py_ssize_t to)
{
    for (Py_ssize_t i = from; i < to; i++)
        fp_check(w, FPK_ELEM, items[i], (uintptr_t)i, (uint64_t)(uintptr_t)Py_TYPE(items[i]));
}

/* A sequence's length and the items fp_visit_sample visits. */
static inline void
fp_check_sample(FpWalk *w, PyObject *v, PyObject *const *items, Py_ssize_t n, Py_ssize_t all_upto)
{
    Py_ssize_t half = FP_MAX_ITEMS / 2;
    fp_check(w, FPK_SEQ, v, (uintptr_t)n, 0);
    if (n <= all_upto) {
        fp_check_range(w, items, 0, n);
        return;
    }
    fp_check_range(w, items, 0, n < half ? n : half);
    fp_check_range(w, items, n - half < 0 ? 0 : n - half, n);
}

/* A value whose visit is paid for (shapes._Walk.describe). */
static int
fp_describe(FpWalk *w, PyObject *v, int code, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (FPC_SCALAR(code)) {
        fp_scalar(w, code);
        return FP_OK;
    }
    if (code != 0)  /* apart from the markers, and never an (aligned) type's address */
        fp_put(w, ((uint64_t)code << 40) | 0xC0DEU);
    else
        fp_put(w, (uint64_t)(uintptr_t)t);
    TypePlan *plan = NULL;
    if (code == 0) {
        int st = FP_OK;
        plan = fp_plan(t, &st);
        if (plan == NULL)
            return st;
        fp_put(w, plan->tag);
        if (w->rec)
            fp_check(w, FPK_TYPE, v, (uintptr_t)t, plan->gen);
        if (plan->kind == PLAN_LEAF)
            return FP_OK;
        if (plan->kind == PLAN_REFUSED)
            return FP_BAIL;
    }
    else if (w->rec)
        fp_check(w, FPK_TYPE, v, (uintptr_t)t, 0);
    if (depth > FP_MAX_DEPTH) {
        fp_put(w, FPM_CUT);
        return FP_OK;
    }
    for (int i = 0; i < w->depth_used; i++)
        if (w->path[i] == v)
            return FP_BAIL;  /* a cycle */
    if (w->depth_used > FP_MAX_DEPTH)
        return FP_BAIL;
    w->path[w->depth_used++] = v;
    depth++;
    int st;
    Py_ssize_t n;
    if (code == FPC_DICT)
        st = fp_dict(w, v, depth);
    else if (code == FPC_LIST) {
        n = PyList_GET_SIZE(v);
        if (n == 0) {
            fp_put(w, FPM_EMPTY);
            st = FP_OK;
        }
        else {
            fp_put(w, FPM_SAMPLE + ((uint64_t)fp_sample_count(n, FP_MAX_ITEMS) << 8));
            if (w->rec)
                fp_check_sample(w, v, ((PyListObject *)v)->ob_item, n, FP_MAX_ITEMS);
            st = fp_visit_sample(w, ((PyListObject *)v)->ob_item, n, FP_MAX_ITEMS, depth);
        }
        if (w->rec && n == 0)
            fp_check(w, FPK_SEQ, v, 0, 0);  /* no elements: nothing checked after it */
    }
    else if (code == FPC_TUPLE) {
        n = PyTuple_GET_SIZE(v);
        fp_put(w, n <= FP_MAX_TUPLE ? FPM_POSITIONAL + ((uint64_t)n << 8)
                                    : FPM_SAMPLE + ((uint64_t)fp_sample_count(n, FP_MAX_TUPLE) << 8));
        if (w->rec)
            fp_check_sample(w, v, ((PyTupleObject *)v)->ob_item, n, FP_MAX_TUPLE);
        st = fp_visit_sample(w, ((PyTupleObject *)v)->ob_item, n, FP_MAX_TUPLE, depth);
    }
    else if (code == FPC_SET || code == FPC_FROZENSET)
        st = fp_set(w, v, depth);
    else if (plan->kind == PLAN_NAMEDTUPLE && PyTuple_Check(v)) {
        n = PyTuple_GET_SIZE(v);
        if (n > plan->nfields)
            n = plan->nfields;
        fp_put(w, FPM_POSITIONAL + ((uint64_t)n << 8));
        if (w->rec) {
            fp_check(w, FPK_SEQ, v, (uintptr_t)PyTuple_GET_SIZE(v), 0);
            fp_check_range(w, ((PyTupleObject *)v)->ob_item, 0, n < FP_MAX_FIELDS ? n : FP_MAX_FIELDS);
        }
        st = fp_visit_all(w, ((PyTupleObject *)v)->ob_item, n < FP_MAX_FIELDS ? n : FP_MAX_FIELDS,
                          depth);
    }
    else if (plan->kind == PLAN_RECORD)
        st = fp_record(w, v, plan, depth);
    else
        st = FP_BAIL;
    w->depth_used--;
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Values walked again (a direct-mapped table keyed by the value's address)
 *
 * Within a request the same objects are walked again and again: a call's result is the next
 * calls' argument (a cart built, then priced, serialized and put in the response; each line
 * made, then totalled and serialized), and a response is the handler's result after being
 * an argument of its own. A value's walk is a function of what it reads, and it reads little:
 * each composite's type (and its class's plan), each dict's entries (pinned by the dict's
 * version tag), each instance's dict (its address and tag), each list's or tuple's length
 * and the address and type of each item it samples. Scalars read nothing but their type,
 * which cannot change, and their address is pinned by the container they were read from.
 *
 * Each value is digested on its own, from the same start (fp_value), and the digests of a
 * call's values are then mixed in order; so a walk of a composite value that ended well keeps,
 * beside the value's address, its digest and every one of those reads (its checks), in the
 * order it read them. A later walk of a value at that address runs the checks in order and,
 * if every one holds, takes the digest kept: the one the walk would make. Each check
 * dereferences only what an earlier check, or the value itself, holds alive: an item is
 * compared by address with what its container holds before its type is read, a dict's values
 * are pinned by its tag before any of them is checked. A check that fails, a freed value
 * whose address is reused, anything changed in between: the value is walked afresh (and kept
 * again). A walk that met a set, or an instance dict where instance tags are not proven
 * (3.13), or that would not fit, is not kept. */

typedef struct {
    PyObject *root;            /* compared only */
    Fp fp;                     /* its digest */
    unsigned nchecks;
    unsigned char kinds[FP_TAPE_CHECKS];
    FpCheck checks[FP_TAPE_CHECKS];
} ValueMemo;

#define FP_VALUES_BITS 7
#define FP_VALUES (1 << FP_VALUES_BITS)
static ValueMemo fp_values[FP_VALUES];
static unsigned long long fp_value_hits;

/* Objects of one size sit at multiples of that size (64 bytes for a small dict): the address
   is multiplied through so that all of its bits choose the slot. */
static inline ValueMemo *
fp_value_slot(PyObject *v)
{
    return &fp_values[((uint64_t)(uintptr_t)v * 0x9E3779B97F4A7C15ULL) >> (64 - FP_VALUES_BITS)];
}

static void
fp_values_clear(void)
{
    for (int i = 0; i < FP_VALUES; i++) {
        fp_values[i].root = NULL;
        fp_values[i].nchecks = 0;
    }
}

/* Whether `t` (alive) still has plan number `gen`, as fp_plan would find it fresh. */
static inline int
fp_plan_current(PyTypeObject *t, uint64_t gen)
{
    const TypePlan *p = &fp_plans[((uintptr_t)t >> 4) % FP_PLANS];
    if (p->type != t || p->gen != gen || !FP_TAG_VALID(t) || t->tp_version_tag != p->tag)
        return 0;
    if (p->kind == PLAN_RECORD)
        for (int i = 0; i < FP_WATCH && p->watched[i] != NULL; i++)
            if (PyDict_GET_SIZE(p->watched[i]) != p->watched_size[i])
                return 0;
    return 1;
}

/* Whether a walk of m->root now would read what the kept one read (see above). */
static int
fp_value_holds(const ValueMemo *m)
{
    PyObject *const *items = NULL;
    for (unsigned i = 0; i < m->nchecks; i++) {
        const FpCheck *c = &m->checks[i];
        PyObject *o = c->obj;
        switch (m->kinds[i]) {
        case FPK_TYPE:
            if ((uintptr_t)Py_TYPE(o) != c->a)
                return 0;
            if (c->b != 0 && !fp_plan_current((PyTypeObject *)c->a, c->b))
                return 0;
            break;
        case FPK_DICT:
            if (fp_dict_version(o) != c->b)
                return 0;
            break;
        case FPK_INST: {
            FP_GC_HOLD();
            PyObject *d = PyObject_GenericGetDict(o, NULL);
            FP_GC_RELEASE();
            if (d == NULL) {
                PyErr_Clear();
                return 0;
            }
            int same = (uintptr_t)d == c->a && fp_dict_version(d) == c->b;
            Py_DECREF(d);  /* the instance holds it */
            if (!same)
                return 0;
            break;
        }
        case FPK_SEQ:
            /* its type was checked just before: a list, a tuple or a named tuple */
            if (Py_SIZE(o) != (Py_ssize_t)c->a)
                return 0;
            items = PyList_Check(o) ? (PyObject *const *)((PyListObject *)o)->ob_item
                                    : (PyObject *const *)((PyTupleObject *)o)->ob_item;
            break;
        case FPK_ELEM:
            if (items[c->a] != o || (uint64_t)(uintptr_t)Py_TYPE(o) != c->b)
                return 0;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* The digest of one value as shape_of(value) sees it (a walk of its own, from a fixed start)
   in *out; FP_RETRY if Python code ran on the way (the caller walks its values again). */
#define FP_VALUE_SEED 0x5EEDF00DULL

static int
fp_value(Fp *out, PyObject *v)
{
    if (fp_code_shift < 0)
        fp_codes_setup();
    int code = fp_code(Py_TYPE(v));
    if (FPC_SCALAR(code)) {  /* its type alone: the word the walk would mix, twice */
        out->a = out->b = (1ULL << 3 | (uint64_t)code) | FP_PEND_TAG;
        return FP_OK;
    }
    FpWalk w;
    w.memo = fp_memo_on > 0 && fp_memo_alone();
    w.rec = w.memo;
    ValueMemo *m = NULL;
    if (w.rec) {
        m = fp_value_slot(v);
        if (m->root == v && fp_value_holds(m)) {
            *out = m->fp;
            fp_value_hits++;
            return FP_OK;
        }
    }
    w.fp.a = w.fp.b = FP_VALUE_SEED;
    w.pend = 1;
    w.budget = FP_MAX_NODES - 1;  /* the top value is the first node */
    w.depth_used = 0;
    w.nchecks = 0;
    int st = fp_describe(&w, v, code, 1);
    fp_flush(&w);
    *out = w.fp;
    if (st == FP_OK && w.rec) {
        m->root = v;
        m->fp = w.fp;
        m->nchecks = w.nchecks;
        memcpy(m->kinds, w.kinds, w.nchecks * sizeof *w.kinds);
        memcpy(m->checks, w.checks, w.nchecks * sizeof *w.checks);
    }
    else if (m != NULL && m->root == v)
        m->root = NULL;
    return st;
}

/* A call's values (or its one result) mixed into *acc, value by value. */
static inline int
fp_value_into(Fp *acc, PyObject *v)
{
    Fp d;
    int st = fp_value(&d, v);
    fp_mix(acc, d.a);
    fp_mix(acc, d.b);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Fingerprint -> shape id (a set-associative table; emptied with the other caches)
 *
 * FP_WAYS entries per set: a workload's fingerprints (a few hundred) would otherwise collide
 * in a direct-mapped table now and then, and two that collide and alternate (one function's
 * argument, another's result, once per request each) would evict each other on every call,
 * each miss describing the value afresh in Python. A set is filled in order and, when full,
 * its oldest entry gives way. */

typedef struct {
    uint64_t a, b;
    long long sid;    /* 0: empty */
} SidEntry;

#define FP_WAYS 4
#define FP_SETS 1024
static SidEntry fp_sids[FP_SETS][FP_WAYS];
static unsigned long long fp_hits, fp_misses, fp_refused;
static unsigned fp_epoch = 1;  /* advanced when the table is emptied (memos of it expire) */

static inline SidEntry *
fp_sid_set(const Fp *f)
{
    return fp_sids[(f->a ^ (f->a >> 29) ^ f->b) % FP_SETS];
}

static inline long long
fp_sid_get(const Fp *f)
{
    SidEntry *e = fp_sid_set(f);
    for (int i = 0; i < FP_WAYS && e[i].sid != 0; i++)
        if (e[i].a == f->a && e[i].b == f->b)
            return e[i].sid;
    return 0;
}

static inline void
fp_sid_put(const Fp *f, long long sid)
{
    SidEntry *e = fp_sid_set(f);
    int i = 0;
    while (i < FP_WAYS - 1 && e[i].sid != 0 && !(e[i].a == f->a && e[i].b == f->b))
        i++;
    if (e[i].sid != 0 && !(e[i].a == f->a && e[i].b == f->b)) {
        /* full: the oldest (first) entry gives way */
        memmove(&e[0], &e[1], (FP_WAYS - 1) * sizeof *e);
        i = FP_WAYS - 1;
    }
    e[i].a = f->a;
    e[i].b = f->b;
    e[i].sid = sid;
}

static void
fp_sids_clear(void)
{
    memset(fp_sids, 0, sizeof fp_sids);
    fp_epoch++;
}

#endif
