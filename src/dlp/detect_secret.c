/* detect_secret.c - the detectors of credentials (docs/dlp.md, "Detectors"). */
#include "dlp_internal.h"

const dlp_detector dlp_secret_detectors[] = {{0}};
const size_t dlp_secret_detector_count = 0;
