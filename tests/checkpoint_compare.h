// Comparing two checkpoints' training state (tests that check a resumed or
// repeated run against a reference).
#ifndef LC_CHECKPOINT_COMPARE_H
#define LC_CHECKPOINT_COMPARE_H

// Asserts that checkpoints a and b (of the base in model_dir) hold the same
// training state: every root and /lora attribute but elapsed_s, the adapter,
// the AdamW moments and step bit for bit, and files of one size. elapsed_s
// is the wall-clock time the run took, the one value two runs never share,
// so the files' bytes are not compared; `what` names the pair in failures.
void lc_test_assert_same_checkpoint(const char *a, const char *b, const char *model_dir, const char *what);

#endif
