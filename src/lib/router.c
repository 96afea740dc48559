/* router.c - static analysis of a cell for tier="auto" (docs/router.md).
 *
 * A hand-written tokenizer for Python source (comments, every string form,
 * f-strings with nested quotes, backslash continuations, implicit joining
 * inside brackets) feeds a single pass over the tokens that finds imports,
 * dynamic imports, exec of literal strings (analysed again, at most three
 * deep) and the uses of processes, the network and file writes that the
 * nano tier cannot serve. The pass is linear in the size of the cell, keeps
 * bounded state (bracket depth, aliases, the module list) and never
 * recurses on input except for exec'd strings and nested f-strings, both
 * with a fixed limit.
 *
 * The router only picks the tier that will work: the nano jail enforces its
 * restrictions itself, so code that hides what it does from this analysis
 * fails in nano and is promoted at run time, it does not escape. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "utf8.h"

#define MAX_CELL (8u << 20) /* the daemon refuses longer code anyway */
#define MAX_DEPTH 200	    /* CPython's own limit on nested brackets */
#define MAX_FSTRING_NEST 16 /* nested strings inside f-string fields */
#define MAX_EXEC_DEPTH 3    /* exec("exec('...')") levels analysed */
#define MAX_ALIASES 64	    /* aliases of modules the rules care about */
#define MAX_STARS 8	    /* `from os import *` and the like */
#define SEEN_SLOTS 1024	    /* hash set deduplicating out->modules */
#define NAME_MAX_LEN 128    /* longest dotted name the rules look at */

/* ------------------------------------------------------------ module lists */

/* Sorted (strcmp order) so that lookups can bisect; test_router checks it.
 * An entry names a module and everything below it ("os" covers os.path);
 * its parent packages may be imported too ("xml" for xml.etree.ElementTree)
 * but only to reach the entry. */
static const char *const nano_modules[] = {
    "__future__",
    "abc",
    "argparse",
    "array",
    "ast",
    "base64",
    "binascii",
    "bisect",
    "builtins",
    "bz2",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "colorsys",
    "concurrent.futures",
    "contextlib",
    "copy",
    "copyreg",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "enum",
    "errno",
    "fnmatch",
    "fractions",
    "functools",
    "gc",
    "glob",
    "graphlib",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "lzma",
    "math",
    "numbers",
    "operator",
    "os",
    "pathlib",
    "pprint",
    "queue",
    "random",
    "re",
    "reprlib",
    "sched",
    "secrets",
    "shlex",
    "statistics",
    "string",
    "stringprep",
    "struct",
    "sys",
    "textwrap",
    "threading",
    "time",
    "token",
    "tokenize",
    "tomllib",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "urllib.parse",
    "uuid",
    "warnings",
    "weakref",
    "xml.etree.ElementTree",
    "zlib",
    "zoneinfo",
    NULL,
};

const char *const *ab_router_nano_modules(void)
{
	return nano_modules;
}

enum danger_kind { D_PROC, D_NET, D_WRITE, D_NATIVE };

/* Modules and functions that need heavy whatever else the cell does. A name
 * ending in '*' matches every name it begins (os.exec* is os.execv, ...).
 * `calls` says whether the reason reads "calls X" or "uses X". */
static const struct danger {
	const char *name;
	enum danger_kind kind;
	bool calls;
} dangers[] = {
    {"aiohttp", D_NET, false},
    {"cffi", D_NATIVE, false},
    {"concurrent.futures.ProcessPoolExecutor", D_PROC, false},
    {"concurrent.futures.process", D_PROC, false},
    {"ctypes", D_NATIVE, false},
    {"dbm", D_WRITE, false},
    {"ftplib", D_NET, false},
    {"http.client", D_NET, false},
    {"http.server", D_NET, false},
    {"httpx", D_NET, false},
    {"imaplib", D_NET, false},
    {"multiprocessing", D_PROC, false},
    {"nntplib", D_NET, false},
    {"os.chmod", D_WRITE, true},
    {"os.chown", D_WRITE, true},
    {"os.exec*", D_PROC, true},
    {"os.fork", D_PROC, true},
    {"os.forkpty", D_PROC, true},
    {"os.link", D_WRITE, true},
    {"os.makedirs", D_WRITE, true},
    {"os.mkdir", D_WRITE, true},
    {"os.mkfifo", D_WRITE, true},
    {"os.mknod", D_WRITE, true},
    {"os.popen", D_PROC, true},
    {"os.posix_spawn*", D_PROC, true},
    {"os.remove", D_WRITE, true},
    {"os.removedirs", D_WRITE, true},
    {"os.rename", D_WRITE, true},
    {"os.renames", D_WRITE, true},
    {"os.replace", D_WRITE, true},
    {"os.rmdir", D_WRITE, true},
    {"os.spawn*", D_PROC, true},
    {"os.symlink", D_WRITE, true},
    {"os.system", D_PROC, true},
    {"os.truncate", D_WRITE, true},
    {"os.unlink", D_WRITE, true},
    {"os.utime", D_WRITE, true},
    {"paramiko", D_NET, false},
    {"pexpect", D_PROC, false},
    {"poplib", D_NET, false},
    {"pty", D_PROC, false},
    {"requests", D_NET, false},
    {"shelve", D_WRITE, false},
    {"shutil.chown", D_WRITE, true},
    {"shutil.copy*", D_WRITE, true},
    {"shutil.make_archive", D_WRITE, true},
    {"shutil.move", D_WRITE, true},
    {"shutil.rmtree", D_WRITE, true},
    {"shutil.unpack_archive", D_WRITE, true},
    {"smtplib", D_NET, false},
    {"socket", D_NET, false},
    {"socketserver", D_NET, false},
    {"sqlite3", D_WRITE, false},
    {"ssl", D_NET, false},
    {"subprocess", D_PROC, false},
    {"telnetlib", D_NET, false},
    {"tempfile", D_WRITE, false},
    {"urllib.request", D_NET, false},
    {"urllib3", D_NET, false},
    {"websocket", D_NET, false},
    {"websockets", D_NET, false},
    {"xmlrpc", D_NET, false},
};

/* Methods that write to the file system whatever object they are called on
 * (pathlib.Path and friends). */
static const char *const write_methods[] = {
    "chmod", "hardlink_to", "mkdir",	   "rename",	 "rmdir", "symlink_to",
    "touch", "unlink",	    "write_bytes", "write_text", NULL,
};

/* Top-level modules whose aliases the rules must follow (`import os as o`
 * then `o.system`). Aliases of other modules change nothing. */
static const char *const watched_roots[] = {
    "builtins", "bz2", "codecs",  "concurrent", "gzip",	  "http",   "importlib", "io",
    "lzma",	"os",  "pathlib", "posix",	"shutil", "urllib", NULL,
};

static bool in_list(const char *const *list, const char *s, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && memcmp(*list, s, n) == 0)
			return true;
	return false;
}

static bool name_eq(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static size_t top_len(const char *s, size_t n)
{
	const char *dot = memchr(s, '.', n);
	return dot ? (size_t)(dot - s) : n;
}

/* Compares the first n bytes of s, as a NUL-free string, with an entry. */
static int cmp_name(const char *s, size_t n, const char *entry)
{
	size_t m = strlen(entry);
	int c = memcmp(s, entry, n < m ? n : m);
	if (c)
		return c;
	return n < m ? -1 : n > m ? 1 : 0;
}

/* Binary search for s[0..n) among count sorted names, the name of entry k
 * being at base + k * stride (an array of structs or of pointers whose
 * first member is the name). Returns the index or -1. */
static ptrdiff_t find_sorted(const char *s, size_t n, const void *base, size_t count, size_t stride)
{
	size_t lo = 0, hi = count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *name = *(const char *const *)((const char *)base + mid * stride);
		int c = cmp_name(s, n, name);
		if (c == 0)
			return (ptrdiff_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* Finds a danger entry covering the dotted name s[0..n): an exact entry
 * equal to s or to one of its dotted prefixes, or a '*' entry s begins with.
 * *matched receives how much of s to name in the reason. */
static const struct danger *danger_find(const char *s, size_t n, size_t *matched)
{
	size_t count = sizeof(dangers) / sizeof(dangers[0]);
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		ptrdiff_t k = find_sorted(s, i, dangers, count, sizeof(dangers[0]));
		if (k >= 0) {
			*matched = i;
			return &dangers[k];
		}
	}
	for (size_t k = 0; k < count; k++) {
		const char *e = dangers[k].name;
		if (e[0] != s[0])
			continue;
		size_t m = strlen(e) - 1;
		if (e[m] != '*' || n < m || memcmp(s, e, m) != 0)
			continue;
		while (m < n && s[m] != '.')
			m++;
		*matched = m;
		return &dangers[k];
	}
	return NULL;
}

enum avail { AVAIL_NONE, AVAIL_PARENT, AVAIL_FULL };

/* Whether nano offers the dotted module s[0..n): FULL when an entry is s or
 * one of its dotted prefixes, PARENT when s is a package above an entry. */
static enum avail nano_avail(const char *s, size_t n)
{
	size_t count = sizeof(nano_modules) / sizeof(nano_modules[0]) - 1;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		if (find_sorted(s, i, nano_modules, count, sizeof(nano_modules[0])) >= 0)
			return AVAIL_FULL;
	}
	for (size_t k = 0; k < count; k++)
		if (strlen(nano_modules[k]) > n && memcmp(nano_modules[k], s, n) == 0 &&
		    nano_modules[k][n] == '.')
			return AVAIL_PARENT;
	return AVAIL_NONE;
}

/* ---------------------------------------------------------------- lexer */

enum tok_type { T_END, T_ERROR, T_NAME, T_NUMBER, T_STRING, T_OP, T_NEWLINE };

enum { S_RAW = 1, S_BYTES = 2, S_FMT = 4 };

struct token {
	enum tok_type type;
	const char *s; /* the whole token, string prefix and quotes included */
	size_t len;
	unsigned flags;	  /* S_* for strings */
	const char *body; /* strings: the text between the quotes */
	size_t body_len;
};

struct lexer {
	const char *src;
	size_t len, pos;
	unsigned line;
	int depth;
	bool line_has_tokens;
	char open[MAX_DEPTH];
	unsigned open_line[MAX_DEPTH];
	char err[160];
};

static void lexer_init(struct lexer *lx, const char *src, size_t len)
{
	lx->src = src;
	lx->len = len;
	lx->pos = 0;
	lx->line = 1;
	lx->depth = 0;
	lx->line_has_tokens = false;
	lx->err[0] = '\0';
	if (len >= 3 && memcmp(src, "\xEF\xBB\xBF", 3) == 0)
		lx->pos = 3;
}

__attribute__((format(printf, 2, 3))) static int lex_error(struct lexer *lx, const char *fmt, ...)
{
	if (lx->err[0])
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(lx->err, sizeof(lx->err), fmt, ap);
	va_end(ap);
	return -1;
}

static bool is_name_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool is_name_char(unsigned char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

static int peek(const struct lexer *lx, size_t off)
{
	return lx->pos + off < lx->len ? (unsigned char)lx->src[lx->pos + off] : -1;
}

/* Consumes one line break at pos (\n, \r\n or \r) if there is one. */
static bool eat_newline(struct lexer *lx)
{
	int c = peek(lx, 0);
	if (c == '\r') {
		lx->pos += peek(lx, 1) == '\n' ? 2 : 1;
	} else if (c == '\n') {
		lx->pos++;
	} else {
		return false;
	}
	lx->line++;
	return true;
}

/* Recognises a string prefix (r b u f, rb br fr rf and the t of 3.14, any
 * case) and returns its flags, or -1 when the name is not one. */
static int string_prefix(const char *s, size_t n)
{
	unsigned flags = 0;
	bool u = false;
	if (n == 0 || n > 2)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned f;
		switch (s[i] | 0x20) {
		case 'r':
			f = S_RAW;
			break;
		case 'b':
			f = S_BYTES;
			break;
		case 'f':
		case 't':
			f = S_FMT;
			break;
		case 'u':
			f = 0;
			u = true;
			break;
		default:
			return -1;
		}
		if (f && (flags & f))
			return -1;
		flags |= f;
	}
	if (u && n != 1)
		return -1;
	if ((flags & S_BYTES) && (flags & S_FMT))
		return -1;
	return (int)flags;
}

static int lex_string(struct lexer *lx, unsigned flags, int nest);

/* At the opening quote: true when it starts a triple-quoted string. */
static bool at_triple(const struct lexer *lx)
{
	int q = peek(lx, 0);
	return peek(lx, 1) == q && peek(lx, 2) == q;
}

/* True (and consumes the quotes) when pos is at the closing quotes. */
static bool at_close(struct lexer *lx, int q, bool triple)
{
	if (peek(lx, 0) != q)
		return false;
	if (!triple) {
		lx->pos++;
		return true;
	}
	if (peek(lx, 1) == q && peek(lx, 2) == q) {
		lx->pos += 3;
		return true;
	}
	return false;
}

static int unterminated(struct lexer *lx, bool triple, unsigned start_line)
{
	if (triple)
		return lex_error(lx, "unterminated triple-quoted string (line %u)", start_line);
	return lex_error(lx, "unterminated string literal (line %u)", start_line);
}

/* A backslash inside a string: skips it and the character it escapes. */
static void skip_escape(struct lexer *lx)
{
	lx->pos++;
	if (!eat_newline(lx) && lx->pos < lx->len)
		lx->pos++;
}

static int lex_fspec(struct lexer *lx, int q, bool triple, unsigned start, int nest);

/* Inside a replacement field of an f-string, after its '{': skips the
 * expression (nested strings included, as Python 3.12 allows) up to the
 * matching '}', through a format spec if there is one. */
static int lex_fexpr(struct lexer *lx, int q, bool triple, unsigned start, int nest)
{
	int depth = 0;
	if (nest > MAX_FSTRING_NEST)
		return lex_error(lx, "f-string nested too deeply (line %u)", start);
	for (;;) {
		int c = peek(lx, 0);
		if (c < 0)
			return unterminated(lx, triple, start);
		if (c == '\n' || c == '\r') {
			/* Python 3.12 lets the expression of any f-string span
			 * lines (after a comment, say); 3.11 code never does. */
			eat_newline(lx);
			continue;
		}
		if (c == '\'' || c == '"') {
			if (lex_string(lx, 0, nest + 1) < 0)
				return -1;
			continue;
		}
		if (is_name_start((unsigned char)c)) {
			size_t b = lx->pos;
			while (lx->pos < lx->len && is_name_char((unsigned char)lx->src[lx->pos]))
				lx->pos++;
			int pf = string_prefix(lx->src + b, lx->pos - b);
			int n = peek(lx, 0);
			if (pf >= 0 && (n == '\'' || n == '"') &&
			    lex_string(lx, (unsigned)pf, nest + 1) < 0)
				return -1;
			continue;
		}
		lx->pos++;
		switch (c) {
		case '(':
		case '[':
		case '{':
			depth++;
			break;
		case ')':
		case ']':
			depth--;
			break;
		case '}':
			if (depth == 0)
				return 0;
			depth--;
			break;
		case '!':
			break;
		case ':':
			if (depth == 0)
				return lex_fspec(lx, q, triple, start, nest);
			break;
		case '#':
			while (lx->pos < lx->len && lx->src[lx->pos] != '\n' &&
			       lx->src[lx->pos] != '\r')
				lx->pos++;
			break;
		default:
			break;
		}
	}
}

/* The format spec of a replacement field (after its ':'): literal text with
 * nested replacement fields, up to the '}' that closes the field. */
static int lex_fspec(struct lexer *lx, int q, bool triple, unsigned start, int nest)
{
	for (;;) {
		int c = peek(lx, 0);
		if (c < 0 || c == q)
			return unterminated(lx, triple, start);
		if (c == '\n' || c == '\r') {
			if (!triple)
				return unterminated(lx, triple, start);
			eat_newline(lx);
			continue;
		}
		if (c == '\\') {
			if (peek(lx, 1) == '{' || peek(lx, 1) == '}')
				lx->pos++;
			else
				skip_escape(lx);
			continue;
		}
		lx->pos++;
		if (c == '}')
			return 0;
		if (c == '{' && lex_fexpr(lx, q, triple, start, nest + 1) < 0)
			return -1;
	}
}

/* At an opening quote: skips the whole string literal. */
static int lex_string(struct lexer *lx, unsigned flags, int nest)
{
	int q = peek(lx, 0);
	bool triple = at_triple(lx);
	unsigned start = lx->line;
	if (nest > MAX_FSTRING_NEST)
		return lex_error(lx, "f-string nested too deeply (line %u)", start);
	lx->pos += triple ? 3 : 1;
	for (;;) {
		int c = peek(lx, 0);
		if (c < 0)
			return unterminated(lx, triple, start);
		if (c == '\\') {
			/* In an f-string a brace after a backslash is still a
			 * brace: f'\\{x}' has a replacement field. */
			if ((flags & S_FMT) && (peek(lx, 1) == '{' || peek(lx, 1) == '}'))
				lx->pos++;
			else
				skip_escape(lx);
			continue;
		}
		if (at_close(lx, q, triple))
			return 0;
		if (c == '\n' || c == '\r') {
			if (!triple)
				return unterminated(lx, triple, start);
			eat_newline(lx);
			continue;
		}
		lx->pos++;
		if ((flags & S_FMT) && c == '{') {
			if (peek(lx, 0) == '{')
				lx->pos++;
			else if (lex_fexpr(lx, q, triple, start, nest) < 0)
				return -1;
		}
	}
}

static const char *const ops3[] = {"...", "**=", "//=", ">>=", "<<=", NULL};
static const char *const ops2[] = {"==", "!=", "<=", ">=", "->", "**", "//", "<<", ">>", ":=",
				   "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", NULL};

static size_t op_len(const struct lexer *lx)
{
	size_t left = lx->len - lx->pos;
	const char *p = lx->src + lx->pos;
	for (const char *const *o = ops3; *o; o++)
		if (left >= 3 && memcmp(p, *o, 3) == 0)
			return 3;
	for (const char *const *o = ops2; *o; o++)
		if (left >= 2 && memcmp(p, *o, 2) == 0)
			return 2;
	return 1;
}

static int lex_bracket(struct lexer *lx, char c)
{
	if (c == '(' || c == '[' || c == '{') {
		if (lx->depth >= MAX_DEPTH)
			return lex_error(lx, "too many nested brackets (line %u)", lx->line);
		lx->open[lx->depth] = c;
		lx->open_line[lx->depth] = lx->line;
		lx->depth++;
		return 0;
	}
	if (lx->depth == 0)
		return lex_error(lx, "unmatched '%c' (line %u)", c, lx->line);
	char o = lx->open[lx->depth - 1];
	if ((c == ')' && o != '(') || (c == ']' && o != '[') || (c == '}' && o != '{'))
		return lex_error(lx, "closing '%c' does not match '%c' (line %u)", c, o, lx->line);
	lx->depth--;
	return 0;
}

/* Produces the next token. NEWLINE ends each non-empty logical line; line
 * breaks inside brackets, after a backslash or in comments make none. */
static void lex_next(struct lexer *lx, struct token *t)
{
	memset(t, 0, sizeof(*t));
	for (;;) {
		int c = peek(lx, 0);
		if (c == ' ' || c == '\t' || c == '\f') {
			lx->pos++;
			continue;
		}
		if (c == '#') {
			while (lx->pos < lx->len && lx->src[lx->pos] != '\n' &&
			       lx->src[lx->pos] != '\r')
				lx->pos++;
			continue;
		}
		if (c == '\\') {
			lx->pos++;
			if (eat_newline(lx))
				continue;
			lex_error(lx,
				  peek(lx, 0) < 0
				      ? "unexpected end of file after '\\' (line %u)"
				      : "unexpected character after line continuation (line %u)",
				  lx->line);
			t->type = T_ERROR;
			return;
		}
		if (c == '\n' || c == '\r') {
			eat_newline(lx);
			if (lx->depth == 0 && lx->line_has_tokens) {
				lx->line_has_tokens = false;
				t->type = T_NEWLINE;
				return;
			}
			continue;
		}
		if (c < 0) {
			if (lx->depth > 0) {
				lex_error(lx, "'%c' was never closed (line %u)",
					  lx->open[lx->depth - 1], lx->open_line[lx->depth - 1]);
				t->type = T_ERROR;
			} else if (lx->line_has_tokens) {
				lx->line_has_tokens = false;
				t->type = T_NEWLINE;
			} else {
				t->type = T_END;
			}
			return;
		}
		break;
	}
	lx->line_has_tokens = true;
	size_t b = lx->pos;
	int c = peek(lx, 0);
	t->s = lx->src + b;
	if (is_name_start((unsigned char)c)) {
		while (lx->pos < lx->len && is_name_char((unsigned char)lx->src[lx->pos]))
			lx->pos++;
		int pf = string_prefix(lx->src + b, lx->pos - b);
		int n = peek(lx, 0);
		if (pf < 0 || (n != '\'' && n != '"')) {
			t->type = T_NAME;
			t->len = lx->pos - b;
			return;
		}
		t->flags = (unsigned)pf;
		c = n;
	}
	if (c == '\'' || c == '"') {
		size_t q = lx->pos;
		size_t qn = at_triple(lx) ? 3 : 1;
		if (lex_string(lx, t->flags, 0) < 0) {
			t->type = T_ERROR;
			return;
		}
		t->type = T_STRING;
		t->len = lx->pos - b;
		t->body = lx->src + q + qn;
		t->body_len = lx->pos - q - 2 * qn;
		return;
	}
	if ((c >= '0' && c <= '9') || (c == '.' && peek(lx, 1) >= '0' && peek(lx, 1) <= '9')) {
		bool hex = c == '0' && (peek(lx, 1) | 0x20) == 'x';
		lx->pos++;
		while (lx->pos < lx->len) {
			unsigned char d = (unsigned char)lx->src[lx->pos];
			unsigned char prev = (unsigned char)lx->src[lx->pos - 1];
			if (is_name_char(d) || d == '.' ||
			    ((d == '+' || d == '-') && !hex && (prev | 0x20) == 'e'))
				lx->pos++;
			else
				break;
		}
		t->type = T_NUMBER;
		t->len = lx->pos - b;
		return;
	}
	if (c == 0) {
		/* Never an operator: strchr() would find it in any set of
		 * brackets. Callers refuse such source before; this holds
		 * whatever a future caller does. */
		lex_error(lx, "source contains a NUL byte (line %u)", lx->line);
		t->type = T_ERROR;
		return;
	}
	t->type = T_OP;
	t->len = op_len(lx);
	lx->pos += t->len;
	if (t->len == 1 && strchr("()[]{}", c) && lex_bracket(lx, (char)c) < 0)
		t->type = T_ERROR;
}

static bool is_op(const struct token *t, const char *op)
{
	return t->type == T_OP && name_eq(t->s, t->len, op);
}

static bool is_name(const struct token *t, const char *kw)
{
	return t->type == T_NAME && name_eq(t->s, t->len, kw);
}

/* ------------------------------------------------------ literal decoding */

struct buf {
	char *p;
	size_t len, cap, max;
	bool truncated, oom;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n > b->max) {
		b->truncated = true;
		n = b->max - b->len;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_utf8(struct buf *b, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	buf_put(b, u, n);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends the value of one string literal's body, escapes resolved (the
 * common ones; \N{...} stays as written). */
static void decode_body(struct buf *b, const char *s, size_t n, unsigned flags)
{
	if (flags & S_RAW) {
		buf_put(b, s, n);
		return;
	}
	for (size_t i = 0; i < n && !b->oom && !b->truncated;) {
		size_t j = i;
		while (j < n && s[j] != '\\')
			j++;
		buf_put(b, s + i, j - i);
		if (j + 1 >= n) {
			if (j < n)
				buf_put(b, "\\", 1);
			return;
		}
		char e = s[j + 1];
		i = j + 2;
		static const char from[] = "ntr\\'\"abfv", to[] = "\n\t\r\\'\"\a\b\f\v";
		const char *k = strchr(from, e);
		if (k && e) {
			buf_put(b, &to[k - from], 1);
		} else if (e == '\n') {
			/* A backslash-newline continues the literal: nothing. */
		} else if (e == '\r') {
			if (i < n && s[i] == '\n')
				i++;
		} else if (e >= '0' && e <= '7') {
			unsigned v = (unsigned)(e - '0');
			for (int d = 0; d < 2 && i < n && s[i] >= '0' && s[i] <= '7'; d++)
				v = v * 8 + (unsigned)(s[i++] - '0');
			char ch = (char)v;
			if (flags & S_BYTES || v < 0x80)
				buf_put(b, &ch, 1);
			else
				buf_utf8(b, v);
		} else if (e == 'x' || ((e == 'u' || e == 'U') && !(flags & S_BYTES))) {
			int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
			uint32_t v = 0;
			int d = 0;
			for (; d < digits && i < n && hexval(s[i]) >= 0; d++)
				v = v * 16 + (uint32_t)hexval(s[i++]);
			if (d < digits) {
				buf_put(b, s + j, i - j);
			} else if (e == 'x' && (flags & S_BYTES)) {
				char ch = (char)v;
				buf_put(b, &ch, 1);
			} else {
				buf_utf8(b, v > 0x10FFFF ? 0xFFFD : v);
			}
		} else {
			buf_put(b, s + j, 2);
		}
	}
}

/* Decodes the implicit concatenation of string literals between src+start
 * and src+end (only strings, already tokenized once, lie there). */
static void decode_literals(const char *src, size_t start, size_t end, struct buf *b)
{
	struct lexer lx;
	lexer_init(&lx, src + start, end - start);
	lx.pos = 0;
	lx.depth = 1; /* line breaks between the pieces are implicit joins */
	lx.open[0] = '(';
	buf_put(b, "", 0);
	for (;;) {
		struct token t;
		lex_next(&lx, &t);
		if (t.type != T_STRING)
			return;
		decode_body(b, t.body, t.body_len, t.flags);
	}
}

/* ---------------------------------------------------------------- analysis */

struct alias {
	char name[64];
	char target[NAME_MAX_LEN];
};

struct ctx {
	ab_route *out;
	const char *const *extra_heavy;
	bool heavy;
	bool broken; /* the reason is a tokenizer error */
	bool modules_full;
	size_t nseen;
	uint64_t seen[SEEN_SLOTS];
	size_t naliases;
	struct alias aliases[MAX_ALIASES];
	size_t nstars;
	char stars[MAX_STARS][32];
};

__attribute__((format(printf, 2, 3))) static void set_heavy(struct ctx *c, const char *fmt, ...)
{
	if (c->heavy)
		return;
	c->heavy = true;
	c->out->tier = AB_ROUTE_HEAVY;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->out->reason, sizeof(c->out->reason), fmt, ap);
	va_end(ap);
}

/* A cell that cannot be tokenized says so whatever was found before it.
 * At the top level it goes to nano: Python compiles the whole cell before
 * running any of it, so either it refuses the cell with a SyntaxError (nano
 * answers that as well as heavy, and without a promotion), or the cell is
 * valid Python the router misread, and a run that needs heavy then fails in
 * nano for lack of the tier and is rerun there. Containment does not depend
 * on this choice: nano is the stricter jail. A broken exec'd string is
 * different: the code around it runs, so that cell stays in heavy. */
static void set_broken(struct ctx *c, const char *what, int exec_depth)
{
	if (c->broken)
		return;
	c->heavy = false;
	if (exec_depth == 0) {
		c->out->tier = AB_ROUTE_NANO;
		snprintf(c->out->reason, sizeof(c->out->reason), "cannot tokenize: %s", what);
	} else {
		set_heavy(c, "cannot tokenize an exec'd string: %s", what);
	}
	c->broken = true;
}

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h | 1; /* 0 marks an empty slot */
}

/* Adds a top-level module name to out->modules once; whole names only. */
static void record_module(struct ctx *c, const char *s, size_t n)
{
	if (c->modules_full || n == 0)
		return;
	uint64_t h = fnv1a(s, n);
	size_t i = (size_t)(h % SEEN_SLOTS);
	while (c->seen[i]) {
		if (c->seen[i] == h)
			return;
		i = (i + 1) % SEEN_SLOTS;
	}
	char *m = c->out->modules;
	size_t used = strlen(m);
	size_t need = n + (used ? 1 : 0);
	if (used + need + 1 > sizeof(c->out->modules) || c->nseen + 1 >= SEEN_SLOTS / 2) {
		c->modules_full = true;
		return;
	}
	c->seen[i] = h;
	c->nseen++;
	if (used)
		m[used++] = ',';
	memcpy(m + used, s, n);
	m[used + n] = '\0';
}

static void danger_reason(struct ctx *c, const struct danger *d, const char *s, size_t n)
{
	static const char *const why[] = {
	    [D_PROC] = "processes need heavy",
	    [D_NET] = "network needs heavy",
	    [D_WRITE] = "file writes need heavy",
	    [D_NATIVE] = "native code needs heavy",
	};
	set_heavy(c, "%s %.*s (%s)", d->calls ? "calls" : "uses", (int)(n > 100 ? 100 : n), s,
		  why[d->kind]);
}

/* Applies the danger rules to a dotted name used in code or imported. */
static bool check_danger(struct ctx *c, const char *s, size_t n)
{
	size_t matched;
	const struct danger *d = danger_find(s, n, &matched);
	if (!d)
		return false;
	danger_reason(c, d, s, matched);
	return true;
}

/* An absolute import of the dotted module s[0..n) with a literal name. */
static void check_import(struct ctx *c, const char *s, size_t n)
{
	record_module(c, s, top_len(s, n));
	if (c->heavy || check_danger(c, s, n))
		return;
	int shown = (int)(n > 100 ? 100 : n);
	for (const char *const *e = c->extra_heavy; e && *e; e++) {
		size_t m = strlen(*e);
		if (m && m <= n && memcmp(s, *e, m) == 0 && (m == n || s[m] == '.')) {
			set_heavy(c, "imports %.*s (learned: needed heavy before)", shown, s);
			return;
		}
	}
	if (nano_avail(s, n) == AVAIL_NONE)
		set_heavy(c, "imports %.*s (not available in nano)", shown, s);
}

static bool watched(const char *target)
{
	return in_list(watched_roots, target, top_len(target, strlen(target)));
}

static void add_alias(struct ctx *c, const char *name, size_t nlen, const char *target, size_t tlen)
{
	char t[NAME_MAX_LEN];
	if (nlen >= sizeof(c->aliases[0].name) || tlen >= sizeof(t))
		return;
	memcpy(t, target, tlen);
	t[tlen] = '\0';
	for (size_t i = 0; i < c->naliases; i++) {
		if (name_eq(name, nlen, c->aliases[i].name)) {
			memcpy(c->aliases[i].target, t, tlen + 1);
			return;
		}
	}
	if (!watched(t) || (nlen == tlen && memcmp(name, t, tlen) == 0) ||
	    c->naliases == MAX_ALIASES)
		return;
	struct alias *a = &c->aliases[c->naliases++];
	memcpy(a->name, name, nlen);
	a->name[nlen] = '\0';
	memcpy(a->target, t, tlen + 1);
}

/* Reads a dotted name (NAME ('.' NAME)*) into out; false when too long or
 * absent. t holds the current token on entry and the next one on exit. */
static bool read_dotted(struct lexer *lx, struct token *t, char *out, size_t cap, size_t *n)
{
	*n = 0;
	bool ok = true;
	while (t->type == T_NAME) {
		if (*n + t->len + 1 < cap) {
			memcpy(out + *n, t->s, t->len);
			*n += t->len;
		} else {
			ok = false;
		}
		lex_next(lx, t);
		if (!is_op(t, "."))
			break;
		if (*n + 1 < cap)
			out[(*n)++] = '.';
		lex_next(lx, t);
	}
	out[*n] = '\0';
	return ok && *n > 0 && out[*n - 1] != '.';
}

/* After the `import` keyword: `import a.b as c, d`. Leaves in t the first
 * token that is not part of the statement. */
static void parse_import(struct ctx *c, struct lexer *lx, struct token *t)
{
	char mod[NAME_MAX_LEN];
	size_t n;
	lex_next(lx, t);
	for (;;) {
		if (!read_dotted(lx, t, mod, sizeof(mod), &n))
			return;
		check_import(c, mod, n);
		if (is_name(t, "as")) {
			lex_next(lx, t);
			if (t->type != T_NAME)
				return;
			add_alias(c, t->s, t->len, mod, n);
			lex_next(lx, t);
		} else {
			add_alias(c, mod, top_len(mod, n), mod, top_len(mod, n));
		}
		if (!is_op(t, ","))
			return;
		lex_next(lx, t);
	}
}

/* After `from`: `from [.]*a.b import (x as y, z)` or `*`. Returns false,
 * with the lexer untouched, when this `from` is not an import (`yield
 * from`, `raise ... from`). */
static bool parse_from(struct ctx *c, struct lexer *lx, struct token *t)
{
	struct lexer saved = *lx;
	struct token saved_tok = *t;
	char mod[NAME_MAX_LEN];
	size_t n = 0, dots = 0;
	lex_next(lx, t);
	while (is_op(t, ".") || is_op(t, "...")) {
		dots += t->len;
		lex_next(lx, t);
	}
	if (t->type == T_NAME && !is_name(t, "import") && !read_dotted(lx, t, mod, sizeof(mod), &n))
		n = 0;
	if (!is_name(t, "import") || (dots == 0 && n == 0)) {
		*lx = saved;
		*t = saved_tok;
		return false;
	}
	/* Relative imports name no module of their own: a cell is not part of a
	 * package, so they fail the same way in either tier. */
	bool relative = dots > 0;
	if (!relative)
		check_import(c, mod, n);
	lex_next(lx, t);
	bool paren = is_op(t, "(");
	int depth0 = lx->depth - (paren ? 1 : 0);
	if (paren)
		lex_next(lx, t);
	if (is_op(t, "*")) {
		bool known = false;
		for (size_t i = 0; i < c->nstars; i++)
			known |= strcmp(c->stars[i], mod) == 0;
		if (!relative && !known && watched(mod) && c->nstars < MAX_STARS &&
		    n < sizeof(c->stars[0]))
			memcpy(c->stars[c->nstars++], mod, n + 1);
		lex_next(lx, t);
	}
	while (t->type == T_NAME) {
		char full[NAME_MAX_LEN];
		bool fits = n + 1 + t->len < sizeof(full);
		if (fits) {
			memcpy(full, mod, n);
			full[n] = '.';
			memcpy(full + n + 1, t->s, t->len);
			full[n + 1 + t->len] = '\0';
		}
		const char *name = t->s;
		size_t nlen = t->len;
		if (!relative && fits && !c->heavy && !check_danger(c, full, n + 1 + t->len) &&
		    nano_avail(mod, n) == AVAIL_PARENT &&
		    nano_avail(full, n + 1 + t->len) == AVAIL_NONE)
			set_heavy(c, "imports %.100s (not available in nano)", full);
		lex_next(lx, t);
		if (is_name(t, "as")) {
			lex_next(lx, t);
			if (t->type != T_NAME)
				break;
			name = t->s;
			nlen = t->len;
			lex_next(lx, t);
		}
		if (!relative && fits)
			add_alias(c, name, nlen, full, strlen(full));
		if (!is_op(t, ","))
			break;
		lex_next(lx, t);
	}
	/* Never leave a bracket of the statement for the caller to close. */
	while (lx->depth > depth0 && t->type != T_END && t->type != T_ERROR)
		lex_next(lx, t);
	if (paren && is_op(t, ")"))
		lex_next(lx, t);
	return true;
}

enum frame_kind { F_NONE, F_OPEN, F_OPEN_METHOD, F_EXEC, F_IMPORT };

/* One open bracket. For the calls the rules look into, the state of the
 * argument being read and what was found. */
struct frame {
	enum frame_kind kind;
	char callee[16]; /* "exec", "eval", "compile" for the reason */
	bool import_top; /* __import__ returns the top-level package */
	int argidx;	 /* positional index of the current argument */
	int ntok;	 /* tokens of the current argument at this level */
	bool is_kw, star;
	bool found; /* the argument the rules look at was judged */
	const char *kw;
	size_t kwlen;
	int val_ntok; /* tokens of its value (after `name=` for keywords) */
	bool val_str; /* the value is only plain string literals */
	size_t val_start, val_end;
	char root[NAME_MAX_LEN]; /* module returned by a literal dynamic import */
};

struct analysis {
	struct ctx *c;
	const char *src;
	int exec_depth;
	struct frame *frames;
	/* The attribute chain being read: `os.path.join`, resolved through
	 * aliases; "?" stands for an expression (a call, a subscript, a string). */
	char chain[NAME_MAX_LEN];
	size_t chain_len;
	int chain_ncomp;
	enum { CH_NONE, CH_NAME, CH_DOT } chain_state;
	bool chain_def; /* the name after `def` or `class`: not a call */
	bool prev_def;
};

static void analyse(struct ctx *c, const char *src, size_t len, int exec_depth);
static unsigned bad_encoding_line(const unsigned char *s, size_t n, bool *nul);

static bool literal_value(struct analysis *a, struct frame *f, struct buf *b, size_t max)
{
	b->max = max;
	decode_literals(a->src, f->val_start, f->val_end, b);
	return !b->oom && b->p;
}

/* The mode of an open() call: heavy when it may write. */
static void check_mode(struct analysis *a, struct frame *f, bool method)
{
	if (!f->val_str) {
		if (!method || f->is_kw)
			set_heavy(a->c, "opens a file with a mode that is not a literal");
		return;
	}
	struct buf b = {0};
	if (literal_value(a, f, &b, 16)) {
		bool mode_like = b.len > 0 && b.len <= 8 && strspn(b.p, "rwaxbtU+") == b.len;
		if ((!method || f->is_kw || mode_like) && strpbrk(b.p, "wax+"))
			set_heavy(a->c, "opens a file for writing (open(..., '%s'))", b.p);
	}
	free(b.p);
}

static bool valid_module_name(const char *s, size_t n)
{
	if (n == 0 || n >= NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char((unsigned char)s[i]) && s[i] != '.')
			return false;
	return true;
}

/* The argument the rules look at (a mode, a source, a module name) is
 * complete: judge it. */
static void judge_target(struct analysis *a, struct frame *f)
{
	struct ctx *c = a->c;
	if (f->kind == F_OPEN || f->kind == F_OPEN_METHOD) {
		check_mode(a, f, f->kind == F_OPEN_METHOD);
		return;
	}
	if (!f->val_str) {
		if (f->kind == F_EXEC)
			set_heavy(c, "%s of a non-literal string", f->callee);
		else
			set_heavy(c, "dynamic import of a non-literal name");
		return;
	}
	struct buf b = {0};
	if (!literal_value(a, f, &b, MAX_CELL)) {
		set_heavy(c, "out of memory while analysing the cell");
	} else if (f->kind == F_EXEC) {
		/* Escapes can put any byte into the string: it gets the check
		 * of a cell (CPython refuses NUL bytes and invalid UTF-8 in
		 * source too), as the tokenizer relies on it. */
		bool nul = false;
		unsigned bad;
		if (a->exec_depth + 1 > MAX_EXEC_DEPTH) {
			set_heavy(c, "exec nested more than %d deep", MAX_EXEC_DEPTH);
		} else if ((bad = bad_encoding_line((const unsigned char *)b.p, b.len, &nul))) {
			char what[64];
			snprintf(what, sizeof(what), "%s (line %u)",
				 nul ? "source contains a NUL byte" : "invalid UTF-8", bad);
			set_broken(c, what, a->exec_depth + 1);
		} else {
			analyse(c, b.p, b.len, a->exec_depth + 1);
		}
	} else if (b.len > 0 && b.p[0] == '.') {
		/* A relative dynamic import: fails in any tier, as above. */
	} else if (!valid_module_name(b.p, b.len)) {
		set_heavy(c, "dynamic import of an invalid name");
	} else {
		check_import(c, b.p, b.len);
		size_t keep = f->import_top ? top_len(b.p, b.len) : b.len;
		memcpy(f->root, b.p, keep);
		f->root[keep] = '\0';
	}
	free(b.p);
}

static void arg_reset(struct frame *f)
{
	f->ntok = 0;
	f->is_kw = f->star = false;
	f->val_ntok = 0;
	f->val_str = true;
}

/* One argument of a watched call is complete (at ',' or ')'). */
static void arg_end(struct analysis *a, struct frame *f)
{
	if (f->ntok == 0)
		return;
	bool target;
	if (f->star) {
		/* *args or **kwargs may hold the mode, the source or the name. */
		target = f->kind != F_OPEN_METHOD && !f->found;
		f->val_str = false;
	} else if (f->is_kw) {
		const char *want = f->kind == F_IMPORT ? "name"
				   : f->kind == F_EXEC ? "source"
						       : "mode";
		target = name_eq(f->kw, f->kwlen, want);
	} else if (f->kind == F_OPEN_METHOD) {
		target = f->argidx <= 1;
	} else {
		target = f->argidx == (f->kind == F_OPEN ? 1 : 0);
	}
	if (target && (f->star || f->val_ntok > 0)) {
		f->found = true;
		judge_target(a, f);
	}
	if (!f->is_kw && !f->star)
		f->argidx++;
	arg_reset(f);
}

/* A token directly inside the brackets of a watched call (not a ',' and
 * not the closing bracket). off is its offset in the source. */
static void arg_token(struct frame *f, const struct token *t, size_t off)
{
	f->ntok++;
	if (f->ntok == 1) {
		if (is_op(t, "*") || is_op(t, "**")) {
			f->star = true;
			return;
		}
		f->kw = t->type == T_NAME ? t->s : NULL;
		f->kwlen = t->len;
	} else if (f->ntok == 2 && f->kw && is_op(t, "=")) {
		f->is_kw = true;
		f->val_ntok = 0;
		f->val_str = true;
		return;
	}
	if (f->val_ntok++ == 0)
		f->val_start = off;
	f->val_end = off + t->len;
	if (t->type != T_STRING || (t->flags & S_FMT))
		f->val_str = false;
}

static void chain_set(struct analysis *a, const char *s, size_t n)
{
	if (n >= sizeof(a->chain))
		n = sizeof(a->chain) - 1;
	memcpy(a->chain, s, n);
	a->chain[n] = '\0';
	a->chain_len = n;
	a->chain_ncomp = 1;
	for (size_t i = 0; i < n; i++)
		a->chain_ncomp += s[i] == '.';
	a->chain_state = CH_NAME;
}

static bool chain_known(const struct analysis *a)
{
	return a->chain[0] != '?';
}

static void chain_check(struct analysis *a)
{
	if (chain_known(a) && a->chain_ncomp >= 2)
		check_danger(a->c, a->chain, a->chain_len);
}

/* A name that does not follow a '.': starts a chain, through aliases and
 * star imports. */
static void chain_start(struct analysis *a, const struct token *t)
{
	struct ctx *c = a->c;
	a->chain_def = a->prev_def;
	for (size_t i = 0; i < c->naliases; i++) {
		if (name_eq(t->s, t->len, c->aliases[i].name)) {
			chain_set(a, c->aliases[i].target, strlen(c->aliases[i].target));
			chain_check(a);
			return;
		}
	}
	chain_set(a, t->s, t->len);
	for (size_t i = 0; i < c->nstars && t->len < NAME_MAX_LEN - 40; i++) {
		char full[NAME_MAX_LEN];
		int n = snprintf(full, sizeof(full), "%s.%.*s", c->stars[i], (int)t->len, t->s);
		if (n > 0 && (size_t)n < sizeof(full) && check_danger(c, full, (size_t)n))
			return;
	}
}

static void chain_append(struct analysis *a, const struct token *t)
{
	if (a->chain_len + 1 + t->len < sizeof(a->chain)) {
		a->chain[a->chain_len++] = '.';
		memcpy(a->chain + a->chain_len, t->s, t->len);
		a->chain_len += t->len;
		a->chain[a->chain_len] = '\0';
		a->chain_ncomp++;
		chain_check(a);
	}
	a->chain_state = CH_NAME;
}

static const char *chain_last(const struct analysis *a)
{
	const char *dot = strrchr(a->chain, '.');
	return dot ? dot + 1 : a->chain;
}

/* An opening '(' right after a chain: which call is it? */
static enum frame_kind call_kind(struct analysis *a, struct frame *f)
{
	if (a->chain_state != CH_NAME || a->chain_def)
		return F_NONE;
	const char *ch = a->chain;
	const char *last = chain_last(a);
	static const char *const opens[] = {"open",	   "builtins.open", "io.open",
					    "codecs.open", "_io.open",	    NULL};
	static const char *const execs[] = {
	    "exec", "eval", "compile", "builtins.exec", "builtins.eval", "builtins.compile", NULL};
	static const char *const imports[] = {"__import__",	      "builtins.__import__",
					      "import_module",	      "importlib.import_module",
					      "importlib.__import__", NULL};
	if (a->chain_ncomp >= 2 && in_list(write_methods, last, strlen(last)))
		set_heavy(a->c, "calls .%s() (file writes need heavy)", last);
	if (in_list(opens, ch, a->chain_len))
		return F_OPEN;
	if (a->chain_ncomp >= 2 && strcmp(last, "open") == 0)
		return F_OPEN_METHOD;
	if (in_list(execs, ch, a->chain_len)) {
		snprintf(f->callee, sizeof(f->callee), "%s", last);
		return F_EXEC;
	}
	if (in_list(imports, ch, a->chain_len)) {
		f->import_top = strcmp(last, "__import__") == 0;
		return F_IMPORT;
	}
	return F_NONE;
}

static void analyse(struct ctx *c, const char *src, size_t len, int exec_depth)
{
	struct analysis a = {.c = c, .src = src, .exec_depth = exec_depth};
	struct lexer *lx = malloc(sizeof(*lx));
	a.frames = calloc(MAX_DEPTH, sizeof(*a.frames));
	if (!lx || !a.frames) {
		set_heavy(c, "out of memory while analysing the cell");
		goto out;
	}
	lexer_init(lx, src, len);
	struct token t;
	lex_next(lx, &t);
	while (t.type != T_END) {
		if (t.type == T_ERROR) {
			set_broken(c, lx->err, exec_depth);
			break;
		}
		int depth_before = lx->depth; /* after t: brackets already counted */
		if (t.type == T_OP && t.len == 1 && strchr("([{", t.s[0]))
			depth_before--;
		else if (t.type == T_OP && t.len == 1 && strchr(")]}", t.s[0]))
			depth_before++;
		struct frame *top = depth_before > 0 ? &a.frames[depth_before - 1] : NULL;

		if (a.chain_state != CH_DOT && (is_name(&t, "import") || (is_name(&t, "from")))) {
			bool handled = true;
			if (is_name(&t, "import"))
				parse_import(c, lx, &t);
			else
				handled = parse_from(c, lx, &t);
			if (handled) {
				a.chain_state = CH_NONE;
				a.prev_def = false;
				continue;
			}
		}
		/* Arguments of a watched call: the token belongs to the frame
		 * of the bracket it sits in. */
		if (top && top->kind != F_NONE) {
			if (is_op(&t, ","))
				arg_end(&a, top);
			else if (!(t.type == T_OP && t.len == 1 && strchr(")]}", t.s[0])))
				arg_token(top, &t, (size_t)(t.s - src));
		}
		bool def_kw = is_name(&t, "def") || is_name(&t, "class");
		if (t.type == T_NAME) {
			if (a.chain_state == CH_DOT)
				chain_append(&a, &t);
			else
				chain_start(&a, &t);
		} else if (is_op(&t, ".")) {
			a.chain_state = a.chain_state == CH_NAME ? CH_DOT : CH_NONE;
		} else if (t.type == T_OP && t.len == 1 && strchr("([{", t.s[0])) {
			struct frame *f = &a.frames[lx->depth - 1];
			memset(f, 0, sizeof(*f));
			arg_reset(f);
			f->kind = t.s[0] == '(' ? call_kind(&a, f) : F_NONE;
			a.chain_state = CH_NONE;
		} else if (t.type == T_OP && t.len == 1 && strchr(")]}", t.s[0])) {
			struct frame *f = &a.frames[lx->depth];
			if (f->kind != F_NONE)
				arg_end(&a, f);
			if (f->kind == F_IMPORT && f->root[0])
				chain_set(&a, f->root, strlen(f->root));
			else
				chain_set(&a, "?", 1);
			a.chain_def = false;
		} else if (t.type == T_STRING) {
			chain_set(&a, "?", 1);
			a.chain_def = false;
		} else {
			a.chain_state = CH_NONE;
		}
		a.prev_def = def_kw;
		lex_next(lx, &t);
	}
out:
	free(a.frames);
	free(lx);
}

/* Length of the valid UTF-8 character at s (n >= 1 bytes available), or 0
 * if there is none (invalid, or cut off). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
	int l = ab__utf8_decode(s, n, NULL);
	return l > 0 ? (size_t)l : 0;
}

/* Finds invalid UTF-8 or a NUL byte; returns its line, or 0. */
static unsigned bad_encoding_line(const unsigned char *s, size_t n, bool *nul)
{
	unsigned line = 1;
	for (size_t i = 0; i < n;) {
		unsigned char b = s[i];
		if (b < 0x80) {
			if (b == 0) {
				*nul = true;
				return line;
			}
			line += b == '\n';
			i++;
			continue;
		}
		size_t l = utf8_char(s + i, n - i);
		if (l == 0)
			return line;
		i += l;
	}
	return 0;
}

/* Reasons quote names cut at a display limit and are themselves cut to fit
 * out->reason; a cut can split a character, but the reason goes into JSON,
 * which must be valid UTF-8. Drops what is left of split characters. */
static void drop_partial_chars(char *s)
{
	size_t n = strlen(s), o = 0;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_char((const unsigned char *)s + i, n - i);
		if (l == 0) {
			i++;
			continue;
		}
		memmove(s + o, s + i, l);
		o += l;
		i += l;
	}
	s[o] = '\0';
}

static void nano_reason(ab_route *out)
{
	const char *m = out->modules;
	if (!m[0]) {
		snprintf(out->reason, sizeof(out->reason), "no imports");
		return;
	}
	char list[sizeof(out->reason)];
	size_t n = 0;
	const size_t room = sizeof(out->reason) - sizeof("standard-library code only ()") - 6;
	for (const char *p = m; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (n + l + 2 > room) {
			memcpy(list + n, ", ...", 5);
			n += 5;
			break;
		}
		if (n) {
			memcpy(list + n, ", ", 2);
			n += 2;
		}
		memcpy(list + n, p, l);
		n += l;
		p += l + (e ? 1 : 0);
	}
	list[n] = '\0';
	snprintf(out->reason, sizeof(out->reason), "standard-library code only (%s)", list);
}

void ab_router_route(const char *code, size_t len, const char *const *extra_heavy, ab_route *out)
{
	memset(out, 0, sizeof(*out));
	out->tier = AB_ROUTE_NANO;
	if (!code)
		len = 0;
	if (len > MAX_CELL) {
		out->tier = AB_ROUTE_HEAVY;
		snprintf(out->reason, sizeof(out->reason),
			 "cell too large to analyse (%zu bytes, more than 8 MiB)", len);
		return;
	}
	bool nul = false;
	unsigned bad = code ? bad_encoding_line((const unsigned char *)code, len, &nul) : 0;
	if (bad) {
		out->tier = AB_ROUTE_HEAVY;
		snprintf(out->reason, sizeof(out->reason), "cannot tokenize: %s (line %u)",
			 nul ? "source contains a NUL byte" : "invalid UTF-8", bad);
		return;
	}
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		out->tier = AB_ROUTE_HEAVY;
		snprintf(out->reason, sizeof(out->reason),
			 "out of memory while analysing the cell");
		return;
	}
	c->out = out;
	c->extra_heavy = extra_heavy;
	analyse(c, code ? code : "", len, 0);
	if (!c->heavy && !c->broken)
		nano_reason(out);
	drop_partial_chars(out->reason);
	free(c);
}
