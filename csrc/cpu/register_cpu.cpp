// CPU kernels of the stcformer ops (schemas in csrc/register.cpp).
#include <torch/library.h>

#include "fused_mlp.h"
#include "stc_attention.h"

TORCH_LIBRARY_IMPL(stcformer, CPU, m) {
  m.impl("stc_attention_fwd", &stcformer::cpu::stc_attention_fwd);
  m.impl("stc_attention_bwd", &stcformer::cpu::stc_attention_bwd);
  m.impl("gelu_dropout_fwd", &stcformer::cpu::gelu_dropout_fwd);
  m.impl("gelu_dropout_bwd", &stcformer::cpu::gelu_dropout_bwd);
}
