// llama.cpp files built around the adapter: the adapter alone (gguf-lora,
// lc_export_gguf_lora) and a GGUF base with the adapter merged into its own
// tensors (lc_gguf_export_from_base), experts' adapters stacked as llama.cpp
// stacks experts.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export.h"
#include "export/gguf.h"
#include "export/gguf_export_internal.h"
#include "model/gguf_model.h"

// ---------------------------------------------------------------- GGUF base merge

// What a GGUF base tensor merges with the adapter: nothing, a layer's
// linear, every expert's projection (a stacked tensor) or the shared expert's.
enum merge_kind { MERGE_NONE, MERGE_LINEAR, MERGE_EXPERTS, MERGE_SHARED };

typedef struct merge_plan {
    enum merge_kind what;
    lc_wtype type; // as written
    int layer;
    lc_linear_kind kind; // MERGE_LINEAR
    lc_expert_proj proj; // MERGE_EXPERTS, MERGE_SHARED
} merge_plan;

// The rank shared by the adapted experts of projection proj in layer l (0:
// none adapted); -1 when they differ, which one stacked tensor cannot hold.
static int expert_stack_rank(const lc_lora *lora, const lc_model_config *c, int l, lc_expert_proj proj) {
    int r = 0;
    for (int x = 0; x < c->n_experts; x++) {
        const lc_lora_ref *ref = lc_lora_get_expert(lora, l, x, proj);
        if (!ref) continue;
        if (r && ref->r != r) return -1;
        r = ref->r;
    }
    return r;
}

// Whether the len bytes at s are name.
static bool name_is(const char *s, size_t len, const char *name) {
    return strlen(name) == len && !strncmp(s, name, len);
}

// Which adapted weight a GGUF base tensor "blk.N.<name>.weight" is (only the
// canonical spelling of N, as the model's loader reads it).
static merge_plan adapted_tensor(const lc_model *m, const lc_lora *lora, const char *name) {
    merge_plan p = {.what = MERGE_NONE};
    int l, used = 0;
    char canon[32];
    if (!lora || sscanf(name, "blk.%d.%n", &l, &used) != 1 || !used || l < 0 || l >= m->cfg.n_layers) return p;
    snprintf(canon, sizeof canon, "blk.%d.", l);
    if (strncmp(name, canon, (size_t)used) || strlen(canon) != (size_t)used) return p;
    const char *mid = name + used, *dot = strchr(mid, '.');
    if (!dot || strcmp(dot, ".weight")) return p;
    size_t len = (size_t)(dot - mid);
    p.layer = l;
    unsigned kinds = lc_model_layer_linear_kinds(&m->cfg, l);
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        const char *g = lc_gguf_linear_name((lc_linear_kind)k);
        if ((kinds >> k & 1) && name_is(mid, len, g) && lc_lora_get(lora, l, (lc_linear_kind)k)) {
            p.what = MERGE_LINEAR;
            p.kind = (lc_linear_kind)k;
            return p;
        }
    }
    for (int j = 0; j < LC_EXPERT_PROJ_COUNT && m->layers[l].moe; j++) {
        p.proj = (lc_expert_proj)j;
        if (name_is(mid, len, lc_gguf_expert_stack_names[j]) && expert_stack_rank(lora, &m->cfg, l, p.proj) != 0) {
            p.what = MERGE_EXPERTS;
            return p;
        }
        if (name_is(mid, len, lc_gguf_shared_expert_names[j]) &&
            lc_lora_get_expert(lora, l, m->cfg.n_experts, p.proj)) {
            p.what = MERGE_SHARED;
            return p;
        }
    }
    return p;
}

// How many of the base's tensors the adapter changes: each adapted linear,
// each projection stack with an adapted expert, each adapted shared projection.
static int adapted_count(const lc_model *m, const lc_lora *lora) {
    const lc_model_config *c = &m->cfg;
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) n += lc_lora_get(lora, l, (lc_linear_kind)k) != NULL;
        for (int j = 0; j < LC_EXPERT_PROJ_COUNT && m->layers[l].moe; j++)
            n += (expert_stack_rank(lora, c, l, (lc_expert_proj)j) != 0) +
                 (lc_lora_get_expert(lora, l, c->n_experts, (lc_expert_proj)j) != NULL);
    }
    return n;
}

// Merges and writes one adapted weight [rows, cols] (rows in the file's own
// order) as p->type.
static lc_status write_merged(lc_gguf_exporter *e, lc_gguf_writer *w, const merge_plan *p, const lc_linear *lin,
                              const lc_lora_ref *ref) {
    const float *rows = e->buf;
    if (p->what == MERGE_LINEAR) {
        lc_export_merge_linear(e->buf, e->m, e->lora, p->layer, p->kind);
        rows = lc_gguf_reorder_rows(e, p->kind, lin->out, lin->in);
    } else {
        lc_export_merge_weight(e->buf, lin, ref);
    }
    return lc_gguf_write_rows(e, w, p->type, rows, lin->out, lin->in);
}

// A GGUF base with the adapter merged: the source file's metadata and tensors
// in their order and stored types, except the adapted weights, merged in
// fp32 and written in dtype (rows back in the file's own order; a stacked
// expert tensor expert by expert, every expert merged with its adapter).
lc_status lc_gguf_export_from_base(const char *out_path, const lc_model *m, const lc_lora *lora, lc_dtype dtype) {
    const lc_gguf_file *src = m->gguf;
    const lc_model_config *c = &m->cfg;
    lc_gguf_exporter e = {.m = m, .lora = lora, .out_path = out_path, .dtype = dtype};
    lc_status st = lc_gguf_family_of(m, out_path, &e.fam);
    if (st) return st;
    // A stack's unadapted experts are merged too; they have the adapted ones' shape.
    size_t max_n = lc_export_merged_extent(m, lora, NULL) + 1;
    e.buf = malloc(max_n * sizeof *e.buf);
    e.tmp = malloc(max_n * sizeof *e.tmp);
    e.half = malloc(max_n * sizeof *e.half); // merged weights are written in dtype or F16
    merge_plan *plan = calloc(src->n_tensors + 1, sizeof *plan);
    lc_gguf_writer *w = NULL;
    if (!e.buf || !e.tmp || !e.half || !plan) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", out_path);
        goto done;
    }
    if ((st = lc_gguf_writer_new(&w, out_path))) goto done;
    for (size_t i = 0; i < src->n_kvs; i++)
        if ((st = lc_gguf_copy_kv(w, &src->kvs[i]))) goto done;
    int n_merged = 0;
    for (size_t i = 0; i < src->n_tensors; i++) {
        const lc_gguf_tensor *t = &src->tensors[i];
        int64_t shape[LC_GGUF_MAX_DIMS];
        for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
        uint32_t type = t->type;
        merge_plan *p = &plan[i];
        *p = adapted_tensor(m, lora, t->name);
        if (p->what != MERGE_NONE) {
            p->type = t->ne[0] % lc_wtype_block((lc_wtype)dtype) ? LC_WTYPE_F16 : (lc_wtype)dtype;
            type = lc_wtype_ggml(p->type);
            n_merged++;
        }
        if ((st = lc_gguf_add_tensor(w, t->name, type, t->n_dims, shape))) goto done;
    }
    int n_adapted = adapted_count(m, lora);
    if (n_merged != n_adapted) {
        st = lc_error(LC_STATUS_INPUT, "%s: the base file holds %d of the %d adapted weights", out_path, n_merged,
                      n_adapted);
        goto done;
    }
    if ((st = lc_gguf_write_header(w))) goto done;
    for (size_t i = 0; i < src->n_tensors && !st; i++) {
        const lc_gguf_tensor *t = &src->tensors[i];
        const merge_plan *p = &plan[i];
        int l = p->layer;
        switch (p->what) {
        case MERGE_NONE: st = lc_gguf_write_tensor_data(w, t->data, t->nbytes); break;
        case MERGE_LINEAR: st = write_merged(&e, w, p, &m->layers[l].lin[p->kind], NULL); break;
        case MERGE_SHARED:
            st = write_merged(&e, w, p, lc_model_expert_linear(m, l, c->n_experts, p->proj),
                              lc_lora_get_expert(lora, l, c->n_experts, p->proj));
            break;
        case MERGE_EXPERTS:
            for (int x = 0; x < c->n_experts && !st; x++)
                st = write_merged(&e, w, p, lc_model_expert_linear(m, l, x, p->proj),
                                  lc_lora_get_expert(lora, l, x, p->proj));
            break;
        }
    }
    if (!st) st = lc_gguf_writer_finish(w);
done:
    lc_gguf_writer_free(w);
    free(e.buf);
    free(e.tmp);
    free(e.half);
    free(plan);
    return st;
}

// ---------------------------------------------------------------- LoRA adapter

// Declares name.lora_a and name.lora_b: PEFT's lora_A [r, in] and lora_B
// [out, r], ggml ne [in, r] and [r, out]; with stacked experts ne [in, r, E]
// and [r, out, E], the layout llama.cpp's build_lora_mm_id multiplies by the
// chosen expert's slice (convert_lora_to_gguf.py stacks them the same way).
static lc_status declare_lora_pair(lc_gguf_writer *w, const char *name, int n_stack, int r, int in, int out) {
    char full[160];
    int64_t sa[3] = {n_stack, r, in}, sb[3] = {n_stack, out, r};
    int d = n_stack ? 3 : 2, o = n_stack ? 0 : 1;
    snprintf(full, sizeof full, "%s.lora_a", name);
    lc_status st = lc_gguf_add_tensor(w, full, LC_GGML_TYPE_F32, d, sa + o);
    if (st) return st;
    snprintf(full, sizeof full, "%s.lora_b", name);
    return lc_gguf_add_tensor(w, full, LC_GGML_TYPE_F32, d, sb + o);
}

// Walks the adapter's tensors in file order, declaring them (before the
// header) or writing their data: per layer its linears, then each stacked
// expert projection (experts without an adapter contribute zeros) and the
// shared expert's. zeros holds at least an expert's A or B.
static lc_status walk_lora_tensors(lc_gguf_exporter *e, lc_gguf_writer *w, bool data, const float *zeros) {
    const lc_model *m = e->m;
    const lc_model_config *c = &m->cfg;
    char name[128];
    lc_status st = LC_STATUS_OK;
    for (int l = 0; l < c->n_layers && !st; l++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT && !st; k++) {
            const lc_lora_ref *ref = lc_lora_get(e->lora, l, (lc_linear_kind)k);
            if (!ref) continue;
            const lc_linear *lin = &m->layers[l].lin[k];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lc_gguf_linear_name((lc_linear_kind)k));
            if (!data) {
                st = declare_lora_pair(w, name, 0, ref->r, lin->in, lin->out);
                continue;
            }
            if ((st = lc_gguf_write_tensor_data(w, ref->A, sizeof(float) * (size_t)ref->r * lin->in))) break;
            // B's rows follow the base weight's rows into llama.cpp's order.
            memcpy(e->buf, ref->B, sizeof(float) * (size_t)lin->out * ref->r);
            const float *b = lc_gguf_reorder_rows(e, (lc_linear_kind)k, lin->out, ref->r);
            st = lc_gguf_write_tensor_data(w, b, sizeof(float) * (size_t)lin->out * ref->r);
        }
        for (int p = 0; p < LC_EXPERT_PROJ_COUNT && m->layers[l].moe && !st; p++) {
            int r = expert_stack_rank(e->lora, c, l, (lc_expert_proj)p);
            const lc_linear *lin = lc_model_expert_linear(m, l, 0, (lc_expert_proj)p);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lc_gguf_expert_stack_names[p]);
            if (r > 0 && !data) st = declare_lora_pair(w, name, c->n_experts, r, lin->in, lin->out);
            for (int half = 0; half < 2 && r > 0 && data && !st; half++) // every expert's A, then every B
                for (int x = 0; x < c->n_experts && !st; x++) {
                    const lc_lora_ref *ref = lc_lora_get_expert(e->lora, l, x, (lc_expert_proj)p);
                    const float *v = !ref ? zeros : half ? ref->B : ref->A;
                    st = lc_gguf_write_tensor_part(w, v, sizeof(float) * (size_t)r * (half ? lin->out : lin->in));
                }
            const lc_lora_ref *sh = lc_lora_get_expert(e->lora, l, c->n_experts, (lc_expert_proj)p);
            if (!sh || st) continue;
            lin = lc_model_expert_linear(m, l, c->n_experts, (lc_expert_proj)p);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lc_gguf_shared_expert_names[p]);
            if (!data) st = declare_lora_pair(w, name, 0, sh->r, lin->in, lin->out);
            else if (!(st = lc_gguf_write_tensor_data(w, sh->A, sizeof(float) * (size_t)sh->r * lin->in)))
                st = lc_gguf_write_tensor_data(w, sh->B, sizeof(float) * (size_t)sh->r * lin->out);
        }
    }
    return st;
}

// The file's one alpha and the largest A or B of the adapters.
typedef struct lora_sizes {
    int n;
    float alpha;
    size_t max; // floats
} lora_sizes;

static lc_status lora_sizes_add(lora_sizes *z, const char *out_path, const lc_lora_ref *ref, const lc_linear *lin) {
    float a = ref->scale * (float)ref->r;
    if (a == 0.0f) // llama.cpp reads alpha 0 as "no alpha": scale 1, not 0
        return lc_error(LC_STATUS_USAGE, "%s: the adapter's scale is 0, which llama.cpp's adapter.lora.alpha cannot "
                        "express (alpha 0 means no scaling to it)", out_path);
    if (!isfinite(a))
        return lc_error(LC_STATUS_USAGE, "%s: the adapter's scale x rank (%g x %d) overflows adapter.lora.alpha's "
                        "f32", out_path, (double)ref->scale, ref->r);
    if (z->n++ == 0) z->alpha = a;
    else if (fabsf(a - z->alpha) > 1e-6f * fabsf(z->alpha))
        return lc_error(LC_STATUS_USAGE, "%s: the adapters' scale x rank differs between tensors, which llama.cpp's "
                        "one adapter.lora.alpha cannot express", out_path);
    size_t n = (size_t)(lin->in > lin->out ? lin->in : lin->out) * (size_t)ref->r;
    if (n > z->max) z->max = n;
    return LC_STATUS_OK;
}

lc_status lc_export_gguf_lora(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora) {
    const lc_model_config *c = &m->cfg;
    lc_gguf_exporter e = {.m = m, .lora = lora, .out_path = out_path, .dtype = LC_DTYPE_F32};
    lc_status st = lc_gguf_family_of(m, out_path, &e.fam);
    if (st) return st;
    if (lora->n_layers != c->n_layers)
        return lc_error(LC_STATUS_INPUT, "%s: the adapter has %d layers, the model %d", out_path, lora->n_layers,
                        c->n_layers);
    // llama.cpp scales every tensor by alpha / rank with one alpha for the
    // file: write alpha = scale * r (rsLoRA's alpha / sqrt(r) too).
    lora_sizes z = {0};
    for (int l = 0; l < c->n_layers && !st; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT && !st; k++) {
            const lc_lora_ref *ref = lc_lora_get(lora, l, (lc_linear_kind)k);
            if (ref) st = lora_sizes_add(&z, out_path, ref, &m->layers[l].lin[k]);
        }
    lc_lora_expert x;
    for (int cursor = 0; !st && lc_lora_expert_next(lora, m, &cursor, &x);) st = lora_sizes_add(&z, out_path, x.ref, x.lin);
    if (st) return st;
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < LC_EXPERT_PROJ_COUNT; p++)
            if (expert_stack_rank(lora, c, l, (lc_expert_proj)p) < 0)
                return lc_error(LC_STATUS_USAGE, "%s: the experts' adapters of blk.%d.%s have different ranks, which "
                                "llama.cpp's stacked expert adapter cannot hold", out_path, l,
                                lc_gguf_expert_stack_names[p]);
    if (!z.n) return lc_error(LC_STATUS_INPUT, "%s: the adapter adapts no layer", out_path);
    e.buf = malloc(z.max * sizeof *e.buf);
    e.tmp = malloc(z.max * sizeof *e.tmp);
    float *zeros = calloc(z.max, sizeof *zeros);
    lc_gguf_writer *w = NULL;
    char name[256];
    if (!e.buf || !e.tmp || !zeros) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", out_path);
        goto done;
    }
    lc_gguf_model_name(model_dir, name, sizeof name);
    if ((st = lc_gguf_writer_new(&w, out_path))) goto done;
    if ((st = lc_gguf_set_str(w, "general.architecture", e.fam.arch)) ||
        (st = lc_gguf_set_str(w, "general.type", "adapter")) || (st = lc_gguf_set_str(w, "general.name", name)) ||
        (st = lc_gguf_set_str(w, "adapter.type", "lora")) || (st = lc_gguf_set_f32(w, "adapter.lora.alpha", z.alpha)) ||
        (st = lc_gguf_set_u32(w, "general.quantization_version", 2)))
        goto done;
    if ((st = walk_lora_tensors(&e, w, false, zeros)) || (st = lc_gguf_write_header(w)) ||
        (st = walk_lora_tensors(&e, w, true, zeros)))
        goto done;
    st = lc_gguf_writer_finish(w);
done:
    lc_gguf_writer_free(w);
    free(e.buf);
    free(e.tmp);
    free(zeros);
    return st;
}
