// `pack`: any safetensors file -> packed archive (docs/FORMAT.md, "Packed safetensors"). Streams
// segment by segment: one segment's bytes (pread), its symbols and its coded payload are the
// memory used. The header bytes are stored verbatim, so names, metadata, key order, whitespace and
// padding all come back as they were.
#include "st_archive.h"

#include "../codec/cllm_codec.h"
#include "../format/cllm_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pack_state {
    int fd;
    const char *in_path;
    uint8_t *blob;            // the header: 8-byte length + JSON (with its padding)
    size_t blob_size;
    cllm_st_header h;
    cllm_st_segment *segs;
    size_t n_segs;
    cllm_writer *w;
    char *tmp;                // the writer's temporary path, as announced to opt->temp
    uint8_t *buf;             // one segment's bytes
    size_t buf_cap;
    uint64_t bytes_done;
} pack_state;

// Reads the 8 + N header bytes and parses them against the file's size.
static cllm_status read_header(pack_state *ps, uint64_t file_size) {
    uint8_t len[8];
    RETURN_IF(file_size < 8, CLLM_ERR_FORMAT, "%llu bytes is too short for safetensors",
              (unsigned long long)file_size);
    TRY(cllm_pread_full(ps->fd, len, 8, 0, ps->in_path));
    uint64_t n = cllm_load_le64(len);
    RETURN_IF(n > CLLM_ST_MAX_HEADER || n > file_size - 8, CLLM_ERR_FORMAT,
              "header length %llu exceeds the file (%llu bytes) or the %llu allowed",
              (unsigned long long)n, (unsigned long long)file_size,
              (unsigned long long)CLLM_ST_MAX_HEADER);
    ps->blob_size = (size_t)n + 8;
    ps->blob = malloc(ps->blob_size);
    RETURN_IF(!ps->blob, CLLM_ERR_NOMEM, "out of memory for a %zu-byte header", ps->blob_size);
    TRY(cllm_pread_full(ps->fd, ps->blob, ps->blob_size, 0, ps->in_path));
    TRY(cllm_st_parse(ps->blob, ps->blob_size, file_size, &ps->h));
    return cllm_st_segments(&ps->h, &ps->segs, &ps->n_segs);
}

// A raw payload that borrows `buf` (the writer copies it to disk before returning).
static void raw_coded(uint8_t *buf, const cllm_st_entry_plan *p, cllm_coded *out) {
    memset(out, 0, sizeof *out);
    out->info.dtype = p->dtype;
    out->info.codec = CLLM_CODEC_RAW;
    out->info.rows = p->rows;
    out->info.cols = p->cols;
    out->info.n_elements = p->rows * p->cols;
    out->payload = buf;
    out->payload_size = (size_t)(out->info.n_elements * cllm_dtype_size(p->dtype));
    out->info.data_size = out->payload_size;
}

// Lossless when it pays, raw otherwise. *owned: the payload is the encoder's, to be freed.
static cllm_status encode_segment(pack_state *ps, const cllm_st_entry_plan *p, size_t bytes,
                                  int n_threads, cllm_coded *coded, int *owned) {
    *owned = 0;
    if (p->coded_ok) {
        cllm_encode_params ep;
        memset(&ep, 0, sizeof ep);
        ep.codec = CLLM_CODEC_LOSSLESS;
        ep.n_threads = n_threads;
        TRY(cllm_encode_tensor(ps->buf, p->dtype, p->rows, p->cols, &ep, coded));
        if (coded->payload_size < bytes) {
            *owned = 1;
            return CLLM_OK;
        }
        cllm_coded_free(coded);
    }
    raw_coded(ps->buf, p, coded);
    return CLLM_OK;
}

static cllm_status pack_segment(pack_state *ps, size_t k, uint64_t data_offset,
                                const cllm_pack_options *opt) {
    const cllm_st_segment *s = &ps->segs[k];
    const char *what = s->tensor ? s->tensor->name : "(gap)";
    uint64_t len = s->end - s->begin;
    RETURN_IF(len > SIZE_MAX / 4, CLLM_ERR_NOMEM, "%llu bytes do not fit in memory",
              (unsigned long long)len);
    if (len > ps->buf_cap) {
        free(ps->buf);
        ps->buf = malloc((size_t)len);
        ps->buf_cap = ps->buf ? (size_t)len : 0;
        RETURN_IF(!ps->buf, CLLM_ERR_NOMEM, "cannot allocate %llu bytes", (unsigned long long)len);
    }
    TRY(cllm_pread_full(ps->fd, ps->buf, (size_t)len, data_offset + s->begin, ps->in_path));
    cllm_st_entry_plan p;
    cllm_st_segment_plan(s, k, &p);
    cllm_coded coded;
    int owned = 0;
    TRY(encode_segment(ps, &p, (size_t)len, opt->n_threads, &coded, &owned));
    cllm_status st = cllm_writer_add(ps->w, p.name, p.ndim, p.shape, &coded);
    if (owned) cllm_coded_free(&coded);
    TRY(st);
    ps->bytes_done += len;
    if (opt->progress)
        opt->progress(opt->progress_user, k + 1, ps->n_segs, ps->bytes_done, ps->h.data_size,
                      what);
    return CLLM_OK;
}

static cllm_status pack_all(pack_state *ps, const char *out_path, const cllm_pack_options *opt) {
    struct stat sb;
    RETURN_IF(fstat(ps->fd, &sb) != 0, CLLM_ERR_IO, "cannot stat: %s", strerror(errno));
    RETURN_IF(!S_ISREG(sb.st_mode), CLLM_ERR_IO, "not a regular file");
    TRY(cllm_st_check_output(&sb, out_path, opt->force));
    TRY(read_header(ps, (uint64_t)sb.st_size));
    cllm_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = CLLM_ARCH_ARCHIVE;
    TRY(cllm_writer_open_ex(out_path, &cfg, ps->n_segs, CLLM_TOKENIZER_SAFETENSORS_HEADER,
                            ps->blob, ps->blob_size, opt->temp, opt->temp_user, &ps->w));
    if (opt->temp && (ps->tmp = strdup(cllm_writer_temp_path(ps->w))) == NULL)
        opt->temp(opt->temp_user, cllm_writer_temp_path(ps->w), 0);  // cannot track its end
    for (size_t k = 0; k < ps->n_segs; k++) {
        cllm_status st = pack_segment(ps, k, ps->h.data_offset, opt);
        if (st != CLLM_OK) {
            const cllm_st_tensor *t = ps->segs[k].tensor;
            return t ? cllm_error_context(st, "tensor '%s'", t->name)
                     : cllm_error_context(st, "bytes %llu..%llu between tensors",
                                          (unsigned long long)ps->segs[k].begin,
                                          (unsigned long long)ps->segs[k].end);
        }
    }
    cllm_status st = cllm_writer_finish(ps->w);
    ps->w = NULL;
    return st;
}

cllm_status cllm_pack_safetensors(const char *in_path, const char *out_path,
                                  const cllm_pack_options *opt) {
    RETURN_IF(!in_path || !out_path, CLLM_ERR_ARG, "pack: missing argument");
    cllm_pack_options defaults;
    memset(&defaults, 0, sizeof defaults);
    if (!opt) opt = &defaults;
    RETURN_IF(opt->n_threads < 0, CLLM_ERR_ARG, "pack: n_threads %d < 0", opt->n_threads);
    pack_state ps;
    memset(&ps, 0, sizeof ps);
    ps.in_path = in_path;
    ps.fd = open(in_path, O_RDONLY | O_CLOEXEC);
    RETURN_IF(ps.fd < 0, CLLM_ERR_IO, "%s: cannot open: %s", in_path, strerror(errno));
    cllm_status st = pack_all(&ps, out_path, opt);
    cllm_writer_abort(ps.w);
    if (ps.tmp) opt->temp(opt->temp_user, ps.tmp, 0);  // renamed or removed by now
    free(ps.tmp);
    close(ps.fd);
    free(ps.buf);
    free(ps.segs);
    free(ps.blob);
    cllm_st_header_free(&ps.h);
    if (st != CLLM_OK) return cllm_error_context(st, "pack %s", in_path);
    return CLLM_OK;
}
