#include "autograd/graph.h"
#include "autograd/graph_internal.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "autograd/kernels.h"
#include "autograd/parallel.h"
#include "common/file.h"

#define LC_ALIGN 64
#define LC_PAGE ((size_t)4096) // chunk sizes are whole pages
#define LC_HUGE_PAGE ((size_t)2 << 20)
// Cross-entropy rows per chunk: every chunk packs the whole [V, C] head for
// its two GEMMs, so fewer, larger chunks run closer to sgemm peak (135M
// head: 128 rows 168 GFLOP/s, 512 rows 300); the [chunk, V] logits are kept
// near LC_CE_BYTES.
#define LC_CE_ROWS_MIN 64
#define LC_CE_ROWS_MAX 512
#define LC_CE_BYTES ((size_t)128 << 20)

static bool prof_on;
static double prof_s[LC_PROF_KIND_COUNT][2];

void lc_prof_enable(bool on) {
    prof_on = on;
    memset(prof_s, 0, sizeof prof_s);
}

void lc_prof_get(double seconds[LC_PROF_KIND_COUNT][2]) { memcpy(seconds, prof_s, sizeof prof_s); }

const char *lc_prof_kind_name(lc_prof_kind k) {
    static const char *names[LC_PROF_KIND_COUNT] = {"gemm", "lora", "norm", "rope", "attention",
                                                    "activation", "add", "head", "other"};
    return k < LC_PROF_KIND_COUNT ? names[k] : "?";
}

static inline double prof_begin(void) { return prof_on ? lc_now_s() : 0.0; }

static inline void prof_end(lc_prof_kind k, int backward, double t0) {
    if (prof_on) prof_s[k][backward] += lc_now_s() - t0;
}

void lc_arena_init(lc_arena *a, size_t chunk_size) {
    memset(a, 0, sizeof *a);
    a->chunk_size = chunk_size;
}

// Chunks are anonymous mappings, not malloc blocks: freed chunks go back to
// the system at once (no heap left fragmented by chunks of changing sizes),
// and pages never touched cost nothing. Transparent huge pages where the
// system offers them on request: the first steps touch gigabytes of fresh
// memory, and 4 KiB faults cost seconds of system time (135M shape: 10 s ->
// 5 s over 8 steps, the first step 1.5x faster); a no-op elsewhere.
static unsigned char *chunk_map(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (size >= LC_HUGE_PAGE) madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

static void chunks_unmap(lc_arena *a) {
    for (int i = 0; i < a->n_chunks; i++) munmap(a->chunks[i].base, a->chunks[i].size);
    a->n_chunks = a->cur = 0;
    a->held_bytes = 0;
}

void lc_arena_free(lc_arena *a) {
    chunks_unmap(a);
    free(a->chunks);
    memset(a, 0, sizeof *a);
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

void *lc_arena_alloc(lc_arena *a, size_t bytes) {
    if (bytes > SIZE_MAX / 4) {
        a->failed = 1;
        return NULL;
    }
    bytes = round_up(bytes, LC_ALIGN);
    // Current chunk, then later chunks kept from earlier steps, then a new one.
    void *p = NULL;
    for (; a->cur < a->n_chunks; a->cur++) {
        lc_arena_chunk *c = &a->chunks[a->cur];
        if (c->size - c->used >= bytes) {
            p = c->base + c->used;
            c->used += bytes;
            break;
        }
        if (a->cur + 1 < a->n_chunks) a->chunks[a->cur + 1].used = 0;
    }
    if (!p) {
        size_t size = round_up(bytes > a->chunk_size ? bytes : a->chunk_size, LC_PAGE);
        lc_arena_chunk *chunks = realloc(a->chunks, sizeof *chunks * (size_t)(a->n_chunks + 1));
        if (chunks) a->chunks = chunks;
        if (!chunks || !(p = chunk_map(size))) {
            // Leave cur on a real chunk so marks taken after a failure stay valid.
            a->cur = a->n_chunks ? a->n_chunks - 1 : 0;
            a->failed = 1;
            return NULL;
        }
        a->chunks[a->n_chunks] = (lc_arena_chunk){p, size, bytes};
        a->cur = a->n_chunks++;
        a->held_bytes += size;
        a->n_maps++;
    }
    a->live += bytes;
    if (a->live > a->high) a->high = a->live;
    return p;
}

lc_arena_mark lc_arena_get_mark(const lc_arena *a) {
    lc_arena_mark m = {a->cur, a->n_chunks ? a->chunks[a->cur].used : 0, a->live};
    return m;
}

void lc_arena_reset(lc_arena *a, lc_arena_mark m) {
    a->failed = 0;
    a->live = m.live;
    if (m.chunk == 0 && m.used == 0 && a->n_chunks > 1) {
        // Nothing is in use: one chunk for the most any step took, with room
        // to grow. Kept as it is if that chunk cannot be had.
        size_t size = round_up(a->high + a->high / 4, LC_PAGE);
        unsigned char *base = chunk_map(size);
        if (base) {
            chunks_unmap(a);
            a->chunks[0] = (lc_arena_chunk){base, size, 0};
            a->n_chunks = 1;
            a->held_bytes = size;
            a->n_maps++;
        }
    }
    a->cur = m.chunk;
    if (a->n_chunks) a->chunks[m.chunk].used = m.used;
}

void lc_arena_prefault(lc_arena *a) {
    size_t used = 0;
    for (int i = 0; i < a->n_chunks && used < a->high; i++) {
        lc_arena_chunk *c = &a->chunks[i];
        size_t n = a->high - used < c->size ? a->high - used : c->size;
        for (size_t off = 0; off < n; off += LC_PAGE) c->base[off] = 0;
        used += n;
    }
}

lc_status lc_graph_init(lc_graph *g, bool record) {
    memset(g, 0, sizeof *g);
    lc_arena_init(&g->arena, 16u << 20);
    g->record = record;
    g->training = record;
    return LC_STATUS_OK;
}

void lc_graph_free(lc_graph *g) {
    lc_arena_free(&g->arena);
    free(g->tape);
    memset(g, 0, sizeof *g);
}

void lc_graph_reset(lc_graph *g) {
    lc_arena_reset(&g->arena, (lc_arena_mark){0});
    g->n_tape = 0;
}

lc_status lc_graph_status(const lc_graph *g) {
    if (g->arena.failed || (g->grad_arena && g->grad_arena->failed) || (g->transient && g->transient->arena.failed))
        return lc_error(LC_STATUS_RUNTIME, "out of memory for activations");
    return LC_STATUS_OK;
}

lc_tensor *lc_tensor_wrap(lc_graph *g, float *data, int rows, int cols) {
    lc_tensor *t = lc_arena_alloc(&g->arena, sizeof *t);
    if (!t) return NULL;
    *t = (lc_tensor){data, NULL, rows, cols, false, 0};
    return t;
}

lc_tensor *lc_tensor_new(lc_graph *g, int rows, int cols) {
    float *data = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)rows * cols);
    return data ? lc_tensor_wrap(g, data, rows, cols) : NULL;
}

// The output of an elementwise op that the backward can recompute: in the
// graph's transient memory when it records a tape that will hold the op
// (recorded: the output requires a gradient), else in the arena.
static lc_tensor *tensor_new_recomputable(lc_graph *g, int rows, int cols, bool recorded) {
    lc_transient *tr = g->transient;
    if (!tr || !g->record || !recorded) return lc_tensor_new(g, rows, cols);
    lc_arena_reset(&tr->arena, (lc_arena_mark){0});
    float *data = lc_arena_alloc(&tr->arena, sizeof(float) * (size_t)rows * cols);
    lc_tensor *t = data ? lc_tensor_wrap(g, data, rows, cols) : NULL;
    tr->holder = t;
    return t;
}

// Marks y, made by tensor_new_recomputable, as recomputed by the op just
// pushed on the tape.
static void set_producer(lc_graph *g, lc_tensor *y) {
    if (g->transient && g->record && y->requires_grad) y->producer = g->n_tape;
}

// t's gradient for an op that is about to write all of it: when nothing has
// flowed into t yet it is allocated without zeroing and *fresh is set, and
// the op overwrites instead of adding (one pass over memory fewer).
float *lc_graph_grad_fresh(lc_graph *g, lc_tensor *t, bool *fresh) {
    *fresh = !t->grad;
    if (t->grad) return t->grad;
    t->grad = lc_arena_alloc(g->grad_arena ? g->grad_arena : &g->arena, sizeof(float) * (size_t)t->rows * t->cols);
    return t->grad;
}

// Adds src [t's size] into t's gradient; a first contribution is copied.
static void grad_add(lc_graph *g, lc_tensor *t, const float *src) {
    bool fresh;
    float *d = lc_graph_grad_fresh(g, t, &fresh);
    size_t n = (size_t)t->rows * t->cols;
    if (d && fresh) memcpy(d, src, sizeof(float) * n);
    else if (d) lc_add_forward(d, src, n);
}

float *lc_tensor_grad(lc_graph *g, lc_tensor *t) {
    if (!t->grad) {
        size_t bytes = sizeof(float) * (size_t)t->rows * t->cols;
        t->grad = lc_arena_alloc(g->grad_arena ? g->grad_arena : &g->arena, bytes);
        if (t->grad) memset(t->grad, 0, bytes);
    }
    return t->grad;
}

lc_tape_entry *lc_graph_tape_push(lc_graph *g, lc_op op, lc_tensor *out) {
    if (g->n_tape == g->cap_tape) {
        int cap = g->cap_tape ? 2 * g->cap_tape : 256;
        lc_tape_entry *t = realloc(g->tape, sizeof *t * (size_t)cap);
        if (!t) {
            g->arena.failed = 1;
            return NULL;
        }
        g->tape = t;
        g->cap_tape = cap;
    }
    lc_tape_entry *e = &g->tape[g->n_tape++];
    memset(e, 0, sizeof *e);
    e->op = op;
    e->out = out;
    return e;
}

// Marks y as needing a gradient when x does and, when the graph records,
// appends a tape entry for op with x as its input. *e is that entry (NULL
// when nothing was recorded); false when the tape cannot grow.
bool lc_graph_record_unary(lc_graph *g, lc_op op, lc_tensor *y, lc_tensor *x, lc_tape_entry **e) {
    *e = NULL;
    y->requires_grad = x->requires_grad;
    if (!g->record || !y->requires_grad) return true;
    if (!(*e = lc_graph_tape_push(g, op, y))) return false;
    (*e)->in[0] = x;
    return true;
}

lc_tensor *lc_op_linear(lc_graph *g, lc_tensor *x, const float *w, const float *bias, int n_out,
                        const lc_lora_ref *lora) {
    lc_weight wt = {LC_WTYPE_F32, w, n_out, x ? x->cols : 0};
    return lc_op_linear_parts(g, x, &wt, 1, &n_out, &bias, &lora);
}

typedef struct linear_parts {
    lc_weight w; // the frozen weight, all parts stacked
    int n, out[LC_LINEAR_MAX_PARTS], n_out;
    lc_lora_ref lora[LC_LINEAR_MAX_PARTS]; // A == NULL: no adapter trained on the part
    const float *u[LC_LINEAR_MAX_PARTS], *xd[LC_LINEAR_MAX_PARTS];
} linear_parts;

lc_tensor *lc_op_linear_parts(lc_graph *g, lc_tensor *x, const lc_weight *w, int n_parts, const int *outs,
                              const float *const *biases, const lc_lora_ref *const *loras) {
    assert(n_parts >= 1 && n_parts <= LC_LINEAR_MAX_PARTS);
    if (!x) return NULL;
    int N = x->rows, n_in = x->cols, n_out = 0;
    for (int p = 0; p < n_parts; p++) n_out += outs[p];
    lc_tensor *y = lc_tensor_new(g, N, n_out);
    linear_parts *lp = lc_arena_alloc(&g->arena, sizeof *lp);
    assert(w->rows == n_out && w->cols == n_in);
    if (!y || !lp) {
        g->arena.failed = 1;
        return NULL;
    }
    memset(lp, 0, sizeof *lp);
    lp->w = *w;
    lp->n = n_parts;
    lp->n_out = n_out;
    double t0 = prof_begin();
    lc_weight_matmul_forward(y->data, x->data, w, N, g->compute);
    prof_end(LC_PROF_KIND_GEMM, 0, t0);
    bool any_train = false;
    for (int p = 0, off = 0; p < n_parts; off += outs[p], p++) {
        lp->out[p] = outs[p];
        if (biases[p])
            for (int n = 0; n < N; n++) lc_add_forward(y->data + (size_t)n * n_out + off, biases[p], (size_t)outs[p]);
        const lc_lora_ref *lora = loras[p];
        if (!lora || !lora->A) continue;
        bool train = lora->dA && g->training;
        float drop = train ? lora->dropout : 0.0f;
        float *u = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)N * lora->r);
        float *xd = drop > 0.0f ? lc_arena_alloc(&g->arena, sizeof(float) * (size_t)N * n_in) : NULL;
        if (!u || (drop > 0.0f && !xd)) return NULL;
        t0 = prof_begin();
        lc_lora_forward(y->data + off, n_out, u, xd, x->data, lora->A, lora->B, lora->scale, drop, lora->mask_seed,
                        N, n_in, outs[p], lora->r);
        prof_end(LC_PROF_KIND_LORA, 0, t0);
        if (train) {
            lp->lora[p] = *lora;
            lp->u[p] = u;
            lp->xd[p] = xd;
            any_train = true;
        }
    }
    y->requires_grad = x->requires_grad || any_train;
    if (g->record && y->requires_grad) {
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_LINEAR, y);
        if (!e) return NULL;
        e->in[0] = x;
        e->aux = lp;
        e->dims[0] = n_in;
        e->dims[1] = n_out;
    }
    return y;
}

lc_tensor *lc_op_rmsnorm(lc_graph *g, lc_tensor *x, const float *w, float eps) {
    if (!x) return NULL;
    lc_tensor *y = lc_tensor_new(g, x->rows, x->cols);
    float *rstd = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)x->rows);
    if (!y || !rstd) return NULL;
    double t0 = prof_begin();
    lc_rmsnorm_forward(y->data, rstd, x->data, w, eps, x->rows, x->cols);
    prof_end(LC_PROF_KIND_NORM, 0, t0);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_RMSNORM, y, x, &e)) return NULL;
    if (e) {
        e->w = w;
        e->saved[0] = rstd;
    }
    return y;
}

lc_tensor *lc_op_layernorm(lc_graph *g, lc_tensor *x, const float *w, const float *b, float eps) {
    if (!x) return NULL;
    lc_tensor *y = lc_tensor_new(g, x->rows, x->cols);
    float *stats = lc_arena_alloc(&g->arena, sizeof(float) * 2 * (size_t)x->rows);
    if (!y || !stats) return NULL;
    double t0 = prof_begin();
    lc_layernorm_forward(y->data, stats, x->data, w, b, eps, x->rows, x->cols);
    prof_end(LC_PROF_KIND_NORM, 0, t0);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_LAYERNORM, y, x, &e)) return NULL;
    if (e) {
        e->w = w;
        e->saved[0] = stats;
    }
    return y;
}

const float *lc_graph_rope_table(lc_graph *g, const int32_t *pos, const float *inv_freq, int N, int rot) {
    float *cs = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)N * rot);
    if (!cs) return NULL;
    double t0 = prof_begin();
    lc_rope_table(cs, pos, inv_freq, N, rot);
    prof_end(LC_PROF_KIND_ROPE, 0, t0);
    return cs;
}

lc_tensor *lc_op_rope(lc_graph *g, lc_tensor *x, const float *cs, int head_dim, int rot, bool reuse_input) {
    if (!x || !cs) return NULL;
    lc_tensor *y = reuse_input ? lc_tensor_wrap(g, x->data, x->rows, x->cols) : lc_tensor_new(g, x->rows, x->cols);
    if (!y) return NULL;
    double t0 = prof_begin();
    if (!reuse_input) memcpy(y->data, x->data, sizeof(float) * (size_t)x->rows * x->cols);
    lc_rope_forward(y->data, cs, x->rows, x->cols / head_dim, head_dim, rot);
    prof_end(LC_PROF_KIND_ROPE, 0, t0);
    y->requires_grad = x->requires_grad;
    if (g->record && y->requires_grad) {
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_ROPE, y);
        if (!e) return NULL;
        e->in[0] = x;
        e->w = cs;
        e->dims[0] = head_dim;
        e->dims[1] = rot;
    }
    return y;
}

lc_tensor *lc_op_attention(lc_graph *g, lc_tensor *q, lc_tensor *k, lc_tensor *v, const int32_t *seg_start, int B,
                           int T, int Tk, int H, int KVH, int D, int q_pos0, const lc_attention_opts *opts) {
    if (!q || !k || !v) return NULL;
    lc_tensor *y = lc_tensor_new(g, B * T, H * D);
    float *scratch = lc_arena_alloc(&g->arena, sizeof(float) * lc_attention_scratch_floats(T, Tk, H, KVH, D));
    bool grad = q->requires_grad || k->requires_grad || v->requires_grad;
    float *lse = NULL;
    if (g->record && grad) lse = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)B * T * H);
    if (!y || !scratch || (g->record && grad && !lse)) return NULL;
    double t0 = prof_begin();
    lc_attention_forward(y->data, lse, q->data, k->data, v->data, seg_start, scratch, B, T, Tk, H, KVH, D, q_pos0,
                         opts);
    prof_end(LC_PROF_KIND_ATTENTION, 0, t0);
    y->requires_grad = grad;
    if (g->record && grad) {
        assert(T == Tk && q_pos0 == 0); // training attends within the batch only
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_ATTENTION, y);
        if (!e) return NULL;
        e->in[0] = q;
        e->in[1] = k;
        e->in[2] = v;
        e->saved[0] = lse;
        e->ints = seg_start;
        int dims[6] = {B, T, H, KVH, D, 0};
        memcpy(e->dims, dims, sizeof dims);
        if (opts) e->att = *opts;
    }
    return y;
}

lc_tensor *lc_op_glu(lc_graph *g, lc_tensor *gate, lc_tensor *up, lc_act_kind act) {
    if (!gate || !up) return NULL;
    lc_tensor *y = tensor_new_recomputable(g, gate->rows, gate->cols, gate->requires_grad || up->requires_grad);
    if (!y) return NULL;
    double t0 = prof_begin();
    lc_glu_forward(y->data, gate->data, up->data, act, (size_t)gate->rows * gate->cols);
    prof_end(LC_PROF_KIND_ACT, 0, t0);
    y->requires_grad = gate->requires_grad || up->requires_grad;
    if (g->record && y->requires_grad) {
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_GLU, y);
        if (!e) return NULL;
        e->in[0] = gate;
        e->in[1] = up;
        e->dims[0] = (int)act;
        set_producer(g, y);
    }
    return y;
}

lc_tensor *lc_op_glu_packed(lc_graph *g, lc_tensor *gu, lc_act_kind act) {
    if (!gu) return NULL;
    int F = gu->cols / 2;
    lc_tensor *y = tensor_new_recomputable(g, gu->rows, F, gu->requires_grad);
    if (!y) return NULL;
    double t0 = prof_begin();
    lc_glu_packed_forward(y->data, gu->data, act, gu->rows, F);
    prof_end(LC_PROF_KIND_ACT, 0, t0);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_GLU_PACKED, y, gu, &e)) return NULL;
    if (e) {
        e->dims[0] = (int)act;
        set_producer(g, y);
    }
    return y;
}

lc_tensor *lc_op_act(lc_graph *g, lc_tensor *x, lc_act_kind act) {
    if (!x) return NULL;
    lc_tensor *y = tensor_new_recomputable(g, x->rows, x->cols, x->requires_grad);
    if (!y) return NULL;
    double t0 = prof_begin();
    lc_act_forward(y->data, x->data, act, (size_t)x->rows * x->cols);
    prof_end(LC_PROF_KIND_ACT, 0, t0);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_ACT, y, x, &e)) return NULL;
    if (e) {
        e->dims[0] = (int)act;
        set_producer(g, y);
    }
    return y;
}

lc_tensor *lc_op_clamp(lc_graph *g, lc_tensor *x, float limit) {
    if (!x) return NULL;
    lc_tensor *y = lc_tensor_new(g, x->rows, x->cols);
    if (!y) return NULL;
    lc_clamp_forward(y->data, x->data, limit, (size_t)x->rows * x->cols);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_CLAMP, y, x, &e)) return NULL;
    if (e) e->fparam = limit;
    return y;
}

lc_tensor *lc_op_gather_cols(lc_graph *g, lc_tensor *x, const int32_t *cols, int n) {
    if (!x) return NULL;
    lc_tensor *y = lc_tensor_new(g, x->rows, n);
    if (!y) return NULL;
    lc_gather_cols_forward(y->data, x->data, cols, x->rows, x->cols, n);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_GATHER_COLS, y, x, &e)) return NULL;
    if (e) e->ints = cols;
    return y;
}

lc_tensor *lc_op_add(lc_graph *g, lc_tensor *a, lc_tensor *b, bool reuse_b) {
    if (!a || !b) return NULL;
    lc_tensor *y = reuse_b ? lc_tensor_wrap(g, b->data, b->rows, b->cols) : lc_tensor_new(g, a->rows, a->cols);
    if (!y) return NULL;
    size_t n = (size_t)a->rows * a->cols;
    double t0 = prof_begin();
    if (reuse_b) {
        lc_add_forward(y->data, a->data, n);
    } else {
        memcpy(y->data, a->data, sizeof(float) * n);
        lc_add_forward(y->data, b->data, n);
    }
    prof_end(LC_PROF_KIND_ADD, 0, t0);
    y->requires_grad = a->requires_grad || b->requires_grad;
    if (g->record && y->requires_grad) {
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_ADD, y);
        if (!e) return NULL;
        e->in[0] = a;
        e->in[1] = b;
    }
    return y;
}

lc_status lc_op_cross_entropy(lc_graph *g, lc_tensor *x, const float *head, int V, float softcap,
                              const int32_t *targets, float norm, double *loss_sum, int *n_counted) {
    lc_weight w = {LC_WTYPE_F32, head, V, x ? x->cols : 0};
    return lc_op_cross_entropy_w(g, x, &w, softcap, targets, norm, loss_sum, n_counted);
}

lc_status lc_op_cross_entropy_w(lc_graph *g, lc_tensor *x, const lc_weight *head, float softcap,
                                const int32_t *targets, float norm, double *loss_sum, int *n_counted) {
    if (!x) return lc_graph_status(g);
    int V = head->rows;
    int N = x->rows, C = x->cols;
    size_t fit = LC_CE_BYTES / (sizeof(float) * (size_t)V);
    int chunk = fit > LC_CE_ROWS_MAX ? LC_CE_ROWS_MAX : fit < LC_CE_ROWS_MIN ? LC_CE_ROWS_MIN : (int)fit;
    if (chunk > N) chunk = N;
    float *logits = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)chunk * V);
    float *xrows = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)chunk * C);
    float *capgrad =
        softcap > 0.0f ? lc_arena_alloc(&g->arena, sizeof(float) * (size_t)V * lc_parallel_threads()) : NULL;
    float *dx = NULL;
    bool grad = g->record && x->requires_grad;
    if (grad) {
        dx = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)N * C);
        if (dx) memset(dx, 0, sizeof(float) * (size_t)N * C);
    }
    if (!logits || !xrows || (grad && !dx) || (softcap > 0.0f && !capgrad)) return lc_graph_status(g);
    double t0 = prof_begin();
    lc_cross_entropy_forward(loss_sum, n_counted, dx, logits, xrows, capgrad, x->data, head, g->compute, targets, norm, softcap, N,
                             C, V, chunk);
    prof_end(LC_PROF_KIND_HEAD, 0, t0);
    if (grad) {
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_CROSS_ENTROPY, NULL);
        if (!e) return lc_graph_status(g);
        e->in[0] = x;
        e->saved[0] = dx;
    }
    return lc_graph_status(g);
}

// Input gradient through the frozen weight (overwriting a fresh gradient),
// then each part's adapter gradients, which also add into dx.
static void linear_backward(lc_graph *g, const lc_tape_entry *e, const linear_parts *lp, const float *dy) {
    lc_tensor *x = e->in[0];
    int N = x->rows, n_in = e->dims[0], n_out = e->dims[1];
    bool fresh = false;
    float *dx = x->requires_grad ? lc_graph_grad_fresh(g, x, &fresh) : NULL;
    if (x->requires_grad && !dx) return;
    if (dx) {
        double t0 = prof_begin();
        lc_weight_matmul_backward(dx, dy, &lp->w, fresh, N, g->compute);
        prof_end(LC_PROF_KIND_GEMM, 1, t0);
    }
    for (int p = 0, off = 0; p < lp->n; off += lp->out[p], p++) {
        const lc_lora_ref *l = &lp->lora[p];
        if (!l->A) continue;
        float *du = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)N * l->r);
        if (!du) return;
        double t0 = prof_begin();
        lc_lora_backward(l->dA, l->dB, dx, du, dy + off, n_out, x->data, lp->xd[p], lp->u[p], l->A, l->B, l->scale,
                         l->dropout, l->mask_seed, N, n_in, lp->out[p], l->r);
        prof_end(LC_PROF_KIND_LORA, 1, t0);
    }
}

static void backward_entry(lc_graph *g, lc_tape_entry *e) {
    lc_tensor *x = e->in[0];
    const float *dy = e->out ? e->out->grad : NULL;
    switch (e->op) {
    case LC_OP_LINEAR: linear_backward(g, e, e->aux, dy); break;
    case LC_OP_RMSNORM: {
        bool fresh;
        float *dx = lc_graph_grad_fresh(g, x, &fresh);
        if (dx) lc_rmsnorm_backward(dx, dy, x->data, e->w, e->saved[0], fresh, x->rows, x->cols);
        break;
    }
    case LC_OP_LAYERNORM: {
        bool fresh;
        float *dx = lc_graph_grad_fresh(g, x, &fresh);
        if (dx) lc_layernorm_backward(dx, dy, x->data, e->w, e->saved[0], fresh, x->rows, x->cols);
        break;
    }
    case LC_OP_ROPE: {
        bool fresh;
        float *dx = lc_graph_grad_fresh(g, x, &fresh);
        int D = e->dims[0];
        if (dx) lc_rope_backward(dx, dy, e->w, fresh, x->rows, x->cols / D, D, e->dims[1]);
        break;
    }
    case LC_OP_ATTENTION: {
        float *dq = lc_tensor_grad(g, e->in[0]), *dk = lc_tensor_grad(g, e->in[1]), *dv = lc_tensor_grad(g, e->in[2]);
        int T = e->dims[1];
        float *scratch = lc_arena_alloc(
            &g->arena, sizeof(float) * lc_attention_scratch_floats(T, T, e->dims[2], e->dims[3], e->dims[4]));
        if (dq && dk && dv && scratch)
            lc_attention_backward(dq, dk, dv, dy, e->in[0]->data, e->in[1]->data, e->in[2]->data, e->out->data,
                                  e->saved[0], e->ints, scratch, e->dims[0], T, e->dims[2], e->dims[3], e->dims[4],
                                  &e->att);
        break;
    }
    case LC_OP_GLU: {
        // One flag for both: when only one is fresh, it is zeroed and added to.
        size_t n = (size_t)x->rows * x->cols;
        bool fg, fu;
        float *dg = lc_graph_grad_fresh(g, e->in[0], &fg), *du = lc_graph_grad_fresh(g, e->in[1], &fu);
        if (!dg || !du) break;
        if (fg != fu) memset(fg ? dg : du, 0, sizeof(float) * n);
        lc_glu_backward(dg, du, dy, e->in[0]->data, e->in[1]->data, (lc_act_kind)e->dims[0], fg && fu, n);
        break;
    }
    case LC_OP_GLU_PACKED: {
        bool fresh;
        float *dx = lc_graph_grad_fresh(g, x, &fresh);
        if (dx) lc_glu_packed_backward(dx, dy, x->data, (lc_act_kind)e->dims[0], fresh, x->rows, x->cols / 2);
        break;
    }
    case LC_OP_ACT: {
        bool fresh;
        float *dx = lc_graph_grad_fresh(g, x, &fresh);
        if (dx) lc_act_backward(dx, dy, x->data, (lc_act_kind)e->dims[0], fresh, (size_t)x->rows * x->cols);
        break;
    }
    case LC_OP_CLAMP: {
        float *dx = lc_tensor_grad(g, x);
        if (dx) lc_clamp_backward(dx, dy, x->data, e->fparam, (size_t)x->rows * x->cols);
        break;
    }
    case LC_OP_GATHER_COLS: {
        float *dx = lc_tensor_grad(g, x);
        if (dx) lc_gather_cols_backward(dx, dy, e->ints, x->rows, x->cols, e->out->cols);
        break;
    }
    case LC_OP_ADD: {
        for (int i = 0; i < 2; i++)
            if (e->in[i]->requires_grad) grad_add(g, e->in[i], dy);
        break;
    }
    case LC_OP_CROSS_ENTROPY: {
        grad_add(g, x, e->saved[0]);
        break;
    }
    case LC_OP_MOE_ROUTE:
    case LC_OP_GATHER_ROWS:
    case LC_OP_MOE_COMBINE:
    case LC_OP_SIGMOID_GATE: lc_graph_moe_backward(g, e); break;
    }
}

static lc_prof_kind prof_kind_of(lc_op op) {
    switch (op) {
    case LC_OP_RMSNORM:
    case LC_OP_LAYERNORM: return LC_PROF_KIND_NORM;
    case LC_OP_ROPE: return LC_PROF_KIND_ROPE;
    case LC_OP_ATTENTION: return LC_PROF_KIND_ATTENTION;
    case LC_OP_GLU:
    case LC_OP_GLU_PACKED:
    case LC_OP_ACT: return LC_PROF_KIND_ACT;
    case LC_OP_ADD: return LC_PROF_KIND_ADD;
    case LC_OP_CROSS_ENTROPY: return LC_PROF_KIND_HEAD;
    default: return LC_PROF_KIND_OTHER;
    }
}

// Whether e's backward reads its inputs' values: a linear's only for the
// x of its adapters' gradients (dx needs the weight alone).
static bool reads_input(const lc_tape_entry *e) {
    if (e->op != LC_OP_LINEAR) return true;
    const linear_parts *lp = e->aux;
    for (int p = 0; p < lp->n; p++)
        if (lp->lora[p].A) return true;
    return false;
}

// Recomputes t's data (an activation or GLU output) into the transient
// memory from its op's kept inputs, unless it is there already.
static void recompute(lc_graph *g, lc_tensor *t) {
    lc_transient *tr = g->transient;
    if (tr->holder == t) return;
    const lc_tape_entry *p = &g->tape[t->producer - 1];
    lc_arena_reset(&tr->arena, (lc_arena_mark){0});
    tr->holder = NULL;
    float *y = lc_arena_alloc(&tr->arena, sizeof(float) * (size_t)t->rows * t->cols);
    if (!y) return;
    double t0 = prof_begin();
    size_t n = (size_t)t->rows * t->cols;
    lc_act_kind act = (lc_act_kind)p->dims[0];
    if (p->op == LC_OP_GLU) lc_glu_forward(y, p->in[0]->data, p->in[1]->data, act, n);
    else if (p->op == LC_OP_GLU_PACKED) lc_glu_packed_forward(y, p->in[0]->data, act, t->rows, t->cols);
    else lc_act_forward(y, p->in[0]->data, act, n);
    prof_end(LC_PROF_KIND_ACT, 1, t0);
    t->data = y;
    tr->holder = t;
}

lc_status lc_graph_backward(lc_graph *g) {
    for (int i = g->n_tape - 1; i >= 0; i--) {
        lc_tape_entry *e = &g->tape[i];
        // An op whose output received no gradient contributes nothing.
        if (e->op != LC_OP_CROSS_ENTROPY && !e->out->grad) continue;
        for (int k = 0; k < 3; k++)
            if (e->in[k] && e->in[k]->producer && reads_input(e)) recompute(g, e->in[k]);
        if (lc_graph_status(g)) break;
        double t0 = prof_begin();
        backward_entry(g, e);
        if (e->op != LC_OP_LINEAR) prof_end(prof_kind_of(e->op), 1, t0); // a linear times its own parts
        if (g->arena.failed) break;
    }
    return lc_graph_status(g);
}
