/* sdk/core/file.c - reading a path safely and replacing a file atomically.
 *
 * Every function that takes a path to read goes through qc_open_read, so a
 * named pipe, a device or a directory given by mistake is refused at once
 * with a message saying what it is, instead of blocking in open() (a FIFO
 * without a writer) or reading forever (/dev/zero).
 *
 * Writers that replace a file (models, checkpoints, arrays) go through
 * qc_atomic_*: the data is written to an unnamed file (O_TMPFILE) in the
 * target's folder and only given a name when complete, so a process killed
 * mid-write leaves nothing behind, and one killed in the microseconds
 * between naming the complete file `<target>.tmp.XXXXXX` and renaming it
 * leaves that file, locked until its writer's death, for the next write of
 * the same target to remove. Where the file system has no O_TMPFILE the
 * temporary is `<target>.part.XXXXXX` from the start, locked while written,
 * and removed the same way once its lock is free. */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

const char *qc_file_kind(unsigned mode) {
    if (S_ISREG(mode)) return "a file";
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a named pipe (FIFO)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "neither a file nor a folder";
}

qiao_status qc_open_read(const char *path, int *fd_out, int64_t *size) {
    if (fd_out) *fd_out = -1;
    if (size) *size = 0;
    if (!path || !fd_out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_open_read: NULL argument");
    if (!path[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "empty path");
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer. It is cleared again below for the regular file that remains. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return qc_error(e == ENOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_IO, "%s: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return qc_error(QIAO_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return qc_error(QIAO_ERR_IO, "%s: is %s, not a regular file", path, qc_file_kind(sb.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return qc_error(QIAO_ERR_IO, "%s: cannot set blocking mode: %s", path, strerror(e));
    }
    *fd_out = fd;
    if (size) *size = (int64_t)sb.st_size;
    return QIAO_OK;
}

qiao_status qc_fopen_read(const char *path, FILE **out, int64_t *size) {
    if (out) *out = NULL;
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_fopen_read: NULL argument");
    int fd;
    qiao_status st = qc_open_read(path, &fd, size);
    if (st != QIAO_OK) return st;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return qc_error(e == ENOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_IO, "%s: cannot open: %s", path,
                        strerror(e));
    }
    *out = f;
    return QIAO_OK;
}

qiao_status qc_read_file(const char *path, size_t max, uint8_t **data, size_t *size) {
    if (data) *data = NULL;
    if (size) *size = 0;
    if (!data || !size) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_read_file: NULL argument");
    int fd;
    int64_t fsize;
    qiao_status st = qc_open_read(path, &fd, &fsize);
    if (st != QIAO_OK) return st;
    if (fsize < 0 || (uint64_t)fsize > (uint64_t)max || (uint64_t)fsize >= (uint64_t)SIZE_MAX) {
        close(fd);
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %lld bytes, over the limit of %zu", path, (long long)fsize, max);
    }
    size_t n = (size_t)fsize;
    /* One byte more, always zero, so text readers may treat it as a string. */
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return qc_error(QIAO_ERR_IO, "%s: read %zu of %zu bytes%s%s", path, got, n, e ? ": " : " (file shrank)",
                            e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *size = n;
    return QIAO_OK;
}

qiao_status qc_mkdir_p(const char *path) {
    if (!path || !path[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_mkdir_p: empty path");
    char *buf = strdup(path);
    if (!buf) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            qiao_status st = qc_error(QIAO_ERR_IO, "%s: cannot create the folder: %s", buf, strerror(e));
            free(buf);
            return st;
        }
        *p = c;
        if (!c) break;
    }
    free(buf);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return qc_error(QIAO_ERR_IO, "%s: exists and is not a folder", path);
    return QIAO_OK;
}

/* ---- atomic replacement ------------------------------------------------------------ */

/* "dir/name" -> "dir" ("." without a slash, "/" for "/name"). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Removes the temporaries of `path` that no live writer holds (their
 * flock is free), best effort. `<base>.tmp.XXXXXX` is a complete file that
 * was locked before it had a name (below), so a free lock means its writer
 * died between naming it and renaming it. `<base>.part.XXXXXX` comes from
 * mkstemp, which names the file before it can be locked: one younger than a
 * few seconds may belong to a writer about to lock it, and is left alone.
 * Returns how many were removed. */
static int sweep_stale(const char *path) {
    char *dir = dir_of(path);
    if (!dir) return 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    int removed = 0;
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return 0;
    }
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) != 0) continue;
        int named_late = strncmp(n + blen, ".part.", 6) == 0 && strlen(n + blen + 6) == 6;
        int named_locked = strncmp(n + blen, ".tmp.", 5) == 0 && strlen(n + blen + 5) == 6;
        if (!named_late && !named_locked) continue;
        int fd = openat(dfd, n, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0) continue;
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (!named_late || time(NULL) - sb.st_mtime > 5) &&
            flock(fd, LOCK_EX | LOCK_NB) == 0) {
            if (unlinkat(dfd, n, 0) == 0) {
                removed++;
                qc_log(QIAO_LOG_INFO, "%s/%s: removed a temporary file left by an interrupted write", dir, n);
            }
        }
        close(fd);
    }
    closedir(d);
    free(dir);
    return removed;
}

int qc_atomic_sweep(const char *path) { return path && path[0] ? sweep_stale(path) : 0; }

qiao_status qc_atomic_begin(qc_atomic_file *af, const char *path) {
    if (!af || !path || !path[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_atomic_begin: NULL argument");
    memset(af, 0, sizeof *af);
    af->fd = -1;
    af->path = strdup(path);
    af->dir = dir_of(path);
    if (!af->path || !af->dir) {
        qc_atomic_discard(af);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    (void)sweep_stale(path);
    /* Keep the mode of the file being replaced, else 0644. (The umask is
     * process state that other threads may be changing, so it is not read.) */
    struct stat sb;
    af->mode = stat(path, &sb) == 0 ? (unsigned)(sb.st_mode & 07777) : 0644u;
#ifdef O_TMPFILE
    af->fd = open(af->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, (mode_t)af->mode);
#endif
    if (af->fd < 0) {
        size_t plen = strlen(path);
        af->tmp = malloc(plen + sizeof ".part.XXXXXX");
        if (!af->tmp) {
            qc_atomic_discard(af);
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        }
        memcpy(af->tmp, path, plen);
        memcpy(af->tmp + plen, ".part.XXXXXX", sizeof ".part.XXXXXX");
        af->fd = mkostemp(af->tmp, O_CLOEXEC);
        if (af->fd < 0) {
            int e = errno;
            free(af->tmp);
            af->tmp = NULL; /* nothing to remove */
            qc_atomic_discard(af);
            return qc_error(QIAO_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
        }
        if (fchmod(af->fd, (mode_t)af->mode) != 0) {
            int e = errno;
            qc_atomic_discard(af);
            return qc_error(QIAO_ERR_IO, "%s: cannot set the mode of a temporary file: %s", path, strerror(e));
        }
    }
    /* Marks the file as in use, for the sweep of another writer; an
     * unnamed file is locked before it gets its name. */
    (void)flock(af->fd, LOCK_EX | LOCK_NB);
    return QIAO_OK;
}

qiao_status qc_atomic_commit(qc_atomic_file *af) {
    if (!af || af->fd < 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qc_atomic_commit: no file being written");
    const char *path = af->path;
    qiao_status st = QIAO_OK;
    if (fsync(af->fd) != 0) {
        st = qc_error(QIAO_ERR_IO, "%s: cannot flush to disk: %s", path, strerror(errno));
        goto fail;
    }
    if (!af->tmp) {
        /* Give the unnamed file a temporary name, then rename it over the
         * target: linkat() cannot replace an existing file. */
        size_t plen = strlen(path);
        af->tmp = malloc(plen + sizeof ".tmp.XXXXXX");
        if (!af->tmp) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            goto fail;
        }
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", af->fd);
        static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        qc_rng rng;
        qc_rng_seed(&rng, (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)af);
        int linked = 0;
        for (int attempt = 0; attempt < 100 && !linked; attempt++) {
            memcpy(af->tmp, path, plen);
            memcpy(af->tmp + plen, ".tmp.", 5);
            for (int i = 0; i < 6; i++) af->tmp[plen + 5 + i] = alnum[qc_rng_below(&rng, sizeof alnum - 1)];
            af->tmp[plen + 11] = 0;
            if (linkat(AT_FDCWD, proc, AT_FDCWD, af->tmp, AT_SYMLINK_FOLLOW) == 0) linked = 1;
            else if (errno != EEXIST) break;
        }
        if (!linked) {
            st = qc_error(QIAO_ERR_IO, "%s: cannot name the written file: %s", path, strerror(errno));
            free(af->tmp);
            af->tmp = NULL;
            goto fail;
        }
    }
    if (rename(af->tmp, path) != 0) {
        st = qc_error(QIAO_ERR_IO, "%s: cannot rename %s over it: %s", path, af->tmp, strerror(errno));
        goto fail;
    }
    free(af->tmp);
    af->tmp = NULL; /* renamed: nothing to remove */
    int rc = close(af->fd);
    af->fd = -1;
    if (rc != 0) {
        /* The data was fsync'ed; a late close error is still worth a word. */
        qc_log(QIAO_LOG_WARN, "%s: close after writing: %s", path, strerror(errno));
    }
    /* Make the rename itself durable. Best effort: some file systems cannot
     * fsync a folder, and the new file is already in place. */
    int dfd = open(af->dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    qc_atomic_discard(af); /* frees the names */
    return QIAO_OK;
fail:
    qc_atomic_discard(af);
    return st;
}

void qc_atomic_discard(qc_atomic_file *af) {
    if (!af) return;
    if (af->tmp) unlink(af->tmp);
    if (af->fd >= 0) close(af->fd);
    free(af->tmp);
    free(af->path);
    free(af->dir);
    memset(af, 0, sizeof *af);
    af->fd = -1;
}
