#pragma once
#include <cstdint>

namespace ganforge {

// Everything an im2col/col2im pass needs to know about one convolution.
struct ConvGeometry {
  int64_t batch, channels, height, width;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dilation_h, dilation_w;
  int64_t out_h, out_w;
};

// cols is (N, C*KH*KW, OH*OW), or with batch_in_columns (C*KH*KW, N*OH*OW).
template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g, bool batch_in_columns);

template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g, bool batch_in_columns);

}  // namespace ganforge
