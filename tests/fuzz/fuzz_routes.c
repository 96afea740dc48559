/* fuzz_routes.c - loading routes.json (src/lib/routes.c).
 *
 * Input: the bytes of $AGENTBOX_HOME/routes.json, which any process of the
 * user can write. Invariants:
 *  - ab_routes_load either fails with a message, or gives a store whose
 *    module list is sorted, distinct and within the cap of 1024;
 *  - a loaded store saves back over its unchanged file (the merge with
 *    the file then changes nothing) and loads again to the same content
 *    (ab_routes_to_json equal), and every learned cell is found by its
 *    digest;
 *  - the router accepts the learned module list as its extra_heavy list. */
#include <limits.h>

#include "internal.h"
#include "fuzz.h"

static char in_path[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *dir = fuzz_scratch_dir();
	snprintf(in_path, sizeof(in_path), "%s/routes.json", dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_write_file(in_path, data, size);
	ab_routes *r = NULL;
	ab_error err = {0};
	int rc = ab_routes_load(in_path, &r, &err);
	if (rc < 0) {
		FUZZ_CHECK(err.code == rc && err.msg[0] && r == NULL);
		return 0;
	}
	FUZZ_CHECK(r);
	const char *const *mods = ab_routes_modules(r);
	size_t n = 0;
	for (; mods[n]; n++) {
		FUZZ_CHECK(mods[n][0]);
		if (n > 0)
			FUZZ_CHECK(strcmp(mods[n - 1], mods[n]) < 0);
	}
	FUZZ_CHECK(n <= 1024);
	ab_route route;
	ab_router_route("import json\n", 12, mods, &route);

	json_t *before = ab_routes_to_json(r);
	FUZZ_CHECK(before);
	json_t *cells = json_object_get(before, "cells");
	const char *key;
	json_t *v;
	json_object_foreach(cells, key, v)
	{
		const char *reason = ab_routes_cell(r, key);
		FUZZ_CHECK(reason && json_is_string(json_object_get(v, "reason")));
		FUZZ_CHECK(strcmp(reason, json_string_value(json_object_get(v, "reason"))) == 0);
	}

	rc = ab_routes_save(r, in_path, &err);
	FUZZ_CHECK(rc == 0);
	json_t *saved = ab_routes_to_json(r);
	FUZZ_CHECK(saved && json_equal(before, saved));
	ab_routes *back = NULL;
	rc = ab_routes_load(in_path, &back, &err);
	if (rc < 0)
		fprintf(stderr, "reload: %s\n", err.msg);
	FUZZ_CHECK(rc == 0);
	json_t *after = ab_routes_to_json(back);
	FUZZ_CHECK(after && json_equal(before, after));
	json_decref(before);
	json_decref(saved);
	json_decref(after);
	ab_routes_free(back);
	ab_routes_free(r);
	return 0;
}
