/* tests/testfs.h - file-system helpers the tests that make folders share.
 * Needs POSIX 2008 (lstat, opendir): define _POSIX_C_SOURCE 200809L (or
 * _XOPEN_SOURCE / _GNU_SOURCE) before any include. */
#ifndef QIAO_TESTFS_H
#define QIAO_TESTFS_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* rm -rf of `path`, never following a symbolic link; missing is fine. */
static inline void qt_rm_rf(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096];
            int len = snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            if (len > 0 && (size_t)len < sizeof p) qt_rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

#endif /* QIAO_TESTFS_H */
