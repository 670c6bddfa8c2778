// A model made to repeat: speculative decoding's best case on real shapes.
//
// Every block's output projections (attention's o_proj, the MLPs' and experts' down_proj) are
// zero, so each block passes the residual stream through unchanged (it still computes all it
// would: the cost of a step is a real model's); the output head is the embedding matrix, so the
// main model predicts the token it was given (logits RMSNorm(e_t) . e_s peak at s = t for random
// embeddings of a few hundred dimensions); and each sequential MTP module's eh_proj passes the
// embedding half of its input ([I 0], embedding first, Eq. 21), so depth k predicts the token it
// was given too. Greedy decoding then repeats the prompt's last token forever and the MTP modules
// draft exactly that: every draft is accepted (`nextn bench decode --config C --repeating`).
#pragma once

#include "nextn/model/deepseek_v3.h"

namespace nextn {

void make_model_repeat(DeepSeekV3& model);

}  // namespace nextn
