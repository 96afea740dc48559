/* decode.c - the decoded views (docs/dlp.md, "Decoders"). */
#include "dlp_internal.h"

int dlp_decode(const char *data, size_t len, const dlp_decode_opts *o, dlp_region_fn fn,
	       void *ctx)
{
	(void)data;
	(void)len;
	(void)o;
	(void)fn;
	(void)ctx;
	return 0;
}

const char *dlp_decoder_name(enum dlp_decoder d)
{
	(void)d;
	return "?";
}
