/* detect_pii.c - the detectors of personal data (docs/dlp.md, "Detectors"). */
#include "dlp_internal.h"

const dlp_detector dlp_pii_detectors[] = {{0}};
const size_t dlp_pii_detector_count = 0;
