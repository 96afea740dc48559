/* normalize.c - the normalised view (docs/dlp.md, "Normalisation"). */
#include <stdlib.h>

#include "dlp_internal.h"

void dlp_buf_free(dlp_buf *b)
{
	free(b->data);
	free(b->map);
	b->data = NULL;
	b->map = NULL;
	b->len = 0;
}

int dlp_normalize(const char *data, size_t len, dlp_buf *out)
{
	(void)data;
	(void)len;
	(void)out;
	return 0;
}

unsigned dlp_normalize_explain(const char *data, size_t len)
{
	(void)data;
	(void)len;
	return 0;
}
