/* Confluent-framed Avro v2 trades straight into Arrow buffers (k2cli.consume.native assembles the arrays).
 *
 * decode(values: list, headers: tuple[bytes, ...]) -> (rows, flagged: list[int], buffers: tuple[bytes, ...])
 *
 * Only values framed with one of `headers` (5-byte Confluent headers whose writer schema is exactly the v2
 * schema) are decoded here. Anything else -- another header, a None value, a malformed body (truncated, bad
 * varint, union/enum index out of range, trailing bytes, invalid UTF-8), a map with a repeated key, or a
 * value v2 refuses (decimal not in (0, 10^18) unscaled, timestamp <= 0, empty trade_id/symbol/exchange/
 * currency, message_id not a UUID) -- is flagged by index and left out of the buffers: the Python side
 * decodes flagged values with the pure path, which classifies them exactly as it always has.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

enum {
    /* five string columns: offsets, data */
    MID_O, MID_D, TID_O, TID_D, SYM_O, SYM_D, EXC_O, EXC_D, CUR_O, CUR_D,
    ASSET, SIDE, TS, PRICE, QTY,
    COND_O, COND_IO, COND_D, /* trade_conditions: list offsets, item offsets, item data */
    SSEQ_V, SSEQ, ITS, PSEQ_V, PSEQ,
    VD_V, VD_O, VDK_O, VDK_D, VDV_O, VDV_D,
    NBUF
};

typedef struct {
    const uint8_t *p, *end;
} Cur;

static const int64_t DECIMAL_LIMIT = 1000000000000000000LL; /* 10^18 */
/* The repeated-key check is quadratic: a larger map goes to the pure path. */
static const int64_t MAX_MAP_ENTRIES = 1024;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static int put_i32(Buf *b, int32_t v) { return buf_put(b, &v, 4); }
static int put_i64(Buf *b, int64_t v) { return buf_put(b, &v, 8); }
static int put_u8(Buf *b, uint8_t v) { return buf_put(b, &v, 1); }

/* Zigzag varint long; -1 on truncation or a varint longer than 64 bits. */
static int read_long(Cur *c, int64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    for (;;) {
        if (c->p >= c->end) return -1;
        uint8_t byte = *c->p++;
        if (shift == 63 && (byte & 0x7e)) return -1;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
        shift += 7;
        if (shift > 63) return -1;
    }
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return 0;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as Python's decoder. */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) {
            if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80) return 0;
            if (c == 0xe0 && s[i + 1] < 0xa0) return 0;
            if (c == 0xed && s[i + 1] >= 0xa0) return 0;
            i += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 ||
                (s[i + 3] & 0xc0) != 0x80) return 0;
            if (c == 0xf0 && s[i + 1] < 0x90) return 0;
            if (c == 0xf4 && s[i + 1] >= 0x90) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* A length-prefixed byte run (string or bytes); -1 when malformed. */
static int read_bytes(Cur *c, const uint8_t **s, size_t *n) {
    int64_t len;
    if (read_long(c, &len) || len < 0 || len > c->end - c->p) return -1;
    *s = c->p;
    *n = (size_t)len;
    c->p += len;
    return 0;
}

/* A UTF-8 string appended to a data buffer, its end offset to an offsets buffer. */
static int read_string(Cur *c, Buf *offsets, Buf *data, const uint8_t **s_out, size_t *n_out) {
    const uint8_t *s;
    size_t n;
    if (read_bytes(c, &s, &n) || !valid_utf8(s, n)) return -1;
    if (buf_put(data, s, n) || data->len > INT32_MAX || put_i32(offsets, (int32_t)data->len)) return -1;
    if (s_out) { *s_out = s; *n_out = n; }
    return 0;
}

static int is_uuid(const uint8_t *s, size_t n) {
    if (n != 36) return 0;
    for (size_t i = 0; i < 36; i++) {
        uint8_t c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* A decimal(18,8) as big-endian two's-complement bytes into a 16-byte little-endian decimal128; only unscaled
 * values in (0, 10^18) are accepted (v2 refuses the rest). */
static int read_decimal(Cur *c, Buf *out) {
    const uint8_t *s;
    size_t n;
    if (read_bytes(c, &s, &n) || n == 0) return -1;
    if (s[0] & 0x80) return -1; /* negative */
    while (n > 8 && s[0] == 0) { s++; n--; } /* sign extension of a positive value */
    if (n > 8) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | s[i];
    if (v == 0 || v >= (uint64_t)DECIMAL_LIMIT) return -1;
    int64_t words[2] = {(int64_t)v, 0};
    return buf_put(out, words, 16);
}

static int read_enum(Cur *c, Buf *out, int64_t symbols) {
    int64_t idx;
    if (read_long(c, &idx) || idx < 0 || idx >= symbols) return -1;
    return put_u8(out, (uint8_t)idx);
}

static int read_timestamp(Cur *c, Buf *out) {
    int64_t v;
    if (read_long(c, &v) || v <= 0) return -1;
    return put_i64(out, v);
}

/* A block count of an array or map (the byte size after a negative count is skipped). */
static int read_block(Cur *c, int64_t *count) {
    if (read_long(c, count)) return -1;
    if (*count < 0) {
        int64_t size;
        if (*count == INT64_MIN || read_long(c, &size)) return -1;
        *count = -*count;
    }
    return 0;
}

static int read_conditions(Cur *c, Buf *b) {
    int64_t count;
    for (;;) {
        if (read_block(c, &count)) return -1;
        if (count == 0) break;
        if (count > c->end - c->p) return -1; /* every item takes at least one byte */
        for (int64_t i = 0; i < count; i++)
            if (read_string(c, &b[COND_IO], &b[COND_D], NULL, NULL)) return -1;
    }
    size_t items = b[COND_IO].len / 4 - 1;
    return items > INT32_MAX ? -1 : put_i32(&b[COND_O], (int32_t)items);
}

static int read_nullable_long(Cur *c, Buf *valid, Buf *data, Py_ssize_t *nulls) {
    int64_t branch, v = 0;
    if (read_long(c, &branch) || branch < 0 || branch > 1) return -1;
    if (branch == 1 && read_long(c, &v)) return -1;
    if (branch == 0) (*nulls)++;
    return put_u8(valid, (uint8_t)branch) || put_i64(data, v);
}

/* A map key seen earlier in the same map (a Python dict would keep one entry): the pure path decodes it. */
static int repeated_key(const Buf *offsets, const Buf *data, size_t first_entry) {
    const int32_t *o = (const int32_t *)offsets->p;
    size_t last = offsets->len / 4 - 1;
    int32_t ks = o[last - 1], ke = o[last];
    for (size_t e = first_entry; e < last; e++) {
        if (o[e] - o[e - 1] == ke - ks && memcmp(data->p + o[e - 1], data->p + ks, (size_t)(ke - ks)) == 0)
            return 1;
    }
    return 0;
}

static int read_vendor_data(Cur *c, Buf *b, Py_ssize_t *nulls) {
    int64_t branch, count;
    if (read_long(c, &branch) || branch < 0 || branch > 1) return -1;
    if (put_u8(&b[VD_V], (uint8_t)branch)) return -1;
    if (branch == 0) {
        (*nulls)++;
    } else {
        size_t first_entry = b[VDK_O].len / 4;
        for (;;) {
            if (read_block(c, &count)) return -1;
            if (count == 0) break;
            if (count > c->end - c->p) return -1;
            if ((int64_t)(b[VDK_O].len / 4 - first_entry) + count > MAX_MAP_ENTRIES) return -1;
            for (int64_t i = 0; i < count; i++) {
                if (read_string(c, &b[VDK_O], &b[VDK_D], NULL, NULL)) return -1;
                if (repeated_key(&b[VDK_O], &b[VDK_D], first_entry)) return -1;
                if (read_string(c, &b[VDV_O], &b[VDV_D], NULL, NULL)) return -1;
            }
        }
    }
    size_t entries = b[VDK_O].len / 4 - 1;
    return entries > INT32_MAX ? -1 : put_i32(&b[VD_O], (int32_t)entries);
}

/* One record body into the buffers; -1 when it is not a valid v2 trade. */
static int read_record(Cur *c, Buf *b, Py_ssize_t *nulls) {
    const uint8_t *s;
    size_t n;
    if (read_string(c, &b[MID_O], &b[MID_D], &s, &n) || !is_uuid(s, n)) return -1;
    if (read_string(c, &b[TID_O], &b[TID_D], &s, &n) || n == 0) return -1;
    if (read_string(c, &b[SYM_O], &b[SYM_D], &s, &n) || n == 0) return -1;
    if (read_string(c, &b[EXC_O], &b[EXC_D], &s, &n) || n == 0) return -1;
    if (read_enum(c, &b[ASSET], 4) || read_timestamp(c, &b[TS])) return -1;
    if (read_decimal(c, &b[PRICE]) || read_decimal(c, &b[QTY])) return -1;
    if (read_string(c, &b[CUR_O], &b[CUR_D], &s, &n) || n == 0) return -1;
    if (read_enum(c, &b[SIDE], 4) || read_conditions(c, b)) return -1;
    if (read_nullable_long(c, &b[SSEQ_V], &b[SSEQ], &nulls[0]) || read_timestamp(c, &b[ITS])) return -1;
    if (read_nullable_long(c, &b[PSEQ_V], &b[PSEQ], &nulls[1]) || read_vendor_data(c, b, &nulls[2])) return -1;
    return c->p == c->end ? 0 : -1;
}

static const int OFFSET_BUFS[] = {MID_O, TID_O, SYM_O, EXC_O, CUR_O, COND_O, COND_IO, VD_O, VDK_O, VDV_O};
static const int VALIDITY_BUFS[] = {SSEQ_V, PSEQ_V, VD_V};

/* One byte per row (0/1) packed into an Arrow validity bitmap, in place. */
static void pack_bits(Buf *b) {
    size_t rows = b->len, bytes = (rows + 7) / 8;
    uint8_t *p = (uint8_t *)b->p;
    for (size_t i = 0; i < bytes; i++) {
        uint8_t v = 0;
        for (size_t k = 0; k < 8 && i * 8 + k < rows; k++) v |= (uint8_t)(p[i * 8 + k] << k);
        p[i] = v;
    }
    b->len = bytes;
}

static int matches(const char *value, Py_ssize_t len, PyObject *headers) {
    if (len < 5 || value[0] != 0) return 0;
    Py_ssize_t nh = PyTuple_GET_SIZE(headers);
    for (Py_ssize_t h = 0; h < nh; h++) {
        PyObject *hdr = PyTuple_GET_ITEM(headers, h);
        if (memcmp(PyBytes_AS_STRING(hdr), value, 5) == 0) return 1;
    }
    return 0;
}

static PyObject *build_result(Buf *b, Py_ssize_t rows, PyObject *flagged, Py_ssize_t *nulls) {
    PyObject *bufs = PyTuple_New(NBUF);
    if (!bufs) return NULL;
    for (int i = 0; i < NBUF; i++) {
        PyObject *o = PyBytes_FromStringAndSize(b[i].p ? b[i].p : "", (Py_ssize_t)b[i].len);
        if (!o) { Py_DECREF(bufs); return NULL; }
        PyTuple_SET_ITEM(bufs, i, o);
    }
    return Py_BuildValue("(nNN(nnn))", rows, flagged, bufs, nulls[0], nulls[1], nulls[2]);
}

static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *values, *headers;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &values, &PyTuple_Type, &headers)) return NULL;
    for (Py_ssize_t h = 0; h < PyTuple_GET_SIZE(headers); h++) {
        PyObject *hdr = PyTuple_GET_ITEM(headers, h);
        if (!PyBytes_Check(hdr) || PyBytes_GET_SIZE(hdr) != 5) {
            PyErr_SetString(PyExc_ValueError, "headers must be 5-byte bytes objects");
            return NULL;
        }
    }
    Py_ssize_t count = PyList_GET_SIZE(values), rows = 0;
    Py_ssize_t nulls[3] = {0, 0, 0};
    PyObject *flagged = PyList_New(0);
    if (!flagged) return NULL;
    Buf b[NBUF];
    memset(b, 0, sizeof b);
    size_t mark[NBUF];
    int failed = 0;
    for (size_t i = 0; i < sizeof OFFSET_BUFS / sizeof OFFSET_BUFS[0]; i++)
        if (put_i32(&b[OFFSET_BUFS[i]], 0)) failed = 1;
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        int ok = 0;
        if (PyBytes_Check(v)) {
            const char *data = PyBytes_AS_STRING(v);
            Py_ssize_t len = PyBytes_GET_SIZE(v);
            if (matches(data, len, headers)) {
                for (int k = 0; k < NBUF; k++) mark[k] = b[k].len;
                Py_ssize_t mark_nulls[3] = {nulls[0], nulls[1], nulls[2]};
                Cur c = {(const uint8_t *)data + 5, (const uint8_t *)data + len};
                ok = read_record(&c, b, nulls) == 0;
                if (!ok) {
                    for (int k = 0; k < NBUF; k++) b[k].len = mark[k];
                    memcpy(nulls, mark_nulls, sizeof nulls);
                }
            }
        }
        if (ok) {
            rows++;
        } else {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (!idx || PyList_Append(flagged, idx)) failed = 1;
            Py_XDECREF(idx);
        }
    }
    PyObject *result = NULL;
    if (!failed) {
        for (size_t i = 0; i < sizeof VALIDITY_BUFS / sizeof VALIDITY_BUFS[0]; i++) pack_bits(&b[VALIDITY_BUFS[i]]);
        result = build_result(b, rows, flagged, nulls);
        flagged = NULL; /* reference stolen by build_result ("N") */
    } else if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    Py_XDECREF(flagged);
    for (int k = 0; k < NBUF; k++) free(b[k].p);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, "Decode framed v2 trades into Arrow buffers; flagged values by index."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avro_arrow", "v2 Avro trades into Arrow buffers.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__avro_arrow(void) { return PyModule_Create(&module); }
