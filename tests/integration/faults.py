"""Allocation-failure injection for daemon tests (issue 8, "one out-of-memory
policy"): an LD_PRELOAD shim that makes malloc(), realloc() and strdup() fail when they
are called directly from one function of agentboxd, found by its symbol.
Only agentboxd itself is affected (not the executor it starts)."""
import subprocess
from pathlib import Path

SHIM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_realloc(void *, size_t);
static uintptr_t lo, hi;

static int first_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	*(uintptr_t *)data = info->dlpi_addr;
	return 1; /* the main program comes first */
}

__attribute__((constructor)) static void setup(void)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 10)
		return;
	exe[n] = 0;
	if (strcmp(exe + n - 10, "/agentboxd") != 0)
		return;
	const char *spec = getenv("FAIL_ALLOC_IN"); /* "OFFSET:SIZE", hex */
	if (!spec)
		return;
	char *end;
	uintptr_t off = strtoul(spec, &end, 16), size = strtoul(end + 1, NULL, 16);
	uintptr_t base = 0;
	dl_iterate_phdr(first_object, &base);
	lo = base + off;
	hi = lo + size;
}

static int from_target(void *ret)
{
	return (uintptr_t)ret >= lo && (uintptr_t)ret < hi;
}

void *malloc(size_t n)
{
	if (hi && from_target(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(n);
}

void *realloc(void *p, size_t n)
{
	if (hi && from_target(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_realloc(p, n);
}

char *strdup(const char *s)
{
	if (hi && from_target(__builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *p = __libc_malloc(n);
	return p ? memcpy(p, s, n) : NULL;
}
"""


def build_shim(tmp: Path) -> Path:
    src = tmp / "fail_alloc.c"
    src.write_text(SHIM)
    so = tmp / "fail_alloc.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(so), str(src)], check=True)
    return so


def function_range(binary: Path, name: str) -> str:
    """"OFFSET:SIZE" (hex) of a function of binary, for FAIL_ALLOC_IN."""
    out = subprocess.run(["nm", "-S", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name and parts[2] in "Tt":
            return f"{parts[0]}:{parts[1]}"
    raise LookupError(f"{name} not found in {binary} (stripped?)")
