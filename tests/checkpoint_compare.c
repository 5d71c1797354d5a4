// Comparing two checkpoints' training state; see checkpoint_compare.h.
#include "checkpoint_compare.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/lora.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "train/checkpoint.h"

typedef struct loaded {
    lc_checkpoint_info info;
    lc_lora lora;
    lc_adamw opt;
} loaded;

static void load(loaded *l, const char *path, const lc_model *m) {
    ck_assert_msg(lc_checkpoint_read_info(path, &l->info) == 0, "%s", lc_error_message());
    ck_assert_msg(l->info.has_optimizer, "%s: no optimizer state", path);
    ck_assert_int_eq(lc_lora_init(&l->lora, m, &l->info.lora, 0, false), 0);
    lc_adamw_config cfg = {0};
    ck_assert_int_eq(lc_adamw_init(&l->opt, l->lora.n_params, &cfg), 0);
    ck_assert_msg(lc_checkpoint_load(path, m, &l->lora, &l->opt) == 0, "%s", lc_error_message());
}

static void unload(loaded *l) {
    lc_adamw_free(&l->opt);
    lc_lora_free(&l->lora);
    lc_checkpoint_info_free(&l->info);
}

void lc_test_assert_same_checkpoint(const char *a, const char *b, const char *model_dir, const char *what) {
    struct stat sa, sb;
    ck_assert_msg(stat(a, &sa) == 0 && stat(b, &sb) == 0, "%s: %s or %s is missing", what, a, b);
    ck_assert_msg(sa.st_size == sb.st_size, "%s: %s has %lld bytes, %s %lld", what, a, (long long)sa.st_size, b,
                  (long long)sb.st_size);
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, model_dir), 0);
    loaded x, y;
    load(&x, a, &m);
    load(&y, b, &m);
    const lc_checkpoint_info *p = &x.info, *q = &y.info;
    ck_assert_msg(p->step == q->step && p->epoch == q->epoch && p->data_index == q->data_index &&
                      p->rng_state == q->rng_state,
                  "%s: training position differs (step %lld/%lld, epoch %lld/%lld, index %lld/%lld)", what,
                  (long long)p->step, (long long)q->step, (long long)p->epoch, (long long)q->epoch,
                  (long long)p->data_index, (long long)q->data_index);
    ck_assert_msg(strcmp(p->config_json, q->config_json) == 0, "%s: stored configs differ", what);
    ck_assert_str_eq(p->base_fingerprint, q->base_fingerprint);
    ck_assert_msg(p->lora.r == q->lora.r && p->lora.alpha == q->lora.alpha && p->lora.dropout == q->lora.dropout &&
                      p->lora.rslora == q->lora.rslora && p->lora.targets == q->lora.targets,
                  "%s: LoRA settings differ", what);
    ck_assert(x.lora.n_params == y.lora.n_params);
    size_t n = x.lora.n_params * sizeof(float);
    ck_assert_msg(memcmp(x.lora.params, y.lora.params, n) == 0, "%s: adapters differ", what);
    ck_assert_msg(memcmp(x.opt.m, y.opt.m, n) == 0 && memcmp(x.opt.v, y.opt.v, n) == 0 && x.opt.step == y.opt.step,
                  "%s: optimizer states differ", what);
    unload(&x);
    unload(&y);
    lc_model_free(&m);
}
