// safetensors header parser and writer: valid headers round-trip; every kind of broken header is
// refused with a message naming the tensor and the field.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/cllm_model.h"
#include "testutil.h"

// A file image: u64 length + `json` + `data_bytes` zero bytes. Returns a malloc'd buffer.
static uint8_t *make_file(const char *json, size_t data_bytes, size_t *size) {
    size_t n = strlen(json);
    *size = 8 + n + data_bytes;
    uint8_t *buf = calloc(1, *size);
    cllm_store_le64(buf, n);
    memcpy(buf + 8, json, n);
    return buf;
}

static cllm_status parse_json(const char *json, size_t data_bytes, cllm_st_header *h) {
    size_t size;
    uint8_t *buf = make_file(json, data_bytes, &size);
    cllm_status st = cllm_st_parse(buf, size, size, h);
    free(buf);
    return st;
}

static void expect_error(const char *json, size_t data_bytes, cllm_status want,
                         const char *fragment) {
    cllm_st_header h;
    cllm_status st = parse_json(json, data_bytes, &h);
    if (st != want || !strstr(cllm_last_error(), fragment))
        fprintf(stderr, "json %s\n  status %d (want %d), message: %s (want '%s')\n", json, st,
                want, cllm_last_error(), fragment);
    assert_int_equal(st, want);
    assert_non_null(strstr(cllm_last_error(), fragment));
    assert_null(h.tensors);
}

static void test_valid_header(void **state) {
    (void)state;
    cllm_st_header h;
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[28,30]},"
                       "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[30,38]}}";
    assert_int_equal(parse_json(json, 38, &h), CLLM_OK);
    assert_int_equal(h.n_tensors, 4);
    assert_int_equal(h.data_offset, 8 + strlen(json));
    assert_int_equal(h.data_size, 38);
    // Sorted by begin.
    assert_string_equal(h.tensors[0].name, "a");
    assert_string_equal(h.tensors[1].name, "b");
    const cllm_st_tensor *b = cllm_st_find(&h, "b");
    assert_non_null(b);
    assert_int_equal(b->dtype, CLLM_DTYPE_BF16);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->shape[1], 3);
    assert_int_equal(b->n_elements, 6);
    const cllm_st_tensor *s = cllm_st_find(&h, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->n_elements, 1);
    const cllm_st_tensor *i = cllm_st_find(&h, "i");
    assert_int_equal(i->supported, 0);
    assert_string_equal(i->dtype_name, "I64");
    assert_null(cllm_st_find(&h, "missing"));
    cllm_st_header_free(&h);
    cllm_st_header_free(&h);  // idempotent
}

static void test_offsets_rejected(void **state) {
    (void)state;
    expect_error("{\"model.norm.weight\":"
                 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[10,2]}}",
                 16, CLLM_ERR_CORRUPT, "tensor 'model.norm.weight': data_offsets [10, 2]");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
                 CLLM_ERR_CORRUPT, "beyond the data area of 12 bytes");
    expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"y\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                 24, CLLM_ERR_CORRUPT, "overlap");
    // Wrong dtype size: 2 F32 elements need 8 bytes, not 4.
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
                 CLLM_ERR_CORRUPT, "2 elements of F32 need 8");
    expect_error("{\"t\":{\"dtype\":\"BF16\",\"shape\":[4294967296,4294967296,16],"
                 "\"data_offsets\":[0,0]}}",
                 8, CLLM_ERR_CORRUPT, "overflows");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
                 CLLM_ERR_FORMAT, "data_offsets are not");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]}}", 8,
                 CLLM_ERR_FORMAT, "data_offsets are not");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8,
                 CLLM_ERR_FORMAT, "data_offsets missing");
}

static void test_fields_rejected(void **state) {
    (void)state;
    expect_error("{\"t\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                 CLLM_ERR_UNSUPPORTED, "dtype 'Q4_K'");
    expect_error("{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 8, CLLM_ERR_FORMAT,
                 "dtype missing");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 8,
                 CLLM_ERR_FORMAT, "shape[0]");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
                 8, CLLM_ERR_UNSUPPORTED, "9 dimensions");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 8,
                 CLLM_ERR_FORMAT, "shape missing");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 8,
                 CLLM_ERR_FORMAT, "exactly dtype");
    expect_error("{\"t\":[1,2]}", 8, CLLM_ERR_FORMAT, "not an object");
    expect_error("{\"__metadata__\":5}", 8, CLLM_ERR_FORMAT, "__metadata__");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, CLLM_ERR_FORMAT, "duplicate");
    expect_error("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_off", 8, CLLM_ERR_FORMAT,
                 "header JSON");
    expect_error("[1,2,3]", 8, CLLM_ERR_FORMAT, "does not start with '{'");
}

static void test_length_rejected(void **state) {
    (void)state;
    cllm_st_header h;
    uint8_t small[5] = {1, 0, 0, 0, 0};
    assert_int_equal(cllm_st_parse(small, sizeof small, sizeof small, &h), CLLM_ERR_FORMAT);
    size_t size;
    uint8_t *buf = make_file("{}", 0, &size);
    cllm_store_le64(buf, 1000);  // N larger than the file
    assert_int_equal(cllm_st_parse(buf, size, size, &h), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "exceeds the file"));
    cllm_store_le64(buf, UINT64_MAX);
    assert_int_equal(cllm_st_parse(buf, size, size, &h), CLLM_ERR_FORMAT);
    cllm_store_le64(buf, (uint64_t)200 << 20);  // beyond the sane bound even if the file were big
    assert_int_equal(cllm_st_parse(buf, size, (uint64_t)1 << 40, &h), CLLM_ERR_FORMAT);
    assert_non_null(strstr(cllm_last_error(), "allowed"));
    free(buf);
    // Empty object: a valid file with no tensors.
    buf = make_file("{}", 0, &size);
    assert_int_equal(cllm_st_parse(buf, size, size, &h), CLLM_OK);
    assert_int_equal(h.n_tensors, 0);
    cllm_st_header_free(&h);
    free(buf);
}

static void test_writer_round_trip(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", cllm_test_tmpdir());
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0xc000};
    cllm_st_spec specs[2] = {
        {.name = "w.a", .dtype = CLLM_DTYPE_F32, .ndim = 2, .shape = {2, 3}},
        {.name = "w.b", .dtype = CLLM_DTYPE_BF16, .ndim = 1, .shape = {3}},
    };
    const void *data[2] = {a, b};
    assert_int_equal(cllm_st_write_file(path, specs, 2, data), CLLM_OK);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    cllm_st_header h;
    assert_int_equal(cllm_st_read_header(fd, path, &h), CLLM_OK);
    assert_int_equal(h.data_offset % 8, 0);  // padded like the reference writer
    assert_int_equal(h.n_tensors, 2);
    const cllm_st_tensor *tb = cllm_st_find(&h, "w.b");
    assert_int_equal(tb->begin, 24);
    assert_int_equal(tb->end, 30);
    uint16_t back[3];
    assert_int_equal(cllm_pread_full(fd, back, 6, h.data_offset + tb->begin, path), CLLM_OK);
    assert_memory_equal(back, b, 6);
    assert_int_equal(cllm_pread_full(fd, back, 6, h.data_offset + 28, path), CLLM_ERR_IO);
    cllm_st_header_free(&h);
    close(fd);
    // Duplicate names and bad specs are refused by the writer.
    specs[1].name = "w.a";
    uint8_t *hdr;
    size_t hs;
    uint64_t ds;
    assert_int_equal(cllm_st_build_header(specs, 2, &hdr, &hs, &ds), CLLM_ERR_ARG);
    specs[1].name = "w.b";
    specs[1].ndim = 0;
    assert_int_equal(cllm_st_build_header(specs, 2, &hdr, &hs, &ds), CLLM_ERR_ARG);
}

static void test_read_header_names_file(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", cllm_test_tmpdir());
    size_t size;
    uint8_t *buf = make_file(
        "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[10,2]}}", 16,
        &size);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, size, f);
    fclose(f);
    free(buf);
    int fd = open(path, O_RDONLY);
    cllm_st_header h;
    assert_int_equal(cllm_st_read_header(fd, path, &h), CLLM_ERR_CORRUPT);
    assert_non_null(strstr(cllm_last_error(), path));
    assert_non_null(strstr(cllm_last_error(), "'model.norm.weight': data_offsets [10, 2]"));
    close(fd);
    // A file shorter than its declared header.
    f = fopen(path, "wb");
    fwrite("\xff\x00\x00\x00\x00\x00\x00\x00{}", 1, 10, f);
    fclose(f);
    fd = open(path, O_RDONLY);
    assert_int_equal(cllm_st_read_header(fd, path, &h), CLLM_ERR_FORMAT);
    close(fd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_header),      cmocka_unit_test(test_offsets_rejected),
        cmocka_unit_test(test_fields_rejected),   cmocka_unit_test(test_length_rejected),
        cmocka_unit_test(test_writer_round_trip), cmocka_unit_test(test_read_header_names_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
