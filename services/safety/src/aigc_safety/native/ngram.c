/* Character n-gram look-up for the safety classifier, in one pass over a text.
 *
 * The Python side (aigc_safety.classifier._VectorTables) holds the vocabulary's character 1- to
 * 4-grams as 64-bit hashes in two cuckoo tables. For every position of the text this extends the
 * hash of the n-grams starting there one code point at a time (from a secret key, each step
 * h = mix(h * multiplier + code + tag[order]) with the splitmix64 finaliser, see char_gram_hash),
 * looks each up in both tables and, when the vocabulary knows it, adds its weight and records its
 * index.
 * It is the numpy path of the same class done without temporary arrays: the hashes, tables and
 * weights are the same, so the same n-grams are found (tests compare the two).
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
int64_t aigc_ngram_abi(void) { return 2; }

/* codes: the text's code points (n of them). key: the hash key of these tables.
 * tags: the per-order tags, tags[1..max_order].
 * keys0/index0, keys1/index1: the two cuckoo tables (mask + 1 slots each; index -1 = empty).
 * weights: per vocabulary index. out: room for max_order * n indices.
 * Writes the sum of the found n-grams' weights to *total; returns how many were found. */
int64_t aigc_ngram_scan(const uint32_t *codes, int64_t n, int64_t max_order, uint64_t key, uint64_t multiplier,
                        const uint64_t *tags, const uint64_t *keys0, const int64_t *index0,
                        const uint64_t *keys1, const int64_t *index1, uint64_t mask,
                        const double *weights, double *total, int64_t *out) {
    double sum = 0.0;
    int64_t found = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = key;
        for (int64_t order = 1; order <= max_order && i + order <= n; order++) {
            h = mix(h * multiplier + (uint64_t)codes[i + order - 1] + tags[order]);
            uint64_t z = h;
            uint64_t s1 = z & mask, s2 = (z >> 32) & mask;
            int64_t index = -1;
            if (keys0[s1] == z) {
                index = index0[s1];
            } else if (keys1[s2] == z) {
                index = index1[s2];
            }
            if (index >= 0) {
                sum += weights[index];
                out[found++] = index;
            }
        }
    }
    *total = sum;
    return found;
}
