/* cell.h - running one cell of user code in the embedded interpreter.
 * Runs in the executor, inside the sandbox, after the jail is complete. */
#ifndef AB_EXECUTOR_CELL_H
#define AB_EXECUTOR_CELL_H

#include <stdbool.h>

#include "internal.h"

/* Prepares __main__ and the interpreter for cells. The interpreter must be
 * initialised and the GIL held. Sets MPLBACKEND-equivalent (matplotlib.use
 * ("Agg")) lazily, limits BLAS/OpenMP pools to one thread. */
int ab_cell_init(ab_error *err);

/* Heavy zygote only: imports numpy, pandas and matplotlib (Agg), exercises
 * them once (DataFrame.describe(), one figure saved to PNG) so that lazy
 * imports and caches are filled before fork, then gc.collect() + gc.freeze()
 * so that forked sessions do not dirty the shared heap. */
int ab_cell_warm_heavy(ab_error *err);

/* Runs code as one cell in __main__, like a notebook cell, and returns a new
 * JSON object with:
 *   "status": "ok" | "error"
 *   "exit_code": 0 | 1 (uncaught exception) | n (SystemExit(n))
 *   "error": null | {"name", "value", "traceback", "frames", "frames_omitted"?}
 *            frames: the traceback's frames from the one whose file name is
 *            filename inwards, with their locals (docs/executor-protocol.md)
 *   "value": repr of the last expression statement, or null
 *   "results": [ {"text/plain": ..., "image/png": base64, "text/html": ...} ]
 *   "duration_ms": wall time of the cell
 * Never returns NULL (an internal failure becomes an "error" result with
 * name "AgentboxInternalError"). Flushes sys.stdout/sys.stderr (and C stdio)
 * before returning so that all output precedes the result frame. */
json_t *ab_cell_run(const char *code, const char *filename);

#endif
