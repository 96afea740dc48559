/* cell.c - running one cell of user code in the embedded interpreter.
 *
 * Runs in the executor, inside the sandbox, with the GIL held. A cell is run
 * the way a notebook runs one: the source is parsed once, a trailing
 * expression statement is split off and evaluated so that its repr becomes
 * the cell's value, and everything executes in __main__.__dict__ so that
 * state persists from one cell to the next.
 *
 * Every Python object the machinery relies on (compile, the AST classes,
 * traceback formatting, io.BytesIO) is looked up once in ab_cell_init,
 * before any user code runs, so that a cell that rebinds builtins.compile or
 * monkeypatches the traceback module cannot break the bookkeeping of later
 * cells. User code is executed through the C API (PyEval_EvalCode), so no
 * frame of the executor's own appears in the user's tracebacks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cell.h"

/* The daemon refuses a result frame above the run's frame_max (at most
 * AB_FRAME_MAX_DEFAULT, 64 MiB) and kills the sandbox that sent one. Here
 * the result stays below the global cap whatever the user prints as a
 * value: a repr is cut at VALUE_MAX bytes and rich outputs stop being
 * attached once RICH_BUDGET bytes were; main.c then fits it into the run's
 * own frame_max. */
#define VALUE_MAX (1u << 20)
#define RICH_BUDGET (32u << 20)

/* Post-mortem frames (error.frames, docs/executor-protocol.md): bounded so
 * that a deep recursion or a cell full of large objects adds at most
 * FRAMES_JSON_MAX bytes to the result, and so that the daemon's stricter
 * per-field caps (run.c) never have to cut what a normal cell sends. */
#define FRAMES_MAX 16	      /* frames kept: the first FRAMES_HEAD and the innermost */
#define FRAMES_HEAD 4	      /* the cell's frame and the calls just below it */
#define LOCALS_MAX 50	      /* locals per frame, the first by name */
#define PM_REPR_MAX 200	      /* characters of one repr, "..." included */
#define PM_NAME_MAX 200	      /* characters of a function, file or type name */
#define PM_KEY_MAX 256	      /* bytes of a local's name; longer ones are omitted */
#define FRAMES_JSON_MAX (64u << 10)
/* Every repr is user code: after this much time in them, the remaining
 * locals are listed without one, so that a slow __repr__ cannot hold the
 * result back (a timed-out cell has only the grace period left). */
#define PM_REPR_BUDGET_MS 1000.0

static PyObject *main_dict;	      /* __main__.__dict__ (strong) */
static PyObject *compile_fn;	      /* the original builtins.compile */
static PyObject *ast_expr_type;	      /* _ast.Expr */
static PyObject *ast_expression_type; /* _ast.Expression */
static PyObject *format_exception_fn; /* traceback.format_exception */
static PyObject *linecache_mod;	      /* linecache */
static PyObject *bytesio_type;	      /* io.BytesIO */
static PyObject *pm_repr;	      /* bounded repr of post-mortem locals */
/* Returned (with a new reference) when not even a result object can be
 * allocated, so that ab_cell_run keeps its promise never to return NULL. */
static json_t *oom_result;

/* One run of ab_cell_run: the result being built. */
struct run {
	json_t *res;	   /* owned; handed to the caller at the end */
	json_t *results;   /* borrowed from res: the "results" array */
	size_t rich_bytes; /* bytes of rich output attached so far */
};

static const char *const env_defaults[][2] = {
    {"MPLBACKEND", "Agg"},
    {"OPENBLAS_NUM_THREADS", "1"},
    {"OMP_NUM_THREADS", "1"},
    {"MKL_NUM_THREADS", "1"},
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Takes the pending Python exception, normalised and with its traceback
 * attached, and returns it (a new reference), or NULL if none is pending. */
static PyObject *fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
	return PyErr_GetRaisedException();
#else
	PyObject *type, *value, *tb;

	PyErr_Fetch(&type, &value, &tb);
	if (!type)
		return NULL;
	PyErr_NormalizeException(&type, &value, &tb);
	if (value && tb)
		PyException_SetTraceback(value, tb);
	Py_XDECREF(type);
	Py_XDECREF(tb);
	return value;
#endif
}

/* Builds a JSON string from n bytes of valid UTF-8. Text longer than max
 * bytes is cut on a character boundary and marked, so that one enormous
 * repr cannot push the result frame past the supervisor's cap. */
static json_t *json_text(const char *p, size_t n, size_t max)
{
	char tail[80];
	size_t cut = max;
	json_t *j;
	char *buf;
	int tl;

	if (n <= max)
		return json_stringn_nocheck(p, n);
	while (cut > 0 && ((unsigned char)p[cut] & 0xC0) == 0x80)
		cut--;
	tl = snprintf(tail, sizeof(tail), "... [truncated: %zu bytes in all]", n);
	if (tl < 0 || (size_t)tl >= sizeof(tail))
		tl = 0;
	buf = malloc(cut + (size_t)tl);
	if (!buf)
		return NULL;
	memcpy(buf, p, cut);
	memcpy(buf + cut, tail, (size_t)tl);
	j = json_stringn_nocheck(buf, cut + (size_t)tl);
	free(buf);
	return j;
}

/* Converts a str to a JSON string (lone surrogates backslash-escaped, since
 * JSON text must be valid UTF-8). Returns NULL with a Python error set. */
static json_t *json_from_pystr(PyObject *s, size_t max)
{
	PyObject *b;
	json_t *j;

	b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
	if (!b)
		return NULL;
	j = json_text(PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), max);
	Py_DECREF(b);
	if (!j)
		PyErr_NoMemory();
	return j;
}

/* Names an exception type the way Python's own traceback display does: the
 * bare name for builtins and __main__, "module.QualName" otherwise (e.g.
 * "json.decoder.JSONDecodeError"). Returns a new str, or NULL. */
static PyObject *exc_type_name(PyObject *type)
{
	PyObject *mod, *qual, *out;

	qual = PyObject_GetAttrString(type, "__qualname__");
	if (!qual || !PyUnicode_Check(qual)) {
		PyErr_Clear();
		Py_XDECREF(qual);
		qual = PyUnicode_FromString(((PyTypeObject *)type)->tp_name);
		if (!qual)
			return NULL;
	}
	mod = PyObject_GetAttrString(type, "__module__");
	if (!mod || !PyUnicode_Check(mod) ||
	    PyUnicode_CompareWithASCIIString(mod, "builtins") == 0 ||
	    PyUnicode_CompareWithASCIIString(mod, "__main__") == 0) {
		PyErr_Clear();
		Py_XDECREF(mod);
		return qual;
	}
	out = PyUnicode_FromFormat("%U.%U", mod, qual);
	Py_DECREF(mod);
	Py_DECREF(qual);
	return out;
}

/* str(obj), falling back to a placeholder when str() itself raises (a user
 * exception class may define a broken __str__). Returns a new str or NULL
 * only when even the placeholder cannot be allocated. */
static PyObject *safe_str(PyObject *obj)
{
	PyObject *s = PyObject_Str(obj);

	if (s)
		return s;
	PyErr_Clear();
	return PyUnicode_FromString("<str() failed>");
}

/* Formats "Name: message" of exc into buf, for messages that end in C. */
static void describe_exception(PyObject *exc, char *buf, size_t len)
{
	PyObject *name = exc ? exc_type_name((PyObject *)Py_TYPE(exc)) : NULL;
	PyObject *msg = exc ? safe_str(exc) : NULL;
	const char *n = name ? PyUnicode_AsUTF8(name) : NULL;
	const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;

	PyErr_Clear();
	if (!exc)
		snprintf(buf, len, "failed without a Python exception");
	else if (m && *m)
		snprintf(buf, len, "%s: %s", n ? n : "?", m);
	else
		snprintf(buf, len, "%s", n ? n : "?");
	Py_XDECREF(name);
	Py_XDECREF(msg);
}

/* Turns the pending Python exception into an ab_error about `what`. */
static int py_fail(ab_error *err, const char *what)
{
	PyObject *exc = fetch_exception();
	char desc[400];
	int code = -EIO;

	if (exc && PyErr_GivenExceptionMatches(exc, PyExc_ImportError))
		code = -ENOENT;
	else if (exc && PyErr_GivenExceptionMatches(exc, PyExc_MemoryError))
		code = -ENOMEM;
	describe_exception(exc, desc, sizeof(desc));
	Py_XDECREF(exc);
	return ab_error_set(err, code, "%s: %s", what, desc);
}

/* Base64 of n bytes, as a JSON string. */
static json_t *json_base64(const unsigned char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t outlen = (n + 2) / 3 * 4, i, o = 0;
	char *out = malloc(outlen + 1);
	json_t *j;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	j = json_stringn_nocheck(out, o);
	free(out);
	return j;
}

/* Writes text to sys.stderr as Python itself would print an uncaught
 * exception, falling back to the C stream when the user removed or broke
 * sys.stderr. Never leaves a Python exception pending. */
static void write_stderr(PyObject *text)
{
	PyObject *f = PySys_GetObject("stderr"); /* borrowed */

	if (f && f != Py_None && PyFile_WriteObject(text, f, Py_PRINT_RAW) == 0)
		return;
	PyErr_Clear();
	const char *s = PyUnicode_AsUTF8(text);
	if (s)
		fputs(s, stderr);
	PyErr_Clear();
}

static void flush_stream(const char *name)
{
	PyObject *f = PySys_GetObject(name); /* borrowed */
	PyObject *r;

	if (!f || f == Py_None)
		return;
	r = PyObject_CallMethod(f, "flush", NULL);
	if (!r)
		PyErr_Clear();
	Py_XDECREF(r);
}

/* Makes every byte the cell wrote reach its pipe before the result frame is
 * sent, so that the supervisor sees output before the result. */
static void flush_streams(void)
{
	flush_stream("stdout");
	flush_stream("stderr");
	flush_stream("__stdout__");
	flush_stream("__stderr__");
	fflush(NULL);
}

static void set_error(struct run *r, int exit_code, json_t *name, json_t *value, json_t *traceback)
{
	json_t *e = json_object();

	json_object_set_new(r->res, "status", json_string("error"));
	json_object_set_new(r->res, "exit_code", json_integer(exit_code));
	if (!e) {
		json_decref(name);
		json_decref(value);
		json_decref(traceback);
		return;
	}
	json_object_set_new(e, "name", name ? name : json_string("?"));
	json_object_set_new(e, "value", value ? value : json_string(""));
	json_object_set_new(e, "traceback", traceback ? traceback : json_string(""));
	/* Filled in by report_exception when the exception has frames. */
	json_object_set_new(e, "frames", json_array());
	json_object_set_new(r->res, "error", e);
}

/* Reports a failure of the executor's own machinery (not of the user's
 * code) that left no Python exception to report instead. */
static void internal_error(struct run *r, const char *what)
{
	PyObject *exc = fetch_exception();
	char desc[400], msg[512];

	describe_exception(exc, desc, sizeof(desc));
	Py_XDECREF(exc);
	snprintf(msg, sizeof(msg), "%s: %s", what, desc);
	set_error(r, 1, json_string("AgentboxInternalError"), json_string(msg), json_string(""));
}

/* A SyntaxError raised by the compiler working from an AST (rather than from
 * source) has no text, because the compiler looks for the source in a file
 * named like the cell. Fill it in from the cell so the caret line shows. */
static void fill_syntax_text(PyObject *exc, PyObject *lines)
{
	PyObject *text, *lineno;
	Py_ssize_t n;

	if (!lines || !PyErr_GivenExceptionMatches(exc, PyExc_SyntaxError))
		return;
	text = PyObject_GetAttrString(exc, "text");
	lineno = PyObject_GetAttrString(exc, "lineno");
	if (text && text == Py_None && lineno && PyLong_Check(lineno)) {
		n = PyLong_AsSsize_t(lineno);
		if (n >= 1 && n <= PyList_GET_SIZE(lines))
			PyObject_SetAttrString(exc, "text", PyList_GET_ITEM(lines, n - 1));
	}
	Py_XDECREF(text);
	Py_XDECREF(lineno);
	PyErr_Clear();
}

/* SystemExit ends the cell, not the session: None and 0 are a clean exit,
 * an int is the exit code, anything else is printed to stderr and gives 1,
 * exactly as the interpreter would treat it at the end of a script. */
static void report_system_exit(struct run *r, PyObject *exc)
{
	PyObject *code = PyObject_GetAttrString(exc, "code");
	long long n;

	if (!code) {
		PyErr_Clear();
		code = Py_NewRef(Py_None);
	}
	if (code == Py_None) {
		Py_DECREF(code);
		return;
	}
	if (PyLong_Check(code)) {
		n = PyLong_AsLongLong(code);
		if (!(n == -1 && PyErr_Occurred())) {
			Py_DECREF(code);
			if (n == 0)
				return;
			char buf[32];
			snprintf(buf, sizeof(buf), "%lld", n);
			set_error(r, n > INT_MAX || n < INT_MIN ? 1 : (int)n,
				  json_string("SystemExit"), json_string(buf), json_string(""));
			return;
		}
		PyErr_Clear();
	}
	PyObject *s = safe_str(code), *line = NULL;
	Py_DECREF(code);
	if (s) {
		line = PyUnicode_FromFormat("%U\n", s);
		if (line)
			write_stderr(line);
	}
	PyErr_Clear();
	set_error(r, 1, json_string("SystemExit"), s ? json_from_pystr(s, VALUE_MAX) : NULL,
		  json_string(""));
	PyErr_Clear();
	Py_XDECREF(s);
	Py_XDECREF(line);
}

/* ------------------------------------------------------ post-mortem frames
 *
 * error.frames: the frames of the exception's traceback from the cell's
 * frame inwards, each with its locals as the traceback holds them, i.e. as
 * they were when the exception left that frame. Everything here runs after
 * the exception was fetched and its texts were made, and clears whatever a
 * repr raises: a broken __repr__ costs one local's text, never the error or
 * the status of the run. */

struct pm {
	double deadline;  /* now_ms() after which no more reprs are run */
	bool interrupted; /* a repr was interrupted (a timeout's SIGINT) */
};

/* The qualified name of a type ("int", "numpy.ndarray", "Point" for a class
 * the cell defined), read from the type object itself rather than through
 * getattr, which a metaclass could make run user code. Returns a new str,
 * or NULL with a Python error set. */
static PyObject *type_qualname(PyTypeObject *t)
{
	const char *dot = strrchr(t->tp_name, '.');
	PyObject *qual, *mod = NULL, *out;

#if PY_VERSION_HEX >= 0x030B0000
	qual = PyType_GetQualName(t);
#else
	qual = PyUnicode_FromString(dot ? dot + 1 : t->tp_name);
#endif
	if (!qual)
		return NULL;
	if (t->tp_flags & Py_TPFLAGS_HEAPTYPE) {
		/* A class statement stores __module__ in the class's dict. */
		mod = t->tp_dict ? PyDict_GetItemString(t->tp_dict, "__module__") : NULL;
		Py_XINCREF(mod);
	} else if (dot) {
		mod = PyUnicode_FromStringAndSize(t->tp_name, dot - t->tp_name);
	}
	PyErr_Clear();
	if (!mod || !PyUnicode_Check(mod) ||
	    PyUnicode_CompareWithASCIIString(mod, "builtins") == 0 ||
	    PyUnicode_CompareWithASCIIString(mod, "__main__") == 0) {
		Py_XDECREF(mod);
		return qual;
	}
	out = PyUnicode_FromFormat("%U.%U", mod, qual);
	Py_DECREF(mod);
	Py_DECREF(qual);
	return out;
}

/* s (borrowed; NULL gives NULL) as a JSON string of at most max characters,
 * the last three "..." when it was cut. Never leaves a Python error. */
static json_t *pm_text(PyObject *s, Py_ssize_t max)
{
	PyObject *cut = NULL;
	json_t *j = NULL;

	if (!s || !PyUnicode_Check(s))
		goto out;
	if (PyUnicode_GetLength(s) > max) {
		PyObject *head = PyUnicode_Substring(s, 0, max - 3);
		cut = head ? PyUnicode_FromFormat("%U...", head) : NULL;
		Py_XDECREF(head);
		s = cut;
	}
	if (s)
		j = json_from_pystr(s, VALUE_MAX);
out:
	Py_XDECREF(cut);
	PyErr_Clear();
	return j;
}

/* The bounded repr of one local, or why there is none. */
static json_t *local_repr(PyObject *v, struct pm *pm)
{
	PyObject *s, *exc, *name;
	json_t *j;

	if (pm->interrupted)
		return json_string("<repr skipped: an earlier repr was interrupted>");
	if (now_ms() > pm->deadline)
		return json_string("<repr skipped: the time for reprs was spent>");
	s = PyObject_CallOneArg(pm_repr, v);
	if (s && PyUnicode_Check(s)) {
		j = pm_text(s, PM_REPR_MAX);
		Py_DECREF(s);
		return j ? j : json_string("<repr failed: MemoryError>");
	}
	if (s) {
		Py_DECREF(s);
		PyErr_SetString(PyExc_TypeError, "repr did not return a str");
	}
	exc = fetch_exception();
	/* A timeout's SIGINT meant for the cell arrived during a repr: the
	 * daemon's grace period is running, so run no more user code. */
	if (!exc || PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt))
		pm->interrupted = true;
	name = exc ? type_qualname(Py_TYPE(exc)) : NULL;
	PyErr_Clear();
	s = name ? PyUnicode_FromFormat("<repr failed: %U>", name) : NULL;
	j = pm_text(s, PM_REPR_MAX);
	Py_XDECREF(s);
	Py_XDECREF(name);
	Py_XDECREF(exc);
	return j ? j : json_string("<repr failed>");
}

/* True for a name such as __builtins__ or __name__ (or __agentbox_env):
 * the machinery of a module's namespace, not the user's variables. */
static bool is_dunder(PyObject *name)
{
	return PyUnicode_GetLength(name) >= 2 && PyUnicode_ReadChar(name, 0) == '_' &&
	       PyUnicode_ReadChar(name, 1) == '_';
}

/* The locals of frame as {name: {"type", "repr"}}, the first LOCALS_MAX by
 * name; *omitted counts the others. A module-level frame's locals are its
 * globals (the cell's frame: the session's), shown without dunder names.
 * Returns a new object, or NULL when out of memory. */
static json_t *frame_locals(PyObject *frame, struct pm *pm, json_int_t *omitted)
{
	PyObject *locals, *globals, *snap = NULL, *names = NULL, *key, *val;
	json_t *out = json_object();
	Py_ssize_t pos = 0, n, i, len;
	bool module_level;

	*omitted = 0;
	locals = PyObject_GetAttrString(frame, "f_locals");
	globals = PyObject_GetAttrString(frame, "f_globals");
	if (!out || !locals)
		goto out;
	module_level = locals == globals;
	/* A private copy: the reprs below are user code and may change the
	 * namespace they are read from. */
	snap = PyDict_New();
	names = PyList_New(0);
	if (!snap || !names || PyDict_Merge(snap, locals, 1) < 0)
		goto out;
	while (PyDict_Next(snap, &pos, &key, &val)) {
		const char *k;

		if (PyUnicode_CheckExact(key) && module_level && is_dunder(key))
			continue;
		k = PyUnicode_CheckExact(key) ? PyUnicode_AsUTF8AndSize(key, &len) : NULL;
		/* Names that are not plain text (globals()[1] = ..., a lone
		 * surrogate, a NUL) or absurdly long are counted, not shown. */
		if (!k || len > PM_KEY_MAX || strlen(k) != (size_t)len) {
			PyErr_Clear();
			(*omitted)++;
			continue;
		}
		if (PyList_Append(names, key) < 0)
			goto out;
	}
	if (PyList_Sort(names) < 0)
		goto out;
	n = PyList_GET_SIZE(names);
	for (i = 0; i < n && i < LOCALS_MAX; i++) {
		PyObject *tname;
		json_t *entry;

		key = PyList_GET_ITEM(names, i);
		val = PyDict_GetItemWithError(snap, key);
		if (!val) {
			PyErr_Clear();
			continue;
		}
		Py_INCREF(val);
		tname = type_qualname(Py_TYPE(val));
		entry = json_object();
		if (entry) {
			json_t *t = pm_text(tname, PM_NAME_MAX);
			json_object_set_new(entry, "type", t ? t : json_string("?"));
			json_object_set_new(entry, "repr", local_repr(val, pm));
			json_object_set_new(out, PyUnicode_AsUTF8(key), entry);
		}
		Py_XDECREF(tname);
		Py_DECREF(val);
		PyErr_Clear();
	}
	if (n > LOCALS_MAX)
		*omitted += n - LOCALS_MAX;
out:
	PyErr_Clear();
	Py_XDECREF(locals);
	Py_XDECREF(globals);
	Py_XDECREF(snap);
	Py_XDECREF(names);
	return out;
}

/* One traceback entry as {"function", "file", "line", "locals"}. */
static json_t *tb_entry(PyObject *tb, struct pm *pm)
{
	PyObject *frame = PyObject_GetAttrString(tb, "tb_frame");
	PyObject *lineno = PyObject_GetAttrString(tb, "tb_lineno");
	PyObject *code = frame ? PyObject_GetAttrString(frame, "f_code") : NULL;
	PyObject *func = code ? PyObject_GetAttrString(code, "co_name") : NULL;
	PyObject *file = code ? PyObject_GetAttrString(code, "co_filename") : NULL;
	long line = lineno && PyLong_Check(lineno) ? PyLong_AsLong(lineno) : 0;
	json_int_t omitted = 0;
	json_t *e = json_object(), *f, *fl, *locals;

	PyErr_Clear();
	if (line < 0)
		line = 0; /* unknown */
	f = pm_text(func, PM_NAME_MAX);
	fl = pm_text(file, PM_NAME_MAX);
	locals = frame ? frame_locals(frame, pm, &omitted) : json_object();
	if (e) {
		json_object_set_new(e, "function", f ? f : json_string("?"));
		json_object_set_new(e, "file", fl ? fl : json_string("?"));
		json_object_set_new(e, "line", json_integer(line));
		json_object_set_new(e, "locals", locals ? locals : json_object());
		if (omitted > 0)
			json_object_set_new(e, "locals_omitted", json_integer(omitted));
	} else {
		json_decref(f);
		json_decref(fl);
		json_decref(locals);
	}
	Py_XDECREF(frame);
	Py_XDECREF(lineno);
	Py_XDECREF(code);
	Py_XDECREF(func);
	Py_XDECREF(file);
	PyErr_Clear();
	return e;
}

static size_t json_size(json_t *j)
{
	return json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENSURE_ASCII);
}

/* The frames of exc's traceback from the cell's own frame (its code's file
 * name is the cell's, fname) inwards, outermost first, as error.frames:
 * with more than FRAMES_MAX, the first FRAMES_HEAD and the innermost rest,
 * *frames_omitted counting those left out between. Returns a new array
 * (empty for an exception without frames, e.g. a SyntaxError of the cell),
 * or NULL when out of memory. */
static json_t *exception_frames(PyObject *exc, PyObject *fname, json_int_t *frames_omitted)
{
	struct pm pm = {.deadline = now_ms() + PM_REPR_BUDGET_MS};
	PyObject *tbs = PyList_New(0), *t = PyException_GetTraceback(exc);
	json_t *out = json_array(), *slot[FRAMES_MAX] = {0};
	Py_ssize_t n, keep, k;
	bool started = false;

	*frames_omitted = 0;
	if (!tbs || !out)
		goto out;
	while (t && PyTraceBack_Check(t)) {
		PyObject *next;

		if (!started) {
			PyObject *frame = PyObject_GetAttrString(t, "tb_frame");
			PyObject *code = frame ? PyObject_GetAttrString(frame, "f_code") : NULL;
			PyObject *file = code ? PyObject_GetAttrString(code, "co_filename") : NULL;
			started = file && PyUnicode_Check(file) && PyUnicode_Compare(file, fname) == 0;
			Py_XDECREF(frame);
			Py_XDECREF(code);
			Py_XDECREF(file);
			PyErr_Clear();
		}
		if (started && PyList_Append(tbs, t) < 0)
			goto out;
		next = PyObject_GetAttrString(t, "tb_next");
		Py_DECREF(t);
		t = next;
	}
	n = PyList_GET_SIZE(tbs);
	keep = n > FRAMES_MAX ? FRAMES_MAX : n;
	*frames_omitted = n - keep;
	/* Innermost first: if the time for reprs runs out, it is the outer
	 * frames that go without. */
	for (k = keep - 1; k >= 0; k--) {
		Py_ssize_t i = n <= FRAMES_MAX || k < FRAMES_HEAD ? k : n - (keep - k);
		slot[k] = tb_entry(PyList_GET_ITEM(tbs, i), &pm);
	}
	for (k = 0; k < keep; k++)
		if (slot[k])
			json_array_append_new(out, slot[k]);
	/* Over the budget: the locals of the outer frames go first, then (only
	 * with absurd file names) the frames themselves. */
	for (k = 0; k < keep && json_size(out) > FRAMES_JSON_MAX; k++) {
		json_t *f = json_array_get(out, (size_t)k);
		json_int_t lo = json_integer_value(json_object_get(f, "locals_omitted")) +
				(json_int_t)json_object_size(json_object_get(f, "locals"));
		json_object_set_new(f, "locals", json_object());
		if (lo > 0)
			json_object_set_new(f, "locals_omitted", json_integer(lo));
	}
	if (json_size(out) > FRAMES_JSON_MAX) {
		*frames_omitted += (json_int_t)json_array_size(out);
		json_array_clear(out);
	}
out:
	Py_XDECREF(t);
	Py_XDECREF(tbs);
	PyErr_Clear();
	return out;
}

/* Sets error.frames (and error.frames_omitted) of the result from exc. */
static void add_frames(struct run *r, PyObject *exc, PyObject *fname)
{
	json_int_t omitted = 0;
	json_t *frames = exception_frames(exc, fname, &omitted);
	json_t *e = json_object_get(r->res, "error");

	if (!frames || !json_is_object(e)) {
		json_decref(frames);
		return;
	}
	json_object_set_new(e, "frames", frames);
	if (omitted > 0)
		json_object_set_new(e, "frames_omitted", json_integer(omitted));
}

/* Reports the pending exception as the cell's error: name, str() and the
 * formatted traceback (which is also printed to sys.stderr, where users
 * expect to see it), and the frames of its traceback with their locals. */
static void report_exception(struct run *r, PyObject *fname, PyObject *lines)
{
	PyObject *exc = fetch_exception();
	PyObject *name = NULL, *value = NULL, *tb = NULL, *parts;
	json_t *jname, *jvalue, *jtb = NULL;

	if (!exc) {
		internal_error(r, "run cell");
		return;
	}
	if (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit)) {
		report_system_exit(r, exc);
		Py_DECREF(exc);
		return;
	}
	fill_syntax_text(exc, lines);

	name = exc_type_name((PyObject *)Py_TYPE(exc));
	value = safe_str(exc);
	parts = PyObject_CallOneArg(format_exception_fn, exc);
	if (parts) {
		PyObject *empty = PyUnicode_FromString("");
		if (empty)
			tb = PyUnicode_Join(empty, parts);
		Py_XDECREF(empty);
		Py_DECREF(parts);
	}
	if (!tb) {
		/* Formatting can fail (a broken __str__, a recursion limit the
		 * user lowered, a SIGINT arriving now): still say what failed. */
		PyErr_Clear();
		tb = PyUnicode_FromFormat("%S: %S\n", name ? name : Py_None,
					  value ? value : Py_None);
		PyErr_Clear();
	}
	if (tb)
		write_stderr(tb);

	jname = name ? json_from_pystr(name, VALUE_MAX) : NULL;
	PyErr_Clear();
	jvalue = value ? json_from_pystr(value, VALUE_MAX) : NULL;
	PyErr_Clear();
	if (tb)
		jtb = json_from_pystr(tb, 4 * VALUE_MAX);
	PyErr_Clear();
	set_error(r, 1, jname, jvalue, jtb);
	add_frames(r, exc, fname);
	Py_XDECREF(name);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	Py_DECREF(exc);
}

/* Appends a rich output entry unless the result is already as large as it
 * may grow; the entry then shrinks to a text/plain note. Takes entry. */
static void add_result(struct run *r, json_t *entry, size_t bytes)
{
	if (!entry)
		return;
	if (r->rich_bytes + bytes > RICH_BUDGET) {
		json_decref(entry);
		entry =
		    json_pack("{s:s}", "text/plain",
			      "<output omitted: the cell's rich outputs exceed the size limit>");
		bytes = 0;
	}
	r->rich_bytes += bytes;
	json_array_append_new(r->results, entry);
}

/* Calls obj.<method>() if obj has such a method; returns the result or NULL
 * (never with an exception pending: a broken formatter is not the cell's
 * error, the plain repr is still there). */
static PyObject *call_formatter(PyObject *obj, const char *method)
{
	PyObject *m = PyObject_GetAttrString(obj, method), *out = NULL;

	if (m && PyCallable_Check(m))
		out = PyObject_CallNoArgs(m);
	Py_XDECREF(m);
	PyErr_Clear();
	if (out == Py_None)
		Py_CLEAR(out);
	return out;
}

/* Adds text/html and image/png of the cell's value when the object knows how
 * to render itself (pandas DataFrame/Series/Styler, IPython-style objects). */
static void add_rich_value(struct run *r, PyObject *obj, json_t *plain)
{
	PyObject *html, *png;
	json_t *entry;
	size_t bytes = json_string_length(plain);
	bool any = false;

	/* A class has the formatter as an unbound function, not as a way to
	 * show itself. */
	if (PyType_Check(obj))
		return;
	entry = json_pack("{s:O}", "text/plain", plain);
	if (!entry)
		return;
	html = call_formatter(obj, "_repr_html_");
	if (html && PyUnicode_Check(html)) {
		json_t *j = json_from_pystr(html, RICH_BUDGET);
		PyErr_Clear();
		if (j) {
			bytes += json_string_length(j);
			any = json_object_set_new(entry, "text/html", j) == 0;
		}
	}
	Py_XDECREF(html);
	png = call_formatter(obj, "_repr_png_");
	if (png && PyBytes_Check(png)) {
		json_t *j = json_base64((const unsigned char *)PyBytes_AS_STRING(png),
					(size_t)PyBytes_GET_SIZE(png));
		if (j) {
			bytes += json_string_length(j);
			any = json_object_set_new(entry, "image/png", j) == 0 || any;
		}
	} else if (png && PyUnicode_Check(png)) {
		/* Already base64, as IPython allows. */
		json_t *j = json_from_pystr(png, RICH_BUDGET);
		PyErr_Clear();
		if (j) {
			bytes += json_string_length(j);
			any = json_object_set_new(entry, "image/png", j) == 0 || any;
		}
	}
	Py_XDECREF(png);
	if (any)
		add_result(r, entry, bytes);
	else
		json_decref(entry);
}

/* Records the value of the cell's trailing expression like the REPL does:
 * its repr becomes "value", and it is bound to _ in __main__. */
static void report_value(struct run *r, PyObject *obj)
{
	PyObject *s;
	json_t *plain;

	if (obj == Py_None)
		return;
	if (PyDict_SetItemString(main_dict, "_", obj) < 0)
		PyErr_Clear();
	s = PyObject_Repr(obj);
	if (!s) {
		PyObject *exc = fetch_exception();
		char desc[400];
		describe_exception(exc, desc, sizeof(desc));
		Py_XDECREF(exc);
		s = PyUnicode_FromFormat("<repr failed: %s>", desc);
		if (!s) {
			PyErr_Clear();
			return;
		}
	}
	plain = json_from_pystr(s, VALUE_MAX);
	Py_DECREF(s);
	if (!plain) {
		PyErr_Clear();
		return;
	}
	json_object_set(r->res, "value", plain);
	add_rich_value(r, obj, plain);
	json_decref(plain);
}

/* compile(node, filename, mode, 0, True) with the compile saved at init;
 * dont_inherit because the cell's own __future__ imports are what count. */
static PyObject *compile_ast(PyObject *node, PyObject *fname, const char *mode)
{
	return PyObject_CallFunction(compile_fn, "OOsii", node, fname, mode, 0, 1);
}

/* Parses, compiles and executes the cell; on an exception fills the error.
 * Both halves are compiled before either runs, so that a cell that does not
 * compile has no side effects, as with the plain interpreter. */
static void execute(struct run *r, const char *code, PyObject *fname, PyObject *lines)
{
	PyCompilerFlags flags = {
	    .cf_flags = PyCF_ONLY_AST | PyCF_IGNORE_COOKIE,
	    .cf_feature_version = PY_MINOR_VERSION,
	};
	PyObject *tree, *body = NULL, *expr = NULL, *exec_code = NULL, *eval_code = NULL, *ret;
	Py_ssize_t n;

	/* Parsing through the C API rather than ast.parse keeps the ast
	 * module's frames out of a SyntaxError's traceback. */
	tree = Py_CompileStringObject(code, fname, Py_file_input, &flags, -1);
	if (!tree)
		goto fail;
	body = PyObject_GetAttrString(tree, "body");
	if (!body)
		goto fail;
	if (!PyList_Check(body)) {
		internal_error(r, "parse cell: module body is not a list");
		goto out;
	}
	n = PyList_GET_SIZE(body);
	if (n > 0) {
		PyObject *last = PyList_GET_ITEM(body, n - 1);
		int is_expr = PyObject_IsInstance(last, ast_expr_type);

		if (is_expr < 0)
			goto fail;
		if (is_expr) {
			PyObject *v = PyObject_GetAttrString(last, "value");
			if (!v)
				goto fail;
			/* The expression node keeps the locations it was
			 * parsed with; Expression itself has none. */
			expr = PyObject_CallOneArg(ast_expression_type, v);
			Py_DECREF(v);
			if (!expr || PySequence_DelItem(body, n - 1) < 0)
				goto fail;
			n--;
		}
	}
	if (n > 0 || !expr) {
		exec_code = compile_ast(tree, fname, "exec");
		if (!exec_code)
			goto fail;
	}
	if (expr) {
		eval_code = compile_ast(expr, fname, "eval");
		if (!eval_code)
			goto fail;
	}
	if (exec_code) {
		ret = PyEval_EvalCode(exec_code, main_dict, main_dict);
		if (!ret)
			goto fail;
		Py_DECREF(ret);
	}
	if (eval_code) {
		ret = PyEval_EvalCode(eval_code, main_dict, main_dict);
		if (!ret)
			goto fail;
		report_value(r, ret);
		Py_DECREF(ret);
	}
	goto out;
fail:
	report_exception(r, fname, lines);
out:
	Py_XDECREF(tree);
	Py_XDECREF(body);
	Py_XDECREF(expr);
	Py_XDECREF(exec_code);
	Py_XDECREF(eval_code);
}

/* Registers the cell's source with linecache, as IPython does, so that
 * tracebacks and warnings show the user's lines. Returns the list of lines
 * (a new reference) or NULL; failure only costs the source lines. */
static PyObject *register_source(const char *code, PyObject *fname)
{
	PyObject *src, *lines = NULL, *cache = NULL, *entry = NULL;
	Py_ssize_t n;

	src = PyUnicode_DecodeUTF8(code, (Py_ssize_t)strlen(code), "replace");
	if (!src)
		goto out;
	lines = PyUnicode_Splitlines(src, 1);
	if (!lines)
		goto out;
	/* linecache's own loader ends the last line with a newline too. */
	n = PyList_GET_SIZE(lines);
	if (n > 0) {
		PyObject *lastl = PyList_GET_ITEM(lines, n - 1);
		Py_ssize_t len = PyUnicode_GET_LENGTH(lastl);
		if (len == 0 || PyUnicode_READ_CHAR(lastl, len - 1) != '\n') {
			PyObject *fixed = PyUnicode_FromFormat("%U\n", lastl);
			if (!fixed || PyList_SetItem(lines, n - 1, fixed) < 0)
				goto out;
		}
	}
	cache = PyObject_GetAttrString(linecache_mod, "cache");
	entry = Py_BuildValue("(nOOO)", PyUnicode_GET_LENGTH(src), Py_None, lines, fname);
	if (!cache || !entry || PyObject_SetItem(cache, fname, entry) < 0)
		goto out;
	Py_DECREF(src);
	Py_DECREF(cache);
	Py_DECREF(entry);
	return lines;
out:
	PyErr_Clear();
	Py_XDECREF(src);
	Py_XDECREF(cache);
	Py_XDECREF(entry);
	Py_XDECREF(lines);
	return NULL;
}

/* Renders one open figure to a result entry: PNG if savefig works, else a
 * text/plain line that says why (never an error of the cell). */
static void render_figure(struct run *r, PyObject *plt, PyObject *num)
{
	PyObject *fig = NULL, *buf = NULL, *savefig = NULL, *args = NULL, *kw = NULL, *ret = NULL,
		 *data = NULL, *rep = NULL;
	json_t *entry = NULL, *b64, *plain;
	char desc[400], msg[512];

	fig = PyObject_CallMethod(plt, "figure", "O", num);
	if (!fig)
		goto fail;
	rep = PyObject_Repr(fig);
	buf = PyObject_CallNoArgs(bytesio_type);
	savefig = PyObject_GetAttrString(fig, "savefig");
	kw = Py_BuildValue("{s:s,s:s}", "format", "png", "bbox_inches", "tight");
	args = buf ? PyTuple_Pack(1, buf) : NULL;
	if (!rep || !savefig || !kw || !args)
		goto fail;
	ret = PyObject_Call(savefig, args, kw);
	if (!ret)
		goto fail;
	data = PyObject_CallMethod(buf, "getvalue", NULL);
	if (!data || !PyBytes_Check(data))
		goto fail;
	plain = json_from_pystr(rep, VALUE_MAX);
	b64 = json_base64((const unsigned char *)PyBytes_AS_STRING(data),
			  (size_t)PyBytes_GET_SIZE(data));
	if (plain && b64)
		entry = json_pack("{s:O,s:O}", "text/plain", plain, "image/png", b64);
	if (entry)
		add_result(r, entry, json_string_length(b64));
	json_decref(plain);
	json_decref(b64);
	PyErr_Clear();
	goto out;
fail : {
	PyObject *exc = fetch_exception();
	describe_exception(exc, desc, sizeof(desc));
	Py_XDECREF(exc);
	PyObject *ns = PyObject_Str(num);
	const char *nc = ns ? PyUnicode_AsUTF8(ns) : NULL;
	PyErr_Clear();
	snprintf(msg, sizeof(msg), "<figure %s could not be rendered: %s>", nc ? nc : "?", desc);
	Py_XDECREF(ns);
	add_result(r, json_pack("{s:s}", "text/plain", msg), 0);
}
out:
	Py_XDECREF(fig);
	Py_XDECREF(buf);
	Py_XDECREF(savefig);
	Py_XDECREF(args);
	Py_XDECREF(kw);
	Py_XDECREF(ret);
	Py_XDECREF(data);
	Py_XDECREF(rep);
}

/* Every matplotlib figure still open at the end of the cell becomes an
 * image/png result and is closed, like the inline backend of a notebook.
 * Only looks when the user imported pyplot: never imports it. */
static void render_figures(struct run *r)
{
	PyObject *modules = PySys_GetObject("modules"); /* borrowed */
	PyObject *plt, *nums, *ret;
	Py_ssize_t i;

	if (!modules || !PyDict_Check(modules))
		return;
	plt = PyDict_GetItemString(modules, "matplotlib.pyplot"); /* borrowed */
	if (!plt || plt == Py_None)
		return;
	Py_INCREF(plt);
	nums = PyObject_CallMethod(plt, "get_fignums", NULL);
	if (nums && PyList_Check(nums)) {
		for (i = 0; i < PyList_GET_SIZE(nums); i++)
			render_figure(r, plt, PyList_GET_ITEM(nums, i));
	} else {
		char desc[400], msg[512];
		PyObject *exc = fetch_exception();
		describe_exception(exc, desc, sizeof(desc));
		Py_XDECREF(exc);
		snprintf(msg, sizeof(msg), "<figures could not be listed: %s>", desc);
		add_result(r, json_pack("{s:s}", "text/plain", msg), 0);
	}
	Py_XDECREF(nums);
	ret = PyObject_CallMethod(plt, "close", "s", "all");
	Py_XDECREF(ret);
	PyErr_Clear();
	Py_DECREF(plt);
}

static json_t *oom(void)
{
	/* Only reached when jansson cannot allocate a small object; the
	 * preallocated result keeps the "never NULL" promise. */
	if (!oom_result)
		abort();
	return json_incref(oom_result);
}

static int import_attr(const char *module, const char *attr, PyObject **out, ab_error *err)
{
	char what[128];
	PyObject *m = PyImport_ImportModule(module);

	if (m) {
		*out = PyObject_GetAttrString(m, attr);
		Py_DECREF(m);
		if (*out)
			return 0;
	}
	snprintf(what, sizeof(what), "cell init: %s.%s", module, attr);
	return py_fail(err, what);
}

/* os.environ is a snapshot taken when os was imported (during interpreter
 * start-up), so the defaults go to both the C environment, for libraries
 * loaded later (OpenBLAS reads it when numpy loads), and os.environ. */
static int set_env_default(const char *key, const char *value, ab_error *err)
{
	PyObject *os, *environ_ = NULL, *r = NULL;
	char what[128];

	if (setenv(key, value, 0) < 0)
		return ab_error_errno(err, -errno, "cell init: setenv %s", key);
	os = PyImport_ImportModule("os");
	if (os)
		environ_ = PyObject_GetAttrString(os, "environ");
	if (environ_)
		r = PyObject_CallMethod(environ_, "setdefault", "ss", key, value);
	Py_XDECREF(os);
	Py_XDECREF(environ_);
	if (r) {
		Py_DECREF(r);
		return 0;
	}
	snprintf(what, sizeof(what), "cell init: os.environ[%s]", key);
	return py_fail(err, what);
}

/* The repr of post-mortem locals: reprlib's, which looks at no more than a
 * bounded part of a str, bytes or builtin container (a list of ten million
 * items is not formatted whole to keep 200 characters of it), but which
 * lets a failing __repr__ raise rather than replacing it with a
 * placeholder, so that the error says what failed. Made before any user
 * code runs, like the rest of the machinery, with reprlib's methods copied
 * into the class so that a cell patching reprlib.Repr does not reach it. */
static const char pm_repr_py[] =
    "import reprlib\n"
    "class PostMortemRepr(reprlib.Repr):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.maxlevel = 3\n"
    "        self.maxstring = self.maxother = self.maxlong = 400\n"
    "        self.maxlist = self.maxtuple = self.maxset = 30\n"
    "        self.maxfrozenset = self.maxdeque = self.maxarray = 30\n"
    "        self.maxdict = 15\n"
    "    def repr_instance(self, x, level, _repr=repr):\n"
    "        return _repr(x)\n"
    "for k, v in vars(reprlib.Repr).items():\n"
    "    if not k.startswith('__') and k not in vars(PostMortemRepr):\n"
    "        setattr(PostMortemRepr, k, v)\n"
    "r = PostMortemRepr().repr\n";

static int init_pm_repr(ab_error *err)
{
	PyObject *ns = PyDict_New(), *builtins = PyImport_ImportModule("builtins"), *ret = NULL;

	if (ns && builtins && PyDict_SetItemString(ns, "__builtins__", builtins) == 0)
		ret = PyRun_String(pm_repr_py, Py_file_input, ns, ns);
	if (ret)
		pm_repr = Py_XNewRef(PyDict_GetItemString(ns, "r"));
	Py_XDECREF(ret);
	Py_XDECREF(builtins);
	Py_XDECREF(ns);
	if (!pm_repr)
		return py_fail(err, "cell init: the repr of post-mortem locals");
	return 0;
}

int ab_cell_init(ab_error *err)
{
	PyObject *main_mod, *builtins, *argv;
	size_t i;
	int rc;

	if (main_dict)
		return 0;
	if (!oom_result) {
		oom_result = json_pack("{s:s,s:i,s:{s:s,s:s,s:s},s:n,s:[],s:f}", "status", "error",
				       "exit_code", 1, "error", "name", "AgentboxInternalError",
				       "value", "out of memory building the result", "traceback",
				       "", "value", "results", "duration_ms", 0.0);
		if (!oom_result)
			return ab_error_set(err, -ENOMEM, "cell init: allocate result");
	}
	for (i = 0; i < sizeof(env_defaults) / sizeof(env_defaults[0]); i++) {
		rc = set_env_default(env_defaults[i][0], env_defaults[i][1], err);
		if (rc < 0)
			return rc;
	}

	argv = Py_BuildValue("[s]", "");
	if (!argv || PySys_SetObject("argv", argv) < 0) {
		Py_XDECREF(argv);
		return py_fail(err, "cell init: set sys.argv");
	}
	Py_DECREF(argv);

	if ((rc = import_attr("builtins", "compile", &compile_fn, err)) < 0 ||
	    (rc = import_attr("_ast", "Expr", &ast_expr_type, err)) < 0 ||
	    (rc = import_attr("_ast", "Expression", &ast_expression_type, err)) < 0 ||
	    (rc = import_attr("traceback", "format_exception", &format_exception_fn, err)) < 0 ||
	    (rc = import_attr("io", "BytesIO", &bytesio_type, err)) < 0)
		return rc;
	linecache_mod = PyImport_ImportModule("linecache");
	if (!linecache_mod)
		return py_fail(err, "cell init: import linecache");
	if ((rc = init_pm_repr(err)) < 0)
		return rc;

	main_mod = PyImport_AddModule("__main__"); /* borrowed */
	if (!main_mod)
		return py_fail(err, "cell init: __main__");
	builtins = PyImport_ImportModule("builtins");
	if (!builtins)
		return py_fail(err, "cell init: import builtins");
	rc = PyDict_SetItemString(PyModule_GetDict(main_mod), "__builtins__", builtins);
	Py_DECREF(builtins);
	if (rc < 0)
		return py_fail(err, "cell init: __main__.__builtins__");
	main_dict = Py_NewRef(PyModule_GetDict(main_mod));
	return 0;
}

json_t *ab_cell_run(const char *code, const char *filename)
{
	double t0 = now_ms();
	struct run r = {0};
	PyObject *fname = NULL, *lines = NULL;
	ab_error err = {0};

	r.res = json_pack("{s:s,s:i,s:n,s:n,s:[],s:f}", "status", "ok", "exit_code", 0, "error",
			  "value", "results", "duration_ms", 0.0);
	if (!r.res)
		return oom();
	r.results = json_object_get(r.res, "results");

	if (!main_dict && ab_cell_init(&err) < 0) {
		set_error(&r, 1, json_string("AgentboxInternalError"), json_string(err.msg),
			  json_string(""));
		goto out;
	}
	fname = PyUnicode_DecodeUTF8(filename ? filename : "<cell>",
				     (Py_ssize_t)strlen(filename ? filename : "<cell>"), "replace");
	if (!fname) {
		internal_error(&r, "run cell: filename");
		goto out;
	}
	lines = register_source(code ? code : "", fname);
	execute(&r, code ? code : "", fname, lines);
	render_figures(&r);
out:
	Py_XDECREF(fname);
	Py_XDECREF(lines);
	PyErr_Clear();
	flush_streams();
	json_object_set_new(r.res, "duration_ms", json_real(now_ms() - t0));
	return r.res;
}

/* Removes the files of a directory this process created and the directory,
 * ignoring failures: it only held caches already loaded into memory. */
static void remove_dir_shallow(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(path);
}

/* Imports module and keeps the reference in *out. */
static int warm_import(const char *module, PyObject **out, ab_error *err)
{
	char what[128];

	*out = PyImport_ImportModule(module);
	if (*out)
		return 0;
	snprintf(what, sizeof(what), "warm heavy: import %s", module);
	return py_fail(err, what);
}

/* Exercises pandas and matplotlib once, in locals of this function rather
 * than in __main__, so that nothing of it is visible to user code. */
static int warm_exercise(PyObject *pd, PyObject *plt, ab_error *err)
{
	PyObject *data = NULL, *df = NULL, *desc = NULL, *html = NULL, *rep = NULL, *fig = NULL,
		 *ax = NULL, *line = NULL, *title = NULL, *buf = NULL, *savefig = NULL,
		 *args = NULL, *kw = NULL, *ret = NULL, *closed = NULL;
	int rc = 0;

	data = Py_BuildValue("{s:[iii]}", "A", 1, 2, 3);
	df = data ? PyObject_CallMethod(pd, "DataFrame", "O", data) : NULL;
	desc = df ? PyObject_CallMethod(df, "describe", NULL) : NULL;
	html = desc ? PyObject_CallMethod(desc, "_repr_html_", NULL) : NULL;
	rep = html ? PyObject_Repr(desc) : NULL;
	if (!rep) {
		rc = py_fail(err, "warm heavy: pandas DataFrame.describe()");
		goto out;
	}

	fig = PyObject_CallMethod(plt, "figure", "O(ii)", Py_None, 2, 2);
	ax = fig ? PyObject_CallMethod(fig, "add_subplot", NULL) : NULL;
	line = ax ? PyObject_CallMethod(ax, "plot", "[iii]", 1, 3, 2) : NULL;
	title = line ? PyObject_CallMethod(ax, "set_title", "s", "warm") : NULL;
	buf = title ? PyObject_CallNoArgs(bytesio_type) : NULL;
	savefig = buf ? PyObject_GetAttrString(fig, "savefig") : NULL;
	args = savefig ? PyTuple_Pack(1, buf) : NULL;
	kw = args ? Py_BuildValue("{s:s,s:s}", "format", "png", "bbox_inches", "tight") : NULL;
	ret = kw ? PyObject_Call(savefig, args, kw) : NULL;
	if (!ret) {
		rc = py_fail(err, "warm heavy: matplotlib savefig");
		goto out;
	}
	closed = PyObject_CallMethod(plt, "close", "s", "all");
	if (!closed)
		rc = py_fail(err, "warm heavy: matplotlib close");
out:
	Py_XDECREF(data);
	Py_XDECREF(df);
	Py_XDECREF(desc);
	Py_XDECREF(html);
	Py_XDECREF(rep);
	Py_XDECREF(fig);
	Py_XDECREF(ax);
	Py_XDECREF(line);
	Py_XDECREF(title);
	Py_XDECREF(buf);
	Py_XDECREF(savefig);
	Py_XDECREF(args);
	Py_XDECREF(kw);
	Py_XDECREF(ret);
	Py_XDECREF(closed);
	return rc;
}

int ab_cell_warm_heavy(ab_error *err)
{
	PyObject *np = NULL, *pd = NULL, *mpl = NULL, *plt = NULL, *gc = NULL, *r = NULL;
	char mpldir[] = "/tmp/agentbox-mpl-XXXXXX";
	bool made_dir = false;
	int rc;

	if ((rc = ab_cell_init(err)) < 0)
		return rc;
	/* The font cache must be built in this process's memory before the
	 * fork: inside the sandbox /tmp is a fresh tmpfs and the home
	 * directory may not be writable, so a cache written here would not be
	 * seen there anyway. */
	if (!getenv("MPLCONFIGDIR")) {
		if (!mkdtemp(mpldir))
			return ab_error_errno(err, -errno, "warm heavy: mkdtemp %s", mpldir);
		made_dir = true;
		if ((rc = set_env_default("MPLCONFIGDIR", mpldir, err)) < 0)
			goto out;
	}
	if ((rc = warm_import("numpy", &np, err)) < 0 ||
	    (rc = warm_import("pandas", &pd, err)) < 0 ||
	    (rc = warm_import("matplotlib", &mpl, err)) < 0)
		goto out;
	r = PyObject_CallMethod(mpl, "use", "s", "Agg");
	if (!r) {
		rc = py_fail(err, "warm heavy: matplotlib.use(\"Agg\")");
		goto out;
	}
	if ((rc = warm_import("matplotlib.pyplot", &plt, err)) < 0 ||
	    (rc = warm_exercise(pd, plt, err)) < 0 || (rc = warm_import("gc", &gc, err)) < 0)
		goto out;
	Py_CLEAR(r);
	/* FreeType faces cached by matplotlib keep font files open; the
	 * sandbox closes every descriptor it inherits from the zygote, and a
	 * face whose file vanished crashes when used or freed. Drop the
	 * cache: fonts are reopened inside the sandbox on first use. */
	{
		PyObject *fm = PyImport_ImportModule("matplotlib.font_manager");
		PyObject *gf = fm ? PyObject_GetAttrString(fm, "_get_font") : NULL;
		PyObject *cr = gf ? PyObject_CallMethod(gf, "cache_clear", NULL) : NULL;
		if (!cr)
			PyErr_Clear();
		Py_XDECREF(cr);
		Py_XDECREF(gf);
		Py_XDECREF(fm);
	}
	/* Collect first so that freeze() moves only live objects into the
	 * permanent generation; later collections in forked sessions then
	 * leave the zygote's pages shared instead of touching every header. */
	r = PyObject_CallMethod(gc, "collect", NULL);
	if (r) {
		Py_DECREF(r);
		r = PyObject_CallMethod(gc, "freeze", NULL);
	}
	if (!r)
		rc = py_fail(err, "warm heavy: gc.freeze()");
out:
	if (made_dir)
		remove_dir_shallow(mpldir);
	Py_XDECREF(np);
	Py_XDECREF(pd);
	Py_XDECREF(mpl);
	Py_XDECREF(plt);
	Py_XDECREF(gc);
	Py_XDECREF(r);
	return rc;
}
