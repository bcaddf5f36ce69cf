/* The rule scanner's automaton pass and bookkeeping, for aigc_safety.rules.PackScanner.
 *
 * The Python side builds an Aho-Corasick automaton over every word of a scanner (rule keywords
 * and the literals of each pattern's required sets, see aigc_safety.prefilter) and the tables
 * that say what each word is for. One call here walks the text once and does what
 * PackScanner._scan_python does between the automaton and the regular expressions:
 *
 *   - a keyword occurrence is a rule hit, after the word-boundary check of Latin ends;
 *   - an occurrence of a pattern's leading required set marks where to search the pattern;
 *   - an occurrence of a word of another required set is noted for that set;
 *   - each pattern whose leading set occurred, and each of whose other sets occurred somewhere, is
 *     given the windows to search: around its leading set's occurrences, extended by the
 *     pattern's width and how far past a match it may read (its look-aheads), merged, and kept only when they hold an occurrence of
 *     every other set (or the whole text, -1, for a pattern of unbounded width).
 *
 * Only the regular expressions stay in Python. Positions are code point indices, as in Python.
 * Built by scripts/build-native.sh into libaigc_native.so; without it the scanner does the same
 * in Python with ahocorasick-rs (the tests run both and compare them with every rule's own search).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One trie state, all a step reads in one place: a state with one child (most of them: the
 * inside of a word) holds it here, a state with more points at its children, sorted by class. */
struct aigc_state {
    int32_t fail;       /* the longest proper suffix state */
    int32_t out_word;   /* the word ending here, or -1 */
    int32_t out_link;   /* the nearest proper suffix state with a word, or -1 */
    int32_t n_children;
    int32_t child;      /* one child: the child; more: the first in edge_class/edge_child */
    int32_t cls;        /* one child: its class */
};

/* Built once per scanner by the Python side (ctypes mirror: rules._NativeAutomaton). CSR lists:
 * the entries of item k are list[start[k] .. start[k + 1]). */
struct aigc_automaton {
    const struct aigc_state *states;
    const uint32_t *edge_class;
    const int32_t *edge_child;
    const uint16_t *bmp_class;  /* per code point below 0x10000: its class, 0 when no word has it */
    const uint32_t *astral;     /* the words' code points above 0xFFFF, ascending ... */
    const uint16_t *astral_class; /* ... and their classes */
    int64_t n_astral;
    const int32_t *root_next;   /* per class: the root's child, 0 when it has none */
    const int32_t *word_length; /* per word, in code points */
    const int32_t *kw_start;    /* per word: the rules it is a keyword of ... */
    const int32_t *kw_rule;
    const int32_t *kw_flags;     /* ... and bit 0: check the left end, bit 1: the right end */
    const int32_t *lead_start;   /* per word: the required sets it leads */
    const int32_t *lead_clause;
    const int32_t *other_start;  /* per word: the non-leading required sets it belongs to */
    const int32_t *other_clause;
    const int32_t *led_start;    /* per required set: the patterns it leads */
    const int32_t *led_pattern;
    const int32_t *also_start;   /* per pattern: its other required sets */
    const int32_t *also_clause;
    const int32_t *width;        /* per pattern: longest match, -1 when unbounded */
    const int32_t *reach;        /* per pattern: how far past a match's end it may read */
    int64_t n_clauses;
    int64_t n_patterns;
};

static inline uint32_t class_of(const struct aigc_automaton *a, uint32_t code) {
    if (code < 0x10000) return a->bmp_class[code];
    int64_t lo = 0, hi = a->n_astral;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (a->astral[mid] < code) lo = mid + 1;
        else hi = mid;
    }
    return lo < a->n_astral && a->astral[lo] == code ? a->astral_class[lo] : 0;
}

/* The child of a state other than the root on a class, or -1. */
static inline int32_t step(const struct aigc_automaton *a, const struct aigc_state *st, uint32_t cls) {
    if (st->n_children == 1) return st->cls == (int32_t)cls ? st->child : -1;
    int64_t lo = st->child, hi = (int64_t)st->child + st->n_children;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (a->edge_class[mid] < cls) lo = mid + 1;
        else hi = mid;
    }
    return lo < (int64_t)st->child + st->n_children && a->edge_class[lo] == cls ? a->edge_child[lo] : -1;
}

static inline int word_char(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A growable list of (key, start, end) triples. */
struct triples {
    int64_t *v;
    int64_t n, cap;
};

static int push(struct triples *t, int64_t key, int64_t start, int64_t end) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 64;
        int64_t *v = realloc(t->v, (size_t)cap * 3 * sizeof(int64_t));
        if (v == NULL) return -1;
        t->v = v;
        t->cap = cap;
    }
    t->v[3 * t->n] = key;
    t->v[3 * t->n + 1] = start;
    t->v[3 * t->n + 2] = end;
    t->n++;
    return 0;
}

static int by_key_start_end(const void *x, const void *y) {
    const int64_t *a = x, *b = y;
    for (int i = 0; i < 3; i++) {
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    }
    return 0;
}

/* Insertion sort by (key, start, end): for few triples, or for nearly sorted ones. */
static void insertion_sort(int64_t *v, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        int64_t item[3] = {v[3 * i], v[3 * i + 1], v[3 * i + 2]};
        int64_t j = i;
        while (j > 0 && by_key_start_end(v + 3 * (j - 1), item) > 0) {
            memcpy(v + 3 * j, v + 3 * (j - 1), 3 * sizeof(int64_t));
            j--;
        }
        memcpy(v + 3 * j, item, 3 * sizeof(int64_t));
    }
}

/* Sorts triples by (key, start, end), keys in [0, n_keys). They arrive in order of end, so after
 * a counting sort by key each key's triples are nearly sorted already. Returns -1 when memory ran out. */
static int sort_triples(struct triples *t, int64_t n_keys) {
    if (t->n <= 48) {
        insertion_sort(t->v, t->n);
        return 0;
    }
    int64_t *at = calloc((size_t)n_keys + 1, sizeof(int64_t));
    int64_t *sorted = malloc((size_t)t->n * 3 * sizeof(int64_t));
    if (at == NULL || sorted == NULL) {
        free(at);
        free(sorted);
        return -1;
    }
    for (int64_t i = 0; i < t->n; i++) at[t->v[3 * i] + 1]++;
    for (int64_t k = 0; k < n_keys; k++) at[k + 1] += at[k];
    for (int64_t i = 0; i < t->n; i++) memcpy(sorted + 3 * at[t->v[3 * i]]++, t->v + 3 * i, 3 * sizeof(int64_t));
    free(at);
    free(t->v);
    t->v = sorted;
    t->cap = t->n;
    insertion_sort(t->v, t->n);
    return 0;
}

/* The first triple with this key in a sorted list, and how many have it. */
static int64_t find_key(const struct triples *t, int64_t key, int64_t *count) {
    int64_t lo = 0, hi = t->n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (t->v[3 * mid] < key) lo = mid + 1;
        else hi = mid;
    }
    int64_t end = lo;
    while (end < t->n && t->v[3 * end] == key) end++;
    *count = end - lo;
    return lo;
}

/* Whether the sorted occurrences [first, first + count) of a set hold one inside [lo, hi]. */
static int occurs_within(const struct triples *t, int64_t first, int64_t count, int64_t lo, int64_t hi) {
    for (int64_t k = first; k < first + count; k++) {
        if (t->v[3 * k + 1] >= lo && t->v[3 * k + 2] <= hi) return 1;
    }
    return 0;
}

int64_t aigc_scan_abi(void) { return 5; }

/* codes: the text's code points from index `base` on (m of them); `total` is the whole text's
 * length, matches must start at or after `pos` (base = pos - 1 when pos > 0, so the left
 * boundary check can see the character before). out: room for `capacity` int64 values.
 * Writes out[0] = keyword hits, out[1] = windows, then the keyword hits as (rule, start, end) and
 * the windows as (pattern, lo, hi), lo = hi = -1 for the whole text. Returns how many values
 * that is, more than `capacity` when they did not fit (call again with room for that many), or -1
 * when memory ran out. */
int64_t aigc_scan(const struct aigc_automaton *a, const uint32_t *codes, int64_t m, int64_t base, int64_t total,
                  int64_t pos, int64_t *out, int64_t capacity) {
    struct triples hits = {0}, leads = {0}, others = {0}, windows = {0};
    int32_t *pending = NULL;
    int64_t result = -1;
    int32_t state = 0;
    for (int64_t i = pos - base; i < m; i++) {
        uint32_t cls = class_of(a, codes[i]);
        if (cls == 0) { /* no word holds this character: nothing ends here, all restarts */
            state = 0;
            continue;
        }
        for (;;) {
            if (state == 0) {
                state = a->root_next[cls];
                break;
            }
            const struct aigc_state *st = a->states + state;
            int32_t next = st->n_children ? step(a, st, cls) : -1;
            if (next >= 0) {
                state = next;
                break;
            }
            state = st->fail;
        }
        const struct aigc_state *here = a->states + state;
        for (int32_t s = here->out_word >= 0 ? state : here->out_link; s >= 0; s = a->states[s].out_link) {
            int32_t w = a->states[s].out_word;
            int64_t end = i + 1, start = end - a->word_length[w];
            for (int32_t k = a->kw_start[w]; k < a->kw_start[w + 1]; k++) {
                int32_t flags = a->kw_flags[k];
                if ((flags & 1) && start + base > 0 && word_char(codes[start - 1])) continue;
                if ((flags & 2) && end < m && word_char(codes[end])) continue;
                if (push(&hits, a->kw_rule[k], start + base, end + base)) goto done;
            }
            for (int32_t k = a->lead_start[w]; k < a->lead_start[w + 1]; k++) {
                if (push(&leads, a->lead_clause[k], start + base, end + base)) goto done;
            }
            for (int32_t k = a->other_start[w]; k < a->other_start[w + 1]; k++) {
                if (push(&others, a->other_clause[k], start + base, end + base)) goto done;
            }
        }
    }
    if (leads.n) {
        if (sort_triples(&leads, a->n_clauses) || sort_triples(&others, a->n_clauses)) goto done;
        /* Each pattern once, led by its (one) leading set, in pattern order. */
        pending = calloc((size_t)a->n_patterns, sizeof(int32_t));
        if (pending == NULL) goto done;
        for (int64_t k = 0; k < leads.n;) {
            int64_t clause = leads.v[3 * k], first = k;
            while (k < leads.n && leads.v[3 * k] == clause) k++;
            for (int32_t p = a->led_start[clause]; p < a->led_start[clause + 1]; p++) {
                pending[a->led_pattern[p]] = (int32_t)(first + 1); /* 1 + its leading set's first occurrence */
            }
        }
        for (int64_t p = 0; p < a->n_patterns; p++) {
            if (!pending[p]) continue;
            int64_t first = pending[p] - 1, clause = leads.v[3 * first], count;
            find_key(&leads, clause, &count);
            int present = 1;
            for (int32_t k = a->also_start[p]; k < a->also_start[p + 1] && present; k++) {
                int64_t n_also;
                find_key(&others, a->also_clause[k], &n_also);
                present = n_also > 0;
            }
            if (!present) continue; /* a required set occurs nowhere: no match */
            int64_t width = a->width[p];
            if (width < 0) {
                if (push(&windows, p, -1, -1)) goto done;
                continue;
            }
            int64_t lo = -1, hi = -1;
            for (int64_t k = first; k <= first + count; k++) {
                int64_t next_lo = 0, next_hi = 0;
                if (k < first + count) {
                    int64_t start = leads.v[3 * k + 1], end = leads.v[3 * k + 2];
                    next_lo = end - width > pos ? end - width : pos;
                    int64_t far = start + width + a->reach[p];
                    next_hi = far < total ? far : total;
                    if (lo >= 0 && next_lo <= hi) {
                        if (next_hi > hi) hi = next_hi;
                        continue;
                    }
                }
                if (lo >= 0) { /* a finished window: kept when every other set occurs inside it */
                    int keep = 1;
                    for (int32_t j = a->also_start[p]; j < a->also_start[p + 1] && keep; j++) {
                        int64_t n_also, at = find_key(&others, a->also_clause[j], &n_also);
                        keep = occurs_within(&others, at, n_also, lo, hi);
                    }
                    if (keep && push(&windows, p, lo, hi)) goto done;
                }
                lo = next_lo;
                hi = next_hi;
            }
        }
    }
    result = 2 + 3 * (hits.n + windows.n);
    if (result <= capacity) {
        out[0] = hits.n;
        out[1] = windows.n;
        if (hits.n) memcpy(out + 2, hits.v, (size_t)hits.n * 3 * sizeof(int64_t));
        if (windows.n) memcpy(out + 2 + 3 * hits.n, windows.v, (size_t)windows.n * 3 * sizeof(int64_t));
    }
done:
    free(hits.v);
    free(leads.v);
    free(others.v);
    free(windows.v);
    free(pending);
    return result;
}

/* Building an automaton: a map (parent state, class) -> child, open addressing, for the trie. */
struct child_map {
    uint64_t *keys; /* ((parent << 21) | class) + 1; 0 = empty */
    int32_t *child;
    uint64_t mask;
};

static inline uint64_t spread(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int32_t child_of(const struct child_map *m, int64_t parent, uint32_t cls) {
    uint64_t key = (((uint64_t)parent << 21) | cls) + 1;
    for (uint64_t slot = spread(key) & m->mask;; slot = (slot + 1) & m->mask) {
        if (m->keys[slot] == key) return m->child[slot];
        if (m->keys[slot] == 0) return -1;
    }
}

static void add_child(struct child_map *m, int64_t parent, uint32_t cls, int32_t child) {
    uint64_t key = (((uint64_t)parent << 21) | cls) + 1;
    uint64_t slot = spread(key) & m->mask;
    while (m->keys[slot] != 0) slot = (slot + 1) & m->mask;
    m->keys[slot] = key;
    m->child[slot] = child;
}

static int ascending(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Builds the automaton of n_words words (their code points codes[offsets[w] .. offsets[w + 1])),
 * whose classes the tables of `a` give (bmp_class, astral; every code point must have one), into
 * states (room for offsets[n_words] + 1), edge_class/edge_child (room for offsets[n_words]) and
 * root_next (a->root_next is ignored; room for the number of classes + 1, zeroed by the caller).
 * Returns the number of states and writes the number of edges to *n_edges; -1 when memory ran
 * out, -2 when a code point has no class. */
int64_t aigc_scan_build(const struct aigc_automaton *a, const uint32_t *codes, const int64_t *offsets,
                        int64_t n_words, struct aigc_state *states, uint32_t *edge_class, int32_t *edge_child,
                        int64_t *n_edges, int32_t *root_next) {
    int64_t total = offsets[n_words], n_states = 1, result = -1;
    uint64_t size = 16;
    while (size < 2 * (uint64_t)(total + 1)) size *= 2;
    struct child_map map = {calloc(size, sizeof(uint64_t)), malloc(size * sizeof(int32_t)), size - 1};
    uint32_t *cls_of = malloc((size_t)(total + 1) * sizeof(uint32_t));   /* the class leading to a state */
    int32_t *parent = malloc((size_t)(total + 1) * sizeof(int32_t));
    int32_t *first = calloc((size_t)(total + 2), sizeof(int32_t));      /* children CSR */
    uint64_t *kids = malloc((size_t)(total + 1) * sizeof(uint64_t)); /* (class << 32) | child */
    int32_t *queue = malloc((size_t)(total + 1) * sizeof(int32_t));
    if (!map.keys || !map.child || !cls_of || !parent || !first || !kids || !queue) goto done;
    states[0] = (struct aigc_state){0, -1, -1, 0, 0, 0};
    for (int64_t w = 0; w < n_words; w++) {
        int64_t state = 0;
        for (int64_t i = offsets[w]; i < offsets[w + 1]; i++) {
            uint32_t cls = class_of(a, codes[i]);
            if (cls == 0) {
                result = -2;
                goto done;
            }
            int32_t next = child_of(&map, state, cls);
            if (next < 0) {
                next = (int32_t)n_states++;
                add_child(&map, state, cls, next);
                states[next] = (struct aigc_state){0, -1, -1, 0, 0, 0};
                cls_of[next] = cls;
                parent[next] = (int32_t)state;
            }
            state = next;
        }
        states[state].out_word = (int32_t)w;
    }
    /* Children of each state, sorted by class. */
    for (int64_t s = 1; s < n_states; s++) first[parent[s] + 1]++;
    for (int64_t s = 0; s < n_states; s++) first[s + 1] += first[s];
    for (int64_t s = 1; s < n_states; s++) {
        kids[first[parent[s]] + states[parent[s]].n_children++] = ((uint64_t)cls_of[s] << 32) | (uint64_t)s;
    }
    for (int64_t s = 0; s < n_states; s++) {
        if (states[s].n_children > 1) qsort(kids + first[s], (size_t)states[s].n_children, sizeof(uint64_t), ascending);
    }
    /* Failure links breadth first; each state's nearest proper suffix state that ends a word. */
    int64_t head = 0, tail = 0, edges = 0;
    for (int32_t k = first[0]; k < first[1]; k++) {
        int32_t child = (int32_t)(kids[k] & 0xFFFFFFFFu);
        root_next[cls_of[child]] = child;
        queue[tail++] = child; /* fail = 0, out_link = -1 already */
    }
    while (head < tail) {
        int32_t s = queue[head++];
        for (int32_t k = first[s]; k < first[s + 1]; k++) {
            int32_t child = (int32_t)(kids[k] & 0xFFFFFFFFu);
            uint32_t cls = cls_of[child];
            int32_t back = states[s].fail, target;
            while (back != 0 && child_of(&map, back, cls) < 0) back = states[back].fail;
            target = child_of(&map, back, cls);
            if (target < 0) target = 0;
            states[child].fail = target;
            states[child].out_link = states[target].out_word >= 0 ? target : states[target].out_link;
            queue[tail++] = child;
        }
    }
    /* One child inline, several in the edge arrays. */
    for (int64_t s = 0; s < n_states; s++) {
        int32_t count = states[s].n_children;
        if (count == 1) {
            states[s].child = (int32_t)(kids[first[s]] & 0xFFFFFFFFu);
            states[s].cls = (int32_t)(kids[first[s]] >> 32);
        } else if (count > 1) {
            states[s].child = (int32_t)edges;
            for (int32_t k = first[s]; k < first[s + 1]; k++) {
                edge_class[edges] = (uint32_t)(kids[k] >> 32);
                edge_child[edges++] = (int32_t)(kids[k] & 0xFFFFFFFFu);
            }
        }
    }
    *n_edges = edges;
    result = n_states;
done:
    free(map.keys);
    free(map.child);
    free(cls_of);
    free(parent);
    free(first);
    free(kids);
    free(queue);
    return result;
}
