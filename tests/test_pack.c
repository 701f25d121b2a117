// Packed safetensors archives: byte-exact round trips of hand-built safetensors files (every
// dtype the parser knows, every bf16 and f16 bit pattern, metadata, scalars, empty tensors, more
// than 4 dimensions, gaps, unicode, escaped and long names), the output-file rules (no overwrite
// without force, never the input, no temporary file left behind), and archives that are corrupt
// or inconsistent although every checksum is right.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "codecllm.h"
#include "format/cllm_file_layout.h"
#include "format/cllm_format.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

// ---- files -------------------------------------------------------------------------------------

static char *tmp_path(const char *name) {
    static char paths[16][512];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, 512, "%s/%s", cllm_test_tmpdir(), name);
    return p;
}

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

// A safetensors file: u64 length, `json` padded with `pad` spaces, then `data`.
static void write_st(const char *path, const char *json, size_t pad, const void *data,
                     size_t data_size) {
    size_t jl = strlen(json), n = 8 + jl + pad + data_size;
    uint8_t *b = malloc(n);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)(jl + pad) >> (8 * i));
    memcpy(b + 8, json, jl);
    memset(b + 8 + jl, ' ', pad);
    if (data_size) memcpy(b + 8 + jl + pad, data, data_size);
    write_all(path, b, n);
    free(b);
}

static int same_files(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *x = read_all(a, &na), *y = read_all(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// No "*.tmp-*" file is left in the test directory.
static void assert_no_temp_files(void) {
    DIR *d = opendir(cllm_test_tmpdir());
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp-")) fail_msg("temporary file %s left behind", e->d_name);
    closedir(d);
}

// pack `st`, unpack it again, compare; returns the archive's path.
static const char *round_trip(const char *st, const char *tag) {
    char name[128];
    snprintf(name, sizeof name, "%s.cllm", tag);
    const char *arc = tmp_path(name);
    snprintf(name, sizeof name, "%s.out.safetensors", tag);
    const char *out = tmp_path(name);
    cllm_pack_options opt = {.n_threads = 2, .force = 1};
    if (cllm_pack_safetensors(st, arc, &opt) != CLLM_OK) fail_msg("pack: %s", cllm_last_error());
    if (cllm_unpack(arc, out, &opt) != CLLM_OK) fail_msg("unpack: %s", cllm_last_error());
    assert_true(same_files(st, out));
    cllm_verify_result res;
    if (cllm_verify(arc, st, 0, NULL, NULL, &res) != CLLM_OK)
        fail_msg("verify: %s", cllm_last_error());
    assert_no_temp_files();
    return arc;
}

// ---- round trips -------------------------------------------------------------------------------

// Every dtype class, every bf16 and f16 pattern, scalar, empty, 5-D, metadata, odd names.
static void test_round_trip_all_kinds(void **state) {
    (void)state;
    enum { NB = 3 * 65536, NF = 65536, N32 = 3 * 5 * 7, NI = 5, NU = 17, NBOOL = 3, N5 = 30 };
    size_t total = 2 * NB + 2 * NF + 4 * N32 + 8 * NI + NU + NBOOL + 4 + 4 * N5;
    uint8_t *data = malloc(total), *p = data;
    uint64_t rng = 7;
    // Row 0: every bf16 pattern; rows 1-2: weights near 1.0, so that coding pays.
    for (uint32_t i = 0; i < NB; i++, p += 2) {
        uint32_t v = i < 65536 ? i : 0x3f00u + (uint32_t)(cllm_test_rand(&rng) & 0x1ff);
        p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
    }
    for (uint32_t i = 0; i < NF; i++, p += 2) p[0] = (uint8_t)(i * 7), p[1] = (uint8_t)(i >> 8);
    for (size_t i = 0; i < 4 * N32 + 8 * NI + NU + NBOOL + 4 + 4 * N5; i++)
        *p++ = (uint8_t)cllm_test_rand(&rng);
    // Data order: bf16, f16, f32, i64, (the empty tensor), u8, bool, scalar, 5-D f32.
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9 \\\"quoted\\\"\"},"
        "\"every.bf16\":{\"dtype\":\"BF16\",\"shape\":[3,65536],\"data_offsets\":[0,393216]},"
        "\"\\u03b1.\\u03b2/\\u03b3 weight \\ud83d\\ude00\":{\"dtype\":\"F16\",\"shape\":[65536],"
        "\"data_offsets\":[393216,524288]},"
        "\"odd\":{\"dtype\":\"F32\",\"shape\":[3,5,7],\"data_offsets\":[524288,524708]},"
        "\"ids\":{\"dtype\":\"I64\",\"shape\":[5],\"data_offsets\":[524708,524748]},"
        "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[524748,524748]},"
        "\"bytes\\nwith newline\":{\"dtype\":\"U8\",\"shape\":[17],"
        "\"data_offsets\":[524748,524765]},"
        "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[524765,524768]},"
        "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[524768,524772]},"
        "\"five.d\":{\"dtype\":\"F32\",\"shape\":[2,1,3,1,5],\"data_offsets\":[524772,524892]}}";
    assert_int_equal(p - data, 524892);
    const char *st = tmp_path("kinds.safetensors");
    write_st(st, json, 5, data, total);
    const char *arc = round_trip(st, "kinds");

    cllm_container *c;
    assert_int_equal(cllm_container_open(arc, &c), CLLM_OK);
    assert_true(cllm_container_is_archive(c));
    cllm_archive *a;
    assert_int_equal(cllm_archive_open(c, &a), CLLM_OK);
    cllm_archive_summary sum;
    cllm_archive_summary_get(a, &sum);
    assert_int_equal(sum.n_st_tensors, 9);
    assert_int_equal(sum.n_empty, 1);
    assert_int_equal(sum.n_gaps, 0);
    assert_int_equal(cllm_container_n_tensors(c), 8);
    cllm_archive_segment seg;
    cllm_tensor_info ti;
    assert_int_equal(cllm_archive_segment_get(a, 1, &seg), CLLM_OK);
    assert_string_equal(seg.name, "\xce\xb1.\xce\xb2/\xce\xb3 weight \xf0\x9f\x98\x80");
    assert_string_equal(seg.dtype, "F16");
    assert_int_equal(cllm_container_tensor(c, 0, &ti), CLLM_OK);
    assert_int_equal(ti.codec, CLLM_CODEC_LOSSLESS);  // every bf16 pattern still codes smaller
    assert_int_equal(cllm_container_tensor(c, 3, &ti), CLLM_OK);
    assert_int_equal(ti.dtype, CLLM_DTYPE_U8);        // I64: bytes
    assert_int_equal(ti.codec, CLLM_CODEC_RAW);
    assert_int_equal(cllm_container_tensor(c, 7, &ti), CLLM_OK);
    assert_int_equal(ti.ndim, 2);                     // 5-D: (2*1*3*1, 5)
    assert_int_equal(ti.shape[0], 6);
    assert_int_equal(cllm_archive_segment_get(a, 6, &seg), CLLM_OK);
    assert_int_equal(seg.ndim, 0);                    // the scalar
    cllm_archive_free(a);
    cllm_container_free(c);
    free(data);
}

// Gaps before the first tensor, between tensors and after the last one; a long name.
static void test_round_trip_gaps(void **state) {
    (void)state;
    char name[400];
    memset(name, 'n', 300);
    name[300] = '\0';
    char json[1024];
    snprintf(json, sizeof json,
             "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[5,29]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[40,48]}}", name);
    uint8_t data[64];
    for (int i = 0; i < 64; i++) data[i] = (uint8_t)(i * 37 + 1);
    const char *st = tmp_path("gaps.safetensors");
    write_st(st, json, 0, data, sizeof data);
    const char *arc = round_trip(st, "gaps");
    cllm_container *c;
    assert_int_equal(cllm_container_open(arc, &c), CLLM_OK);
    cllm_archive *a;
    assert_int_equal(cllm_archive_open(c, &a), CLLM_OK);
    cllm_archive_summary sum;
    cllm_archive_summary_get(a, &sum);
    assert_int_equal(sum.n_gaps, 3);  // [0,5) [29,40) [48,64)
    assert_int_equal(cllm_container_n_tensors(c), 5);
    cllm_archive_segment seg;
    assert_int_equal(cllm_archive_segment_get(a, 1, &seg), CLLM_OK);
    assert_int_equal(strlen(seg.name), 300);
    assert_int_equal(cllm_archive_segment_get(a, 4, &seg), CLLM_OK);
    assert_null(seg.name);
    assert_int_equal(seg.begin, 48);
    assert_int_equal(seg.end, 64);
    cllm_archive_free(a);
    cllm_container_free(c);
}

// Header only ("{}"), metadata only, and a realistic f32 matrix that must code smaller.
static void test_round_trip_small_and_real(void **state) {
    (void)state;
    const char *st = tmp_path("empty.safetensors");
    write_st(st, "{}", 6, NULL, 0);
    round_trip(st, "empty");
    write_st(st, "{\"__metadata__\":{}}", 0, NULL, 0);
    round_trip(st, "meta");

    enum { R = 300, C = 1000 };
    float *w = malloc(sizeof(float) * R * C);
    uint64_t rng = 3;
    for (int i = 0; i < R * C; i++) w[i] = (float)(0.02 * cllm_test_normal(&rng));
    const char *json =
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[300,1000],\"data_offsets\":[0,1200000]}}";
    write_st(st, json, 2, w, sizeof(float) * R * C);
    const char *arc = round_trip(st, "real");
    struct stat a, b;
    assert_int_equal(stat(arc, &a), 0);
    assert_int_equal(stat(st, &b), 0);
    assert_true(a.st_size < b.st_size * 0.92);  // exponent entropy ~3 bits, not 8
    free(w);
}

// ---- output rules ------------------------------------------------------------------------------

static void test_output_rules(void **state) {
    (void)state;
    const char *st = tmp_path("rules.safetensors");
    uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    write_st(st, "{\"x\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 3, data, 8);
    const char *arc = tmp_path("rules.cllm"), *out = tmp_path("rules.out");
    cllm_pack_options opt = {0};
    assert_int_equal(cllm_pack_safetensors(st, arc, &opt), CLLM_OK);
    // Existing output: refused without force, left as it was.
    write_all(out, "keep", 4);
    assert_int_equal(cllm_unpack(arc, out, &opt), CLLM_ERR_ARG);
    assert_non_null(strstr(cllm_last_error(), "exists"));
    size_t n;
    uint8_t *kept = read_all(out, &n);
    assert_true(n == 4 && memcmp(kept, "keep", 4) == 0);
    free(kept);
    assert_int_equal(cllm_pack_safetensors(st, arc, &opt), CLLM_ERR_ARG);
    opt.force = 1;
    assert_int_equal(cllm_unpack(arc, out, &opt), CLLM_OK);
    assert_true(same_files(st, out));
    // The input is never the output, even with force (also through a symlink).
    assert_int_equal(cllm_unpack(arc, arc, &opt), CLLM_ERR_ARG);
    assert_non_null(strstr(cllm_last_error(), "is the input"));
    assert_int_equal(cllm_pack_safetensors(st, st, &opt), CLLM_ERR_ARG);
    const char *link = tmp_path("rules.link");
    unlink(link);
    assert_int_equal(symlink(st, link), 0);
    assert_int_equal(cllm_pack_safetensors(st, link, &opt), CLLM_ERR_ARG);
    // Not safetensors / not an archive: an error and no output.
    const char *none = tmp_path("none.out");
    unlink(none);
    assert_int_not_equal(cllm_pack_safetensors(arc, none, &opt), CLLM_OK);
    assert_int_not_equal(cllm_unpack(st, none, &opt), CLLM_OK);
    assert_int_equal(access(none, F_OK), -1);
    assert_no_temp_files();
}

// ---- archives that are not what they claim -----------------------------------------------------

// An archive written directly: `blob` as the header, then raw u8 tensors of the given sizes
// named seg.<k> (or `bad_name` for tensor 0 when non-NULL).
static cllm_status write_archive(const char *path, const char *json, const uint64_t *sizes,
                                 size_t n, const char *bad_name) {
    size_t jl = strlen(json);
    uint8_t *blob = malloc(8 + jl);
    for (int i = 0; i < 8; i++) blob[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(blob + 8, json, jl);
    cllm_model_config cfg = {.arch = CLLM_ARCH_ARCHIVE};
    cllm_writer *w;
    cllm_status st = cllm_writer_open(path, &cfg, n, CLLM_TOKENIZER_SAFETENSORS_HEADER, blob,
                                      8 + jl, &w);
    free(blob);
    for (size_t k = 0; st == CLLM_OK && k < n; k++) {
        uint8_t bytes[64] = {0};
        cllm_coded c = {.payload = bytes, .payload_size = sizes[k]};
        c.info.dtype = CLLM_DTYPE_U8;
        c.info.codec = CLLM_CODEC_RAW;
        c.info.rows = 1;
        c.info.cols = sizes[k];
        c.info.n_elements = sizes[k];
        char name[32];
        snprintf(name, sizeof name, "seg.%zu", k);
        uint64_t shape[4] = {sizes[k]};
        st = cllm_writer_add(w, k == 0 && bad_name ? bad_name : name, 1, shape, &c);
    }
    if (st == CLLM_OK) return cllm_writer_finish(w);
    cllm_writer_abort(w);
    return st;
}

static void expect_unpack_fails(const char *arc, const char *needle) {
    const char *out = tmp_path("bad.out");
    unlink(out);
    cllm_pack_options opt = {0};
    cllm_status st = cllm_unpack(arc, out, &opt);
    if (st == CLLM_OK || !strstr(cllm_last_error(), needle))
        fail_msg("unpack: status %d, message '%s' (want '%s')", st, cllm_last_error(), needle);
    assert_int_equal(access(out, F_OK), -1);
    cllm_verify_result res;
    assert_int_not_equal(cllm_verify(arc, NULL, 0, NULL, NULL, &res), CLLM_OK);
    assert_no_temp_files();
}

static void test_inconsistent_archives(void **state) {
    (void)state;
    const char *arc = tmp_path("bad.cllm");
    const char *one = "{\"a\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    uint64_t four[] = {4}, two[] = {2, 2}, five[] = {5}, three[] = {3};
    assert_int_equal(write_archive(arc, one, four, 1, NULL), CLLM_OK);
    const char *good = tmp_path("good.out");
    unlink(good);
    cllm_pack_options opt = {0};
    assert_int_equal(cllm_unpack(arc, good, &opt), CLLM_OK);  // the control case
    assert_int_equal(write_archive(arc, one, two, 2, NULL), CLLM_OK);
    expect_unpack_fails(arc, "describes 1 stored tensors and gaps, the archive holds 2");
    assert_int_equal(write_archive(arc, one, five, 1, NULL), CLLM_OK);
    expect_unpack_fails(arc, "describes 2 stored");  // 5 bytes: a tensor and a 1-byte gap
    assert_int_equal(write_archive(arc, one, three, 1, NULL), CLLM_OK);
    expect_unpack_fails(arc, "beyond the data area");
    assert_int_equal(write_archive(arc, one, four, 1, "a"), CLLM_OK);
    expect_unpack_fails(arc, "expected 'seg.0'");
    assert_int_equal(write_archive(arc, "{\"a\":[1,2]", four, 1, NULL), CLLM_OK);
    expect_unpack_fails(arc, "stored safetensors header");
    const char *f32 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    assert_int_equal(write_archive(arc, f32, four, 1, NULL), CLLM_OK);
    expect_unpack_fails(arc, "dtype u8, expected f32");
    // The blob's length field must be the blob's size.
    assert_int_equal(write_archive(arc, one, four, 1, NULL), CLLM_OK);
    size_t size;
    uint8_t *buf = read_all(arc, &size);
    uint64_t tok = cllm_load_le64(buf + CLLM_HDR_TOK_OFFSET);
    buf[tok] ^= 1;
    cllm_store_le64(buf + CLLM_HDR_TOK_XXH3, XXH3_64bits(buf + tok, cllm_load_le64(buf + 72)));
    cllm_store_le64(buf + CLLM_HDR_XXH3, XXH3_64bits(buf, CLLM_HDR_XXH3));
    write_all(arc, buf, size);
    expect_unpack_fails(arc, "length field");
    // Archive config with another blob kind, and the writer's refusals.
    cllm_store_le32(buf + CLLM_HDR_TOK_KIND, CLLM_TOKENIZER_HF_JSON);
    cllm_store_le64(buf + CLLM_HDR_XXH3, XXH3_64bits(buf, CLLM_HDR_XXH3));
    write_all(arc, buf, size);
    expect_unpack_fails(arc, "a packed safetensors archive has kind 4");
    free(buf);
    cllm_model_config cfg = {.arch = CLLM_ARCH_ARCHIVE, .dim = 1};
    cllm_writer *w = NULL;
    assert_int_equal(cllm_writer_open(arc, &cfg, 0, CLLM_TOKENIZER_SAFETENSORS_HEADER,
                                      (const uint8_t *)"x", 1, &w), CLLM_ERR_FORMAT);
    assert_int_equal(cllm_config_validate(&cfg), CLLM_ERR_FORMAT);
}

// Byte flips anywhere: unpack fails, or (a flip in padding it does not read) restores the exact
// original; verify fails on every one.
static void test_byte_flips(void **state) {
    (void)state;
    const char *st = tmp_path("flip.safetensors");
    uint16_t v[602];
    uint64_t rng = 11;
    for (int i = 0; i < 602; i++) v[i] = (uint16_t)(0x3c00 + (cllm_test_rand(&rng) & 0x3ff));
    write_st(st, "{\"h\":{\"dtype\":\"BF16\",\"shape\":[20,30],\"data_offsets\":[0,1200]},"
                 "\"z\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[1200,1204]}}",
             1, v, 1204);
    const char *arc = round_trip(st, "flip");
    size_t size;
    uint8_t *orig = read_all(arc, &size);
    const char *bad = tmp_path("flip.bad.cllm"), *out = tmp_path("flip.out");
    cllm_pack_options opt = {.force = 1};
    int failed = 0, restored = 0;
    for (size_t off = 0; off < size; off += (off < 1024 ? 3 : 97)) {
        orig[off] ^= 0x41;
        write_all(bad, orig, size);
        orig[off] ^= 0x41;
        unlink(out);
        if (cllm_unpack(bad, out, &opt) != CLLM_OK) {
            failed++;
            assert_int_equal(access(out, F_OK), -1);
        } else {
            assert_true(same_files(st, out));
            restored++;
        }
        cllm_verify_result res;
        if (cllm_verify(bad, NULL, 0, NULL, NULL, &res) == CLLM_OK)
            fail_msg("verify accepted a flip at offset %zu", off);
    }
    if (failed < 250 || restored < 10) fail_msg("%d failed, %d restored", failed, restored);
    assert_no_temp_files();
    free(orig);
}

// A model-only consumer refuses an archive by name.
static void test_not_a_model(void **state) {
    (void)state;
    const char *st = tmp_path("nm.safetensors");
    write_st(st, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, "abcd", 4);
    const char *arc = round_trip(st, "nm");
    cllm_container *c;
    assert_int_equal(cllm_container_open(arc, &c), CLLM_OK);
    cllm_engine *e = NULL;
    assert_int_equal(cllm_engine_open(c, NULL, &e), CLLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(cllm_last_error(), "is a packed safetensors archive, not a model"));
    cllm_container_free(c);
    cllm_tokenizer *t = NULL;
    assert_int_not_equal(cllm_tokenizer_open(arc, &t), CLLM_OK);
    assert_non_null(strstr(cllm_last_error(), "use codecllm unpack"));
    // u8 is raw only.
    cllm_encode_params p = {.codec = CLLM_CODEC_LOSSLESS};
    cllm_coded coded;
    assert_int_equal(cllm_encode_tensor("abcd", CLLM_DTYPE_U8, 1, 4, &p, &coded), CLLM_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_kinds), cmocka_unit_test(test_round_trip_gaps),
        cmocka_unit_test(test_round_trip_small_and_real), cmocka_unit_test(test_output_rules),
        cmocka_unit_test(test_inconsistent_archives), cmocka_unit_test(test_byte_flips),
        cmocka_unit_test(test_not_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
