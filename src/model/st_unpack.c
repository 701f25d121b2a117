// `unpack`: packed archive -> the original safetensors file, byte for byte. The archive is
// validated as a whole first (cllm_archive_open: the stored header against every tensor), then
// each payload's checksum is checked and the tensor decoded into one reused buffer and appended.
// The output goes to a temporary file created exclusively beside the target, is fsynced and
// renamed; on failure the temporary file is removed, so the target never names a partial file.
#include "st_archive.h"

#include "../format/cllm_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

typedef struct out_file {
    char *path, *tmp;
    int fd;
} out_file;

// A new temporary file beside the output (cllm_temp_create: created exclusively, never through
// an existing name or symlink).
static cllm_status out_create(out_file *o, const char *path, cllm_temp_fn temp, void *user) {
    const char *slash = strrchr(path, '/');
    RETURN_IF(!*(slash ? slash + 1 : path), CLLM_ERR_ARG, "output %s names a directory", path);
    o->path = strdup(path);
    RETURN_IF(!o->path, CLLM_ERR_NOMEM, "cannot allocate a path");
    return cllm_temp_create(path, temp, user, &o->tmp, &o->fd);
}

static cllm_status sync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    RETURN_IF(!dir, CLLM_ERR_NOMEM, "cannot allocate a path");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cllm_status st = CLLM_OK;
    if (fd < 0 || fsync(fd) != 0)
        st = CLLM_FAIL(CLLM_ERR_IO, "cannot sync directory %s: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

// fsync, close, and move into place: replacing the target only with `force` (without it, an
// output that appeared meanwhile is not overwritten).
static cllm_status out_commit(out_file *o, int force) {
    RETURN_IF(fsync(o->fd) != 0, CLLM_ERR_IO, "%s: fsync failed: %s", o->tmp, strerror(errno));
    int fd = o->fd;
    o->fd = -1;
    RETURN_IF(close(fd) != 0, CLLM_ERR_IO, "%s: close failed: %s", o->tmp, strerror(errno));
    int rc;
    if (force) {
        rc = rename(o->tmp, o->path);
    } else {
        rc = renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->path, RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {  // no NOREPLACE on this fs
            rc = link(o->tmp, o->path);
            if (rc == 0) unlink(o->tmp);
        }
    }
    RETURN_IF(rc != 0 && errno == EEXIST, CLLM_ERR_ARG, "output %s exists (--force replaces it)",
              o->path);
    RETURN_IF(rc != 0, CLLM_ERR_IO, "cannot rename %s to %s: %s", o->tmp, o->path,
              strerror(errno));
    free(o->tmp);
    o->tmp = NULL;  // nothing left to remove
    return sync_dir_of(o->path);
}

static void out_free(out_file *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
}

// ---- decoding -----------------------------------------------------------------------------------

typedef struct unpack_state {
    cllm_container *c;
    cllm_archive *a;
    uint8_t *buf;
    size_t buf_cap;
} unpack_state;

// Checks payload i's checksum, decodes it into us->buf; *len receives the decoded bytes.
static cllm_status decode_segment(unpack_state *us, size_t i, int n_threads, size_t *len) {
    cllm_tensor_info t;
    TRY(cllm_container_tensor(us->c, i, &t));
    const uint8_t *payload = cllm_container_payload(us->c, i);
    uint64_t sum = XXH3_64bits(payload, (size_t)t.data_size);
    RETURN_IF(sum != t.checksum, CLLM_ERR_CORRUPT,
              "payload checksum mismatch (stored 0x%016llx, computed 0x%016llx)",
              (unsigned long long)t.checksum, (unsigned long long)sum);
    uint64_t bytes = t.n_elements * cllm_dtype_size(t.dtype);  // bounded by the file size check
    RETURN_IF(bytes > SIZE_MAX / 4, CLLM_ERR_NOMEM, "tensor of %llu bytes",
              (unsigned long long)bytes);
    if (bytes > us->buf_cap) {
        free(us->buf);
        us->buf = malloc((size_t)bytes);
        us->buf_cap = us->buf ? (size_t)bytes : 0;
        RETURN_IF(!us->buf, CLLM_ERR_NOMEM, "cannot allocate %llu bytes",
                  (unsigned long long)bytes);
    }
    TRY(cllm_decode_tensor(&t, payload, (size_t)t.data_size, us->buf, us->buf_cap, NULL, 0,
                           n_threads));
    *len = (size_t)bytes;
    return CLLM_OK;
}

static cllm_status write_all_segments(unpack_state *us, out_file *o, const cllm_pack_options *opt) {
    const uint8_t *blob = NULL;
    size_t blob_size = 0;
    cllm_container_tokenizer(us->c, &blob, &blob_size);
    TRY(cllm_write_full(o->fd, blob, blob_size, o->tmp));
    cllm_archive_summary sum;
    cllm_archive_summary_get(us->a, &sum);
    size_t n = cllm_container_n_tensors(us->c);
    uint64_t done = 0;
    for (size_t i = 0; i < n; i++) {
        cllm_archive_segment seg;
        TRY(cllm_archive_segment_get(us->a, i, &seg));
        const char *what = seg.name ? seg.name : "(gap)";
        size_t len = 0;
        cllm_status st = decode_segment(us, i, opt->n_threads, &len);
        if (st == CLLM_OK) st = cllm_write_full(o->fd, us->buf, len, o->tmp);
        cllm_container_drop_pages(us->c, i);
        if (st != CLLM_OK) return cllm_error_context(st, "tensor %zu ('%s')", i, what);
        done += len;
        if (opt->progress)
            opt->progress(opt->progress_user, i + 1, n, done, sum.file_size - sum.header_size,
                          what);
    }
    return CLLM_OK;
}

static cllm_status unpack_to(unpack_state *us, const char *in_path, const char *out_path,
                             const cllm_pack_options *opt) {
    struct stat in_st;
    RETURN_IF(stat(in_path, &in_st) != 0, CLLM_ERR_IO, "%s: cannot stat: %s", in_path,
              strerror(errno));
    TRY(cllm_st_check_output(&in_st, out_path, opt->force));
    TRY(cllm_container_open(in_path, &us->c));
    TRY(cllm_archive_open(us->c, &us->a));
    out_file o = {.fd = -1};
    char *announced = NULL;  // the temporary path as told to opt->temp
    cllm_status st = out_create(&o, out_path, opt->temp, opt->temp_user);  // announced as created
    if (st == CLLM_OK && opt->temp && (announced = strdup(o.tmp)) == NULL)
        opt->temp(opt->temp_user, o.tmp, 0);  // cannot track its end
    if (st == CLLM_OK) st = write_all_segments(us, &o, opt);
    if (st == CLLM_OK) st = out_commit(&o, opt->force);
    out_free(&o);
    if (announced) opt->temp(opt->temp_user, announced, 0);  // renamed or removed by now
    free(announced);
    return st;
}

cllm_status cllm_unpack(const char *in_path, const char *out_path, const cllm_pack_options *opt) {
    RETURN_IF(!in_path || !out_path, CLLM_ERR_ARG, "unpack: missing argument");
    cllm_pack_options defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!opt) opt = &defaults;
    RETURN_IF(opt->n_threads < 0, CLLM_ERR_ARG, "unpack: n_threads %d < 0", opt->n_threads);
    unpack_state us;
    memset(&us, 0, sizeof us);
    cllm_status st = unpack_to(&us, in_path, out_path, opt);
    cllm_archive_free(us.a);
    cllm_container_free(us.c);
    free(us.buf);
    if (st != CLLM_OK) return cllm_error_context(st, "unpack %s", in_path);
    return CLLM_OK;
}
