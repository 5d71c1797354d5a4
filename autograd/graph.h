// Reverse-mode autograd: tensors live in an arena planned by the first step
// and reused after; ops run their forward kernel and, when the graph records,
// append an entry to the tape. lc_graph_backward walks the tape in reverse,
// calling each op's backward kernel.
#ifndef LC_GRAPH_H
#define LC_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/kernels.h"
#include "autograd/moe.h"
#include "autograd/weight.h"
#include "common/status.h"

// Chunked bump allocator. Reset rewinds without freeing, so a step that makes
// the same allocations as the last one allocates nothing new. Steps whose
// sizes vary (packed batches of different lengths) would leave chunks sized
// for one step's requests that the next step's do not fit; so a reset to
// the start that finds more than one chunk replaces them by one chunk of the
// most bytes any step used plus a quarter. From then on every step that
// uses no more runs in that chunk: after the largest shape has been seen, the
// arena allocates nothing and holds one chunk. Chunks are mapped pages, so
// the headroom costs no memory until it is touched.
typedef struct lc_arena_chunk {
    unsigned char *base;
    size_t size, used;
} lc_arena_chunk;

typedef struct lc_arena {
    lc_arena_chunk *chunks;
    int n_chunks, cur;
    size_t chunk_size;  // size of the first chunk, and the least of any chunk
    size_t held_bytes;  // bytes held in chunks now
    size_t live, high;  // bytes handed out since the last reset to the start; the most ever
    int64_t n_maps;     // chunks mapped so far (a step that maps none allocated nothing)
    int failed;         // an allocation failed since the last reset
} lc_arena;

typedef struct lc_arena_mark {
    int chunk;
    size_t used, live;
} lc_arena_mark;

void lc_arena_init(lc_arena *a, size_t chunk_size);
void lc_arena_free(lc_arena *a);
// 64-byte aligned; NULL (and a->failed) when memory runs out.
void *lc_arena_alloc(lc_arena *a, size_t bytes);
lc_arena_mark lc_arena_get_mark(const lc_arena *a);
// Rewinds to m; {0} rewinds to the start (everything handed out is free).
void lc_arena_reset(lc_arena *a, lc_arena_mark m);
// Touches every page of the most bytes any step used (after a reset to the
// start), so a planned arena holds its memory before the step that needs it.
void lc_arena_prefault(lc_arena *a);

typedef struct lc_tensor {
    float *data; // [rows, cols]
    float *grad; // [rows, cols], allocated (zeroed) when a gradient first flows in
    int rows, cols;
    bool requires_grad;
    int producer; // 1 + tape index of the op that recomputes data in the graph's
                  // transient memory where the backward needs it; 0: data is kept
} lc_tensor;

// Memory for one recomputable tensor at a time, shared by the graphs of a
// training pass: the output of an MLP's activation or GLU, the largest
// activation of a block ([N, intermediate]), whose only reader in the forward
// is the next op (the down projection) and in the backward that op's LoRA
// gradient. Holding it here instead of in each layer's arena, and
// recomputing it from the kept pre-activations where the backward needs it,
// saves one [N, intermediate] buffer per layer for one elementwise pass.
typedef struct lc_transient {
    lc_arena arena;
    const lc_tensor *holder; // the tensor whose data the arena holds now
} lc_transient;

// A LoRA adapter on one linear layer (parameters owned elsewhere).
typedef struct lc_lora_ref {
    float *A, *B;   // [r, n_in], [n_out, r]
    float *dA, *dB; // gradients, same shapes (NULL when not training)
    int r;
    float scale;    // alpha / r, or alpha / sqrt(r) with rsLoRA
    float dropout;  // p; 0 for none (and always 0 when not training)
    uint64_t mask_seed;
} lc_lora_ref;

typedef enum lc_op {
    LC_OP_LINEAR,          // one or more stacked parts (linear_parts in aux)
    LC_OP_RMSNORM,
    LC_OP_LAYERNORM,
    LC_OP_ROPE,
    LC_OP_ATTENTION,
    LC_OP_GLU,
    LC_OP_GLU_PACKED,
    LC_OP_ACT,
    LC_OP_CLAMP,
    LC_OP_GATHER_COLS,
    LC_OP_ADD,
    LC_OP_CROSS_ENTROPY,
    LC_OP_MOE_ROUTE,
    LC_OP_GATHER_ROWS,
    LC_OP_MOE_COMBINE,
    LC_OP_SIGMOID_GATE,
} lc_op;

typedef struct lc_tape_entry {
    lc_op op;
    lc_tensor *out;
    lc_tensor *in[3];
    const float *w;           // frozen weight (linear, rmsnorm), inv_freq (rope)
    const float *saved[3];    // saved activations (rstd, lse, ce grad)
    const int32_t *ints;      // positions (rope) or seg_start (attention)
    lc_attention_opts att;    // attention variant
    float fparam;             // clamp limit
    const void *aux;          // op-specific saved state (a linear's parts)
    int dims[6];
} lc_tape_entry;

typedef struct lc_graph {
    lc_arena arena;
    lc_arena *grad_arena;     // where activation gradients go; NULL: arena
    lc_transient *transient;  // recording: where activation/GLU outputs go; NULL: arena
    bool record;              // keep a tape for backward (training)
    bool training;            // apply LoRA dropout (set with record; stays on for a
                              // checkpointed forward that records nothing)
    lc_compute compute;       // how frozen-weight products multiply (FP32 unless set)
    lc_tape_entry *tape;
    int n_tape, cap_tape;
} lc_graph;

lc_status lc_graph_init(lc_graph *g, bool record);
void lc_graph_free(lc_graph *g);
// Forgets the tape and rewinds the arena: the start of each forward.
void lc_graph_reset(lc_graph *g);
// LC_STATUS_RUNTIME if any allocation since the last reset failed.
lc_status lc_graph_status(const lc_graph *g);

// A tensor whose data is allocated in the arena (uninitialized).
lc_tensor *lc_tensor_new(lc_graph *g, int rows, int cols);
// A tensor over existing memory (weights, caches, inputs): no gradient.
lc_tensor *lc_tensor_wrap(lc_graph *g, float *data, int rows, int cols);
// The tensor's gradient buffer, allocated and zeroed on first use.
float *lc_tensor_grad(lc_graph *g, lc_tensor *t);

// Differentiable ops. Each returns a new tensor (NULL when out of memory;
// check lc_graph_status after the forward).
lc_tensor *lc_op_linear(lc_graph *g, lc_tensor *x, const float *w, const float *bias, int n_out,
                        const lc_lora_ref *lora);
// Several linears of the same input whose weights are stacked row-wise in
// one matrix (w [sum(outs), n_in] = [w_0; w_1; ...], in any stored type;
// dequantized panel by panel where it is used): one GEMM instead of one per
// part, each part with its own bias and adapter (either may be NULL). The
// result is [N, sum(outs)], part p in its columns.
#define LC_LINEAR_MAX_PARTS 4
lc_tensor *lc_op_linear_parts(lc_graph *g, lc_tensor *x, const lc_weight *w, int n_parts, const int *outs,
                              const float *const *biases, const lc_lora_ref *const *loras);
lc_tensor *lc_op_rmsnorm(lc_graph *g, lc_tensor *x, const float *w, float eps);
// w, b may be NULL (a norm without parameters).
lc_tensor *lc_op_layernorm(lc_graph *g, lc_tensor *x, const float *w, const float *b, float eps);
// reuse_input: rotate x's storage in place (x's values must not be needed by
// anything else); the result is still a new tensor with its own gradient.
// rot: rotated dimensions of each head (head_dim unless partial); cs the
// table of lc_graph_rope_table for x's rows.
lc_tensor *lc_op_rope(lc_graph *g, lc_tensor *x, const float *cs, int head_dim, int rot, bool reuse_input);
// The cos/sin table [N, rot] of positions pos (lc_rope_table) in g's arena,
// for every rope op of the pass (NULL when out of memory).
const float *lc_graph_rope_table(lc_graph *g, const int32_t *pos, const float *inv_freq, int N, int rot);
// q [B*T, H*D]; k, v [B*Tk, KVH*D] (rows beyond what a query sees are not read).
// opts may be NULL (plain causal attention); its alibi table must outlive the backward.
lc_tensor *lc_op_attention(lc_graph *g, lc_tensor *q, lc_tensor *k, lc_tensor *v, const int32_t *seg_start, int B,
                           int T, int Tk, int H, int KVH, int D, int q_pos0, const lc_attention_opts *opts);
lc_tensor *lc_op_glu(lc_graph *g, lc_tensor *gate, lc_tensor *up, lc_act_kind act);
// act(gate) · up with gu [N, 2F] = [gate | up] per row (no split copies).
lc_tensor *lc_op_glu_packed(lc_graph *g, lc_tensor *gu, lc_act_kind act);
lc_tensor *lc_op_act(lc_graph *g, lc_tensor *x, lc_act_kind act);
lc_tensor *lc_op_clamp(lc_graph *g, lc_tensor *x, float limit);
// Columns cols[0..n) of x, in that order (cols must outlive the backward).
lc_tensor *lc_op_gather_cols(lc_graph *g, lc_tensor *x, const int32_t *cols, int n);
// reuse_b: write the sum into b's storage (b's values must not be needed by
// anything else, as for a linear layer's output that only feeds this add).
lc_tensor *lc_op_add(lc_graph *g, lc_tensor *a, lc_tensor *b, bool reuse_b);
// Mixture of experts. The routing of a router's logits [N, E]: the chosen
// experts' weights [N, k], whose gradient flows back into the logits, and
// *r, the routing itself (in g's arena until the graph resets).
lc_tensor *lc_op_moe_route(lc_graph *g, lc_tensor *logits, int k, bool renorm, const lc_moe_routing **r);
// Rows rows[0..n) of x (rows must outlive the backward).
lc_tensor *lc_op_gather_rows(lc_graph *g, lc_tensor *x, const int32_t *rows, int n);
// [N, C]: each expert's outputs ys[e] ([its rows, C]; NULL for an expert no
// token chose) weighted by w and added at their tokens' rows.
lc_tensor *lc_op_moe_combine(lc_graph *g, lc_tensor *w, const lc_moe_routing *r, lc_tensor *const *ys, int C);
// y [N, C] scaled per row by sigmoid(s) (s [N, 1]).
lc_tensor *lc_op_sigmoid_gate(lc_graph *g, lc_tensor *y, lc_tensor *s);
// Sum of cross-entropy over rows with a target (see lc_cross_entropy_forward);
// when recording, the backward adds norm-scaled gradients into x.
// softcap > 0 caps the logits first (Gemma 2).
lc_status lc_op_cross_entropy(lc_graph *g, lc_tensor *x, const float *head, int V, float softcap,
                              const int32_t *targets, float norm, double *loss_sum, int *n_counted);
// The same with the head in any stored type ([V, C], dequantized in panels).
lc_status lc_op_cross_entropy_w(lc_graph *g, lc_tensor *x, const lc_weight *head, float softcap,
                                const int32_t *targets, float norm, double *loss_sum, int *n_counted);

// Opt-in time accounting of ops (bench_train --profile): seconds spent in
// each op's forward and backward since profiling was switched on. Off by
// default, when it costs one branch per op.
typedef enum lc_prof_kind {
    LC_PROF_KIND_GEMM,      // frozen-weight products (linear forward, input gradient)
    LC_PROF_KIND_LORA,      // adapter terms, forward and backward
    LC_PROF_KIND_NORM,
    LC_PROF_KIND_ROPE,
    LC_PROF_KIND_ATTENTION,
    LC_PROF_KIND_ACT,       // activations and GLUs
    LC_PROF_KIND_ADD,
    LC_PROF_KIND_HEAD,      // chunked cross-entropy over the vocabulary
    LC_PROF_KIND_OTHER,     // clamp, column gather, gradient zeroing
    LC_PROF_KIND_COUNT,
} lc_prof_kind;

void lc_prof_enable(bool on);
// seconds[kind][0] forward, [1] backward.
void lc_prof_get(double seconds[LC_PROF_KIND_COUNT][2]);
const char *lc_prof_kind_name(lc_prof_kind k);

// Runs the tape backwards. The seeds of the reverse pass are the gradients
// the cross-entropy ops computed.
lc_status lc_graph_backward(lc_graph *g);

#endif
