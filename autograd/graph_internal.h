// What the graph's op files share: tape entries, gradient buffers, and the
// backward of the ops kept outside graph.c.
#ifndef LC_GRAPH_INTERNAL_H
#define LC_GRAPH_INTERNAL_H

#include <stdbool.h>

#include "autograd/graph.h"

// Appends a tape entry for op with output out (NULL when the tape cannot grow).
lc_tape_entry *lc_graph_tape_push(lc_graph *g, lc_op op, lc_tensor *out);
// Marks y as needing a gradient when x does and, when the graph records,
// appends a tape entry for op with x as its input. *e is that entry (NULL
// when nothing was recorded); false when the tape cannot grow.
bool lc_graph_record_unary(lc_graph *g, lc_op op, lc_tensor *y, lc_tensor *x, lc_tape_entry **e);
// t's gradient for an op that is about to write all of it: when nothing has
// flowed into t yet it is allocated without zeroing and *fresh is set.
float *lc_graph_grad_fresh(lc_graph *g, lc_tensor *t, bool *fresh);
// The backward of the mixture-of-experts ops (graph_moe.c).
void lc_graph_moe_backward(lc_graph *g, lc_tape_entry *e);

#endif
