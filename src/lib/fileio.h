/* fileio.h - small file helpers shared inside the library (not public). */
#ifndef AB_FILEIO_H
#define AB_FILEIO_H

#include <stddef.h>

/* Writes all n bytes (retrying short writes and EINTR); 0 or -errno. */
int ab__write_all(int fd, const char *p, size_t n);
/* fsyncs the directory that holds path, so that a file just created in it
 * (or renamed into it) survives a crash. Best effort. */
void ab__fsync_parent(const char *path);

#endif
