/* The safety classifier's feature look-up, in one pass over a text.
 *
 * The Python side (aigc_safety.classifier._VectorTables) holds the vocabulary's features as
 * 64-bit hashes in two cuckoo tables: character 1- to 4-grams, Latin words and adjacent word
 * pairs. For every position of the text this extends the hash of the n-grams starting there one
 * code point at a time (from a secret key, each step h = mix(h * multiplier + code + tag[order])
 * with the splitmix64 finaliser, see char_gram_hash), looks each up in both tables and, when the
 * vocabulary knows it, adds its weight and records its index. Words are the classifier's
 * [a-z0-9]+('[a-z]+)? runs, hashed the same way with one word tag at every step (word_hash); a
 * pair "w1 w2" continues the hash of w1 over a space and w2. It also counts what the score's
 * divisor and language offset need: words, non-ASCII code points, whether a CJK one occurs.
 *
 * It computes what the Python paths of the same class compute from the same tables, so it finds
 * the same features (the classifier checks that at load, the tests and the training script on
 * every line). A second function sums the category head over the found features.
 *
 * Built by scripts/build-native.sh into libaigc_ngram.so beside this file; without it the
 * classifier uses numpy (or pure Python) and gives the same scores.
 */
#include <stddef.h>
#include <stdint.h>

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The interface version; the Python side refuses a library that returns another number. */
int64_t aigc_ngram_abi(void) { return 4; }

/* A slot of the two cuckoo tables: a feature's hash and weight side by side, so a probe that
 * finds it costs one cache line (key 0: empty). */
struct aigc_slot {
    uint64_t key;
    double weight;
};

/* Built once per loaded model by the Python side (ctypes mirror: _NativeTables). */
struct aigc_tables {
    int64_t max_order;
    uint64_t key;
    uint64_t multiplier;
    const uint64_t *tags; /* tags[1..max_order] */
    uint64_t word_tag;
    const struct aigc_slot *slots; /* table 0 in [0, mask], table 1 in [mask + 1, 2 * mask + 1] */
    uint64_t mask;                 /* slots per table - 1 */
};

/* The slot holding hash z, or -1. */
static inline int64_t lookup(const struct aigc_tables *t, uint64_t z) {
    uint64_t s1 = z & t->mask, s2 = t->mask + 1 + ((z >> 32) & t->mask);
    if (t->slots[s1].key == z) return (int64_t)s1;
    if (t->slots[s2].key == z) return (int64_t)s2;
    return -1;
}

static inline int is_lower_or_digit(uint32_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

static inline int is_cjk(uint32_t c) {
    return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) ||
           (c >= 0xac00 && c <= 0xd7af) || (c >= 0xf900 && c <= 0xfaff);
}

/* codes: the text's code points (n of them). out: room for 4 + max_order * n + 2 * n values.
 * Writes out[0] = features found, out[1] = words, out[2] = non-ASCII code points, out[3] = 1 when
 * a CJK code point occurs, and the found features' slots from out[4] (character n-grams first,
 * then words and pairs in text order; slot_index maps them to vocabulary indices). Returns the
 * sum of their weights. */
double aigc_classify(const struct aigc_tables *t, const uint32_t *codes, int64_t n, int64_t *out) {
    double sum = 0.0;
    int64_t *found = out + 4;
    int64_t non_ascii = 0, cjk = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = codes[i];
        if (c > 127) {
            non_ascii++;
            cjk |= is_cjk(c);
        }
        uint64_t h = t->key;
        for (int64_t order = 1; order <= t->max_order && i + order <= n; order++) {
            h = mix(h * t->multiplier + (uint64_t)codes[i + order - 1] + t->tags[order]);
            int64_t slot = lookup(t, h);
            if (slot >= 0) {
                sum += t->slots[slot].weight;
                *found++ = slot;
            }
        }
    }
    int64_t words = 0;
    uint64_t previous = 0; /* hash of the word before, once there is one */
    int64_t i = 0;
    while (i < n) {
        if (!is_lower_or_digit(codes[i])) {
            i++;
            continue;
        }
        int64_t end = i;
        while (end < n && is_lower_or_digit(codes[end])) end++;
        if (end + 1 < n && codes[end] == '\'' && codes[end + 1] >= 'a' && codes[end + 1] <= 'z') {
            end++;
            while (end < n && codes[end] >= 'a' && codes[end] <= 'z') end++;
        }
        uint64_t h = t->key, pair = 0;
        if (words > 0) pair = mix(previous * t->multiplier + (uint64_t)' ' + t->word_tag);
        for (int64_t j = i; j < end; j++) {
            h = mix(h * t->multiplier + (uint64_t)codes[j] + t->word_tag);
            if (words > 0) pair = mix(pair * t->multiplier + (uint64_t)codes[j] + t->word_tag);
        }
        int64_t slot = lookup(t, h);
        if (slot >= 0) {
            sum += t->slots[slot].weight;
            *found++ = slot;
        }
        if (words > 0) {
            slot = lookup(t, pair);
            if (slot >= 0) {
                sum += t->slots[slot].weight;
                *found++ = slot;
            }
        }
        previous = h;
        words++;
        i = end;
    }
    out[0] = found - (out + 4);
    out[1] = words;
    out[2] = non_ascii;
    out[3] = cjk;
    return sum;
}

/* The category head: arg-max over categories of bias[c] + scale * sum of matrix[i][c] over the
 * vocabulary indices i = slot_index[slots[k]] of the found features (row-major, ncat columns;
 * ncat <= 256), the first on a tie. */
int64_t aigc_category(const double *matrix, int64_t ncat, const double *bias, double scale, const int64_t *slots,
                      int64_t count, const int64_t *slot_index) {
    double sums[256] = {0.0};
    if (ncat <= 0 || ncat > 256) return -1;
    for (int64_t k = 0; k < count; k++) {
        const double *row = matrix + slot_index[slots[k]] * ncat;
        for (int64_t c = 0; c < ncat; c++) sums[c] += row[c];
    }
    int64_t best = 0;
    double top = bias[0] + scale * sums[0];
    for (int64_t c = 1; c < ncat; c++) {
        double value = bias[c] + scale * sums[c];
        if (value > top) {
            top = value;
            best = c;
        }
    }
    return best;
}
