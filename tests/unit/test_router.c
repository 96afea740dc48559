/* test_router.c - the tier router (src/lib/router.c): a table of cells with
 * the tier each must get and a piece of the reason, then the module list,
 * learned routes, bounds and a large cell. */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "unit.h"

#define N AB_ROUTE_NANO
#define H AB_ROUTE_HEAVY

static const struct route_case {
	const char *code;
	enum ab_route_tier tier;
	const char *reason; /* a substring of the reason */
} cases[] = {
    /* Plain code and empty cells. */
    {"", N, "no imports"},
    {"x = 1 + 2\nprint(x)\n", N, "no imports"},
    {"# only a comment\n# and another\n", N, "no imports"},
    {"\n\n   \n", N, "no imports"},
    {"def f(a, b=2, *c, **d):\n    return a\nclass K: pass\n", N, "no imports"},

    /* Every import form. */
    {"import json", N, "standard-library code only (json)"},
    {"import json, re\n", N, "standard-library code only (json, re)"},
    {"import os.path\nprint(os.path.join('a', 'b'))", N, "(os)"},
    {"import xml.etree.ElementTree as ET", N, "(xml)"},
    {"from xml.etree import ElementTree", N, "(xml)"},
    {"from xml.dom import minidom", H, "imports xml.dom (not available in nano)"},
    {"from collections.abc import Mapping", N, "(collections)"},
    {"from __future__ import annotations\nimport typing", N, "__future__, typing"},
    {"import pandas", H, "imports pandas (not available in nano)"},
    {"import numpy as np", H, "imports numpy (not available in nano)"},
    {"import json, numpy", H, "imports numpy (not available"},
    {"import matplotlib.pyplot as plt", H, "imports matplotlib.pyplot"},
    {"from sklearn.linear_model import LinearRegression", H, "imports sklearn.linear_model"},
    {"from scipy import stats", H, "imports scipy"},
    {"import json as j, re as r\nj.dumps(r.compile('x'))", N, "json, re"},
    {"from json import (\n    dumps,\n    loads as L,\n)\n", N, "(json)"},
    {"from json import (dumps,\n  loads)\nimport pandas", H, "imports pandas"},
    {"from math import *\nprint(pi)", N, "(math)"},
    {"import \\\n    pandas", H, "imports pandas"},
    {"x = 1; import pandas", H, "imports pandas"},
    {"if True: import scipy", H, "imports scipy"},
    {"try:\n    import numpy\nexcept ImportError:\n    pass", H, "imports numpy"},
    {"from . import x", N, "no imports"},
    {"from .m import x\nfrom .. import y", N, "no imports"},
    {"def g():\n    yield from range(3)\n", N, "no imports"},
    {"try:\n    pass\nexcept E as e:\n    raise ValueError() from e\n", N, "no imports"},
    {"import importlib\nimportlib.import_module('json')", N, "importlib, json"},
    {"import importlib\nm = importlib.import_module('scipy.stats')", H, "imports scipy.stats"},
    {"import importlib\nm = importlib.import_module(name)", H,
     "dynamic import of a non-literal name"},
    {"from importlib import import_module as im\nim('pandas')", H, "imports pandas"},
    {"m = __import__('json')", N, "(json)"},
    {"m = __import__(\"pandas\")", H, "imports pandas"},
    {"m = __import__(name)", H, "dynamic import of a non-literal name"},
    {"m = __import__('js' 'on')", N, "(json)"},
    {"m = __import__(f'{x}')", H, "dynamic import of a non-literal name"},

    /* Import statements that are only text. */
    {"s = 'import numpy'", N, "no imports"},
    {"# import numpy\nx = 1", N, "no imports"},
    {"def f():\n    \"\"\"Example:\n    import numpy\n    \"\"\"\n", N, "no imports"},
    {"s = f'import numpy {x}'", N, "no imports"},
    {"s = f\"{d['import numpy']}\"", N, "no imports"},
    {"s = f\"{d[\"k\"]} import pandas\"", N, "no imports"},
    {"s = f'{x:>10} {y!r:^{w}}'\n", N, "no imports"},
    {"s = '''\nimport socket\n'''\nt = \"\"\"\nimport socket\n\"\"\"", N, "no imports"},
    {"s = 'it\\'s \"import socket\"'", N, "no imports"},
    {"s = \"a \\\" import socket \\\" b\"", N, "no imports"},
    {"s = r'\\\\' + 'import pandas'", N, "no imports"},
    {"s = r'\\'' + ' import pandas'", N, "no imports"},
    {"s = rb'x' + Br\"y\" + Rf'{z}' + U'w'", N, "no imports"},
    {"s = 'a \\\nimport pandas'", N, "no imports"},
    {"print(\"subprocess\")", N, "no imports"},
    {"socket_count = 3\nprint(socket_count)", N, "no imports"},
    {"def f(socket=None):\n    return socket\nf(socket=1)", N, "no imports"},

    /* exec, eval and compile of strings. */
    {"exec(\"import pandas\")", H, "imports pandas"},
    {"exec('import json')", N, "(json)"},
    {"exec('x = 1\\nimport socket')", H, "uses socket (network needs heavy)"},
    {"exec(\"exec('import pandas')\")", H, "imports pandas"},
    {"exec(code)", H, "exec of a non-literal string"},
    {"eval(expr)", H, "eval of a non-literal string"},
    {"eval('1 + 2')", N, "no imports"},
    {"c = compile(src, 'f', 'exec')", H, "compile of a non-literal string"},
    {"c = re.compile(pattern)", N, "no imports"},
    {"exec('s = \"unterminated')", H, "cannot tokenize an exec'd string"},
    {"exec(\"exec('exec(\\\"exec(1)\\\")')\")", H, "exec of a non-literal string"},
    {"exec(\"exec('exec(\\\"exec(\\\\'1\\\\')\\\")')\")", H, "exec nested more than 3 deep"},

    /* Processes and the network. */
    {"import subprocess\nsubprocess.run(['ls'])", H, "uses subprocess (processes need heavy)"},
    {"from subprocess import run", H, "uses subprocess"},
    {"import os\nos.system('ls')", H, "calls os.system"},
    {"import os\nprint(os.path.join('a', 'b'))\nos.getcwd()", N, "(os)"},
    {"import os as o\no.popen('ls')", H, "calls os.popen"},
    {"from os import system\nsystem('ls')", H, "calls os.system"},
    {"from os import *\nsystem('ls')", H, "calls os.system"},
    {"import os\nos.execvp('ls', ['ls'])", H, "calls os.execvp"},
    {"import os\nos.fork()", H, "calls os.fork"},
    {"__import__(\"os\").system(\"ls\")", H, "calls os.system"},
    {"__import__('os').getcwd()", N, "(os)"},
    {"import importlib\nimportlib.import_module('os').system('x')", H, "calls os.system"},
    {"import multiprocessing", H, "uses multiprocessing (processes need heavy)"},
    {"from concurrent.futures import ProcessPoolExecutor", H, "processes need heavy"},
    {"from concurrent.futures import ThreadPoolExecutor", N, "(concurrent)"},
    {"import socket", H, "uses socket (network needs heavy)"},
    {"import urllib.request", H, "uses urllib.request"},
    {"from urllib import request", H, "uses urllib.request"},
    {"from urllib.parse import urlparse", N, "(urllib)"},
    {"import http.client", H, "uses http.client"},
    {"import requests\nrequests.get('http://x')", H, "uses requests (network needs heavy)"},
    {"import ctypes", H, "uses ctypes (native code needs heavy)"},

    /* File writes. */
    {"f = open('f')\nprint(f.read())", N, "no imports"},
    {"f = open('f', 'rb')", N, "no imports"},
    {"with open('data.txt', encoding='utf-8') as f: pass", N, "no imports"},
    {"f = open('f', 'w')", H, "opens a file for writing (open(..., 'w'))"},
    {"f = open('f', mode=\"a\")", H, "open(..., 'a')"},
    {"f = open('f', 'r+')", H, "opens a file for writing"},
    {"f = open(\n  'f',\n  'x',\n)", H, "opens a file for writing"},
    {"f = open(os.path.join(a, b), 'wb')", H, "opens a file for writing"},
    {"f = open(p, m)", H, "opens a file with a mode that is not a literal"},
    {"f = open(*args)", H, "mode that is not a literal"},
    {"def open(p, m):\n    return p\n", N, "no imports"},
    {"import io\nf = io.open('f', 'w')", H, "opens a file for writing"},
    {"from pathlib import Path\nPath('x').write_text('hi')", H, "calls .write_text()"},
    {"import pathlib\np = pathlib.Path('d')\np.mkdir()", H, "calls .mkdir()"},
    {"from pathlib import Path\nPath('x').read_text()", N, "(pathlib)"},
    {"from pathlib import Path\nf = Path('x').open('w')", H, "opens a file for writing"},
    {"from pathlib import Path\nf = Path('x').open()", N, "(pathlib)"},
    {"import os\nos.remove('x')", H, "calls os.remove (file writes need heavy)"},
    {"import os\nos.makedirs('d', exist_ok=True)", H, "calls os.makedirs"},
    {"import shutil\nshutil.rmtree('d')", H, "shutil"},
    {"import tempfile", H, "uses tempfile (file writes need heavy)"},
    {"import sqlite3", H, "uses sqlite3"},

    /* Encodings and identifiers. */
    {"\xEF\xBB\xBFimport json\n", N, "(json)"},
    {"# -*- coding: latin-1 -*-\nimport json\n", N, "(json)"},
    {"caf\xC3\xA9 = 1\n\xCF\x80 = 3.14\nprint(caf\xC3\xA9 * \xCF\x80)", N, "no imports"},
    {"s = 'caf\xE9'", H, "cannot tokenize: invalid UTF-8 (line 1)"},
    {"x = 1\r\nimport pandas\r\n", H, "imports pandas"},
    {"x = 1.5e-3 + 0x1F + 1_000j", N, "no imports"},

    /* Code that cannot be tokenized: Python refuses it with a SyntaxError
     * before running any of it, which nano answers as well as heavy. */
    {"s = 'abc", N, "cannot tokenize: unterminated string literal (line 1)"},
    {"x = 1\ny = 2\ns = \"\"\"abc\n", N, "unterminated triple-quoted string (line 3)"},
    {"import json\nprint((1, 2)", N, "cannot tokenize: '(' was never closed (line 2)"},
    {"print(1))", N, "cannot tokenize: unmatched ')'"},
    {"x = 1 \\ y", N, "unexpected character after line continuation"},
};

static bool case_passes(size_t i, const struct route_case *c)
{
	ab_route r;
	ab_router_route(c->code, strlen(c->code), NULL, &r);
	if (r.tier == c->tier && strstr(r.reason, c->reason))
		return true;
	fprintf(stderr, "case %zu: %s\n  got %s \"%s\", expected %s \"%s\"\n", i, c->code,
		r.tier == N ? "nano" : "heavy", r.reason, c->tier == N ? "nano" : "heavy",
		c->reason);
	return false;
}

AB_TEST(router_table)
{
	size_t n = sizeof(cases) / sizeof(cases[0]), failed = 0;
	CHECK(n >= 70);
	for (size_t i = 0; i < n; i++)
		failed += !case_passes(i, &cases[i]);
	CHECK_EQ_INT(failed, 0);
}

AB_TEST(router_modules_field)
{
	ab_route r;
	const char *code = "import json, os.path\nfrom re import sub\nimport json\n"
			   "__import__('math')\nfrom . import local\nimport numpy.linalg\n";
	ab_router_route(code, strlen(code), NULL, &r);
	CHECK_STR(r.modules, "json,os,re,math,numpy");
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "imports numpy.linalg");
}

AB_TEST(router_modules_field_truncates_whole_names)
{
	static char code[64 * 1024];
	size_t n = 0;
	for (int i = 0; i < 2000; i++)
		n += (size_t)snprintf(code + n, sizeof(code) - n, "import module_number_%d\n", i);
	ab_route r;
	ab_router_route(code, n, NULL, &r);
	CHECK_EQ_INT(r.tier, H);
	size_t len = strlen(r.modules);
	CHECK(len < sizeof(r.modules));
	CHECK(len > sizeof(r.modules) - 30);
	/* The list ends with a whole name, never a cut one. */
	const char *last = strrchr(r.modules, ',') + 1;
	CHECK(strncmp(last, "module_number_", 14) == 0);
	char want[64];
	snprintf(want, sizeof(want), "import %s\n", last);
	CHECK(strstr(code, want) != NULL);
}

AB_TEST(router_nano_modules_list)
{
	const char *const *m = ab_router_nano_modules();
	bool json = false, os = false, pandas = false, subprocess = false;
	size_t count = 0;
	for (; m[count]; count++) {
		if (count > 0)
			CHECK(strcmp(m[count - 1], m[count]) < 0); /* sorted: the router bisects */
		json |= strcmp(m[count], "json") == 0;
		os |= strcmp(m[count], "os") == 0;
		pandas |= strcmp(m[count], "pandas") == 0;
		subprocess |= strcmp(m[count], "subprocess") == 0;
	}
	CHECK(count >= 60);
	CHECK(json);
	CHECK(os);
	CHECK(!pandas);
	CHECK(!subprocess);
}

AB_TEST(router_every_nano_module_routes_nano)
{
	for (const char *const *m = ab_router_nano_modules(); *m; m++) {
		char code[160];
		snprintf(code, sizeof(code), "import %s\n", *m);
		ab_route r;
		ab_router_route(code, strlen(code), NULL, &r);
		if (r.tier != N)
			fprintf(stderr, "%s: %s\n", *m, r.reason);
		CHECK_EQ_INT(r.tier, N);
	}
}

AB_TEST(router_learned_heavy)
{
	const char *const learned[] = {"fancylib", "json", NULL};
	ab_route r;
	const char *code = "import fancylib.sub\n";
	ab_router_route(code, strlen(code), learned, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "imports fancylib.sub (learned: needed heavy before)");
	code = "import json\n";
	ab_router_route(code, strlen(code), learned, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "imports json (learned: needed heavy before)");
	/* A learned name is a whole module, not a prefix of another. */
	code = "import jsonschema_like\n";
	ab_router_route(code, strlen(code), learned, &r);
	CHECK_CONTAINS(r.reason, "imports jsonschema_like (not available in nano)");
	code = "import re\n";
	ab_router_route(code, strlen(code), learned, &r);
	CHECK_EQ_INT(r.tier, N);
}

AB_TEST(router_null_and_embedded_nul)
{
	ab_route r;
	ab_router_route(NULL, 0, NULL, &r);
	CHECK_EQ_INT(r.tier, N);
	CHECK_STR(r.reason, "no imports");
	ab_router_route("x = 1\n\0import pandas", 21, NULL, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "NUL byte (line 2)");
}

AB_TEST(router_first_reason_wins)
{
	ab_route r;
	const char *code = "import pandas\nimport subprocess\n";
	ab_router_route(code, strlen(code), NULL, &r);
	CHECK_CONTAINS(r.reason, "imports pandas");
	CHECK_STR(r.modules, "pandas,subprocess");
	/* A cell that cannot be tokenized says so above anything else. */
	code = "import pandas\ns = 'open";
	ab_router_route(code, strlen(code), NULL, &r);
	CHECK_EQ_INT(r.tier, N);
	CHECK_CONTAINS(r.reason, "cannot tokenize: unterminated string literal (line 2)");
}

AB_TEST(router_deep_nesting_is_bounded)
{
	static char code[100000];
	size_t n = 0;
	for (int i = 0; i < 250; i++)
		code[n++] = '(';
	for (int i = 0; i < 250; i++)
		code[n++] = ')';
	ab_route r;
	ab_router_route(code, n, NULL, &r);
	CHECK_EQ_INT(r.tier, N);
	CHECK_CONTAINS(r.reason, "too many nested brackets");
	n = 0;
	for (int i = 0; i < 150; i++)
		n += (size_t)snprintf(code + n, sizeof(code) - n, "f'{");
	ab_router_route(code, n, NULL, &r);
	CHECK_EQ_INT(r.tier, N);
	CHECK_CONTAINS(r.reason, "cannot tokenize");
}

AB_TEST(router_large_cell)
{
	size_t max = 8u << 20;
	char *code = malloc(max + 1);
	CHECK(code != NULL);
	const char line[] = "print('hello', 1 + 2, [x for x in range(3)])  # note\n";
	size_t n = 0;
	while (n + sizeof(line) - 1 <= max) {
		memcpy(code + n, line, sizeof(line) - 1);
		n += sizeof(line) - 1;
	}
	while (n < max)
		code[n++] = '\n';
	ab_route r;
	ab_router_route(code, n, NULL, &r);
	CHECK_EQ_INT(r.tier, N);
	CHECK_STR(r.reason, "no imports");
	memcpy(code + n - 13, "import numpy\n", 13);
	ab_router_route(code, n, NULL, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "imports numpy");
	code[n] = '\n';
	ab_router_route(code, n + 1, NULL, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "too large");
	free(code);
}

/* Found by tests/fuzz/fuzz_router.c: a reason quotes at most 100 bytes of a
 * module name, and the cut could split a non-ASCII character; the reason
 * was then not valid UTF-8, which jansson refuses, so the daemon could not
 * build the run's result. */
AB_TEST(router_reason_stays_valid_utf8_when_a_name_is_cut)
{
	char code[512] = "import ";
	for (int i = 0; i < 49; i++)
		strcat(code, "\xc3\xa9");
	strcat(code, "x\xc3\xa9\xc3\xa9\n"); /* byte 100 of the name splits an e-acute */
	ab_route r;
	ab_router_route(code, strlen(code), NULL, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "(not available in nano)");
	json_t *s = json_string(r.reason);
	CHECK(s != NULL);
	json_decref(s);
	CHECK_CONTAINS(r.reason, "x (not available");

	/* A cut by the size of the reason itself: a long dotted name of
	 * three-byte characters. */
	strcpy(code, "from json import x\nimport a.");
	for (int i = 0; i < 100; i++)
		strcat(code, "\xe2\x82\xac");
	strcat(code, "\n");
	ab_router_route(code, strlen(code), NULL, &r);
	s = json_string(r.reason);
	CHECK(s != NULL);
	json_decref(s);
}

/* Found by tests/fuzz/fuzz_router.c: an exec'd string is decoded (escapes
 * included) and analysed as code, but unlike a cell it was not checked for
 * NUL bytes: the tokenizer took a NUL for an operator that strchr() found
 * among the brackets, and the analysis wrote before the start of its
 * bracket frames (a heap overflow in the daemon, from any client's code). */
AB_TEST(router_exec_string_with_a_nul_byte)
{
	static const char *const codes[] = {
	    "exec(\"f(\\0\")\n",	      /* the fuzzer's input, reduced */
	    "exec(\"im(f<%=s\\0\\x02\",c)\n", /* the fuzzer's input */
	    "exec('x = (1,\\x00 2)')\n",
	};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		ab_route r;
		ab_router_route(codes[i], strlen(codes[i]), NULL, &r);
		CHECK_EQ_INT(r.tier, H);
		CHECK_CONTAINS(r.reason, "cannot tokenize an exec'd string: source contains a NUL");
	}
	/* Bytes literals can carry invalid UTF-8 the same way. */
	const char *bytes = "exec(b'import \\xff')\n";
	ab_route r;
	ab_router_route(bytes, strlen(bytes), NULL, &r);
	CHECK_EQ_INT(r.tier, H);
	CHECK_CONTAINS(r.reason, "cannot tokenize an exec'd string: invalid UTF-8");
	json_t *m = json_string(r.modules);
	CHECK(m != NULL);
	json_decref(m);
}
