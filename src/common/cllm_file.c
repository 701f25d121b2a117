// Output-file safety shared by every writer (container, synth): temporaries are created
// exclusively beside their target, and a target is replaced only when it is a regular file.
#include "cllm_common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cllm_status cllm_temp_create(const char *path, cllm_temp_fn announce, void *user, char **tmp_path,
                             int *fd) {
    *tmp_path = NULL;
    *fd = -1;
    RETURN_IF(!path || !*path, CLLM_ERR_ARG, "temporary file: empty path");
    size_t n = strlen(path) + sizeof ".tmp-XXXXXX";
    char *t = malloc(n);
    RETURN_IF(!t, CLLM_ERR_NOMEM, "temporary file name for %s", path);
    snprintf(t, n, "%s.tmp-XXXXXX", path);
    // The fatal signals wait (pending) until the file is announced: a handler that removes the
    // announced temporaries then sees this one.
    sigset_t fatal, old;
    sigemptyset(&fatal);
    sigaddset(&fatal, SIGINT);
    sigaddset(&fatal, SIGTERM);
    sigaddset(&fatal, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &fatal, &old);
    // mkostemp opens with O_CREAT | O_EXCL: a name that exists (a planted symlink included) is
    // never opened, so the temporary is always a new file of ours.
    cllm_status st = CLLM_OK;
    int f = mkostemp(t, O_CLOEXEC);
    if (f < 0) {
        st = CLLM_FAIL(CLLM_ERR_IO, "cannot create a temporary file beside %s: %s", path,
                       strerror(errno));
    } else if (fchmod(f, 0644) != 0) {  // mkostemp makes 0600; outputs are ordinary files
        st = CLLM_FAIL(CLLM_ERR_IO, "%s: chmod failed: %s", t, strerror(errno));
        close(f);
        unlink(t);
    } else if (announce) {
        announce(user, t, 1);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (st != CLLM_OK) {
        free(t);
        return st;
    }
    *tmp_path = t;
    *fd = f;
    return CLLM_OK;
}

cllm_status cllm_output_check(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        RETURN_IF(errno != ENOENT, CLLM_ERR_IO, "cannot check output %s: %s", path,
                  strerror(errno));
        return CLLM_OK;  // absent (or a dangling symlink, which a rename replaces)
    }
    const char *what = S_ISDIR(sb.st_mode)    ? "a directory"
                       : S_ISCHR(sb.st_mode)  ? "a character device"
                       : S_ISBLK(sb.st_mode)  ? "a block device"
                       : S_ISFIFO(sb.st_mode) ? "a FIFO"
                       : S_ISSOCK(sb.st_mode) ? "a socket"
                                              : "not a regular file";
    RETURN_IF(!S_ISREG(sb.st_mode), CLLM_ERR_IO,
              "output %s exists and is %s; refusing to replace it", path, what);
    return CLLM_OK;
}

int cllm_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
