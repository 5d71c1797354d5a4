// fuzz_jsonl: a JSONL file -> lc_dataset_load with the stories260K tokenizer
// (loaded once), max_seq_len 64, prompt masking from the input's first byte;
// then a few batches padded and packed, a split, and drop_untrainable.
#include "fuzz_common.h"

#include "common/status.h"
#include "data/dataset.h"
#include "data/tokenizer.h"

static lc_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (lc_tokenizer_load(&tok, lc_fuzz_shared("models/stories260K/tokenizer.json"),
                          lc_fuzz_shared("models/stories260K/tokenizer_config.json")) != LC_STATUS_OK) {
        fprintf(stderr, "fuzz_jsonl: %s\n", lc_error_message());
        abort();
    }
    return 0;
}

static void check_batch(const lc_batch *b, int V) {
    for (int i = 0; i < b->B * b->T; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= V) __builtin_trap();
        if (b->targets[i] < -1 || b->targets[i] >= V) __builtin_trap();
        if (b->seg_start[i] < 0 || b->seg_start[i] > i % b->T) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = lc_fuzz_path(0, NULL, "data.jsonl");
    lc_fuzz_write(path, data, size);
    lc_dataset_options opt = {.max_seq_len = 64, .mask_prompt = size == 0 || (data[0] & 1) == 0};
    lc_dataset ds;
    if (lc_fuzz_note(lc_dataset_load(&ds, path, tok, &opt), "dataset") != LC_STATUS_OK) return 0;
    int V = lc_tokenizer_vocab_size(tok);
    for (int i = 0; i < ds.n_examples; i++) {
        const lc_example *e = &ds.examples[i];
        if (e->n < 0 || e->n > opt.max_seq_len || e->n_prompt < 0 || e->n_prompt > e->n) __builtin_trap();
        for (int j = 0; j < e->n; j++)
            if (e->ids[j] < 0 || e->ids[j] >= V) __builtin_trap();
    }
    for (int packing = 0; packing < 2; packing++) {
        lc_batcher it;
        lc_batch b;
        if (lc_batch_init(&b, 3, opt.max_seq_len) != LC_STATUS_OK) continue;
        if (lc_batcher_init(&it, &ds, 3, opt.max_seq_len, packing != 0, true, 1234) == LC_STATUS_OK) {
            for (int k = 0; k < 4; k++) {
                lc_batcher_next(&it, &b);
                check_batch(&b, V);
            }
            lc_batcher_seek(&it, 2, ds.n_examples / 2);
            lc_batcher_next(&it, &b);
            check_batch(&b, V);
            lc_batcher_free(&it);
        }
        if (lc_batcher_init(&it, &ds, 3, opt.max_seq_len, packing != 0, false, 0) == LC_STATUS_OK) {
            for (int k = 0; k < 64 && lc_batcher_next_in_epoch(&it, &b); k++) check_batch(&b, V);
            lc_batcher_free(&it);
        }
        lc_batch_free(&b);
    }
    lc_dataset_drop_untrainable(&ds);
    if (ds.n_examples >= 2) {
        lc_dataset train, valid;
        if (lc_dataset_split(&ds, 0.3, 7, &train, &valid) == LC_STATUS_OK) {
            lc_dataset_free(&train);
            lc_dataset_free(&valid);
        }
    } else {
        lc_dataset_free(&ds);
    }
    return 0;
}
