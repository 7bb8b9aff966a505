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
#ifndef PACKED_AHEAD
#define PACKED_AHEAD 64 /* the packed layout's marks, runs, postings and rows fetched ahead */
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

/* Room for `total` candidate rows, and (for queries with many: hot chunk values and large
   near-duplicate families put the same rows in the probed slots of several tables) a bitmap
   so that each is checked once; -1 if out of memory. */
static int gather_space(Work *work, Py_ssize_t total, Py_ssize_t n, uint64_t **seen) {
    if ((size_t)total > work->capacity) {
        uint32_t *rows = realloc(work->rows, total * sizeof(uint32_t));
        if (!rows)
            return -1;
        work->rows = rows;
        work->capacity = total;
    }
    *seen = NULL;
    if (total >= DEDUPLICATE_FROM) {
        if (!work->seen && !(work->seen = calloc(((size_t)n >> 6) + 1, sizeof(uint64_t))))
            return -1;
        *seen = work->seen;
    }
    return 0;
}

/* Appends to rows[gathered...] the rows a range names (its positions themselves when postings
   is NULL: table 0 of a packed segment), each once with `seen`; returns the new count. */
ALWAYS_INLINE Py_ssize_t gather(uint32_t *rows, Py_ssize_t gathered, const uint8_t *postings,
                                int stride, const Range *range, Py_ssize_t n, uint64_t *seen,
                                int *bad) {
    for (uint32_t at = range->start; at < range->end; at++) {
        uint32_t row = postings ? posting(postings, stride, at) : at;
        if (row >= n) {
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
    return gathered;
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
    uint64_t *seen;
    if (gather_space(work, total, s->n, &seen))
        return -1;
    uint32_t *rows = work->rows;
    Py_ssize_t gathered = 0;
    for (Py_ssize_t r = 0; r < used; r++) {
        if (r + PREFETCH_SLOTS < used) {
            const Range *ahead = &ranges[r + PREFETCH_SLOTS];
            PREFETCH(s->table[ahead->table].postings + (size_t)ahead->start * s->stride);
        }
        gathered = gather(rows, gathered, s->table[ranges[r].table].postings, s->stride,
                          &ranges[r], s->n, seen, bad);
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

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
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

/* A search call's answer: the packed matches as bytes, or the error its status and damage
   flag call for. */
static PyObject *search_answer(int status, int bad, const Work *work) {
    if (status)
        return PyErr_NoMemory();
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "the index's tables point outside it (a damaged file?)");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)work->found.data,
                                     work->found.size * sizeof(uint64_t));
}

static void work_free(Work *work) {
    free(work->found.data);
    free(work->ranges);
    free(work->rows);
    free(work->seen);
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

/* What is wrong with a search call's queries, radius, limit or probes (pairs of table and XOR
   mask, for tables of these chunk widths), or NULL. */
static const char *call_problem(Py_ssize_t count, int radius, Py_ssize_t limit,
                                const int64_t *probes, Py_ssize_t nprobes, int tables,
                                const int *widths) {
    if ((uint64_t)count > MAX_QUERY_NUMBER)
        return "too many queries at once";
    if (radius < 0 || limit < 0)
        return "negative radius or limit";
    for (Py_ssize_t i = 0; i < nprobes; i++, probes += 2)
        if (probes[0] < 0 || probes[0] >= tables || probes[1] < 0 ||
            (probes[1] >> widths[probes[0]]))
            return "a probe names no table or flips bits outside its chunk";
    return NULL;
}

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
    else if (set_tables(&s, &tables, &coarse, &fine, &postings))
        problem = "table descriptors do not fit the arrays";
    else {
        int widths[MAX_TABLES];
        for (int t = 0; t < s.tables; t++)
            widths[t] = s.table[t].width;
        /* (with no tables, a scan: the probes are not read) */
        problem = call_problem(count, radius, limit, s.probes, s.tables ? s.nprobes : 0,
                               s.tables, widths);
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
    result = search_answer(status, bad, &work);
done:
    work_free(&work);
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

/* ---- The packed layout (HammingIndex(memory=...) on PDQ; tidkit/index.py, _PackedSegment) ----

Rows are stored in the order of their first chunk's value, which is therefore not stored. A
row's other bits are in two arrays: `quick`, 16 bytes per row (words 1 and 2, little-endian),
which alone rule out nearly every candidate in one cache line, and `rest`, the other bits of
word 0 (`low` bytes, little-endian) then word 3 (little-endian). Every table's directory is a
unary run: for each chunk value in turn, one 0 bit per row holding it, then a 1, so that the
rows with value k start at (position of the k-th 1) - k. `marks` holds a uint32 per 32 values:
where value 32j's part of the run starts, so that finding a value passes at most 31 ones,
nearly always within two words. Table 0's rows are the rows themselves; the other tables have
postings. */

#define MARK_SHIFT 5 /* a mark per 32 values (tidkit/index.py) */

typedef struct {
    int start, width;
    const uint32_t *marks;
    const uint64_t *bits;
    Py_ssize_t words; /* of `bits`, the last one a zero pad */
    const uint8_t *postings; /* NULL for table 0 */
} Unary;

typedef struct {
    const uint8_t *quick, *rest;
    int rest_size, low;
    const uint8_t *alive; /* one bit per row, little-endian */
    Py_ssize_t n;
    int stride;
    int tables;
    Unary table[MAX_TABLES];
    const int64_t *probes;
    Py_ssize_t nprobes;
    int radius;
    Py_ssize_t limit;
} Packed;

typedef struct {
    uint64_t bit; /* where the run of the probed value's mark starts */
    uint32_t key;
    int table;
} Probe;

ALWAYS_INLINE uint64_t load_le(const uint8_t *p, int bytes) {
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--)
        value = value << 8 | p[i];
    return value;
}

ALWAYS_INLINE uint64_t load_le64(const uint8_t *p) {
    uint64_t value;
    memcpy(&value, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    return value;
}

/* 64 bits of the run from bit `at` (the caller has checked at >> 6 < words - 1); without a
   branch (two shifts for the second word: a shift by 64 is undefined). */
ALWAYS_INLINE uint64_t run_bits(const uint64_t *bits, uint64_t at) {
    uint64_t word = at >> 6;
    int shift = (int)(at & 63);
    return bits[word] >> shift | (bits[word + 1] << 1) << (63 - shift);
}

/* Finding the k-th set bit of a word (select) is most of a unary run's cost. One instruction
   does it, BMI2's pdep, where it is fast (Intel since 2013, AMD since Zen 3); on AMD's earlier
   CPUs it takes hundreds of cycles, and it is missing elsewhere, so a portable broadword
   select is the default and the pdep one is picked at import where it pays (see
   pick_kernels). The search functions pass `fast` down as a constant. */
#ifdef DISPATCH_POPCNT
#include <cpuid.h>
#include <immintrin.h>
__attribute__((target("bmi2"))) static inline int select64_pdep(uint64_t w, int rank) {
    return __builtin_ctzll(_pdep_u64((uint64_t)1 << rank, w));
}
#define SELECT64(fast, w, rank) ((fast) ? select64_pdep(w, rank) : select64(w, rank))
#else
#define SELECT64(fast, w, rank) select64(w, rank)
#endif

/* in_byte[b][k]: the position of the k-th (from 0) set bit of byte b (filled at import). */
static uint8_t in_byte[256][8];

/* The position of the rank-th (from 0) set bit of w, which has more than rank; without
   branches (broadword: the bytes' running counts in one multiplication, then the byte whose
   count passes rank, then a table). */
ALWAYS_INLINE int select64(uint64_t w, int rank) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t c = w - (w >> 1 & 0x5555555555555555ULL);
    c = (c & 0x3333333333333333ULL) + (c >> 2 & 0x3333333333333333ULL);
    c = (c + (c >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    uint64_t running = c * ones; /* byte i: the set bits in bytes 0 to i */
    /* bytes whose running count is at most rank (no borrow: each byte is 0x80 + rank - count) */
    int byte = POPCOUNT64((((uint64_t)rank * ones | highs) - running) & highs);
    int before = byte ? (int)(running >> (8 * byte - 8) & 0xFF) : 0;
    return 8 * byte + in_byte[w >> (8 * byte) & 0xFF][rank - before];
}

/* The position of the rank-th (from 0) set bit of the 128 bits w0 then w1, which have more
   than rank; c0 is w0's count. */
ALWAYS_INLINE int select128(uint64_t w0, uint64_t w1, int c0, int rank, int fast) {
    uint64_t second = (uint64_t)0 - (uint64_t)(rank >= c0); /* all ones if past w0 */
    uint64_t w = (w0 & ~second) | (w1 & second);
    return (int)(second & 64) + SELECT64(fast, w, rank - (c0 & (int)second));
}

/* The rows [*start, *end) of value `key`, from `bit`, where its mark's part of the run starts.
   0 if the run does not fit the table (damaged). */
ALWAYS_INLINE int unary_range(const Unary *t, uint64_t key, uint64_t bit, Py_ssize_t n,
                              uint32_t *start, uint32_t *end, int fast) {
    int need = (int)(key & ((1 << MARK_SHIFT) - 1)); /* the ones of the values before key */
    uint64_t first, last; /* where the value's zeros start, and its one */
    if ((bit >> 6) + 2 < (uint64_t)t->words) {
        uint64_t w0 = run_bits(t->bits, bit), w1 = run_bits(t->bits, bit + 64);
        int c0 = POPCOUNT64(w0);
        if (need < c0 + POPCOUNT64(w1)) {
            /* Nearly always: both ends within 128 bits, found without a branch (which words
               they fall in is a coin toss). With pdep the two selects run side by side;
               without it, the value's one is the first one at or after `after`. */
            int after = select128(w0, w1, c0, need ? need - 1 : 0, fast) + 1;
            after = need ? after : 0;
            first = bit + (uint64_t)after;
            if (fast)
                last = bit + (uint64_t)select128(w0, w1, c0, need, fast);
            else { /* (after < 128: the need-th one lies past it, within the 128 bits) */
                uint64_t m0 = after < 64 ? w0 >> after << after : 0;
                uint64_t m1 = after <= 64 ? w1 : w1 >> (after - 64) << (after - 64);
                last = bit + (uint64_t)__builtin_ctzll(m0 ? m0 : m1) + (m0 ? 0 : 64);
            }
            goto found;
        }
    }
    while (need) { /* values denser in rows than two words hold (hot values), or the end */
        if ((bit >> 6) + 1 >= (uint64_t)t->words)
            return 0;
        uint64_t w = run_bits(t->bits, bit);
        int c = POPCOUNT64(w);
        if (c >= need) {
            bit += SELECT64(fast, w, need - 1) + 1;
            break;
        }
        need -= c;
        bit += 64;
    }
    first = last = bit;
    for (;;) {
        if ((last >> 6) + 1 >= (uint64_t)t->words)
            return 0;
        uint64_t w = run_bits(t->bits, last);
        if (w) {
            last += __builtin_ctzll(w);
            break;
        }
        last += 64;
    }
found:
    if (first < key || last - key > (uint64_t)n)
        return 0;
    *start = (uint32_t)(first - key);
    *end = (uint32_t)(last - key);
    return 1;
}

ALWAYS_INLINE uint64_t mark_of(const Unary *t, uint64_t key) {
    return t->marks[key >> MARK_SHIFT];
}

/* The first chunk's value of `row` (table 0: the last value whose rows start at or before it);
   -1 if the directory is damaged. */
static int64_t first_chunk_of(const Packed *s, uint32_t row) {
    const Unary *t = &s->table[0];
    /* rows before mark j: its position less the ones before it */
#define ROWS_BEFORE(j) ((int64_t)t->marks[j] - ((int64_t)(j) << MARK_SHIFT))
    Py_ssize_t low = 0, high = ((Py_ssize_t)1 << t->width >> MARK_SHIFT) - 1;
    if (ROWS_BEFORE(0) > row)
        return -1;
    while (low < high) { /* the last mark whose rows start at or before row */
        Py_ssize_t mid = (low + high + 1) / 2;
        if (ROWS_BEFORE(mid) <= row)
            low = mid;
        else
            high = mid - 1;
    }
    uint64_t bit = t->marks[low];
    uint64_t zeros = row - ROWS_BEFORE(low) + 1, ones = 0; /* pass that many zeros */
#undef ROWS_BEFORE
    for (;;) {
        if ((bit >> 6) + 1 >= (uint64_t)t->words)
            return -1;
        uint64_t w = run_bits(t->bits, bit);
        uint64_t z = 64 - POPCOUNT64(w);
        if (z >= zeros) {
            int at = select64(~w, (int)zeros - 1);
            ones += POPCOUNT64(at ? w & ((~(uint64_t)0) >> (64 - at)) : 0);
            break;
        }
        zeros -= z;
        ones += 64 - z;
        bit += 64;
    }
    uint64_t value = ((uint64_t)low << MARK_SHIFT) + ones;
    return value >> t->width ? -1 : (int64_t)value;
}

/* The distance of the row from the query on words 1 and 2: over the radius for nearly every
   candidate (128 bits of a random hash differ in about 64). */
ALWAYS_INLINE int quick_distance(const Packed *s, const uint64_t *query, uint32_t row) {
    const uint8_t *q = s->quick + (size_t)row * 16;
    return POPCOUNT64(load_le64(q) ^ query[1]) + POPCOUNT64(load_le64(q + 8) ^ query[2]);
}

#define HOT_RANGE 64 /* rows of one value, past which a range is split around table 0's */

/* The first position in [low, high) of a table's postings whose row is `row` or more (they are
   in row order within a value's range), or high. */
static uint32_t first_at_least(const uint8_t *postings, int stride, uint32_t low, uint32_t high,
                               uint32_t row) {
    while (low < high) {
        uint32_t mid = low + (high - low) / 2;
        if (posting(postings, stride, mid) < row)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

/* Adds the row to the matches if it is live and within the radius of the query, given its
   quick_distance `d`; `chunk` is the row's first chunk value if known, else -1. 0, or -1 if
   out of memory. */
ALWAYS_INLINE int packed_check(const Packed *s, const uint64_t *query, uint64_t number,
                               uint32_t row, int d, int64_t chunk, Found *found, int *bad) {
    if (d > s->radius)
        return 0;
    const uint8_t *r = s->rest + (size_t)row * s->rest_size;
    int width = s->table[0].width;
    d += POPCOUNT64((load_le(r, s->low) ^ query[0]) & ((~(uint64_t)0) >> width)) +
         POPCOUNT64(load_le64(r + s->low) ^ query[3]);
    if (d > s->radius || !(s->alive[row >> 3] >> (row & 7) & 1))
        return 0;
    if (chunk < 0 && (chunk = first_chunk_of(s, row)) < 0) {
        *bad = 1;
        return 0;
    }
    d += POPCOUNT64((uint64_t)chunk ^ query[0] >> (64 - width));
    if (d <= s->radius)
        return found_push(found, number << 41 | (uint64_t)d << 32 | row);
    return 0;
}

/* Every row against one query, table 0's run giving each row's first chunk. */
static int packed_scan(const Packed *s, const uint64_t *query, uint64_t number, Found *found,
                       int *bad) {
    const Unary *t = &s->table[0];
    uint64_t value = 0, row = 0;
    for (Py_ssize_t word = 0; word < t->words && row < (uint64_t)s->n; word++) {
        uint64_t w = t->bits[word];
        for (int b = 0; b < 64 && row < (uint64_t)s->n; b++)
            if (w >> b & 1)
                value++;
            else {
                int d = quick_distance(s, query, (uint32_t)row);
                if (packed_check(s, query, number, (uint32_t)row++, d, (int64_t)value, found, bad))
                    return -1;
            }
    }
    return 0;
}

ALWAYS_INLINE int packed_one(const Packed *s, const uint64_t *queries, Py_ssize_t q, Work *work,
                             Probe *probes, int *bad, int fast) {
    const uint64_t *query = queries + (size_t)q * 4;
    uint64_t keys[MAX_TABLES];
    for (int t = 0; t < s->tables; t++)
        keys[t] = chunk_of(query, s->table[t].start, s->table[t].width);
    for (Py_ssize_t p = 0; p < s->nprobes; p++) {
        probes[p].table = (int)s->probes[2 * p];
        probes[p].key = (uint32_t)(keys[probes[p].table] ^ (uint64_t)s->probes[2 * p + 1]);
    }
    /* Three passes, each fetching ahead: marks, runs, then (below) postings and rows. */
    for (Py_ssize_t p = 0; p < s->nprobes; p++) {
        if (p + PACKED_AHEAD < s->nprobes) {
            const Probe *ahead = &probes[p + PACKED_AHEAD];
            PREFETCH(s->table[ahead->table].marks + (ahead->key >> MARK_SHIFT));
        }
        probes[p].bit = mark_of(&s->table[probes[p].table], probes[p].key);
    }
    Range *ranges = work->ranges;
    Py_ssize_t total = 0, used = 0;
    for (Py_ssize_t p = 0; p < s->nprobes; p++) {
        if (p + PACKED_AHEAD < s->nprobes) { /* the 128 bits read: one or two lines */
            const Probe *ahead = &probes[p + PACKED_AHEAD];
            const Unary *t = &s->table[ahead->table];
            if ((ahead->bit >> 6) + 2 < (uint64_t)t->words) {
                PREFETCH(t->bits + (ahead->bit >> 6));
                PREFETCH(t->bits + (ahead->bit >> 6) + 2);
            }
        }
        uint32_t start, end;
        const Unary *t = &s->table[probes[p].table];
        if (!unary_range(t, probes[p].key, probes[p].bit, s->n, &start, &end, fast)) {
            *bad = 1;
            start = end = 0;
        }
        /* Written whatever it holds, kept if not empty: a branch here would be mispredicted
           for about a third of the values (those no row holds). */
        ranges[used].start = start;
        ranges[used].end = end;
        ranges[used].table = probes[p].table;
        used += end != start;
        total += end - start;
    }
    if (total > s->limit)
        return packed_scan(s, query, (uint64_t)q, &work->found, bad);
    uint64_t *seen;
    if (gather_space(work, total, s->n, &seen))
        return -1;
    /* A hot chunk value (common image structure: many hashes alike in their first bits) gives
       a long range in several tables. In table 0 its rows are one block, [hot.start,
       hot.end); the other tables' postings of a value are in row order, so their part inside
       that block (rows gathered already) is found by bisection and skipped. */
    Range hot = {0, 0, 0};
    for (Py_ssize_t r = 0; r < used; r++)
        if (ranges[r].table == 0 && ranges[r].end - ranges[r].start > hot.end - hot.start)
            hot = ranges[r];
    int skip_hot = hot.end - hot.start >= HOT_RANGE;
    uint32_t *rows = work->rows;
    Py_ssize_t gathered = 0;
    for (Py_ssize_t r = 0; r < used; r++) {
        if (r + PACKED_AHEAD < used) {
            const Range *ahead = &ranges[r + PACKED_AHEAD];
            const Unary *ta = &s->table[ahead->table];
            PREFETCH(ta->postings ? ta->postings + (size_t)ahead->start * s->stride
                                  : s->quick + (size_t)ahead->start * 16);
        }
        const uint8_t *postings = s->table[ranges[r].table].postings;
        if (skip_hot && postings && ranges[r].end - ranges[r].start >= HOT_RANGE) {
            Range before = ranges[r], after = ranges[r];
            before.end = first_at_least(postings, s->stride, before.start, before.end, hot.start);
            after.start = first_at_least(postings, s->stride, before.end, after.end, hot.end);
            gathered = gather(rows, gathered, postings, s->stride, &before, s->n, seen, bad);
            gathered = gather(rows, gathered, postings, s->stride, &after, s->n, seen, bad);
        } else
            gathered = gather(rows, gathered, postings, s->stride, &ranges[r], s->n, seen, bad);
    }
    /* Checked in two passes, each fetching ahead: words 1 and 2 of every candidate (one line),
       keeping the few within the radius there at the front of rows, then the rest of those,
       each once (a near-duplicate is a candidate in several tables) and in row order. */
    Py_ssize_t near = 0;
    for (Py_ssize_t i = 0; i < gathered; i++) {
        if (i + PACKED_AHEAD < gathered)
            PREFETCH(s->quick + (size_t)rows[i + PACKED_AHEAD] * 16);
        uint32_t row = rows[i];
        if (seen)
            seen[row >> 6] = 0;
        rows[near] = row;
        near += quick_distance(s, query, row) <= s->radius;
    }
    if (!seen && near > 1) { /* (with `seen`, rows were gathered once each) */
        qsort(rows, (size_t)near, sizeof(uint32_t), compare_u32);
        Py_ssize_t kept = 1;
        for (Py_ssize_t i = 1; i < near; i++)
            if (rows[i] != rows[kept - 1])
                rows[kept++] = rows[i];
        near = kept;
    }
    int status = 0;
    for (Py_ssize_t i = 0; i < near && !status; i++) {
        if (i + PACKED_AHEAD < near) { /* (a rest may straddle two lines) */
            const uint8_t *ahead = s->rest + (size_t)rows[i + PACKED_AHEAD] * s->rest_size;
            PREFETCH(ahead);
            PREFETCH(ahead + s->rest_size - 1);
        }
        int d = quick_distance(s, query, rows[i]);
        status = packed_check(s, query, (uint64_t)q, rows[i], d, -1, &work->found, bad);
    }
    return status;
}

#define PACKED_BODY(FAST)                                                                     \
    {                                                                                         \
        for (Py_ssize_t q = 0; q < count; q++)                                                \
            if (s->tables ? packed_one(s, queries, q, work, probes, bad, FAST)                \
                          : packed_scan(s, queries + (size_t)q * 4, (uint64_t)q,              \
                                        &work->found, bad))                                   \
                return -1;                                                                    \
        return 0;                                                                             \
    }

typedef int (*PackedFunction)(const Packed *, const uint64_t *, Py_ssize_t, Work *, Probe *,
                              int *);

static int packed_portable(const Packed *s, const uint64_t *queries, Py_ssize_t count,
                           Work *work, Probe *probes, int *bad) PACKED_BODY(0)

#ifdef DISPATCH_POPCNT
__attribute__((target("popcnt"))) static int
packed_popcnt(const Packed *s, const uint64_t *queries, Py_ssize_t count, Work *work,
              Probe *probes, int *bad) PACKED_BODY(0)

__attribute__((target("popcnt,bmi,bmi2"))) static int
packed_pdep(const Packed *s, const uint64_t *queries, Py_ssize_t count, Work *work,
            Probe *probes, int *bad) PACKED_BODY(1)
#endif

/* The packed search's versions, the first the fastest; pick_kernels() clears those this CPU
   lacks or runs slowly. */
static struct {
    const char *name;
    PackedFunction function;
    int usable;
} packed_kernels[] = {
#ifdef DISPATCH_POPCNT
    {"pdep", packed_pdep, 0},
    {"popcnt", packed_popcnt, 0},
#endif
    {"portable", packed_portable, 1},
};
#define PACKED_KERNELS ((int)(sizeof(packed_kernels) / sizeof(packed_kernels[0])))
static PackedFunction packed_function = packed_portable;

static void pick_kernels(void) {
#ifdef DISPATCH_POPCNT
    __builtin_cpu_init();
    int popcnt = __builtin_cpu_supports("popcnt");
    unsigned eax, ebx, ecx, edx;
    int family = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        family = (int)(eax >> 8 & 0xF);
        if (family == 0xF)
            family += (int)(eax >> 20 & 0xFF);
    }
    /* pdep is microcoded on AMD before Zen 3 (family 0x19) */
    int slow_pdep = __builtin_cpu_is("amd") && family < 0x19;
    packed_kernels[0].usable = popcnt && __builtin_cpu_supports("bmi2") && !slow_pdep;
    packed_kernels[1].usable = popcnt;
    if (popcnt)
        search_function = search_popcnt;
#endif
    for (int k = 0; k < PACKED_KERNELS; k++)
        if (packed_kernels[k].usable) {
            packed_function = packed_kernels[k].function;
            break;
        }
}

PyDoc_STRVAR(packed_kernel_doc,
             "packed_kernel(name=None) -> str\n\n"
             "The name of the version of the packed search in use ('pdep', 'popcnt' or "
             "'portable', picked at import for this CPU); with a name, use that one instead "
             "(for tests: each must give the same answers). ValueError if this CPU cannot run "
             "it.");

static PyObject *packed_kernel(PyObject *self, PyObject *args) {
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|z", &name))
        return NULL;
    for (int k = 0; k < PACKED_KERNELS; k++) {
        if (name ? strcmp(name, packed_kernels[k].name) != 0
                 : packed_function != packed_kernels[k].function)
            continue;
        if (!packed_kernels[k].usable)
            return PyErr_Format(PyExc_ValueError, "this CPU cannot run '%s'", name);
        packed_function = packed_kernels[k].function;
        return PyUnicode_FromString(packed_kernels[k].name);
    }
    return PyErr_Format(PyExc_ValueError, "no packed search named '%s'", name);
}

/* Checks the descriptors (rows of start bit, width, offset in `marks` (uint32s), offset in
   `bits` (words), number of words, offset in `postings` (bytes) or -1 for table 0). */
static const char *set_unary(Packed *s, const Py_buffer *tables, const Py_buffer *marks,
                             const Py_buffer *bits, const Py_buffer *postings) {
    const int64_t *d = tables->buf;
    Py_ssize_t count = tables->len / (Py_ssize_t)(6 * sizeof(int64_t));
    if (count * 6 * (Py_ssize_t)sizeof(int64_t) != tables->len || count < 1 || count > MAX_TABLES)
        return "table descriptors do not fit the arrays";
    s->tables = (int)count;
    for (Py_ssize_t t = 0; t < count; t++, d += 6) {
        int64_t start = d[0], width = d[1], marks_at = d[2], bits_at = d[3], words = d[4],
                post_at = d[5];
        if (width < 8 || width > 32 || start < 0 || start + width > 256)
            return "table descriptors do not fit the arrays";
        if ((t == 0) != (post_at < 0) || (t == 0 && (start != 0 || 64 - width > 8 * s->low)))
            return "table descriptors do not fit the arrays";
        int64_t values = (int64_t)1 << width;
        if (marks_at < 0 || marks_at + (values >> MARK_SHIFT) > marks->len / 4)
            return "table descriptors do not fit the arrays";
        if (bits_at < 0 || words < (s->n + values) / 64 + 2 || bits_at + words > bits->len / 8)
            return "table descriptors do not fit the arrays";
        if (post_at >= 0 && post_at + (int64_t)s->n * s->stride > postings->len)
            return "table descriptors do not fit the arrays";
        Unary *u = &s->table[t];
        u->start = (int)start;
        u->width = (int)width;
        u->marks = (const uint32_t *)marks->buf + marks_at;
        u->bits = (const uint64_t *)bits->buf + bits_at;
        u->words = (Py_ssize_t)words;
        u->postings = post_at < 0 ? NULL : (const uint8_t *)postings->buf + post_at;
    }
    return NULL;
}

PyDoc_STRVAR(search_packed_doc,
             "search_packed(quick, rest, low, alive, stride, tables, marks, bits, postings, probes, "
             "queries, radius, limit) -> bytes\n\n"
             "The packed matches of PDQ queries in one packed segment (see tidkit/index.py). "
             "With no probes, a scan.");

static PyObject *search_packed(PyObject *self, PyObject *args) {
    Py_buffer quick, rest, alive, tables, marks, bits, postings, probes, queries;
    int low, stride, radius;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "y*y*iy*iy*y*y*y*y*y*in", &quick, &rest, &low, &alive, &stride,
                          &tables, &marks, &bits, &postings, &probes, &queries, &radius,
                          &limit))
        return NULL;
    PyObject *result = NULL;
    Packed s;
    memset(&s, 0, sizeof(s));
    Work work;
    memset(&work, 0, sizeof(work));
    Probe *probe_work = NULL;
    int status = 0, bad = 0;
    const char *problem = NULL;
    s.quick = quick.buf;
    s.rest = rest.buf;
    s.low = low;
    s.rest_size = low + 8;
    s.alive = alive.buf;
    s.stride = stride;
    s.radius = radius;
    s.limit = limit;
    s.probes = probes.buf;
    s.nprobes = probes.len / (Py_ssize_t)(2 * sizeof(int64_t));
    Py_ssize_t count = queries.len / 32;
    if (low < 1 || low > 8)
        problem = "low is 1 to 8 bytes";
    else if (stride != 3 && stride != 4)
        problem = "stride is 3 or 4";
    else if (quick.len % 16 || rest.len != quick.len / 16 * s.rest_size || queries.len % 32)
        problem = "rows and queries do not fit their sizes";
    else if ((s.n = quick.len / 16) > UINT32_MAX || (stride == 3 && s.n > (1 << 24)) ||
             alive.len * 8 < s.n)
        problem = "too many rows for the stride, or too few tombstones";
    else if ((problem = set_unary(&s, &tables, &marks, &bits, &postings)) == NULL) {
        int widths[MAX_TABLES];
        for (int t = 0; t < s.tables; t++)
            widths[t] = s.table[t].width;
        problem = call_problem(count, radius, limit, s.probes, s.nprobes, s.tables, widths);
    }
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto done;
    }
    if (s.nprobes) {
        work.ranges = malloc(s.nprobes * sizeof(Range));
        probe_work = malloc(s.nprobes * sizeof(Probe));
        if (!work.ranges || !probe_work) {
            PyErr_NoMemory();
            goto done;
        }
    } else
        s.tables = 0; /* a scan: table 0 (still described) gives each row's first chunk */
    Py_BEGIN_ALLOW_THREADS
    status = packed_function(&s, queries.buf, count, &work, probe_work, &bad);
    if (!status)
        sort_unique(&work.found);
    Py_END_ALLOW_THREADS
    result = search_answer(status, bad, &work);
done:
    work_free(&work);
    free(probe_work);
    PyBuffer_Release(&quick);
    PyBuffer_Release(&rest);
    PyBuffer_Release(&alive);
    PyBuffer_Release(&tables);
    PyBuffer_Release(&marks);
    PyBuffer_Release(&bits);
    PyBuffer_Release(&postings);
    PyBuffer_Release(&probes);
    PyBuffer_Release(&queries);
    return result;
}

static PyMethodDef methods[] = {
    {"search", search, METH_VARARGS, search_doc},
    {"search_packed", search_packed, METH_VARARGS, search_packed_doc},
    {"packed_kernel", packed_kernel, METH_VARARGS, packed_kernel_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tidkit._hamming", "The inner loops of tidkit.index.", -1, methods,
};

PyMODINIT_FUNC PyInit__hamming(void) {
    for (int b = 0; b < 256; b++)
        for (int i = 0, k = 0; i < 8; i++)
            if (b >> i & 1)
                in_byte[b][k++] = (uint8_t)i;
    pick_kernels();
    return PyModule_Create(&module);
}
