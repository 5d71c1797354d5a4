// Training benchmark: a model of a named shape with seeded random weights in
// memory, LoRA on all seven projections, a few warm-up and measured steps
// through the real training step (lc_train_step), and, measured in the same
// run, this machine's sgemm peak. Prints tokens/s (of the median step), model GFLOP/s, the fraction
// of the sgemm peak, and peak RSS. Not a test: run it by hand (README).
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autograd/bf16_gemm.h"
#include "autograd/parallel.h"
#include "bench/write_model.h"
#include "common/file.h"
#include "autograd/blas.h"
#include "autograd/graph.h"
#include "model/generate.h"
#include "model/lora.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "train/trainer.h"

static const char bench_usage[] =
    "usage: bench_train [stories260k|smollm2-135m|llama-1b|llama2-7b|olmoe|olmoe-dense] [--batch B] [--seq T] [--steps N] "
    "[--warmup W] [--rank R] [--vocab V] [--checkpointing] [--weights f32|bf16|f16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|"
    "q5_k|q6_k] [--bf16] [--compute fp32|bf16|both] [--profile] | [--generate N] [--weights TYPE] | "
    "--write-model DIR --tokenizer FILE [--seq T]\n";

typedef struct shape {
    const char *name;
    int C, F, L, H, KVH, D, V, tied;
    int E, k; // experts and experts per token (OLMoE-style layers; F = k x each expert's width), else 0
    int attn_only; // LoRA on q, k, v, o only (the MoE shapes, and the dense one they are compared with)
} shape;

static const shape shapes[] = {
    {"stories260k", 64, 172, 5, 8, 4, 8, 512, 1, 0, 0, 0},
    {"smollm2-135m", 576, 1536, 30, 9, 3, 64, 49152, 1, 0, 0, 0},
    {"llama-1b", 2048, 8192, 16, 32, 8, 64, 128256, 1, 0, 0, 0},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 128, 32000, 0, 0, 0, 0},
    // OLMoE-1B-7B's shape: 64 experts of width 1024, 8 a token; and a dense
    // model of the same active size (one MLP of width 8 x 1024).
    {"olmoe", 2048, 8192, 16, 16, 16, 128, 50304, 0, 64, 8, 1},
    {"olmoe-dense", 2048, 8192, 16, 16, 16, 128, 50304, 0, 0, 0, 1},
};

// --weights NAME: the frozen linears' stored type.
static bool parse_weights(const char *s, lc_wtype *out) {
    static const struct {
        const char *name;
        lc_wtype t;
    } t[] = {{"f32", LC_WTYPE_F32}, {"bf16", LC_WTYPE_BF16}, {"f16", LC_WTYPE_F16}, {"q8_0", LC_WTYPE_Q8_0},
             {"q4_0", LC_WTYPE_Q4_0}, {"q4_1", LC_WTYPE_Q4_1}, {"q5_0", LC_WTYPE_Q5_0}, {"q5_1", LC_WTYPE_Q5_1},
             {"q4_k", LC_WTYPE_Q4_K}, {"q5_k", LC_WTYPE_Q5_K}, {"q6_k", LC_WTYPE_Q6_K}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].name)) {
            *out = t[i].t;
            return true;
        }
    return false;
}

// GFLOP/s of the best of three [M, K]·[K, N] products (after one to warm
// up), through OpenBLAS's own threads or lora.c's pool (lc_blas_sgemm).
static double sgemm_rate(int M, int N, int K, bool openblas_threads) {
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
    for (long i = 0; i < (long)M * K; i++) a[i] = (float)(i % 7) * 0.01f;
    for (long i = 0; i < (long)K * N; i++) b[i] = (float)(i % 5) * 0.01f;
    if (openblas_threads) openblas_set_num_threads(lc_parallel_threads());
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t0 = lc_now_s();
        if (openblas_threads)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
        else
            lc_blas_sgemm(false, false, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
        double g = 2.0 * M * N * K / (lc_now_s() - t0) / 1e9;
        if (r > 0 && g > best) best = g; // the first run pays for thread start-up
    }
    if (openblas_threads) openblas_set_num_threads(1);
    free(a);
    free(b);
    free(c);
    return best;
}

// This machine's sgemm peak: the best rate of a 2048³ product through
// OpenBLAS's threads (the machine's number, not one of lora.c's making) and
// of the model's largest frozen-weight product through lora.c's pool, which
// on some machines runs faster than the square one (here: 2048³ 215-290
// GFLOP/s, [2048, 576]·[576, 1536] up to 325). Taking the better keeps the
// fraction of peak from flattering the model.
static double sgemm_peak(int rows, int C, int F) {
    double square = sgemm_rate(2048, 2048, 2048, true);
    double model = sgemm_rate(rows, F, C, false);
    return square > model ? square : model;
}

// GFLOP/s of the best of three bf16 products x [M, K] · wᵀ (w [N, K] fp32,
// packed into bf16 per product as in training) through lora.c's pool.
static double bf16_rate(int M, int N, int K) {
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * K * N), *y = malloc(sizeof(float) * M * N);
    for (long i = 0; i < (long)M * K; i++) x[i] = (float)(i % 7) * 0.01f;
    for (long i = 0; i < (long)K * N; i++) w[i] = (float)(i % 5) * 0.01f;
    lc_weight wt = {LC_WTYPE_F32, w, N, K};
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t0 = lc_now_s();
        lc_weight_matmul_forward(y, x, &wt, M, LC_COMPUTE_BF16);
        double g = 2.0 * M * N * K / (lc_now_s() - t0) / 1e9;
        if (r > 0 && g > best) best = g;
    }
    free(x);
    free(w);
    free(y);
    return best;
}

// The bf16 kernel's peak, measured like the sgemm peak: the better of a
// 2048³ product and the model's largest frozen-weight product.
static double bf16_peak(int rows, int C, int F) {
    double square = bf16_rate(2048, 2048, 2048), model = bf16_rate(rows, F, C);
    return square > model ? square : model;
}

// Model FLOPs of one training token: forward 2N and input gradient 2N
// through the frozen weights, the LoRA terms, causal attention (forward and
// a recomputing backward), and the head over every position.
static double flops_per_token(const shape *s, int T, int r) {
    double q = (double)s->H * s->D, kv = (double)s->KVH * s->D;
    double in_out[7][2] = {{s->C, q}, {s->C, kv}, {s->C, kv}, {q, s->C}, {s->C, s->F}, {s->C, s->F}, {s->F, s->C}};
    double lin = 0, lora = 0;
    for (int k = 0; k < 7; k++) {
        lin += in_out[k][0] * in_out[k][1];
        if (k < 4 || !s->attn_only) lora += in_out[k][0] + in_out[k][1];
    }
    lin += (double)s->C * s->E; // the router
    double attn_fwd = 2.0 * T * q; // QKᵀ and PV over T/2 keys on average
    double per_layer = 4.0 * lin + 4.0 * 2.0 * r * lora + attn_fwd + 2.5 * attn_fwd;
    return s->L * per_layer + 4.0 * s->C * (double)s->V;
}

// Incremental decoding through the KV cache: a 16-token prompt, then n
// greedy tokens; tokens/s of the decoding.
static int bench_generate(const shape *s, int n, lc_wtype wt) {
    lc_model_config cfg;
    lc_config_init_llama(&cfg, s->C, s->F, s->L, s->H, s->KVH, s->D, s->V);
    cfg.max_position_embeddings = 16 + n;
    cfg.tie_word_embeddings = s->tied;
    lc_model m;
    lc_forward_state st;
    lc_sampler sampler;
    if (lc_model_init_random(&m, &cfg, 1, wt) || lc_forward_state_init(&st, &m, 1, 16 + n, 16, 1) ||
        lc_sampler_init(&sampler, s->V, 0.0f, 0, 1.0f, 0)) {
        fprintf(stderr, "bench_train: %s\n", lc_error_message());
        return 3;
    }
    int32_t prompt[16];
    for (int i = 0; i < 16; i++) prompt[i] = (i * 7919) % s->V;
    lc_generate_stats stats;
    if (lc_generate(&st, &m, &sampler, prompt, 16, n, NULL, 0, NULL, NULL, &stats)) {
        fprintf(stderr, "bench_train: %s\n", lc_error_message());
        return 3;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%-13s generate %d tokens after a 16-token prompt, %s weights, %d threads (%s): %8.1f tokens/s, peak RSS "
           "%.2f GB\n",
           s->name, stats.n_generated, lc_wtype_name(wt), lc_parallel_threads(), openblas_get_corename(),
           stats.n_generated / stats.decode_s, ru.ru_maxrss / 1048576.0);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Where the measured steps' time went, by kind of op (lc_prof_*); the rest
// is the optimizer, gradient hand-over between layers and the tape itself.
static void print_profile(double measured) {
    double sec[LC_PROF_KIND_COUNT][2], sum = 0;
    lc_prof_get(sec);
    printf("%-11s %9s %9s %7s\n", "op", "forward s", "backward s", "share");
    for (int k = 0; k < LC_PROF_KIND_COUNT; k++) {
        double t = sec[k][0] + sec[k][1];
        sum += t;
        printf("%-11s %9.3f %9.3f %6.1f%%\n", lc_prof_kind_name((lc_prof_kind)k), sec[k][0], sec[k][1],
               100.0 * t / measured);
    }
    printf("%-11s %19.3f %6.1f%%\n", "rest", measured - sum, 100.0 * (measured - sum) / measured);
}

int main(int argc, char **argv) {
    lc_blas_pick_core(argv);
    const char *name = argc > 1 ? argv[1] : "smollm2-135m";
    bool help = argc > 1 && (!strcmp(name, "--help") || !strcmp(name, "-h"));
    int B = 4, T = 512, steps = 3, warmup = 1, r = 16, ckpt = 0, generate = 0, bf16 = 0, profile = 0, vocab = 0;
    int computes = 1; // bit 0: fp32 steps, bit 1: bf16 steps (both: alternating)
    const char *write_dir = NULL, *tokenizer = NULL;
    lc_wtype wt = LC_WTYPE_F32;
    bool wt_ok = true, compute_ok = true;
    for (int i = help ? argc : 2; i < argc; i += 2) {
        if (!strcmp(argv[i], "--checkpointing") || !strcmp(argv[i], "--bf16") || !strcmp(argv[i], "--profile")) {
            *(!strcmp(argv[i], "--bf16") ? &bf16 : !strcmp(argv[i], "--profile") ? &profile : &ckpt) = 1;
            i--;
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            wt_ok = parse_weights(argv[i + 1], &wt);
        } else if (!strcmp(argv[i], "--compute") && i + 1 < argc) {
            const char *c = argv[i + 1];
            computes = !strcmp(c, "both") ? 3 : lc_compute_parse(c) + 1; // fp32 1, bf16 2, else 0
            compute_ok = computes != 0;
        } else if (!strcmp(argv[i], "--generate") && i + 1 < argc) {
            generate = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--write-model") && i + 1 < argc) {
            write_dir = argv[i + 1];
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            tokenizer = argv[i + 1];
        } else if (i + 1 >= argc) {
            B = 0;
        } else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rank")) r = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vocab")) vocab = atoi(argv[i + 1]);
        else {
            fputs(bench_usage, stderr);
            return 1;
        }
    }
    if (help) {
        fputs(bench_usage, stdout);
        return 0;
    }
    shape sv = {0};
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, name)) s = &shapes[i];
    if (s && vocab > 0) { // the vocabulary of a real tokenizer (bench/run_train.sh)
        sv = *s;
        sv.V = vocab;
        s = &sv;
    }
    if (!compute_ok) {
        fprintf(stderr, "bench_train: --compute takes fp32, bf16 or both\n");
        return 1;
    }
    if (!s || B < 1 || T < 2 || steps < 1 || r < 1 || vocab < 0 || !wt_ok) {
        fprintf(stderr, "bench_train: unknown shape \"%s\", weight type or bad sizes\n", name);
        return 1;
    }
    if (bf16) wt = LC_WTYPE_BF16; // --bf16: --weights bf16
    if (s->C % lc_wtype_block(wt) || s->F % lc_wtype_block(wt) || (s->H * s->D) % lc_wtype_block(wt)) {
        fprintf(stderr, "bench_train: %s rows are not whole %s blocks\n", s->name, lc_wtype_name(wt));
        return 1;
    }
    if (s->E && generate > 0) {
        fprintf(stderr, "bench_train: --generate builds Llama-architecture models, not %s\n", s->name);
        return 1;
    }
    if (generate > 0) return bench_generate(s, generate, wt);
    if (write_dir || tokenizer) {
        // The shape's vocabulary is the tokenizer's; max_position_embeddings T.
        if (s->E) {
            fprintf(stderr, "bench_train: --write-model writes Llama-architecture folders, not %s\n", s->name);
            return 1;
        }
        if (!write_dir || !tokenizer) {
            fprintf(stderr, "bench_train: --write-model DIR and --tokenizer FILE go together\n");
            return 1;
        }
        if (bench_write_model(write_dir, tokenizer, s->C, s->F, s->L, s->H, s->KVH, s->D, s->tied, T, 1)) {
            fprintf(stderr, "bench_train: %s\n", lc_error_message());
            return 3;
        }
        printf("%s: %s shape with seeded random weights, tokenizer %s\n", write_dir, s->name, tokenizer);
        return 0;
    }
    bool want_bf16 = computes & 2;
    if (want_bf16 && lc_compute_effective(LC_COMPUTE_BF16) != LC_COMPUTE_BF16) {
        fprintf(stderr, "bench_train: --compute bf16: %s\n", lc_bf16_kernel_describe());
        return 1;
    }
    double peak = sgemm_peak(B * T, s->C, s->F), peak16 = want_bf16 ? bf16_peak(B * T, s->C, s->F) : 0;

    lc_model_config cfg;
    lc_config_init_llama(&cfg, s->C, s->F, s->L, s->H, s->KVH, s->D, s->V);
    cfg.max_position_embeddings = T;
    cfg.tie_word_embeddings = s->tied;
    if (s->E) { // OLMoE: routed experts, q/k norms, top-k weights not renormalized
        cfg.arch = LC_ARCH_OLMOE;
        snprintf(cfg.model_type, sizeof cfg.model_type, "olmoe");
        cfg.n_experts = s->E;
        cfg.experts_per_tok = s->k;
        cfg.moe_ff = cfg.intermediate_size = s->F / s->k;
        cfg.moe_step = 1;
        cfg.qk_norm = true;
    }
    lc_model m;
    lc_lora lora;
    lc_adamw opt;
    lc_train_pass pass;
    lc_lora_config lcfg = {.r = r, .alpha = 2.0f * r, .dropout = 0.0f, .targets = (1u << LC_LINEAR_KIND_COUNT) - 1};
    if (s->attn_only)
        lcfg.targets = 1u << LC_LINEAR_KIND_Q | 1u << LC_LINEAR_KIND_K | 1u << LC_LINEAR_KIND_V | 1u << LC_LINEAR_KIND_O;
    lc_adamw_config acfg = {0.9f, 0.999f, 1e-8f, 0.0f};
    if (lc_model_init_random(&m, &cfg, 1, wt) || lc_lora_init(&lora, &m, &lcfg, 2, true) ||
        lc_adamw_init(&opt, lora.n_params, &acfg) || lc_train_pass_init(&pass, &m, ckpt)) {
        fprintf(stderr, "bench_train: %s\n", lc_error_message());
        return 3;
    }
    // Random tokens, every position but the last has a target.
    lc_batch b = {.B = B, .T = T, .cap = B * T};
    b.tokens = malloc(sizeof(int32_t) * B * T);
    b.targets = malloc(sizeof(int32_t) * B * T);
    b.pos = malloc(sizeof(int32_t) * B * T);
    b.seg_start = calloc((size_t)B * T, sizeof(int32_t));
    uint64_t z = 12345;
    for (int i = 0; i < B * T; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        b.tokens[i] = (int32_t)((z >> 33) % (uint64_t)s->V);
        b.pos[i] = i % T;
    }
    for (int i = 0; i < B * T; i++) b.targets[i] = (i % T == T - 1) ? -1 : b.tokens[i + 1];
    b.n_tokens = B * T;
    b.n_targets = B * (T - 1);

    lc_step_ctx ctx = {&m, &lora, &opt, &pass, 1.0f, 0};
    lc_step_result res;
    // With both computes the steps alternate, so both see the same machine.
    int n_comp = computes == 3 ? 2 : 1;
    lc_compute comp[2] = {computes == 2 ? LC_COMPUTE_BF16 : LC_COMPUTE_FP32, LC_COMPUTE_BF16};
    double measured = 0, *step_s = calloc((size_t)steps * n_comp, sizeof(double)), loss[2] = {0};
    for (int i = 0; i < warmup + steps; i++) {
        if (profile && i == warmup) lc_prof_enable(true);
        for (int c = 0; c < n_comp; c++) {
            lc_train_pass_set_compute(&pass, comp[c]);
            double t0 = lc_now_s();
            if (lc_train_step(&ctx, &b, 1, i * n_comp + c, 1e-4f, &res)) {
                fprintf(stderr, "bench_train: %s\n", lc_error_message());
                return 3;
            }
            if (i >= warmup) measured += step_s[c * steps + i - warmup] = lc_now_s() - t0;
            loss[c] = res.loss;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); // before the second peak run allocates its matrices
    // The peak is the better of a run before and one after the training steps.
    double peak_after = sgemm_peak(B * T, s->C, s->F);
    if (peak_after > peak) peak = peak_after;
    if (want_bf16 && (peak_after = bf16_peak(B * T, s->C, s->F)) > peak16) peak16 = peak_after;
    double tps_fp32 = 0;
    for (int c = 0; c < n_comp; c++) {
        // The median step: one step slowed by a neighbour on a shared machine
        // does not move it.
        double *sc = step_s + c * steps;
        qsort(sc, (size_t)steps, sizeof *sc, cmp_double);
        double median = steps % 2 ? sc[steps / 2] : 0.5 * (sc[steps / 2 - 1] + sc[steps / 2]);
        double tps = (double)B * T / median;
        double gflops = tps * flops_per_token(s, T, r) / 1e9;
        bool is16 = comp[c] == LC_COMPUTE_BF16;
        char vs[64] = "";
        if (is16 && tps_fp32 > 0) snprintf(vs, sizeof vs, " (%.2fx fp32)", tps / tps_fp32);
        if (!is16) tps_fp32 = tps;
        printf("%-13s batch %d x %d, r %d,%s %s weights, %s compute, %d threads (%s): %8.1f tokens/s%s, %6.1f model "
               "GFLOP/s, %4.1f%% of %s peak %.0f GFLOP/s, %.0f MFLOP/token, peak RSS %.2f GB, loss %.3f\n",
               s->name, B, T, r, ckpt ? " checkpointing," : "", lc_wtype_name(wt), lc_compute_name(comp[c]),
               lc_parallel_threads(), openblas_get_corename(), tps, vs, gflops,
               100.0 * gflops / (is16 ? peak16 : peak), is16 ? "bf16" : "sgemm", is16 ? peak16 : peak,
               flops_per_token(s, T, r) / 1e6, ru.ru_maxrss / 1048576.0, loss[c]);
    }
    if (profile) print_profile(measured);
    free(step_s);
    return 0;
}
