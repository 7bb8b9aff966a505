/* tidkit._hamming: the inner loops of tidkit.index (probe the tables, check candidates, scan).

Python lays the arrays out and validates their types and shapes (tidkit/index.py); this file
still checks every offset it derives from them (table descriptors once per call, slot bounds
and posting rows as it reads them), so a damaged index file gives wrong answers at worst,
never a read out of bounds. The GIL is released while searching, so threads query in parallel.

Results are packed in one uint64 each: query number << 41 | distance << 32 | row, sorted, with
each (query, row) once: the order the index returns (nearest first, then by row, which is by
id), and what NumPy turns back into columns with a few shifts.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#include <intrin.h>
#define POPCOUNT64(x) ((int)__popcnt64(x))
#define PREFETCH(p) ((void)0)
#define ALWAYS_INLINE static __forceinline
#else
#define POPCOUNT64(x) __builtin_popcountll(x)
#define PREFETCH(p) __builtin_prefetch(p)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#endif

/* x86-64 CPUs have had a popcount instruction since 2008, but compilers may not assume it:
   the search is compiled twice, with and without it, and picked at import. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define DISPATCH_POPCNT 1
#endif

#define MAX_TABLES 64
#define FINE_SHIFT 8 /* a compact slot array has a uint32 per 256 slots (tidkit/index.py) */
#define MAX_QUERY_NUMBER ((uint64_t)1 << 23)
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 24 /* candidates fetched ahead of their check */
#endif
#ifndef PREFETCH_SLOTS
#define PREFETCH_SLOTS 16 /* slots fetched ahead */
#endif
#ifndef DEDUPLICATE_FROM
#define DEDUPLICATE_FROM 8192 /* candidates of one query */
#endif
#define SCAN_BLOCK 4096 /* rows compared with every query of a batch in turn (stay in cache) */

typedef struct {
    int start, width;      /* the chunk: bits [start, start + width) of the hash */
    const uint32_t *coarse; /* slot k starts at coarse[k >> FINE_SHIFT] + fine[k], or coarse[k] */
    const uint16_t *fine;
    const uint8_t *postings; /* this table's n postings, `stride` bytes each, little-endian */
} Table;

typedef struct {
    const uint64_t *hashes;
    const uint8_t *alive;
    Py_ssize_t n;
    int words;
    int stride;
    int tables;
    Table table[MAX_TABLES];
    const int64_t *probes; /* pairs (table, XOR mask) */
    Py_ssize_t nprobes;
    int radius;
    Py_ssize_t limit; /* a query with more candidates than this scans instead */
} Segment;


typedef struct {
    uint64_t *data;
    size_t size, capacity;
} Found;

typedef struct {
    uint32_t start, end;
    int table;
} Range;

/* Scratch space of one search call: the probed ranges, the candidate rows, and a bitmap of the
   rows already gathered for the current query, for queries with many candidates (allocated on
   the first such query). */
typedef struct {
    Range *ranges;
    uint32_t *rows;
    size_t capacity;
    uint64_t *seen;
    Found found;
} Work;
static int found_push(Found *found, uint64_t value) {
    if (found->size == found->capacity) {
        size_t capacity = found->capacity ? 2 * found->capacity : 1024;
        uint64_t *data = realloc(found->data, capacity * sizeof(uint64_t));
        if (!data)
            return -1;
        found->data = data;
        found->capacity = capacity;
    }
    found->data[found->size++] = value;
    return 0;
}

ALWAYS_INLINE int distance(const uint64_t *a, const uint64_t *b, int words) {
    if (words == 4)
        return POPCOUNT64(a[0] ^ b[0]) + POPCOUNT64(a[1] ^ b[1]) + POPCOUNT64(a[2] ^ b[2]) +
               POPCOUNT64(a[3] ^ b[3]);
    return POPCOUNT64(a[0] ^ b[0]);
}

/* Bits [start, start + width) of a hash, bit 0 being the most significant of word 0. */
static inline uint64_t chunk_of(const uint64_t *hash, int start, int width) {
    int word = start >> 6, offset = start & 63;
    uint64_t value = hash[word] << offset;
    if (offset + width > 64)
        value |= hash[word + 1] >> (64 - offset);
    return value >> (64 - width);
}

static inline uint32_t slot_start(const Table *t, uint64_t key) {
    return t->fine ? t->coarse[key >> FINE_SHIFT] + t->fine[key] : t->coarse[key];
}

static inline uint32_t posting(const uint8_t *postings, int stride, uint32_t at) {
    const uint8_t *p = postings + (size_t)at * stride;
    uint32_t row = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    return stride == 4 ? row | (uint32_t)p[3] << 24 : row;
}

ALWAYS_INLINE int check(const Segment *s, const uint64_t *query, uint64_t number, uint32_t row,
                        Found *found) {
    int d = distance(s->hashes + (size_t)row * s->words, query, s->words);
    if (d <= s->radius && s->alive[row])
        return found_push(found, number << 41 | (uint64_t)d << 32 | row);
    return 0;
}

ALWAYS_INLINE int scan_rows(const Segment *s, const uint64_t *queries, Py_ssize_t first,
                            Py_ssize_t count, uint64_t number_base, Found *found) {
    for (Py_ssize_t block = 0; block < s->n; block += SCAN_BLOCK) {
        Py_ssize_t end = block + SCAN_BLOCK < s->n ? block + SCAN_BLOCK : s->n;
        for (Py_ssize_t q = first; q < first + count; q++) {
            const uint64_t *query = queries + (size_t)q * s->words;
            for (Py_ssize_t row = block; row < end; row++)
                if (check(s, query, number_base + q, (uint32_t)row, found))
                    return -1;
        }
    }
    return 0;
}

/* One query through the tables: the probed slots' ranges first (all slot reads, and the
   candidate count that decides between probing and scanning), then the postings, then the
   hashes they name, each stage fetching ahead of itself. */
ALWAYS_INLINE int probe_one(const Segment *s, const uint64_t *queries, Py_ssize_t q, Work *work,
                            int *bad) {
    const uint64_t *query = queries + (size_t)q * s->words;
    Range *ranges = work->ranges;
    uint64_t keys[MAX_TABLES];
    for (int t = 0; t < s->tables; t++)
        keys[t] = chunk_of(query, s->table[t].start, s->table[t].width);
    /* The probed keys first, so that each slot can be fetched ahead of its turn. */
    for (Py_ssize_t p = 0; p < s->nprobes; p++)
        ranges[p].start = (uint32_t)(keys[s->probes[2 * p]] ^ (uint64_t)s->probes[2 * p + 1]);
    Py_ssize_t total = 0, used = 0;
    for (Py_ssize_t p = 0; p < s->nprobes; p++) {
        if (p + PREFETCH_SLOTS < s->nprobes) {
            const Table *ahead = &s->table[s->probes[2 * (p + PREFETCH_SLOTS)]];
            uint32_t key = ranges[p + PREFETCH_SLOTS].start;
            PREFETCH(ahead->fine ? (const void *)(ahead->fine + key)
                                 : (const void *)(ahead->coarse + key));
        }
        int t = (int)s->probes[2 * p];
        const Table *table = &s->table[t];
        uint32_t key = ranges[p].start;
        uint32_t start = slot_start(table, key), end = slot_start(table, (uint64_t)key + 1);
        if (end <= start)
            continue;
        if (end > s->n) {
            *bad = 1;
            continue;
        }
        ranges[used].start = start; /* used <= p: the keys still needed lie ahead */
        ranges[used].end = end;
        ranges[used].table = t;
        used++;
        total += end - start;
    }
    if (total > s->limit)
        return scan_rows(s, queries, q, 1, 0, &work->found);
    if ((size_t)total > work->capacity) {
        uint32_t *rows = realloc(work->rows, total * sizeof(uint32_t));
        if (!rows)
            return -1;
        work->rows = rows;
        work->capacity = total;
    }
    /* Hot chunk values and large near-duplicate families put the same rows in the probed slots
       of several tables: past DEDUPLICATE_FROM candidates, each is checked once. */
    uint64_t *seen = NULL;
    if (total >= DEDUPLICATE_FROM) {
        if (!work->seen && !(work->seen = calloc(((size_t)s->n >> 6) + 1, sizeof(uint64_t))))
            return -1;
        seen = work->seen;
    }
    uint32_t *rows = work->rows;
    Py_ssize_t gathered = 0;
    for (Py_ssize_t r = 0; r < used; r++) {
        if (r + PREFETCH_SLOTS < used) {
            const Range *ahead = &ranges[r + PREFETCH_SLOTS];
            PREFETCH(s->table[ahead->table].postings + (size_t)ahead->start * s->stride);
        }
        const uint8_t *postings = s->table[ranges[r].table].postings;
        for (uint32_t at = ranges[r].start; at < ranges[r].end; at++) {
            uint32_t row = posting(postings, s->stride, at);
            if (row >= s->n) {
                *bad = 1;
                continue;
            }
            if (seen) {
                uint64_t bit = (uint64_t)1 << (row & 63);
                if (seen[row >> 6] & bit)
                    continue;
                seen[row >> 6] |= bit;
            }
            rows[gathered++] = row;
        }
    }
    int status = 0;
    for (Py_ssize_t i = 0; i < gathered && !status; i++) {
        if (i + PREFETCH_AHEAD < gathered)
            PREFETCH(s->hashes + (size_t)rows[i + PREFETCH_AHEAD] * s->words);
        status = check(s, query, (uint64_t)q, rows[i], &work->found);
    }
    if (seen)
        for (Py_ssize_t i = 0; i < gathered; i++)
            seen[rows[i] >> 6] = 0;
    return status;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts the matches and keeps one of each (a hash found through several tables). */
static void sort_unique(Found *found) {
    if (found->size < 2)
        return;
    qsort(found->data, found->size, sizeof(uint64_t), compare_u64);
    size_t kept = 1;
    for (size_t i = 1; i < found->size; i++)
        if (found->data[i] != found->data[kept - 1])
            found->data[kept++] = found->data[i];
    found->size = kept;
}

#define SEARCH_BODY                                                                           \
    {                                                                                         \
        if (!s->tables)                                                                       \
            return scan_rows(s, queries, 0, count, 0, &work->found);                          \
        for (Py_ssize_t q = 0; q < count; q++)                                                \
            if (probe_one(s, queries, q, work, bad))                                          \
                return -1;                                                                    \
        return 0;                                                                             \
    }

static int search_plain(const Segment *s, const uint64_t *queries, Py_ssize_t count, Work *work,
                        int *bad) SEARCH_BODY

#ifdef DISPATCH_POPCNT
__attribute__((target("popcnt"))) static int
search_popcnt(const Segment *s, const uint64_t *queries, Py_ssize_t count, Work *work,
              int *bad) SEARCH_BODY
#endif

typedef int (*SearchFunction)(const Segment *, const uint64_t *, Py_ssize_t, Work *, int *);
static SearchFunction search_function = search_plain;

/* Checks the table descriptors (rows of start bit, width, coarse offset, fine offset or -1,
   postings offset in bytes) against the buffers they point into. */
static int set_tables(Segment *s, const Py_buffer *tables, const Py_buffer *coarse,
                      const Py_buffer *fine, const Py_buffer *postings) {
    const int64_t *d = tables->buf;
    Py_ssize_t count = tables->len / (Py_ssize_t)(5 * sizeof(int64_t));
    if (count * 5 * (Py_ssize_t)sizeof(int64_t) != tables->len || count > MAX_TABLES)
        return -1;
    Py_ssize_t coarse_len = coarse->len / 4, fine_len = fine->len / 2;
    s->tables = (int)count;
    for (Py_ssize_t t = 0; t < count; t++, d += 5) {
        int64_t start = d[0], width = d[1], coarse_at = d[2], fine_at = d[3], post_at = d[4];
        if (width < 1 || width > 32 || start < 0 || start + width > 64 * s->words)
            return -1;
        int64_t slots = ((int64_t)1 << width) + 1;
        int64_t coarse_need = fine_at < 0 ? slots : ((slots - 1) >> FINE_SHIFT) + 1;
        if (coarse_at < 0 || coarse_at + coarse_need > coarse_len)
            return -1;
        if (fine_at >= 0 && fine_at + slots > fine_len)
            return -1;
        if (post_at < 0 || post_at + (int64_t)s->n * s->stride > postings->len)
            return -1;
        Table *table = &s->table[t];
        table->start = (int)start;
        table->width = (int)width;
        table->coarse = (const uint32_t *)coarse->buf + coarse_at;
        table->fine = fine_at < 0 ? NULL : (const uint16_t *)fine->buf + fine_at;
        table->postings = (const uint8_t *)postings->buf + post_at;
    }
    return 0;
}

PyDoc_STRVAR(search_doc,
             "search(hashes, alive, words, stride, tables, coarse, fine, postings, probes, "
             "queries, radius, limit) -> bytes\n\n"
             "The packed matches of the queries in one segment (see tidkit/index.py). With no "
             "tables, a scan.");

static PyObject *search(PyObject *self, PyObject *args) {
    Py_buffer hashes, alive, tables, coarse, fine, postings, probes, queries;
    int words, stride, radius;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "y*y*iiy*y*y*y*y*y*in", &hashes, &alive, &words, &stride, &tables,
                          &coarse, &fine, &postings, &probes, &queries, &radius, &limit))
        return NULL;
    PyObject *result = NULL;
    Segment s;
    memset(&s, 0, sizeof(s));
    Work work;
    memset(&work, 0, sizeof(work));
    int status = 0, bad = 0;
    const char *problem = NULL;
    s.hashes = hashes.buf;
    s.alive = alive.buf;
    s.words = words;
    s.stride = stride;
    s.radius = radius;
    s.limit = limit;
    s.probes = probes.buf;
    s.nprobes = probes.len / (Py_ssize_t)(2 * sizeof(int64_t));
    Py_ssize_t count = words > 0 ? queries.len / (Py_ssize_t)(words * 8) : 0;
    if (words != 1 && words != 4)
        problem = "words is 1 or 4";
    else if (stride != 3 && stride != 4)
        problem = "stride is 3 or 4";
    else if (hashes.len % (words * 8) || queries.len % (words * 8))
        problem = "hashes and queries are rows of 64-bit words";
    else if ((s.n = hashes.len / (words * 8)) != alive.len || s.n > UINT32_MAX ||
             (stride == 3 && s.n > (1 << 24)))
        problem = "hashes and alive differ in length, or too many rows for the stride";
    else if ((uint64_t)count > MAX_QUERY_NUMBER)
        problem = "too many queries at once";
    else if (radius < 0 || limit < 0)
        problem = "negative radius or limit";
    else if (set_tables(&s, &tables, &coarse, &fine, &postings))
        problem = "table descriptors do not fit the arrays";
    else if (s.tables) {
        const int64_t *p = s.probes;
        for (Py_ssize_t i = 0; i < s.nprobes && !problem; i++, p += 2)
            if (p[0] < 0 || p[0] >= s.tables || p[1] < 0 || (p[1] >> s.table[p[0]].width))
                problem = "a probe names no table or flips bits outside its chunk";
    }
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto done;
    }
    if (s.tables) {
        work.ranges = malloc((s.nprobes + 1) * sizeof(Range));
        if (!work.ranges) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    status = search_function(&s, queries.buf, count, &work, &bad);
    if (!status)
        sort_unique(&work.found);
    Py_END_ALLOW_THREADS
    if (status) {
        PyErr_NoMemory();
        goto done;
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "the index's tables point outside it (a damaged file?)");
        goto done;
    }
    result = PyBytes_FromStringAndSize((const char *)work.found.data,
                                       work.found.size * sizeof(uint64_t));
done:
    free(work.found.data);
    free(work.ranges);
    free(work.rows);
    free(work.seen);
    PyBuffer_Release(&hashes);
    PyBuffer_Release(&alive);
    PyBuffer_Release(&tables);
    PyBuffer_Release(&coarse);
    PyBuffer_Release(&fine);
    PyBuffer_Release(&postings);
    PyBuffer_Release(&probes);
    PyBuffer_Release(&queries);
    return result;
}

static PyMethodDef methods[] = {
    {"search", search, METH_VARARGS, search_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tidkit._hamming", "The inner loops of tidkit.index.", -1, methods,
};

PyMODINIT_FUNC PyInit__hamming(void) {
#ifdef DISPATCH_POPCNT
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt"))
        search_function = search_popcnt;
#endif
    return PyModule_Create(&module);
}
