// Tiny models of every supported family, rebuilt from the fixtures that
// tests/reference/families_reference.py writes (tests/fixtures/families/):
// each fixture lists the checkpoint tensors (HF names and layouts) whose
// values come from a counter-based hash of the tensor name, the PEFT adapter
// tensors the same way, the tokenized text, and PyTorch's logits and LoRA
// gradients. Rebuilding the weights here keeps megabytes of embeddings out of
// the repository.
#ifndef LC_FAMILY_FIXTURE_H
#define LC_FAMILY_FIXTURE_H

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct lc_family_fixture {
    cJSON *root;            // the whole fixture
    const cJSON *expected;  // "expected": logit_cols, logits, logits_base, loss, loss_base, grads
    char model_dir[512];    // config.json, model.safetensors, tokenizer.json
    char adapter_dir[512];  // adapter_config.json, adapter_model.safetensors (PEFT)
    int B, T;
    int32_t *tokens;        // [B, T]
} lc_family_fixture;

// Names of the fixtures, NULL-terminated.
extern const char *const lc_family_names[];
// The mixture-of-experts families (not in lc_family_names: no GGUF export yet).
extern const char *const lc_moe_family_names[];

// Reads tests/fixtures/families/<family>.json and writes the model and the
// adapter folders under dir. Fails the test on any error.
void lc_family_fixture_load(lc_family_fixture *f, const char *family, const char *dir);
void lc_family_fixture_free(lc_family_fixture *f);

// The value of element i of a fixture tensor (the generator both sides share).
float lc_family_value(const char *name, uint64_t i, double scale, double offset);

#endif
