#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"
#include "model/sample.h"

unsigned lc_lora_target_bit(const char *name) {
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
        if (strcmp(name, lc_linear_kind_name(k)) == 0) return 1u << k;
    return lc_arch_target_bits_any(name); // a family's own name: c_attn, query_key_value, ...
}

float lc_lora_config_scale(const lc_lora_config *cfg) {
    return cfg->rslora ? cfg->alpha / sqrtf((float)cfg->r) : cfg->alpha / (float)cfg->r;
}

void lc_lora_targets_string(char *out, size_t cap, unsigned targets) {
    if (cap == 0) return;
    out[0] = '\0';
    size_t len = 0;
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        if (!(targets & (1u << k))) continue;
        int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", lc_linear_kind_name((lc_linear_kind)k));
        if (n < 0 || (size_t)n >= cap - len) break;
        len += (size_t)n;
    }
}

bool lc_lora_layer_selected(const lc_lora_config *cfg, int n_layers, int layer) {
    if (layer < 0 || layer >= n_layers || layer >= LC_LORA_MAX_LAYERS) return false;
    if (cfg->layers_last > 0) return layer >= n_layers - cfg->layers_last;
    bool any = false;
    for (int w = 0; w < LC_LORA_MAX_LAYERS / 64 && !any; w++) any = cfg->layers[w] != 0;
    return !any || (cfg->layers[layer / 64] >> (layer % 64) & 1);
}

lc_status lc_lora_layers_resolve(lc_lora_config *cfg, int n_layers) {
    if (n_layers < 1 || n_layers > LC_LORA_MAX_LAYERS)
        return lc_error(LC_STATUS_INPUT, "lora.layers: a model of %d layers is not supported", n_layers);
    if (cfg->layers_last > n_layers)
        return lc_error(LC_STATUS_INPUT, "lora.layers: last %d is more than the model's %d layers", cfg->layers_last,
                        n_layers);
    for (int layer = n_layers; layer < LC_LORA_MAX_LAYERS; layer++)
        if (cfg->layers[layer / 64] >> (layer % 64) & 1)
            return lc_error(LC_STATUS_INPUT, "lora.layers: layer %d is out of range: the model has %d layers (0..%d)",
                            layer, n_layers, n_layers - 1);
    uint64_t set[LC_LORA_MAX_LAYERS / 64] = {0};
    for (int layer = 0; layer < n_layers; layer++)
        if (lc_lora_layer_selected(cfg, n_layers, layer)) set[layer / 64] |= 1ull << (layer % 64);
    memcpy(cfg->layers, set, sizeof set);
    cfg->layers_last = 0;
    return LC_STATUS_OK;
}

void lc_lora_layers_string(char *out, size_t cap, const lc_lora_config *cfg) {
    if (cap == 0) return;
    out[0] = '\0';
    if (cfg->layers_last > 0) {
        snprintf(out, cap, "last %d", cfg->layers_last);
        return;
    }
    // Runs of three or more as "first-last", so 80 layers stay short in a message.
    size_t len = 0;
    for (int layer = 0; layer < LC_LORA_MAX_LAYERS; layer++) {
        if (!(cfg->layers[layer / 64] >> (layer % 64) & 1)) continue;
        int end = layer;
        while (end + 1 < LC_LORA_MAX_LAYERS && (cfg->layers[(end + 1) / 64] >> ((end + 1) % 64) & 1)) end++;
        int n = end - layer >= 2 ? snprintf(out + len, cap - len, "%s%d-%d", len ? "," : "", layer, end)
                                 : snprintf(out + len, cap - len, "%s%d", len ? "," : "", layer);
        if (n < 0 || (size_t)n >= cap - len) break;
        len += (size_t)n;
        if (end - layer >= 2) layer = end;
    }
    if (!len) snprintf(out, cap, "all");
}

// Places ref's A and B at *off of the parameter block, A drawn from rng.
static void ref_place(lc_lora *l, lc_lora_ref *ref, const lc_linear *lin, size_t *off, lc_rng *rng) {
    int r = l->cfg.r;
    ref->r = r;
    ref->scale = l->scale;
    ref->dropout = l->cfg.dropout;
    ref->A = l->params + *off;
    if (l->grads) ref->dA = l->grads + *off;
    // kaiming_uniform_(a=√5) on [r, in]: bound = gain·√(3/fan_in) = 1/√in.
    float bound = 1.0f / sqrtf((float)lin->in);
    for (size_t i = 0; i < (size_t)r * lin->in; i++) ref->A[i] = (2.0f * lc_rng_uniform(rng) - 1.0f) * bound;
    *off += (size_t)r * lin->in;
    ref->B = l->params + *off;
    if (l->grads) ref->dB = l->grads + *off;
    *off += (size_t)lin->out * r;
}

lc_status lc_lora_init(lc_lora *l, const lc_model *m, const lc_lora_config *cfg, uint64_t seed, bool with_grads) {
    memset(l, 0, sizeof *l);
    if (cfg->r <= 0 || cfg->r > 4096) return lc_error(LC_STATUS_INPUT, "lora.r must be in 1..4096, got %d", cfg->r);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return lc_error(LC_STATUS_INPUT, "lora.dropout must be in [0, 1)");
    if (!cfg->targets) return lc_error(LC_STATUS_INPUT, "lora.targets names no module");
    unsigned present = lc_model_linear_kinds(&m->cfg);
    if (cfg->targets != LC_LINEAR_KIND_ALL && (cfg->targets & ~present)) {
        // Named targets must exist in this family; "all" means those it has.
        int k = 0;
        while (!((cfg->targets & ~present) >> k & 1)) k++;
        char list[160], names[96];
        lc_arch_target_list(&m->cfg, list, sizeof list);
        lc_arch_kind_aliases((lc_linear_kind)k, names, sizeof names);
        return lc_error(LC_STATUS_INPUT, "lora.targets: %s models have no %s module (theirs: %s)",
                        lc_arch_name(m->cfg.arch), names, list);
    }
    l->cfg = *cfg;
    l->cfg.targets &= present;
    lc_status st = lc_lora_layers_resolve(&l->cfg, m->cfg.n_layers);
    if (st) {
        memset(l, 0, sizeof *l);
        return st;
    }
    const lc_lora_config *c = &l->cfg;
    l->scale = lc_lora_config_scale(cfg);
    l->n_layers = m->cfg.n_layers;
    int r = cfg->r;
    size_t n = 0;
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
            if ((c->targets & (1u << k)) && lc_lora_layer_selected(c, l->n_layers, layer)) {
                const lc_linear *lin = &m->layers[layer].lin[k]; // out 0: none here (a sparse layer's MLP)
                n += (size_t)r * lin->in + (size_t)lin->out * r;
            }
    if (m->cfg.n_experts > 0) l->expert_slots = (m->cfg.n_experts + 1) * LC_EXPERT_PROJ_COUNT;
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int e = 0; e < l->expert_slots / LC_EXPERT_PROJ_COUNT; e++)
            for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
                const lc_linear *lin = lc_model_expert_linear(m, layer, e, (lc_expert_proj)j);
                if (lin && (c->targets >> lc_expert_proj_kind((lc_expert_proj)j) & 1) &&
                    lc_lora_layer_selected(c, l->n_layers, layer))
                    n += (size_t)r * lin->in + (size_t)lin->out * r;
            }
    l->n_params = n;
    l->params = calloc(n, sizeof(float));
    l->grads = with_grads ? calloc(n, sizeof(float)) : NULL;
    l->refs = calloc((size_t)l->n_layers * LC_LINEAR_KIND_COUNT, sizeof *l->refs);
    l->expert_refs = calloc((size_t)l->n_layers * l->expert_slots + 1, sizeof *l->expert_refs);
    if (!l->params || !l->refs || !l->expert_refs || (with_grads && !l->grads)) {
        lc_lora_free(l);
        return lc_error(LC_STATUS_RUNTIME, "out of memory for %zu LoRA parameters", n);
    }
    lc_rng rng;
    lc_rng_seed(&rng, seed);
    size_t off = 0;
    for (int layer = 0; layer < l->n_layers; layer++) {
        if (!lc_lora_layer_selected(c, l->n_layers, layer)) continue;
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *lin = &m->layers[layer].lin[k];
            if (!(c->targets & (1u << k)) || lin->out == 0) continue;
            ref_place(l, &l->refs[layer * LC_LINEAR_KIND_COUNT + k], lin, &off, &rng);
        }
        for (int e = 0; e < l->expert_slots / LC_EXPERT_PROJ_COUNT; e++)
            for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
                const lc_linear *lin = lc_model_expert_linear(m, layer, e, (lc_expert_proj)j);
                if (lin && (c->targets >> lc_expert_proj_kind((lc_expert_proj)j) & 1))
                    ref_place(l, &l->expert_refs[layer * l->expert_slots + e * LC_EXPERT_PROJ_COUNT + j], lin, &off,
                              &rng);
            }
    }
    return LC_STATUS_OK;
}

void lc_lora_free(lc_lora *l) {
    free(l->params);
    free(l->grads);
    free(l->refs);
    free(l->expert_refs);
    memset(l, 0, sizeof *l);
}

const lc_lora_ref *lc_lora_get(const lc_lora *l, int layer, lc_linear_kind kind) {
    if (!l || layer >= l->n_layers) return NULL;
    const lc_lora_ref *ref = &l->refs[layer * LC_LINEAR_KIND_COUNT + kind];
    return ref->A ? ref : NULL;
}

const lc_lora_ref *lc_lora_get_expert(const lc_lora *l, int layer, int e, lc_expert_proj proj) {
    if (!l || layer < 0 || layer >= l->n_layers || e < 0 || (e + 1) * LC_EXPERT_PROJ_COUNT > l->expert_slots)
        return NULL;
    const lc_lora_ref *ref = &l->expert_refs[layer * l->expert_slots + e * LC_EXPERT_PROJ_COUNT + proj];
    return ref->A ? ref : NULL;
}

bool lc_lora_expert_next(const lc_lora *l, const lc_model *m, int *cursor, lc_lora_expert *out) {
    for (int i = *cursor; l && i < l->n_layers * l->expert_slots; i++) {
        lc_lora_ref *ref = &l->expert_refs[i];
        if (!ref->A) continue;
        int layer = i / l->expert_slots, slot = i % l->expert_slots;
        out->layer = layer;
        out->expert = slot / LC_EXPERT_PROJ_COUNT;
        out->proj = (lc_expert_proj)(slot % LC_EXPERT_PROJ_COUNT);
        out->kind = lc_expert_proj_kind(out->proj);
        out->lin = lc_model_expert_linear(m, layer, out->expert, out->proj);
        out->ref = ref;
        *cursor = i + 1;
        return true;
    }
    return false;
}

void lc_lora_scale_b(lc_lora *l, const lc_model *m, float factor) {
    lc_lora_expert x;
    for (int i = 0; lc_lora_expert_next(l, m, &i, &x);)
        for (size_t j = 0; j < (size_t)x.lin->out * (size_t)x.ref->r; j++) x.ref->B[j] *= factor;
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_lora_ref *ref = lc_lora_get(l, layer, (lc_linear_kind)k);
            if (!ref) continue;
            size_t n = (size_t)m->layers[layer].lin[k].out * (size_t)ref->r;
            for (size_t i = 0; i < n; i++) ref->B[i] *= factor;
        }
}

void lc_lora_set_dropout_seed(lc_lora *l, uint64_t seed) {
    int n = l->n_layers * LC_LINEAR_KIND_COUNT;
    for (int i = 0; i < n; i++) l->refs[i].mask_seed = seed * 0x100000001B3ull + (uint64_t)i * 0x9E3779B97F4A7C15ull;
    // An expert's rows are its tokens, which differ from step to step: its
    // mask follows the row within the expert's batch.
    for (int i = 0; i < l->n_layers * l->expert_slots; i++)
        l->expert_refs[i].mask_seed = seed * 0x100000001B3ull + (uint64_t)(n + i) * 0x9E3779B97F4A7C15ull;
}

void lc_lora_set_dropout_rows(lc_lora *l, const lc_model *m, uint64_t seed, int64_t row0) {
    lc_lora_set_dropout_seed(l, seed);
    // lc_dropout_keep hashes mask_seed + golden·(i+1) with i = row·n_in + col:
    // moving the seed by golden·row0·n_in makes row 0 of a slice draw the mask
    // of row row0 of the whole batch.
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
            l->refs[layer * LC_LINEAR_KIND_COUNT + k].mask_seed +=
                0x9E3779B97F4A7C15ull * (uint64_t)row0 * (uint64_t)m->layers[layer].lin[k].in;
}
