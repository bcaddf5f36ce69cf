/* Text normalisation for the safety service in one pass: aigc_safety.normalize._vector_fold in C.
 *
 * The Python side keeps the fold table as arrays over all code points (normalize._FoldArrays):
 * per code point the length of its normalised form (255: not computed yet) and where that form
 * starts in one flat array of output code points. This replaces each code point by its form, then
 * turns every run of spaces (the fold maps all whitespace to a space) into one space, kept only
 * between two visible characters neither of which is CJK, carrying the index of the run's first
 * character: what the stream normaliser decides. It writes, per output character, the index of
 * the input code point it came from.
 *
 * Built by scripts/build-native.sh into libaigc_fold.so; without it numpy (long texts) or
 * str.translate and the stream loop compute the same (the tests compare them).
 */
#include <stdint.h>

int64_t aigc_fold_abi(void) { return 1; }

/* codes: n input code points. lengths, starts: per code point (0x110000 of each); flat: flat_len
 * output code points; cjk: per code point, 1 for CJK. out, source: room for `capacity` values.
 * Returns the output length; -1 when a code point's form is not known yet (or not in the flat
 * array this call was given), so the caller fills the tables and calls again; -2 when `capacity`
 * is too small. */
int64_t aigc_fold(const uint32_t *codes, int64_t n, const uint8_t *lengths, const uint32_t *starts,
                  const uint32_t *flat, int64_t flat_len, const uint8_t *cjk, uint32_t *out, int32_t *source,
                  int64_t capacity) {
    int64_t count = 0, pending = -1; /* pending: where the current run of spaces began */
    uint32_t last = 0;               /* the last character written, 0 before the first */
    for (int64_t i = 0; i < n; i++) {
        uint32_t cp = codes[i];
        if (cp >= 0x110000) return -1;
        int64_t length = lengths[cp];
        if (length == 255 || (int64_t)starts[cp] + length > flat_len) return -1;
        const uint32_t *form = flat + starts[cp];
        for (int64_t k = 0; k < length; k++) {
            uint32_t c = form[k];
            if (c == ' ') {
                if (pending < 0) pending = i;
                continue;
            }
            if (pending >= 0) {
                if (count > 0 && !cjk[last] && !cjk[c]) {
                    if (count == capacity) return -2;
                    out[count] = ' ';
                    source[count++] = (int32_t)pending;
                }
                pending = -1;
            }
            if (count == capacity) return -2;
            out[count] = c;
            source[count++] = (int32_t)i;
            last = c;
        }
    }
    return count;
}
